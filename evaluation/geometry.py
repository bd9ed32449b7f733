"""Intra-class compactness and inter-class separability of feature spaces.

Two families of measures:

* Empirical ones, computed from features and their labels through the class
  means (``[C, dim]``): nothing here builds an ``[n, n]`` matrix, so 100k x
  512 features cost O(n * dim) time and memory plus O(C^2) for the class
  pairs. Each comes in a Euclidean form (raw features) and a cosine form
  (L2-normalised features and class mean directions), the latter being the
  geometry that normalised-softmax, Circle and vMF losses train.
* G-softmax's Gaussian-based ones, computed from the learned per-class
  Gaussians ``N(mu_k, sigma_k^2)`` of the G-softmax loss.

Conventions: classes are the distinct label values present, sorted; every
per-class array follows that order (``classes`` gives the values). Class-level
means are unweighted (every class counts once, whatever its size).
Computations run in the features' floating dtype, at least float32.
"""

from typing import Any, NamedTuple

import jax
import numpy as np
from scipy.spatial import distance as scipy_distance

import losses
from common import checks

_METRICS = ('euclidean', 'cosine')


class Compactness(NamedTuple):
  """Intra-class compactness; lower is more compact.

  Attributes:
    classes: ``[C]`` the label values, sorted.
    per_class: ``[C]`` each class's mean distance to its class centre.
    mean: the unweighted mean of `per_class`.
  """

  classes: np.ndarray
  per_class: np.ndarray
  mean: float


class Separability(NamedTuple):
  """Inter-class separability; higher is more separated.

  Attributes:
    classes: ``[C]`` the label values, sorted.
    per_class: ``[C]`` each class centre's distance to the nearest other
      class centre.
    pairwise: ``[C, C]`` distances between class centres (0 on the
      diagonal).
    mean: mean of `pairwise` over the ``C (C - 1) / 2`` unordered pairs.
    minimum: the smallest distance between two class centres.
  """

  classes: np.ndarray
  per_class: np.ndarray
  pairwise: np.ndarray
  mean: float
  minimum: float


def _float_dtype(x: np.ndarray) -> np.dtype:
  return np.promote_types(x.dtype, np.float32)


