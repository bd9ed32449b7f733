r"""Circle loss (Sun et al., CVPR 2020), class-level and pair-wise forms.

Both forms re-weight every similarity by how far it is from its optimum:
a within-class similarity :math:`s_p` by :math:`\alpha_p = [1 + m - s_p]_+`
and a between-class similarity :math:`s_n` by :math:`\alpha_n = [s_n + m]_+`.
As in the paper (and every reference implementation), the weights are
constants in back-propagation: they scale the gradient of each similarity
but are not differentiated themselves (`jax.lax.stop_gradient`).

The pair-wise form scores every anchor against every other sample of the
batch, or of a reference set such as the batch gathered across devices. Its
``[rows, num_reference]`` kernel has a hand-written derivative (a single
``[rows, num_reference]`` residual) and runs in row blocks of bounded memory
with ``block_size`` (`_pairwise.map_row_blocks`), whose backward pass keeps
the per-row log-sum-exp statistics and recomputes only the cosines.
"""

import jax
import jax.numpy as jnp
from jax import ad_checkpoint
from jax.typing import ArrayLike

from losses import _margin_softmax, _pairwise, checks


def _check_hyperparameters(margin: ArrayLike, gamma: ArrayLike) -> None:
  # margin >= 1 would put the positive optimum 1 - m at or below 0 and the
  # negative one m at or above 1: no similarity could reach the boundary.
  checks.check_in_range(margin, 'margin', 0.0, 1.0, high_inclusive=False)
  checks.check_positive(gamma, 'gamma')


def circle_loss_class_level(
  embeddings: ArrayLike,
  class_weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike,
  gamma: ArrayLike,
) -> jax.Array:
  r"""Circle loss with class-level labels (one proxy per class), per example.

  Softmax cross-entropy on re-weighted cosine logits. With the cosines
  :math:`s_j = \cos(x, w_j)` between the feature and each class weight, the
  target logit is :math:`\gamma \alpha_p (s_y - \Delta_p)` and every other
  logit :math:`\gamma \alpha_n^j (s_j - \Delta_n)`; the weights
  :math:`\alpha` are held constant in back-propagation. This is the
  pair-wise form with one positive (the own class weight) and
  ``num_classes - 1`` negatives.

  .. math::
    \ell = -\log \frac{e^{\gamma \alpha_p (s_y - \Delta_p)}}
      {e^{\gamma \alpha_p (s_y - \Delta_p)}
       + \sum_{j \ne y} e^{\gamma \alpha_n^j (s_j - \Delta_n)}},
    \quad \alpha_p = [1 + m - s_y]_+, \;
    \alpha_n^j = [s_j + m]_+, \;
    \Delta_p = 1 - m, \; \Delta_n = m

  Norms are floored at 1e-12: a zero feature or class weight has cosine 0
  with everything, with finite gradients.

  Args:
    embeddings: ``[batch, dim]`` floating features.
    class_weights: ``[num_classes, dim]`` floating class weights (proxies);
      they are L2-normalised here.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    margin: relaxation :math:`m \in [0, 1)`; 0.25 for face recognition and
      person re-identification in the paper's settings as
      pytorch-metric-learning reports them (docs/losses.md §5.2).
    gamma: scale :math:`\gamma > 0`; 256 (face recognition) or 128 (person
      re-identification), reported likewise.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks or mismatched shapes, a concrete `margin`
      outside ``[0, 1)`` or a concrete `gamma` <= 0.
    TypeError: on non-floating `embeddings`/`class_weights` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> weights = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = circle_loss_class_level(
    ...     x, weights, jnp.array([0, 1]), margin=0.25, gamma=16.)
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.1269 7.3732]

  References:
    Sun, Cheng, Zhang, Zhang, Zheng, Wang and Wei, `Circle Loss: A Unified
    Perspective of Pair Similarity Optimization
    <https://arxiv.org/abs/2002.10857>`_, CVPR 2020.
  """
  _check_hyperparameters(margin, gamma)
  unit_x, unit_w, labels = _margin_softmax.unit_inputs(
    embeddings, class_weights, labels
  )
  params = (jnp.asarray(margin, unit_x.dtype), jnp.asarray(gamma, unit_x.dtype))
  # Softmax cross-entropy with a replaced target logit, as CosFace: the
  # shared rule differentiates the logit functions below as written, so the
  # stop_gradient on the alphas holds for embeddings, margin and gamma.
  return _margin_softmax.cosine_cross_entropy(
    _class_level_logits,
    _class_level_target_logits,
    unit_x,
    unit_w,
    labels,
    params,
  )


