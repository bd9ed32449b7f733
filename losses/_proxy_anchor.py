r"""Proxy-Anchor loss (Kim, Kim, Cho and Kwak, CVPR 2020).

Each class has a learned proxy, and every proxy is an anchor that the whole
batch is scored against: one log-sum-exp per proxy runs over all of the
batch's examples of its class (pulled towards it) and, separately, over all
the others (pushed away from it). An example's gradient therefore depends on
the rest of the batch, weighted by relative hardness, and the loss is one
scalar for the batch rather than a sum of per-example terms. This is the one
loss of the package that does not return per-example values.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import _pairwise, checks


def proxy_anchor_loss(
  embeddings: ArrayLike,
  proxies: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike = 0.1,
  alpha: ArrayLike = 32.0,
) -> jax.Array:
  r"""Proxy-Anchor loss of a batch, a scalar (the paper's Eq. 4).

  With the cosine similarity :math:`s(x, p)` between the L2-normalised
  embedding :math:`x` and the L2-normalised proxy :math:`p`, the set
  :math:`P` of all proxies, the set :math:`P^+` of those with at least one
  example of their class in the batch, and :math:`X_p^+` (:math:`X_p^-`) the
  batch's examples of (not of) the class of :math:`p`:

  .. math::
    L = \frac{1}{|P^+|} \sum_{p \in P^+} \log\Big(1 + \sum_{x \in X_p^+}
      e^{-\alpha (s(x, p) - \delta)}\Big)
      + \frac{1}{|P|} \sum_{p \in P} \log\Big(1 + \sum_{x \in X_p^-}
      e^{\alpha (s(x, p) + \delta)}\Big)

  Every :math:`\log(1 + \sum e^{z})` is computed as a log-sum-exp with an
  extra 0 term, so the loss is finite for any :math:`\alpha`; examples
  outside a set are masked out of its sum (never multiplied by 0), with
  zero gradient. A proxy without positives in the batch has no positive
  term and is left out of :math:`P^+`; with :math:`P^+` empty the positive
  term is 0. Norms are floored at 1e-12: a zero embedding or proxy has
  cosine 0 with everything, with finite gradients.

  The loss is **not** a sum or mean over examples: each proxy's log-sum-exp
  runs over the whole batch, so the loss of a batch is not the average of
  the losses of its parts. Under data parallelism the caller must pass the
  whole global batch (e.g. embeddings and labels gathered across devices
  with `jax.lax.all_gather`, ``tiled=True``); averaging per-device values
  gives a different loss.

  Args:
    embeddings: ``[batch, dim]`` floating features; L2-normalised here.
    proxies: ``[num_classes, dim]`` floating class proxies; L2-normalised
      here.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``. An id
      outside that range is a positive of no proxy (and a negative of all).
    margin: :math:`\delta \ge 0`; 0.1 in the paper's implementation details
      (Sec. 4).
    alpha: scale :math:`\alpha > 0`; 32 in the paper's implementation
      details (Sec. 4).

  Returns:
    The ``[]`` loss of the batch, in at least float32 (bfloat16 in, float32
    out).

  Raises:
    ValueError: on wrong ranks or mismatched shapes, a concrete `margin`
      < 0 or a concrete `alpha` <= 0.
    TypeError: on non-floating `embeddings`/`proxies` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> proxies = jnp.array([[1., 0.], [0., 1.], [-1., 0.]])
    >>> x = jnp.array([[2., 0.], [1., 1.], [0., 3.]])
    >>> loss = proxy_anchor_loss(x, proxies, jnp.array([0, 0, 1]))
    >>> print(f'{loss:.4f}')
    10.7691

  References:
    Kim, Kim, Cho and Kwak, `Proxy Anchor Loss for Deep Metric Learning
    <https://arxiv.org/abs/2003.13911>`_, CVPR 2020.
  """
  checks.check_non_negative(margin, 'margin')
  checks.check_positive(alpha, 'alpha')
  checks.check_class_inputs(embeddings, proxies, labels, 'proxies')
  dtype = checks.compute_dtype(embeddings, proxies)
  unit_x = _pairwise.l2_normalize(jnp.asarray(embeddings, dtype))
  unit_p = _pairwise.l2_normalize(jnp.asarray(proxies, dtype))
  labels = jnp.asarray(labels)
  margin = jnp.asarray(margin, dtype)
  alpha = jnp.asarray(alpha, dtype)

  cosines = jnp.matmul(unit_x, unit_p.T)
  # [batch, num_classes]: True in each row's label column (a select against
  # a column iota, fused into its consumers). int32 columns: a narrow label
  # dtype (uint8) could not count the classes.
  columns = jax.lax.broadcasted_iota(jnp.int32, cosines.shape, 1)
  positive = columns == labels.astype(jnp.int32)[:, None]
  positive_terms = _log1p_sum_exp(-alpha * (cosines - margin), positive)
  negative_terms = _log1p_sum_exp(alpha * (cosines + margin), ~positive)
  num_with_positives = jnp.sum(jnp.any(positive, axis=0))
  # Proxies without positives have positive term exactly 0, so summing over
  # all of them and dividing by |P+| is the mean over P+.
  positive_loss = jnp.sum(positive_terms) / jnp.maximum(num_with_positives, 1)
  negative_loss = jnp.mean(negative_terms)
  return positive_loss + negative_loss


def _log1p_sum_exp(logits: jax.Array, mask: jax.Array) -> jax.Array:
  r"""Per column, :math:`\log(1 + \sum_i e^{z_i})` over the masked rows.

  The 0 term (the 1) joins the shift of the log-sum-exp, which is therefore
  at least 0: finite for an empty column, whose value is exactly 0.

  Args:
    logits: ``[batch, num_classes]`` values :math:`z`.
    mask: ``[batch, num_classes]`` bool, True where a value belongs to its
      column's sum.

  Returns:
    ``[num_classes]`` values, 0 for a column without a True.
  """
  # Masked entries are -inf: they drop out of the maximum and their exp is
  # 0; the select passes them no gradient.
  masked = jnp.where(mask, logits, -jnp.inf)
  # The shift (0 for the 1 term, or the largest exponent) cancels in value
  # and gradient: held constant, it keeps the gradient away from the
  # maximum's ties. The initial 0 also covers an empty batch.
  shift = jax.lax.stop_gradient(jnp.max(masked, axis=0, initial=0.0))
  total = jnp.exp(-shift) + jnp.sum(jnp.exp(masked - shift), axis=0)
  return shift + jnp.log(total)
