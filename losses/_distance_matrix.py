r"""LDMAT: a loss between the feature and the label distance matrices.

Ribeiro et al. (CVIU 2024) train the deep features by minimising "the
distance between two distance matrices, one constructed with the model's deep
features and the other calculated from the labels", with a regularisation of
the label matrix that "allows a degree of relaxation of the solution". Only
the abstract is public; this module implements one explicit reading of it
(docs/losses.md §3), stated in `distance_matrix_loss`'s docstring.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from losses import _pairwise, checks

DISTANCES = ('euclidean', 'squared_euclidean', 'cosine')
# Squared distances below this count as coincident points (as in
# `_pairwise.safe_sqrt`): zero (sub)gradient instead of 1 / (2 sqrt(0)).
_COINCIDENT = 1e-12
_COINCIDENT_DISTANCE = math.sqrt(_COINCIDENT)


def distance_matrix_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  distance: str = 'euclidean',
  inter_class_distance: float = math.sqrt(2.0),
  intra_class_distance: float = 0.0,
  relaxation: float = 0.0,
  normalize: bool = False,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Per-anchor LDMAT loss: feature distances regressed on label distances.

  Each anchor's row of the feature distance matrix is pulled towards the
  same row of a label distance matrix that puts every pair of the same
  class at `intra_class_distance` and every pair of different classes at
  `inter_class_distance`. With one-hot label vectors and the Euclidean
  distance the label matrix is exactly this, with 0 and :math:`\sqrt{2}`:
  a fixed distance between every two classes and compact classes. A dead
  band of half-width `relaxation` (the "relaxation" of the label matrix)
  makes feature distances within `relaxation` of their target cost nothing.

  For anchors :math:`f_i` with labels :math:`y_i` and a reference set
  :math:`g_j, z_j` (by default the batch itself):

  .. math::
    D^F_{ij} = d(f_i, g_j), \qquad
    D^Y_{ij} = \begin{cases}
      \delta_{\mathrm{intra}} & y_i = z_j \\
      \delta_{\mathrm{inter}} & y_i \neq z_j
    \end{cases}

    \ell_i = \frac{1}{|J_i|} \sum_{j \in J_i}
      \max\left(\left|D^F_{ij} - D^Y_{ij}\right| - \rho, 0\right)^2

  where :math:`J_i` is the reference set without the anchor's own copy and
  :math:`d` is one of

  - ``'euclidean'``: :math:`\|f_i - g_j\|_2`;
  - ``'squared_euclidean'``: :math:`\|f_i - g_j\|_2^2`;
  - ``'cosine'``: :math:`1 - \cos(f_i, g_j)`.

  When the reference set is the batch of size :math:`B`, the batch mean
  :math:`\frac{1}{B}\sum_i \ell_i` with :math:`\rho = 0` is the mean squared
  difference of the two matrices over their off-diagonal entries,
  :math:`\frac{1}{B(B-1)} \sum_{i \neq j} (D^F_{ij} - D^Y_{ij})^2`, i.e. a
  squared Frobenius norm of :math:`D^F - D^Y` without the diagonal (which
  carries no information: :math:`D^F_{ii} = 0`).

  **What is implemented and what is interpreted.** The paper's exact equation
  was not available (only its abstract is public; no code or preprint). The
  following are interpretations consistent with the abstract, not the
  paper's choices: the feature distance (Euclidean by default; squared
  Euclidean and cosine as options), the matrix discrepancy (mean squared
  entry-wise difference, diagonal excluded; a mean over all :math:`B^2`
  entries, diagonal included, is a factor :math:`(B-1)/B` smaller when
  :math:`\delta_{\mathrm{intra}} = 0`), the label matrix (two target
  values, as one-hot vectors under the Euclidean distance give), the form of
  the relaxation (a dead band around each target) and the optional L2
  normalisation of the features. Match the targets to the distance: the
  one-hot geometry is 0 / :math:`\sqrt{2}` for ``'euclidean'``, 0 / 2 for
  ``'squared_euclidean'`` and 0 / 1 for ``'cosine'``.

  Numerics: the computation runs in at least float32 (bfloat16 in, float32
  out). Distances come from one matrix product,
  :math:`\|f\|^2 + \|g\|^2 - 2 f^\top g` clamped at 0, so nearby points carry
  a round-off of about :math:`\sqrt{\epsilon}\,\|f\|` in their Euclidean
  distance. Coincident points (the diagonal, duplicates) have distance 0 and
  a zero (sub)gradient for the Euclidean distance, so value and gradient
  stay finite. The derivative is an analytic JVP rule (forward and reverse
  mode, also with respect to the three hyperparameters) that reuses one
  ``[batch, num_reference]`` coefficient matrix in the backward products.
  Per anchor, its own copy is excluded; an anchor whose reference set holds
  nothing else gets loss 0.

  Args:
    embeddings: ``[batch, dim]`` floating features of the anchors.
    labels: ``[batch]`` integer class ids.
    distance: ``'euclidean'``, ``'squared_euclidean'`` or ``'cosine'``.
    inter_class_distance: target distance between different classes, > 0.
    intra_class_distance: target distance within a class, in
      ``[0, inter_class_distance)``.
    relaxation: half-width of the cost-free band around each target, >= 0.
    normalize: L2-normalise the features (and the reference set) first.
    reference: the `ReferenceSet` the anchors are compared with (e.g. the
      global batch gathered across devices), or None for the batch itself.
      Rows where its ``valid`` is False are left out of every anchor's row,
      sum and count :math:`|J_i|` alike, e.g. the unwritten rows of a
      memory of earlier embeddings.
    anchor_indices: ``[batch]`` int row of each anchor's own copy in the
      reference set (excluded from its row), negative for none. Defaults to
      the identity for the batch itself and to "none" for an explicit
      reference set.
    block_size: rows per block; with a value below ``batch`` neither the
      forward nor the backward pass holds a ``[batch, num_reference]``
      matrix (see `map_row_blocks`). None: all rows at once.

  Returns:
    ``[batch]`` per-anchor losses :math:`\ell_i`, in the compute dtype.

  Raises:
    ValueError: for a `distance` outside the allowed set, targets or
      `relaxation` out of range, inconsistent shapes, or a `reference`
      without embeddings or labels.
    TypeError: for non-floating embeddings, non-integer labels or indices,
      a non-bool `normalize` or ``reference.valid``, or a `reference` that
      is not a `ReferenceSet`.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0., 0.], [0., 0.5], [1., 1.]])
    >>> y = jnp.array([0, 0, 1])
    >>> distance_matrix_loss(x, y).round(4)
    Array([0.125 , 0.1689, 0.0439], dtype=float32)

  References:
    Ribeiro, Araújo, Chaves, Braga. Distance-based loss function for deep
    feature space learning of convolutional neural networks. Computer Vision
    and Image Understanding 249, 104184, 2024.
    https://doi.org/10.1016/j.cviu.2024.104184
  """
  checks.check_choice(distance, 'distance', DISTANCES)
  checks.check_positive(inter_class_distance, 'inter_class_distance')
  checks.check_non_negative(intra_class_distance, 'intra_class_distance')
  if not isinstance(inter_class_distance, jax.core.Tracer):
    checks.check_in_range(
      intra_class_distance,
      'intra_class_distance',
      0.0,
      float(np.asarray(inter_class_distance)),
      high_inclusive=False,
    )
  checks.check_non_negative(relaxation, 'relaxation')
  checks.check_python_bool(normalize, 'normalize')
  checks.check_block_size(block_size)
  same = reference is None
  x, y, ref, ref_labels, ref_mask, anchor_indices = _pairwise.resolve_reference(
    embeddings, labels, reference, anchor_indices
  )
  if normalize or distance == 'cosine':
    x = _pairwise.l2_normalize(x)
    # One normalisation for both roles when the reference is the batch, so
    # the two gradient paths meet on the same array.
    ref = x if same else _pairwise.l2_normalize(ref)
  dtype = x.dtype
  hyperparameters = tuple(
    jnp.asarray(value, dtype)
    for value in (intra_class_distance, inter_class_distance, relaxation)
  )

  def row_losses(x_rows, y_rows, own_rows):
    return _row_losses(
      distance,
      x_rows,
      ref,
      y_rows,
      ref_labels,
      own_rows,
      ref_mask,
      *hyperparameters,
    )

  return _pairwise.map_row_blocks(
    row_losses, (x, y, anchor_indices), block_size=block_size
  )


