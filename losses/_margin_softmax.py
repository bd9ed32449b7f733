r"""Cosine-softmax baselines: NormFace, CosFace (AM-Softmax) and ArcFace.

All three are softmax cross-entropy on scaled cosines
:math:`s \cos\theta_j` between the L2-normalised feature and the
L2-normalised class weights; CosFace and ArcFace replace the target logit by
a margin-penalised one. The margin math touches only the target column
(``[batch]`` values): the ``[batch, num_classes]`` work is one matrix
product, a select and a log-sum-exp, as for plain softmax cross-entropy.

`cosine_cross_entropy` (shared with the class-level Circle loss) has a
hand-written derivative: on CPU each ``[batch, num_classes]`` array written
to memory costs about as much as the arithmetic on it, and autodiff of the
select / log-sum-exp chain writes five besides the cosines (logits,
exponentials, softmax, its select, one-hot scatter). The rule keeps only
the cosines and per-row statistics and recomputes the softmax in the
backward pass, fused with the cotangent: one array forward (the logits) and
one backward (the cosine cotangent).
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import _pairwise, checks

# ``fn(values, params) -> logits``, elementwise in `values` (cosines).
LogitFn = Callable[[jax.Array, Any], jax.Array]


def unit_inputs(
  embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Validated unit embeddings and class weights, and the labels array."""
  checks.check_class_inputs(embeddings, class_weights, labels, 'class_weights')
  dtype = checks.compute_dtype(embeddings, class_weights)
  # Normalising the two factors (O((batch + num_classes) * dim)) is cheaper
  # than dividing the [batch, num_classes] product by the norms.
  return (
    _pairwise.l2_normalize(jnp.asarray(embeddings, dtype)),
    _pairwise.l2_normalize(jnp.asarray(class_weights, dtype)),
    jnp.asarray(labels),
  )


def _is_zero(tangent: Any) -> bool:
  return isinstance(tangent, jax.custom_derivatives.SymbolicZero)


def _target_mask(shape: tuple[int, ...], labels: jax.Array) -> jax.Array:
  """``[batch, num_classes]`` bool, True in each row's label column.

  A select against a column iota, fused into its consumers, not a one-hot
  array in memory.
  """
  # int32 columns: a narrow label dtype (uint8) could not count the classes.
  columns = jax.lax.broadcasted_iota(jnp.int32, shape, 1)
  return columns == labels.astype(jnp.int32)[:, None]


