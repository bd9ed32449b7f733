r"""Cosine-softmax baselines: NormFace, CosFace (AM-Softmax) and ArcFace.

All three are softmax cross-entropy on scaled cosines
:math:`s \cos\theta_j` between the L2-normalised feature and the
L2-normalised class weights; CosFace and ArcFace replace the target logit by
a margin-penalised one. The margin math touches only the target column
(``[batch]`` values): the ``[batch, num_classes]`` work is one matrix
product, a select and a log-sum-exp, as for plain softmax cross-entropy.
"""

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import _checks, _pairwise


def _cosines(
  embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike
) -> tuple[jax.Array, jax.Array]:
  """Validated ``[batch, num_classes]`` cosines and the labels as an array."""
  _checks.check_class_inputs(embeddings, class_weights, labels, 'class_weights')
  dtype = _checks.compute_dtype(embeddings, class_weights)
  # Normalising the two factors (O((batch + num_classes) * dim)) is cheaper
  # than dividing the [batch, num_classes] product by the norms.
  unit_embeddings = _pairwise.l2_normalize(jnp.asarray(embeddings, dtype))
  unit_weights = _pairwise.l2_normalize(jnp.asarray(class_weights, dtype))
  return jnp.matmul(unit_embeddings, unit_weights.T), jnp.asarray(labels)


def _target_cosines(cosines: jax.Array, labels: jax.Array) -> jax.Array:
  """``[batch]`` cosine of each row's label column."""
  return jnp.take_along_axis(cosines, labels[:, None], axis=1)[:, 0]


def _cross_entropy_with_target_logit(
  logits: jax.Array, labels: jax.Array, target_logits: jax.Array
) -> jax.Array:
  """Softmax CE where each row's label column is replaced by its target.

  The replacement is a select against a column iota (fused into the
  log-sum-exp), not a ``[batch, num_classes]`` one-hot array.
  """
  # int32 columns: a narrow label dtype (uint8) could not count the classes.
  columns = jax.lax.broadcasted_iota(jnp.int32, logits.shape, 1)
  is_target = columns == labels.astype(jnp.int32)[:, None]
  logits = jnp.where(is_target, target_logits[:, None], logits)
  return jax.nn.logsumexp(logits, axis=1) - target_logits


def normalized_softmax_cross_entropy(
  embeddings: ArrayLike,
  class_weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
) -> jax.Array:
  r"""NormFace: softmax cross-entropy on scaled cosine logits, per example.

  Features and class weights are L2-normalised, so every logit is a cosine
  times the scale (inverse temperature) :math:`s`.

  .. math::
    \ell = -\log \frac{\exp(s \cos\theta_y)}{\sum_j \exp(s \cos\theta_j)},
    \qquad \cos\theta_j = \frac{x^\top w_j}{\|x\| \, \|w_j\|}

  Norms are floored at 1e-12: a zero embedding or class weight has cosine 0
  with everything, with finite gradients.

  Args:
    embeddings: ``[batch, dim]`` floating features.
    class_weights: ``[num_classes, dim]`` floating class weights.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    scale: :math:`s > 0` (e.g. 16-64; 1 / temperature).

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes or a concrete
      non-positive `scale`.
    TypeError: on non-floating `embeddings`/`class_weights` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> weights = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = normalized_softmax_cross_entropy(
    ...     x, weights, jnp.array([0, 1]), scale=4.)
    >>> jnp.round(loss, 4)
    Array([0.0181, 0.6931], dtype=float32)

  References:
    Wang, Xiang, Cheng and Yuille, `NormFace: L2 Hypersphere Embedding for
    Face Verification <https://arxiv.org/abs/1704.06369>`_, ACM MM 2017.
  """
  _checks.check_positive(scale, 'scale')
  cosines, labels = _cosines(embeddings, class_weights, labels)
  scale = jnp.asarray(scale, cosines.dtype)
  target_logits = scale * _target_cosines(cosines, labels)
  return jax.nn.logsumexp(scale * cosines, axis=1) - target_logits


def cosface_loss(
  embeddings: ArrayLike,
  class_weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
) -> jax.Array:
  r"""CosFace / AM-Softmax: additive cosine margin on the target, per example.

  As `normalized_softmax_cross_entropy`, with the target logit lowered by
  the margin :math:`m` in cosine space.

  .. math::
    \ell = -\log \frac{\exp(s (\cos\theta_y - m))}
      {\exp(s (\cos\theta_y - m)) + \sum_{j \ne y} \exp(s \cos\theta_j)}

  Args:
    embeddings: ``[batch, dim]`` floating features.
    class_weights: ``[num_classes, dim]`` floating class weights.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    scale: :math:`s > 0` (the papers use 30-64).
    margin: :math:`m \in [0, 2)` (typically 0.35). Cosines lie in
      ``[-1, 1]``, so with :math:`m \ge 2` the target could never win; the
      CosFace paper bounds useful margins by :math:`C / (C - 1) \le 2`.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes, a concrete non-positive
      `scale` or a concrete `margin` outside ``[0, 2)``.
    TypeError: on non-floating `embeddings`/`class_weights` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> weights = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = cosface_loss(
    ...     x, weights, jnp.array([0, 1]), scale=4., margin=0.35)
    >>> jnp.round(loss, 4)
    Array([0.0716, 1.6204], dtype=float32)

  References:
    Wang et al., `CosFace: Large Margin Cosine Loss for Deep Face Recognition
    <https://arxiv.org/abs/1801.09414>`_, CVPR 2018; Wang, Cheng, Liu and
    Liu, `Additive Margin Softmax for Face Verification
    <https://arxiv.org/abs/1801.05599>`_, IEEE SPL 2018.
  """
  _checks.check_positive(scale, 'scale')
  _checks.check_in_range(margin, 'margin', 0.0, 2.0, high_inclusive=False)
  cosines, labels = _cosines(embeddings, class_weights, labels)
  scale = jnp.asarray(scale, cosines.dtype)
  margin = jnp.asarray(margin, cosines.dtype)
  target_logits = scale * (_target_cosines(cosines, labels) - margin)
  return _cross_entropy_with_target_logit(
    scale * cosines, labels, target_logits
  )