def _pair_terms(
  distance,
  x_rows,
  ref,
  y_rows,
  ref_labels,
  own_rows,
  ref_mask,
  intra,
  inter,
  relax,
):
  """The ``[rows, num_reference]`` quantities the value and tangent share.

  Returns:
    ``(losses, features, signed_excess, same_class, count)``: the per-row
    losses ``[rows]``; the feature distances; ``sign(error) * excess`` with
    the anchor's own copy zeroed, where ``error = features - targets`` and
    ``excess = max(|error| - relax, 0)``; the same-class mask; and the number
    of counted columns per row ``[rows]``.
  """
  num_reference = ref.shape[0]
  # One matrix product; every distance is an elementwise function of it.
  cross = jnp.matmul(x_rows, ref.T)
  if distance == 'cosine':
    features = 1.0 - cross
  else:
    squared = jnp.maximum(
      jnp.sum(x_rows * x_rows, axis=1)[:, None]
      + jnp.sum(ref * ref, axis=1)[None, :]
      - 2.0 * cross,
      0.0,
    )
    if distance == 'euclidean':
      features = _sqrt(squared)
    else:
      features = squared
  same_class = y_rows[:, None] == ref_labels[None, :]
  error = features - jnp.where(same_class, intra, inter)
  excess = jnp.maximum(jnp.abs(error) - relax, 0.0)
  keep = _pairwise.not_self_mask(own_rows, num_reference)
  # Own copies are counted, not summed from the mask: O(rows), not O(n^2).
  has_copy = (own_rows >= 0) & (own_rows < num_reference)
  num_counted = num_reference
  if ref_mask is not None:
    keep = keep & ref_mask[None, :]
    has_copy = has_copy & ref_mask[jnp.clip(own_rows, 0, num_reference - 1)]
    num_counted = jnp.sum(ref_mask.astype(x_rows.dtype))
  signed_excess = jnp.where(keep, jnp.where(error >= 0, excess, -excess), 0.0)
  count = jnp.maximum(num_counted - has_copy.astype(x_rows.dtype), 1.0)
  losses = jnp.sum(signed_excess * signed_excess, axis=1) / count
  return losses, features, signed_excess, same_class, count