def _validated(embeddings: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
  checks.check_embeddings_and_labels(embeddings, labels)
  checks.check_non_empty(embeddings, 'embeddings')
  embeddings = np.asarray(embeddings)
  return embeddings.astype(_float_dtype(embeddings), copy=False), np.asarray(
    labels
  )


def _grouped(
  x: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Class values, each row's class index, class sizes and class sums."""
  classes, inverse, counts = np.unique(
    labels, return_inverse=True, return_counts=True
  )
  # Sorting by class turns the per-class sums into contiguous segment sums,
  # which `reduceat` does in one pass (faster than `np.add.at` on rows).
  order = np.argsort(inverse, kind='stable')
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  sums = np.add.reduceat(x[order], starts, axis=0)
  return classes, inverse, counts, sums


def class_means(
  embeddings: Any, labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The mean feature of every class present.

  Args:
    embeddings: ``[n, dim]`` floating features.
    labels: ``[n]`` integer class ids (any values; absent ids are skipped).

  Returns:
    ``(classes, means, counts)``: ``[C]`` sorted label values, ``[C, dim]``
    class means and ``[C]`` class sizes.

  Raises:
    ValueError: on wrong ranks, mismatched lengths or empty inputs.
    TypeError: on non-floating `embeddings` or non-integer `labels`.
  """
  x, labels = _validated(embeddings, labels)
  classes, _, counts, sums = _grouped(x, labels)
  return classes, (sums / counts[:, None]).astype(x.dtype), counts


def _centres(
  x: np.ndarray, labels: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Classes, per-row class index, the features used and the class centres.

  Euclidean: raw features and class means. Cosine: unit features and unit
  class mean directions.
  """
  checks.check_choice(metric, 'metric', _METRICS)
  if metric == 'euclidean':
    classes, inverse, counts, sums = _grouped(x, labels)
    return classes, inverse, x, (sums / counts[:, None]).astype(x.dtype)
  # `losses.l2_normalize` floors the norm, so a zero feature (or a class
  # whose unit features cancel out) gets a zero direction, not NaNs. x64 is
  # on for these calls only, so that float64 features stay float64.
  with jax.enable_x64(True):
    x = np.asarray(losses.l2_normalize(x))
    classes, inverse, counts, sums = _grouped(x, labels)
    centres = np.asarray(losses.l2_normalize(sums / counts[:, None]))
  return classes, inverse, x, centres.astype(x.dtype)


def _compactness(x, labels, metric) -> Compactness:
  classes, inverse, x, centres = _centres(x, labels, metric)
  if metric == 'euclidean':
    per_row = np.linalg.norm(x - centres[inverse], axis=1)
  else:
    per_row = 1.0 - np.einsum('nd,nd->n', x, centres[inverse])
  per_class = np.bincount(inverse, weights=per_row) / np.bincount(inverse)
  per_class = per_class.astype(x.dtype)
  return Compactness(classes, per_class, float(np.mean(per_class)))


def _separability(x, labels, metric) -> Separability:
  classes, _, _, centres = _centres(x, labels, metric)
  num_classes = len(classes)
  if num_classes < 2:
    raise ValueError(
      '`labels` must contain at least 2 distinct classes for '
      f'separability, received {num_classes}'
    )
  if metric == 'euclidean':
    # cdist subtracts before squaring, so close class means keep their
    # precision (the |a|^2 + |b|^2 - 2ab form would cancel).
    pairwise = scipy_distance.cdist(centres, centres)
  else:
    pairwise = 1.0 - centres.astype(np.float64) @ centres.T
  np.fill_diagonal(pairwise, 0.0)
  pairwise = pairwise.astype(x.dtype)
  off_diagonal = ~np.eye(num_classes, dtype=bool)
  per_class = np.where(off_diagonal, pairwise, np.inf).min(axis=1)
  upper = pairwise[np.triu_indices(num_classes, k=1)]
  return Separability(
    classes,
    per_class,
    pairwise,
    float(np.mean(upper)),
    float(np.min(upper)),
  )


def intra_class_compactness(
  embeddings: Any, labels: Any, *, metric: str = 'euclidean'
) -> Compactness:
  r"""Intra-class compactness: mean distance of a class's samples to its centre.

  For class c with samples :math:`x_i, i \in I_c`:

  * ``'euclidean'``: :math:`m_c = \frac{1}{|I_c|}\sum_{i \in I_c} x_i` and
    :math:`\mathrm{comp}_c = \frac{1}{|I_c|}\sum_{i \in I_c} \|x_i - m_c\|_2`
    (in feature units).
  * ``'cosine'``: with :math:`\hat x_i = x_i / \|x_i\|` and the mean
    direction :math:`d_c = \sum_{i \in I_c} \hat x_i / \|\sum_{i \in I_c}
    \hat x_i\|`, :math:`\mathrm{comp}_c = \frac{1}{|I_c|}\sum_{i \in I_c}
    (1 - \hat x_i^\top d_c)`, in ``[0, 2]``.

  Lower is more compact; a class with one sample has compactness 0. The
  overall value is the unweighted mean over classes.

  Args:
    embeddings: ``[n, dim]`` floating features.
    labels: ``[n]`` integer class ids.
    metric: ``'euclidean'`` or ``'cosine'``.

  Returns:
    A `Compactness` (per-class values and their mean).

  Raises:
    ValueError: on wrong ranks, mismatched lengths, empty inputs or an
      unknown `metric`.
    TypeError: on non-floating `embeddings` or non-integer `labels`.
  """
  x, labels = _validated(embeddings, labels)
  return _compactness(x, labels, metric)


def inter_class_separability(
  embeddings: Any, labels: Any, *, metric: str = 'euclidean'
) -> Separability:
  r"""Inter-class separability: distances between class centres.

  * ``'euclidean'``: :math:`D_{cj} = \|m_c - m_j\|_2` between class means.
  * ``'cosine'``: :math:`D_{cj} = 1 - d_c^\top d_j` between the class mean
    directions of L2-normalised features (see `intra_class_compactness`), in
    ``[0, 2]``.

  Per class: :math:`\mathrm{sep}_c = \min_{j \neq c} D_{cj}`, the distance to
  the nearest other class. Overall: the mean of :math:`D_{cj}` over the
  unordered pairs :math:`c < j`, and its minimum. Higher is more separated.

  Args:
    embeddings: ``[n, dim]`` floating features.
    labels: ``[n]`` integer class ids, with at least 2 distinct values.
    metric: ``'euclidean'`` or ``'cosine'``.

  Returns:
    A `Separability`.

  Raises:
    ValueError: on wrong ranks, mismatched lengths, fewer than 2 classes or
      an unknown `metric`.
    TypeError: on non-floating `embeddings` or non-integer `labels`.
  """
  x, labels = _validated(embeddings, labels)
  return _separability(x, labels, metric)


def _ratio(separability: Separability, compactness: Compactness) -> float:
  if compactness.mean == 0:
    return float('inf')
  return separability.mean / compactness.mean


def separability_ratio(
  embeddings: Any, labels: Any, *, metric: str = 'euclidean'
) -> float:
  r"""Scale-free ratio of separability to compactness (Fisher-like).

  .. math::
    \rho = \frac{\frac{2}{C(C-1)}\sum_{c<j} D_{cj}}
                {\frac{1}{C}\sum_c \mathrm{comp}_c}

  i.e. ``inter_class_separability(...).mean /
  intra_class_compactness(...).mean`` for the same `metric`. Scaling every
  feature by s > 0 scales numerator and denominator alike, so the ratio
  compares feature spaces of different scales (e.g. a softmax network's
  unbounded features against a normalised loss's). In the spirit of
  Fisher's criterion (between-class over within-class spread) but with plain
  mean distances instead of variances; higher is more discriminative. It is
  ``inf`` when every class collapses to a point.

  Args:
    embeddings: ``[n, dim]`` floating features.
    labels: ``[n]`` integer class ids, with at least 2 distinct values.
    metric: ``'euclidean'`` or ``'cosine'``.

  Returns:
    The ratio, as a Python float.

  Raises:
    ValueError, TypeError: as `inter_class_separability`.
  """
  x, labels = _validated(embeddings, labels)
  return _ratio(
    _separability(x, labels, metric), _compactness(x, labels, metric)
  )


def feature_geometry(embeddings: Any, labels: Any) -> dict[str, float]:
  """All class-level scalars of a feature space, for logging.

  Args:
    embeddings: ``[n, dim]`` floating features.
    labels: ``[n]`` integer class ids, with at least 2 distinct values.

  Returns:
    For each metric, with prefix ``''`` (Euclidean) or ``'cosine_'``:
    ``'{p}compactness'`` (mean over classes, `intra_class_compactness`),
    ``'{p}separability'`` (mean over class pairs) and
    ``'{p}min_separability'`` (closest pair, `inter_class_separability`),
    ``'{p}ratio'`` (`separability_ratio`).

  Raises:
    ValueError, TypeError: as `inter_class_separability`.
  """
  x, labels = _validated(embeddings, labels)
  result = {}
  for metric, prefix in (('euclidean', ''), ('cosine', 'cosine_')):
    compactness = _compactness(x, labels, metric)
    separability = _separability(x, labels, metric)
    result[f'{prefix}compactness'] = compactness.mean
    result[f'{prefix}separability'] = separability.mean
    result[f'{prefix}min_separability'] = separability.minimum
    result[f'{prefix}ratio'] = _ratio(separability, compactness)
  return result


# ---------------------------------------------------------------------------
# G-softmax's Gaussian-based measures.
# ---------------------------------------------------------------------------


def _gaussian_parameters(
  mu: Any, sigma: Any
) -> tuple[np.ndarray | None, np.ndarray]:
  checks.check_rank(sigma, 1, 'sigma', '[num_classes]')
  checks.check_floating(sigma, 'sigma')
  checks.check_all_positive(sigma, 'sigma')
  sigma = np.asarray(sigma)
  dtype = _float_dtype(sigma)
  if mu is None:
    return None, sigma.astype(dtype)
  checks.check_rank(mu, 1, 'mu', '[num_classes]')
  checks.check_floating(mu, 'mu')
  checks.check_same_shape(mu, sigma, 'mu', 'sigma')
  mu = np.asarray(mu)
  dtype = np.promote_types(dtype, mu.dtype)
  return mu.astype(dtype), sigma.astype(dtype)


def gaussian_kl(mu_p: Any, sigma_p: Any, mu_q: Any, sigma_q: Any) -> np.ndarray:
  r"""KL divergence between 1-D Gaussians, in closed form, elementwise.

  .. math::
    \mathrm{KL}(N(\mu_p, \sigma_p^2) \,\|\, N(\mu_q, \sigma_q^2))
      = \log\frac{\sigma_q}{\sigma_p}
        + \frac{\sigma_p^2 + (\mu_p - \mu_q)^2}{2\sigma_q^2} - \frac{1}{2}

  Args:
    mu_p: means of the first Gaussians (any shape broadcastable with the
      others).
    sigma_p: their standard deviations, > 0.
    mu_q: means of the second Gaussians.
    sigma_q: their standard deviations, > 0.

  Returns:
    The broadcast array of KL divergences (>= 0), in nats.

  Raises:
    ValueError: on a non-positive standard deviation.
  """
  checks.check_all_positive(sigma_p, 'sigma_p')
  checks.check_all_positive(sigma_q, 'sigma_q')
  mu_p, sigma_p, mu_q, sigma_q = np.broadcast_arrays(
    *(np.asarray(a) for a in (mu_p, sigma_p, mu_q, sigma_q))
  )
  dtype = np.promote_types(
    np.result_type(mu_p, sigma_p, mu_q, sigma_q), np.float32
  )
  mu_p, sigma_p, mu_q, sigma_q = (
    a.astype(dtype) for a in (mu_p, sigma_p, mu_q, sigma_q)
  )
  return (
    np.log(sigma_q / sigma_p)
    + (sigma_p**2 + (mu_p - mu_q) ** 2) / (2.0 * sigma_q**2)
    - 0.5
  )


def gaussian_compactness(sigma: Any) -> np.ndarray:
  r"""G-softmax compactness of each class: :math:`1 / \sigma_k`.

  A narrower learned Gaussian means a more compact class. This follows the
  formula of a third-party PyTorch port of G-softmax
  (ronaldvlaar/proto-segmentation, ``gsoftmax.py``); it is unconfirmed
  against the paper (Luo et al., IEEE TNNLS 2020), whose abstract defines
  compactness only in words.

  Args:
    sigma: ``[num_classes]`` learned standard deviations, > 0. For the
      multi-label loss (two Gaussians per label) pass the slot you want,
      e.g. ``sigma[:, 0]`` for "present"; which one the paper uses is
      unconfirmed.

  Returns:
    ``[num_classes]`` compactness values (higher is more compact). Their
    mean is the overall value.

  Raises:
    ValueError: on a wrong rank or a non-positive `sigma`.
    TypeError: on a non-floating `sigma`.
  """
  _, sigma = _gaussian_parameters(None, sigma)
  return 1.0 / sigma


def gaussian_separability(mu: Any, sigma: Any) -> np.ndarray:
  r"""G-softmax separability of each class: mean symmetrised KL to the rest.

  .. math::
    \mathrm{sep}_k = \frac{1}{2(K-1)} \sum_{j \neq k}
      \left[\mathrm{KL}(N_k \,\|\, N_j) + \mathrm{KL}(N_j \,\|\, N_k)\right]

  with :math:`N_k = N(\mu_k, \sigma_k^2)` and the closed-form KL of
  `gaussian_kl`. Higher is more separated. This follows the formula of a
  third-party PyTorch port of G-softmax (ronaldvlaar/proto-segmentation,
  ``gsoftmax.py``); it is unconfirmed against the paper (Luo et al., IEEE
  TNNLS 2020).

  Args:
    mu: ``[num_classes]`` learned means.
    sigma: ``[num_classes]`` learned standard deviations, > 0 (see
      `gaussian_compactness` for the multi-label slots).

  Returns:
    ``[num_classes]`` separability values, >= 0. Their mean is the overall
    value.

  Raises:
    ValueError: on wrong ranks or shapes, fewer than 2 classes or a
      non-positive `sigma`.
    TypeError: on non-floating inputs.
  """
  mu, sigma = _gaussian_parameters(mu, sigma)
  num_classes = sigma.shape[0]
  if num_classes < 2:
    raise ValueError(
      f'`sigma` must describe at least 2 classes, received {num_classes}'
    )
  # [K, K]: entry (k, j) is KL(N_k || N_j); the diagonal is exactly 0.
  kl = gaussian_kl(mu[:, None], sigma[:, None], mu[None, :], sigma[None, :])
  symmetric = kl + kl.T
  np.fill_diagonal(symmetric, 0.0)
  return symmetric.sum(axis=1) / (2.0 * (num_classes - 1))