def _statistics(logit_fn, target_logit_fn, unit_x, unit_w, labels, params):
  """Cosines, target cosines, target logits and the per-row log-sum-exp."""
  cosines = jnp.matmul(unit_x, unit_w.T)
  target = jnp.take_along_axis(cosines, labels[:, None], axis=1)[:, 0]
  target_logits = target_logit_fn(target, params)
  logits = jnp.where(
    _target_mask(cosines.shape, labels),
    target_logits[:, None],
    logit_fn(cosines, params),
  )
  return cosines, target, target_logits, jax.nn.logsumexp(logits, axis=1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def cosine_cross_entropy(
  logit_fn: LogitFn,
  target_logit_fn: LogitFn,
  unit_embeddings: jax.Array,
  unit_weights: jax.Array,
  labels: jax.Array,
  params: Any,
) -> jax.Array:
  """Softmax cross-entropy on logits that are functions of the cosines.

  Row :math:`i`'s logits are ``logit_fn(cosines, params)``, except in its
  label column, which holds ``target_logit_fn(cosines[i, y_i], params)``;
  the loss is their log-sum-exp minus that target logit. Both functions
  must be elementwise in the cosines (any `jax.lax.stop_gradient` inside is
  honoured). Gradients reach the unit vectors and `params` (forward and
  reverse mode, `vmap`, `jit`); normalising is the caller's.

  Args:
    logit_fn: ``(cosines, params) -> logits``, elementwise on
      ``[batch, num_classes]``; only its off-label entries are used.
    target_logit_fn: ``(target_cosines, params) -> target_logits`` on the
      ``[batch]`` label-column cosines.
    unit_embeddings: ``[batch, dim]`` unit-norm features.
    unit_weights: ``[num_classes, dim]`` unit-norm class weights.
    labels: ``[batch]`` integer class ids.
    params: pytree of arrays (e.g. scale and margin) passed to both
      functions.

  Returns:
    ``[batch]`` losses.
  """
  _, _, target_logits, lse = _statistics(
    logit_fn, target_logit_fn, unit_embeddings, unit_weights, labels, params
  )
  return lse - target_logits


def _with_slopes(fn, values, params):
  """``fn(values, params)`` and its derivative in `values` (elementwise)."""
  return jax.jvp(lambda v: fn(v, params), (values,), (jnp.ones_like(values),))


def _loss_tangent(
  logit_fn,
  target_logit_fn,
  cosines,
  target,
  lse,
  labels,
  params,
  d_cosines,
  d_params,
):
  """``[batch]`` tangent of the losses; None tangents are zero."""
  is_target = _target_mask(cosines.shape, labels)
  logits, logit_slopes = _with_slopes(logit_fn, cosines, params)
  target_logits, target_slopes = _with_slopes(target_logit_fn, target, params)
  logits = jnp.where(is_target, target_logits[:, None], logits)
  probabilities = jnp.exp(logits - lse[:, None])
  # d loss / d logit = softmax - one-hot.
  logit_weights = jnp.where(is_target, probabilities - 1.0, probabilities)
  tangent = jnp.zeros_like(lse)
  if d_cosines is not None:
    # d loss / d cosine as one select of [batch] and elementwise slopes: the
    # label column's share stays in the same fused loop (no row reduction
    # and broadcast, no scatter).
    cosine_slopes = logit_weights * jnp.where(
      is_target, target_slopes[:, None], logit_slopes
    )
    tangent = tangent + jnp.sum(cosine_slopes * d_cosines, axis=1)
  if d_params is not None:
    _, d_logits = jax.jvp(
      lambda p: logit_fn(cosines, p), (params,), (d_params,)
    )
    _, d_target_logits = jax.jvp(
      lambda p: target_logit_fn(target, p), (params,), (d_params,)
    )
    d_logits = jnp.where(is_target, d_target_logits[:, None], d_logits)
    tangent = tangent + jnp.sum(logit_weights * d_logits, axis=1)
  return tangent


def _cosine_cross_entropy_jvp(logit_fn, target_logit_fn, primals, tangents):
  unit_x, unit_w, labels, params = primals
  d_x, d_w, _, d_params = tangents
  cosines, target, target_logits, lse = _statistics(
    logit_fn, target_logit_fn, unit_x, unit_w, labels, params
  )
  losses = lse - target_logits
  d_cosines = None
  if not _is_zero(d_x):
    d_cosines = jnp.matmul(d_x, unit_w.T)
  if not _is_zero(d_w):
    d_from_w = jnp.matmul(unit_x, d_w.T)
    d_cosines = d_from_w if d_cosines is None else d_cosines + d_from_w
  if all(_is_zero(t) for t in jax.tree.leaves(d_params)):
    d_params = None
  else:
    d_params = jax.tree.map(
      lambda t, p: jnp.zeros_like(p) if _is_zero(t) else t, d_params, params
    )
  if d_cosines is None and d_params is None:
    return losses, jnp.zeros_like(losses)
  # Under jax.checkpoint the softmax is not kept for the backward pass: it
  # is recomputed there from the cosines (kept anyway) and the per-row
  # log-sum-exp, in the same loop that applies the cotangent.
  tangent = jax.checkpoint(
    functools.partial(_loss_tangent, logit_fn, target_logit_fn)
  )(cosines, target, lse, labels, params, d_cosines, d_params)
  return losses, tangent


cosine_cross_entropy.defjvp(_cosine_cross_entropy_jvp, symbolic_zeros=True)


def _scaled(cosines: jax.Array, params: tuple[jax.Array, ...]) -> jax.Array:
  return params[0] * cosines


def _cosface_target(target: jax.Array, params) -> jax.Array:
  scale, margin = params
  return scale * (target - margin)


def _arcface_shifted(target, margin):
  r""":math:`\cos(\theta + m)` from :math:`\cos\theta`; cos m and sin m."""
  sine = _pairwise.safe_sqrt(1.0 - target * target)
  cos_margin, sin_margin = jnp.cos(margin), jnp.sin(margin)
  return target * cos_margin - sine * sin_margin, cos_margin, sin_margin


def _arcface_target(target: jax.Array, params) -> jax.Array:
  scale, margin = params
  shifted, cos_margin, sin_margin = _arcface_shifted(target, margin)
  penalised = jnp.where(
    target > -cos_margin,  # cos(pi - m) = -cos(m)
    shifted,
    target - margin * sin_margin,
  )
  return scale * penalised


def _arcface_easy_target(target: jax.Array, params) -> jax.Array:
  scale, margin = params
  shifted, _, _ = _arcface_shifted(target, margin)
  return scale * jnp.where(target > 0, shifted, target)


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
  checks.check_positive(scale, 'scale')
  unit_x, unit_w, labels = unit_inputs(embeddings, class_weights, labels)
  params = (jnp.asarray(scale, unit_x.dtype),)
  return cosine_cross_entropy(_scaled, _scaled, unit_x, unit_w, labels, params)


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
  checks.check_positive(scale, 'scale')
  checks.check_in_range(margin, 'margin', 0.0, 2.0, high_inclusive=False)
  unit_x, unit_w, labels = unit_inputs(embeddings, class_weights, labels)
  params = (jnp.asarray(scale, unit_x.dtype), jnp.asarray(margin, unit_x.dtype))
  return cosine_cross_entropy(
    _scaled, _cosface_target, unit_x, unit_w, labels, params
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
  checks.check_positive(scale, 'scale')
  checks.check_in_range(
    margin, 'margin', 0.0, math.pi / 2, high_inclusive=False
  )
  unit_x, unit_w, labels = unit_inputs(embeddings, class_weights, labels)
  params = (jnp.asarray(scale, unit_x.dtype), jnp.asarray(margin, unit_x.dtype))
  target_logit_fn = _arcface_easy_target if easy_margin else _arcface_target
  return cosine_cross_entropy(
    _scaled, target_logit_fn, unit_x, unit_w, labels, params
  )