# The derivative is written by hand, as a JVP so that forward and reverse
# mode both work. Autodiff of the elementwise chain above keeps three
# ``[rows, num_reference]`` matrices alive at once on CPU and costs about 2x
# the GEMM skeleton at 4096 x 128; this rule keeps one residual (the
# coefficient matrix of d(x.r) and d|r|^2) and feeds it to the two products
# of the backward pass, about 1.3-1.5x.
@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _row_losses(
  distance,
  x_rows,
  ref,
  y_rows,
  ref_labels,
  own_rows,
  ref_mask,
  intra,
  inter,
  relax,
):
  """``[rows]`` losses of anchor rows `x_rows` against the reference set."""
  return _pair_terms(
    distance,
    x_rows,
    ref,
    y_rows,
    ref_labels,
    own_rows,
    ref_mask,
    intra,
    inter,
    relax,
  )[0]


def _row_losses_jvp(distance, primals, tangents):
  x_rows, ref = primals[:2]
  dx_rows, dref, _, _, _, _, dintra, dinter, drelax = tangents
  losses, features, signed_excess, same_class, count = _pair_terms(
    distance, *primals
  )
  # slope_ij = d loss_i / d features_ij.
  slope = 2.0 * signed_excess / count[:, None]
  tangent = jnp.zeros_like(losses)
  if not (_is_zero(dx_rows) and _is_zero(dref)):
    if distance == 'cosine':
      # features = 1 - x.r: the coefficient of d(x.r).
      cross_coefficient = -slope
    else:
      if distance == 'euclidean':
        # d sqrt(s) = ds / (2 sqrt(s)); 0 where points coincide, as the
        # subgradient of safe_sqrt. The inner where keeps 1/0 out of
        # higher-order derivatives.
        positive = features > _COINCIDENT_DISTANCE
        squared_coefficient = jnp.where(
          positive, slope / (2.0 * jnp.where(positive, features, 1.0)), 0.0
        )
      else:
        squared_coefficient = slope
      # squared = |x|^2 + |r|^2 - 2 x.r.
      cross_coefficient = -2.0 * squared_coefficient
    if not _is_zero(dx_rows):
      x_direction = jnp.matmul(cross_coefficient, ref)
      if distance != 'cosine':
        row_sums = jnp.sum(squared_coefficient, axis=1)
        x_direction = x_direction + 2.0 * row_sums[:, None] * x_rows
      tangent = tangent + jnp.sum(x_direction * dx_rows, axis=1)
    if not _is_zero(dref):
      if distance == 'cosine':
        moved = jnp.matmul(cross_coefficient, dref)
        tangent = tangent + jnp.sum(x_rows * moved, axis=1)
      else:
        # One product carries both d(x.r) and d|r|^2 = 2 r.dr.
        dim = ref.shape[1]
        norm_tangent = 2.0 * jnp.sum(ref * dref, axis=1, keepdims=True)
        moved = jnp.matmul(
          squared_coefficient, jnp.concatenate([dref, norm_tangent], axis=1)
        )
        tangent = tangent + (
          moved[:, dim] - 2.0 * jnp.sum(x_rows * moved[:, :dim], axis=1)
        )
  if not _is_zero(dintra):
    tangent = tangent - dintra * jnp.sum(
      jnp.where(same_class, slope, 0.0), axis=1
    )
  if not _is_zero(dinter):
    tangent = tangent - dinter * jnp.sum(
      jnp.where(same_class, 0.0, slope), axis=1
    )
  if not _is_zero(drelax):
    tangent = tangent - drelax * jnp.sum(jnp.abs(slope), axis=1)
  return losses, tangent


