r"""Proxy baselines: ProxyNCA and SoftTriple.

Each class is represented by learned proxies and every example is scored
against all of them, so, unlike Proxy-Anchor, these losses are per example
(a sum over the batch of terms that each involve one example).
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import _pairwise, checks
from losses._margin_softmax import _target_mask
from losses._subcenter_arcface import center_cosines, check_center_inputs


def proxy_nca_loss(
  embeddings: ArrayLike,
  proxies: ArrayLike,
  labels: ArrayLike,
  *,
  softmax_scale: ArrayLike = 1.0,
  exclude_positive: bool = False,
) -> jax.Array:
  r"""ProxyNCA: NCA against one learned proxy per class, per example.

  With :math:`d_j = \|\hat x - \hat p_j\|^2` the squared distance between
  the L2-normalised embedding and the L2-normalised proxy of class
  :math:`j`, and :math:`s` the softmax scale:

  .. math::
    \ell = -\log \frac{e^{-s d_y}}{\sum_{j \in Z} e^{-s d_j}}, \qquad
    Z = \begin{cases}
      \{1, \dots, C\} & \text{exclude\_positive=False (PML)} \\
      \{j \ne y\} & \text{exclude\_positive=True (the paper)}
    \end{cases}

  The paper's Eq. leaves the positive proxy out of the denominator (the
  loss can then be negative); pytorch-metric-learning's ``ProxyNCALoss``
  and most reproductions keep it in, which makes the loss a softmax
  cross-entropy on :math:`-s d`. Norms are floored at 1e-12 (a zero
  vector stays zero and its squared distance to a unit vector is 1), and
  squared distances need no square root: gradients are finite everywhere.

  Args:
    embeddings: ``[batch, dim]`` floating features; L2-normalised here.
    proxies: ``[num_classes, dim]`` floating proxies; L2-normalised here.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    softmax_scale: :math:`s > 0`, multiplying the negated squared
      distances (pytorch-metric-learning's ``softmax_scale``, default 1).
    exclude_positive: leave the positive proxy out of the denominator, as
      the paper's Eq.; needs at least 2 classes.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes, a concrete non-positive
      `softmax_scale`, or a single class with `exclude_positive`.
    TypeError: on non-floating `embeddings`/`proxies`, non-integer
      `labels` or a non-bool `exclude_positive`.

  Examples:
    >>> import jax.numpy as jnp
    >>> proxies = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = proxy_nca_loss(x, proxies, jnp.array([0, 1]))
    >>> [round(float(value), 4) for value in loss]
    [0.1269, 0.6931]

  References:
    Movshovitz-Attias, Toshev, Leung, Ioffe and Singh, `No Fuss Distance
    Metric Learning using Proxies <https://arxiv.org/abs/1703.07464>`_,
    ICCV 2017.
  """
  checks.check_positive(softmax_scale, 'softmax_scale')
  checks.check_python_bool(exclude_positive, 'exclude_positive')
  checks.check_class_inputs(embeddings, proxies, labels, 'proxies')
  if exclude_positive and jnp.shape(proxies)[0] < 2:
    raise ValueError(
      '`exclude_positive=True` needs at least 2 proxies, received '
      f'{jnp.shape(proxies)[0]}'
    )
  dtype = checks.compute_dtype(embeddings, proxies)
  unit_x = _pairwise.l2_normalize(jnp.asarray(embeddings, dtype))
  unit_p = _pairwise.l2_normalize(jnp.asarray(proxies, dtype))
  labels = jnp.asarray(labels).astype(jnp.int32)
  logits = -jnp.asarray(softmax_scale, dtype) * (
    _pairwise.pairwise_squared_distance(unit_x, unit_p)
  )
  is_target = _target_mask(logits.shape, labels)
  target_logits = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
  if exclude_positive:
    # -inf drops the positive from the log-sum-exp; the select passes it no
    # gradient.
    logits = jnp.where(is_target, -jnp.inf, logits)
  return jax.nn.logsumexp(logits, axis=1) - target_logits


def soft_triple_loss(
  embeddings: ArrayLike,
  centers: ArrayLike,
  labels: ArrayLike,
  *,
  la: ArrayLike = 20.0,
  gamma: ArrayLike = 0.1,
  margin: ArrayLike = 0.01,
  tau: ArrayLike = 0.2,
) -> jax.Array:
  r"""SoftTriple: softmax over relaxed class similarities, per example.

  Each class :math:`c` has :math:`K` centres :math:`w_c^k`; with
  :math:`s_c^k` the cosine between the embedding and centre :math:`k` of
  class :math:`c` (both L2-normalised), the class similarity is the
  softmax-weighted mean of its centres' cosines (Eq. 7 of the paper), and
  the loss a scaled softmax cross-entropy with a margin on the target
  (Eq. 8), plus the regulariser of Eq. 10 that merges redundant centres:

  .. math::
    S_c = \sum_k \frac{e^{s_c^k / \gamma}}{\sum_{k'} e^{s_c^{k'} / \gamma}}
      s_c^k, \qquad
    \ell = -\log \frac{e^{\lambda (S_y - \delta)}}
      {e^{\lambda (S_y - \delta)} + \sum_{c \ne y} e^{\lambda S_c}}
      + \tau R, \qquad
    R = \frac{\sum_c \sum_{k < k'} \|w_c^k - w_c^{k'}\|_2}{C K (K - 1)}

  with unit centres (:math:`\|w - w'\| = \sqrt{2 - 2 w^\top w'}`; a zero
  centre stays zero, at distance 1 from the others). The
  normaliser :math:`C K (K - 1)` is the official code's (and
  pytorch-metric-learning's ``SparseCentersRegularizer``'s); :math:`R` is 0
  for :math:`K = 1`.
  :math:`R` is the same for every example, so the mean over a batch is the
  official loss (cross-entropy mean plus :math:`\tau R`). The distance is
  taken with a square root whose gradient is 0 at coincident centres, where
  the official code adds 1e-5 under the root instead.

  Args:
    embeddings: ``[batch, dim]`` floating features; L2-normalised here.
    centers: ``[num_classes, K, dim]`` floating centres; L2-normalised here.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    la: :math:`\lambda > 0`, the scale of the class similarities (20 in
      the paper).
    gamma: :math:`\gamma > 0`, the temperature of the softmax over a
      class's centres (0.1 in the paper).
    margin: :math:`\delta \ge 0`, subtracted from the target similarity
      (0.01 in the paper).
    tau: :math:`\tau \ge 0`, the weight of the centre regulariser (0.2 in
      the paper; 0 is pytorch-metric-learning's ``SoftTripleLoss`` without a
      weight regulariser).

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes, a concrete non-positive
      `la` or `gamma`, or a concrete negative `margin` or `tau`.
    TypeError: on non-floating `embeddings`/`centers` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> centers = jnp.array([[[1., 0.], [0., -1.]], [[0., 1.], [-1., 0.]]])
    >>> x = jnp.array([[2., 0.], [-1., 1.]])
    >>> loss = soft_triple_loss(x, centers, jnp.array([0, 1]), la=2.)
    >>> [round(float(value), 4) for value in loss]
    [0.2708, 0.2]

  References:
    Qian, Shang, Sun, Hu, Li and Jin, `SoftTriple Loss: Deep Metric Learning
    Without Triplet Sampling <https://arxiv.org/abs/1909.05235>`_, ICCV
    2019.
  """
  checks.check_positive(la, 'la')
  checks.check_positive(gamma, 'gamma')
  checks.check_non_negative(margin, 'margin')
  checks.check_non_negative(tau, 'tau')
  check_center_inputs(embeddings, centers, labels, 'centers')
  cosines, unit_c = center_cosines(embeddings, centers)
  dtype = cosines.dtype
  labels = jnp.asarray(labels).astype(jnp.int32)
  weights = jax.nn.softmax(cosines / jnp.asarray(gamma, dtype), axis=2)
  similarities = jnp.sum(weights * cosines, axis=2)
  is_target = _target_mask(similarities.shape, labels)
  logits = jnp.asarray(la, dtype) * (
    similarities - jnp.where(is_target, jnp.asarray(margin, dtype), 0.0)
  )
  target_logits = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
  losses = jax.nn.logsumexp(logits, axis=1) - target_logits
  num_classes, k = unit_c.shape[:2]
  if k == 1:
    return losses
  # Squared distances of the unit (or zero) centres, within each class.
  gram = jnp.einsum('ckd,cld->ckl', unit_c, unit_c)
  squared_norms = jnp.diagonal(gram, axis1=1, axis2=2)
  squared = squared_norms[:, :, None] + squared_norms[:, None, :] - 2.0 * gram
  upper = jnp.triu(jnp.ones((k, k), bool), 1)
  distances = _pairwise.safe_sqrt(
    jnp.where(upper, jnp.maximum(squared, 0.0), 0.0)
  )
  regulariser = jnp.sum(distances) / (num_classes * k * (k - 1))
  return losses + jnp.asarray(tau, dtype) * regulariser