def arcface_loss(
  embeddings: ArrayLike,
  class_weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  easy_margin: bool = False,
) -> jax.Array:
  r"""ArcFace: additive angular margin on the target, per example.

  As `normalized_softmax_cross_entropy`, with the target logit
  :math:`s \cos(\theta_y + m)`. Where :math:`\theta_y + m` would pass
  :math:`\pi`, :math:`\cos(\theta_y + m)` stops decreasing in
  :math:`\theta_y`; the target logit :math:`s\,\psi(\cos\theta_y)` therefore
  uses the InsightFace fallback (also in pytorch-metric-learning):

  .. math::
    \psi(c) = \begin{cases}
      \cos(\theta + m) = c \cos m - \sqrt{1 - c^2} \sin m
        & c > \cos(\pi - m) \\
      c - m \sin m & \text{otherwise}
    \end{cases}

    \ell = -\log \frac{\exp(s\,\psi(\cos\theta_y))}
      {\exp(s\,\psi(\cos\theta_y)) + \sum_{j \ne y} \exp(s \cos\theta_j)}

  (:math:`\sin(\pi - m) = \sin m`). The fallback keeps the target logit
  increasing in :math:`\cos\theta_y` but is not continuous at
  :math:`\theta_y = \pi - m` (it jumps from :math:`-1` to
  :math:`-\cos m - m \sin m`). With ``easy_margin=True`` the margin applies
  only to targets with positive cosine: :math:`\psi(c) = \cos(\theta + m)`
  for :math:`c > 0`, else :math:`c`. With :math:`m = 0` both forms equal
  NormFace.

  The arccos is never evaluated: :math:`\sin\theta_y = \sqrt{1 -
  \cos^2\theta_y}` is taken with a square root that has value and gradient 0
  below 1e-12, so cosines at (or rounded past) :math:`\pm 1` give finite
  values and gradients even with :math:`s = 64`. In float32 a cosine within
  ~1e-7 of :math:`\pm 1` (rounding in the product) gives
  :math:`\sin\theta_y` of up to ~5e-4 instead of ~0, which moves the
  target logit by up to :math:`s \sin(m) \cdot 5 \cdot 10^{-4}` (0.015 at
  :math:`s = 64`, :math:`m = 0.5`); this is the conditioning of
  :math:`\sqrt{1 - c^2}`, shared by every implementation of this form.

  Args:
    embeddings: ``[batch, dim]`` floating features.
    class_weights: ``[num_classes, dim]`` floating class weights.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    scale: :math:`s > 0` (typically 64).
    margin: :math:`m \in [0, \pi/2)` radians (typically 0.5).
    easy_margin: apply the margin only where :math:`\cos\theta_y > 0`.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes, a concrete non-positive
      `scale` or a concrete `margin` outside ``[0, pi/2)``.
    TypeError: on non-floating `embeddings`/`class_weights` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> weights = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = arcface_loss(
    ...     x, weights, jnp.array([0, 1]), scale=4., margin=0.5)
    >>> jnp.round(loss, 4)
    Array([0.0294, 1.8697], dtype=float32)

  References:
    Deng, Guo, Xue and Zafeiriou, `ArcFace: Additive Angular Margin Loss for
    Deep Face Recognition <https://arxiv.org/abs/1801.07698>`_, CVPR 2019.
  """
  _checks.check_positive(scale, 'scale')
  _checks.check_in_range(
    margin, 'margin', 0.0, math.pi / 2, high_inclusive=False
  )
  cosines, labels = _cosines(embeddings, class_weights, labels)
  dtype = cosines.dtype
  scale = jnp.asarray(scale, dtype)
  margin = jnp.asarray(margin, dtype)
  target = _target_cosines(cosines, labels)
  sine = _pairwise.safe_sqrt(1.0 - target * target)
  cos_margin, sin_margin = jnp.cos(margin), jnp.sin(margin)
  shifted = target * cos_margin - sine * sin_margin
  if easy_margin:
    penalised = jnp.where(target > 0, shifted, target)
  else:
    penalised = jnp.where(
      target > -cos_margin,  # cos(pi - m) = -cos(m)
      shifted,
      target - margin * sin_margin,
    )
  return _cross_entropy_with_target_logit(
    scale * cosines, labels, scale * penalised
  )