_row_losses.defjvp(_row_losses_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _sqrt(squared: jax.Array) -> jax.Array:
  """``sqrt`` of a non-negative array, derivative 0 at coincident points.

  The derivative matches `_pairwise.safe_sqrt`'s (0 below 1e-12), so higher
  derivatives of the loss stay finite on the diagonal. The value has no
  ``where`` (0 maps to sqrt(tiny), about 1e-19 in float32): `safe_sqrt`'s
  value-side ``where`` makes XLA on CPU store one more ``[rows, m]`` matrix
  instead of recomputing the root inside each consumer.
  """
  # The floor keeps the derivative finite where JAX differentiates this
  # body instead of the rule (second order through a scan, whose partial
  # evaluation inlines custom_jvp functions).
  return jnp.sqrt(jnp.maximum(squared, jnp.finfo(squared.dtype).tiny))


@_sqrt.defjvp
def _sqrt_jvp(primals, tangents):
  (squared,), (squared_dot,) = primals, tangents
  # _sqrt, not jnp.sqrt, so that second derivatives are finite at 0 too.
  value = _sqrt(squared)
  positive = squared > _COINCIDENT
  scale = jnp.where(positive, 0.5 / jnp.where(positive, value, 1.0), 0.0)
  return value, scale * squared_dot


def _is_zero(tangent) -> bool:
  return isinstance(tangent, jax.custom_derivatives.SymbolicZero)