def _class_level_logits(cosines: jax.Array, params) -> jax.Array:
  r"""Between-class logits :math:`\gamma \alpha_n (s - m)`, alphas fixed."""
  margin, gamma = params
  alpha_n = jax.lax.stop_gradient(jax.nn.relu(cosines + margin))
  return gamma * alpha_n * (cosines - margin)


def _class_level_target_logits(target: jax.Array, params) -> jax.Array:
  r"""Target logits :math:`\gamma \alpha_p (s_y - \Delta_p)`, alphas fixed."""
  margin, gamma = params
  alpha_p = jax.lax.stop_gradient(jax.nn.relu(1.0 + margin - target))
  return gamma * alpha_p * (target - (1.0 - margin))


def circle_loss_pairwise(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike,
  gamma: ArrayLike,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Circle loss with pair-wise labels, per anchor.

  Each anchor :math:`x` is compared by cosine similarity with every sample
  of the reference set (by default the batch itself, the anchor's own copy
  excluded): :math:`s_p^i` with the :math:`K` samples of its class and
  :math:`s_n^j` with the :math:`L` samples of other classes. The weights
  :math:`\alpha` are held constant in back-propagation.

  .. math::
    \ell = \log\Big[1 + \sum_{j=1}^{L} e^{\gamma \alpha_n^j (s_n^j - m)}
      \sum_{i=1}^{K} e^{-\gamma \alpha_p^i (s_p^i - (1 - m))}\Big]
    = \operatorname{softplus}\big(\operatorname{LSE}_j\, \gamma
      \alpha_n^j (s_n^j - m) + \operatorname{LSE}_i\, (-\gamma \alpha_p^i
      (s_p^i - (1 - m)))\big),

  with :math:`\alpha_p^i = [1 + m - s_p^i]_+` and
  :math:`\alpha_n^j = [s_n^j + m]_+`. The right-hand form is the one
  computed: non-pairs are masked out of each log-sum-exp (never multiplied
  by 0), so the loss is finite for any :math:`\gamma` (256 included).

  An anchor without a positive or without a negative in the reference set
  has no loss: it contributes exactly 0, with zero gradient. The loss is
  returned per anchor and the caller reduces. Averaging over the valid
  anchors (`valid_pairwise_anchors`) matches the paper's per-anchor mean::

    per_anchor = circle_loss_pairwise(x, y, margin=0.25, gamma=256.)
    valid = valid_pairwise_anchors(y)
    loss = per_anchor.sum() / jnp.maximum(valid.sum(), 1)

  pytorch-metric-learning's ``CircleLoss`` instead averages over the
  anchors whose loss is non-zero (``AvgNonZeroReducer``), which excludes
  the already-satisfied anchors as well and so weighs the rest more.

  Gradients with respect to `gamma` and `margin` (e.g. if they are learned
  or traced) hold the weights :math:`\alpha` constant too.

  Args:
    embeddings: ``[batch, dim]`` floating anchors; L2-normalised here.
    labels: ``[batch]`` integer class ids of the anchors.
    margin: relaxation :math:`m \in [0, 1)`; 0.25 for face recognition and
      person re-identification, 0.4 for fine-grained retrieval (the paper's
      settings as pytorch-metric-learning reports them; docs/losses.md
      §5.2).
    gamma: scale :math:`\gamma > 0`; 256 (faces), 128 (re-id), 80
      (fine-grained retrieval), reported likewise.
    reference: the `ReferenceSet` the anchors are compared with (e.g. the
      global batch gathered across devices, or a memory of earlier
      embeddings whose invalid rows are neither positives nor negatives),
      or None for the batch itself.
    anchor_indices: ``[batch]`` int row of each anchor's own copy in the
      reference set (never a positive), negative for none. Defaults to the
      identity for the batch itself and to "none" for an explicit reference
      set.
    block_size: anchors per block. With a value below ``batch`` neither the
      forward nor the backward pass holds a ``[batch, num_reference]``
      matrix, only ``[block_size, num_reference]`` ones (and one extra
      forward evaluation is paid). None: all anchors at once.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32 (bfloat16 in, float32
    out); 0 for anchors without a positive or a negative.

  Raises:
    ValueError: on wrong ranks or mismatched shapes, a concrete `margin`
      outside ``[0, 1)``, a concrete `gamma` <= 0, a `block_size` <= 0, or
      a `reference` without embeddings or labels.
    TypeError: on non-floating embeddings, non-integer labels or
      `anchor_indices`, a non-bool ``reference.valid``, a non-int
      `block_size`, or a `reference` that is not a `ReferenceSet`.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 1.], [-1., 1.]])
    >>> y = jnp.array([0, 0, 1, 1])
    >>> loss = circle_loss_pairwise(x, y, margin=0.25, gamma=16.)
    >>> with jnp.printoptions(precision=3):
    ...   print(loss)
    [1.094 7.374 7.374 1.094]

  References:
    Sun, Cheng, Zhang, Zhang, Zheng, Wang and Wei, `Circle Loss: A Unified
    Perspective of Pair Similarity Optimization
    <https://arxiv.org/abs/2002.10857>`_, CVPR 2020.
  """
  _check_hyperparameters(margin, gamma)
  checks.check_block_size(block_size)
  batch_is_reference = reference is None
  x, y, reference, reference_labels, reference_mask, own_rows = (
    _pairwise.resolve_reference(embeddings, labels, reference, anchor_indices)
  )
  x = _pairwise.l2_normalize(x)
  # One normalisation for both roles when the reference is the batch, so
  # the two gradient paths meet on the same array.
  reference = x if batch_is_reference else _pairwise.l2_normalize(reference)
  margin = jnp.asarray(margin, x.dtype)
  gamma = jnp.asarray(gamma, x.dtype)

  def row_losses(x_rows, y_rows, own):
    return _circle_rows(
      x_rows,
      reference,
      y_rows,
      reference_labels,
      own,
      reference_mask,
      margin,
      gamma,
    )

  return _pairwise.map_row_blocks(
    row_losses, (x, y, own_rows), block_size=block_size
  )


def _circle_terms(
  x_rows, reference, y_rows, reference_labels, own, reference_mask, m, gamma
):
  """Per-row losses and the ``[rows, num_reference]`` pieces of the slope.

  Returns:
    ``(losses, same_class, alphas, unscaled_logits, weights)``: the
    ``[rows]`` losses; the same-class mask; :math:`\\alpha` of every pair;
    the logits divided by gamma; and ``weights`` = d loss / d logit, zero
    off the pairs and on invalid rows.
  """
  cosines = jnp.matmul(x_rows, reference.T)
  same_class = y_rows[:, None] == reference_labels[None, :]
  keep = _pairwise.not_self_mask(own, reference.shape[0])
  if reference_mask is not None:
    keep = keep & reference_mask[None, :]
  positive = same_class & keep
  negative = keep & ~same_class
  alphas = jax.nn.relu(jnp.where(same_class, 1.0 + m - cosines, cosines + m))
  # Positives: -alpha_p (s - (1 - m)); negatives: alpha_n (s - m).
  unscaled_logits = alphas * jnp.where(
    same_class, 1.0 - m - cosines, cosines - m
  )
  logits = gamma * unscaled_logits
  # Non-pairs are -inf, so they drop out of the maxima and the exp-sums.
  # Two masked arrays, not one exp shared through selects: on CPU each
  # masked [rows, num_reference] array costs more than the exps, which XLA
  # fuses into the reductions.
  positive_logits = jnp.where(positive, logits, -jnp.inf)
  negative_logits = jnp.where(negative, logits, -jnp.inf)
  max_positive = jnp.max(positive_logits, axis=1)
  max_negative = jnp.max(negative_logits, axis=1)
  has_positive = max_positive > -jnp.inf
  has_negative = max_negative > -jnp.inf
  valid = has_positive & has_negative
  # The 0s and 1s stand in on invalid rows, whose loss is set to 0 below.
  shift_positive = jnp.where(has_positive, max_positive, 0.0)
  shift_negative = jnp.where(has_negative, max_negative, 0.0)
  sum_positive = jnp.sum(
    jnp.exp(positive_logits - shift_positive[:, None]), axis=1
  )
  sum_negative = jnp.sum(
    jnp.exp(negative_logits - shift_negative[:, None]), axis=1
  )
  log_sum_positive = jnp.log(jnp.where(has_positive, sum_positive, 1.0))
  log_sum_negative = jnp.log(jnp.where(has_negative, sum_negative, 1.0))
  total = shift_positive + log_sum_positive + shift_negative + log_sum_negative
  losses = jnp.where(valid, jax.nn.softplus(total), 0.0)
  # d softplus(LSE_p + LSE_n) / d logit = sigmoid(total) * softmax weight of
  # the logit within its kind, taken here as one exp of a log-weight.
  log_outer = jnp.where(valid, jax.nn.log_sigmoid(total), -jnp.inf)
  # Per-row offsets: saved across a blocked backward pass (O(rows)), so it
  # recomputes only the cosines and this exp, not the maxima and sums.
  positive_offset, negative_offset = ad_checkpoint.checkpoint_name(
    (
      log_outer - shift_positive - log_sum_positive,
      log_outer - shift_negative - log_sum_negative,
    ),
    _pairwise.ROW_RESIDUAL,
  )
  log_weights = jnp.where(
    same_class,
    positive_logits + positive_offset[:, None],
    negative_logits + negative_offset[:, None],
  )
  weights = jnp.exp(log_weights)
  return losses, same_class, alphas, unscaled_logits, weights


# The derivative is written by hand, as a JVP (so forward and reverse mode
# both work): with the alphas constant, d loss / d cosine is analytic, and
# the rule keeps one [rows, num_reference] residual (the slopes) where
# autodiff of the masked max / exp / log chain keeps several.
@jax.custom_jvp
def _circle_rows(
  x_rows, reference, y_rows, reference_labels, own, reference_mask, m, gamma
):
  """``[rows]`` losses of unit anchors `x_rows` against unit `reference`."""
  return _circle_terms(
    x_rows, reference, y_rows, reference_labels, own, reference_mask, m, gamma
  )[0]


def _circle_rows_jvp(primals, tangents):
  x_rows, reference, _, _, _, _, m, gamma = primals
  dx_rows, dreference, _, _, _, _, dm, dgamma = tangents
  losses, same_class, alphas, unscaled_logits, weights = _circle_terms(*primals)
  tangent = jnp.zeros_like(losses)
  if not (_is_zero(dx_rows) and _is_zero(dreference)):
    # d loss / d cosine, the alphas held constant.
    slopes = gamma * weights * jnp.where(same_class, -alphas, alphas)
    if not _is_zero(dx_rows):
      tangent = tangent + jnp.sum(
        dx_rows * jnp.matmul(slopes, reference), axis=1
      )
    if not _is_zero(dreference):
      tangent = tangent + jnp.sum(
        x_rows * jnp.matmul(slopes, dreference), axis=1
      )
  if not _is_zero(dgamma):
    tangent = tangent + dgamma * jnp.sum(weights * unscaled_logits, axis=1)
  if not _is_zero(dm):
    # Both kinds of logit move by -gamma * alpha per unit of margin.
    tangent = tangent - dm * gamma * jnp.sum(weights * alphas, axis=1)
  return losses, tangent


_circle_rows.defjvp(_circle_rows_jvp, symbolic_zeros=True)


def _is_zero(tangent) -> bool:
  return isinstance(tangent, jax.custom_derivatives.SymbolicZero)
