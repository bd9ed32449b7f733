r"""Batch-hard triplet loss (Hermans, Beyer and Leibe, 2017).

Every anchor is paired with its hardest positive (the farthest sample of its
class) and its hardest negative (the closest sample of another class) in the
batch, or in a reference set such as the batch gathered across devices.

The hardest samples are found on the ``[rows, num_reference]`` squared
distance matrix without differentiating it: which sample is hardest is
piecewise constant in the embeddings. The loss is then recomputed from the
two selected samples, ``O(batch * dim)``, so the backward pass holds no
pairwise matrix at all and the selected distances are exact differences
rather than the round-off-prone ``|x|^2 + |y|^2 - 2 x.y`` expansion.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import _pairwise, checks


def batch_hard_triplet_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike,
  squared: bool = False,
  soft: bool = False,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Batch-hard triplet loss, per anchor.

  For an anchor :math:`a` with positives :math:`P(a)` (the other samples of
  its class) and negatives :math:`N(a)` (the samples of other classes) in
  the reference set (by default the batch, the anchor's own copy excluded):

  .. math::
    \ell(a) = \Big[m + \max_{p \in P(a)} d(a, p)
      - \min_{n \in N(a)} d(a, n)\Big]_+

  with the Euclidean distance :math:`d` (the paper's choice), or the squared
  Euclidean distance with ``squared=True``. With ``soft=True`` the hinge is
  replaced by the paper's soft margin :math:`\log(1 + e^{x})`, evaluated at
  :math:`x = m + \max_p d - \min_n d`: ``margin=0`` gives the paper's
  soft-margin loss exactly, a positive margin shifts it.

  The embeddings are used as given (the paper does not normalise them); pass
  L2-normalised embeddings for a loss on the unit sphere.

  The gradient flows through the two selected pairs only. Where several
  samples tie for the hardest, the first in reference order is selected
  (``jnp.max`` would instead split the gradient among them). Where two
  points coincide the distance has gradient 0 rather than the infinite
  derivative of the square root at 0. An anchor without a positive or
  without a negative contributes exactly 0, with zero gradient: average over
  `valid_pairwise_anchors` for the per-anchor mean of the paper.

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids of the anchors.
    margin: :math:`m \ge 0`, in the units of :math:`d` (squared units with
      ``squared=True``).
    squared: use the squared Euclidean distance.
    soft: soft margin :math:`\log(1 + e^x)` instead of the hinge
      :math:`[x]_+`.
    reference: the `ReferenceSet` the anchors are compared with (e.g. the
      global batch gathered across devices, or a memory of earlier
      embeddings whose invalid rows are neither positives nor negatives),
      or None for the batch itself.
    anchor_indices: ``[batch]`` int row of each anchor's own copy in the
      reference set (neither a positive nor a negative), negative for none.
      Defaults to the identity for the batch itself and to "none" for an
      explicit reference set.
    block_size: anchors per block in the search for the hardest samples;
      with a value below ``batch`` no ``[batch, num_reference]`` matrix is
      held, only ``[block_size, num_reference]`` ones. None: all anchors at
      once.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32 (bfloat16 in, float32
    out); 0 for anchors without a positive or a negative.

  Raises:
    ValueError: on wrong ranks or mismatched shapes, a concrete negative
      `margin`, a `block_size` <= 0, or a `reference` without embeddings or
      labels.
    TypeError: on non-floating embeddings, non-integer labels or
      `anchor_indices`, a non-bool ``reference.valid``, a non-int
      `block_size`, non-bool `squared` or `soft`, or a `reference` that is
      not a `ReferenceSet`.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0., 0.], [0., 1.], [2., 0.], [1., 2.]])
    >>> y = jnp.array([0, 0, 1, 1])
    >>> loss = batch_hard_triplet_loss(x, y, margin=0.5)
    >>> with jnp.printoptions(precision=3):
    ...   print(loss)
    [0.    0.086 0.736 1.322]

  References:
    Hermans, Beyer and Leibe, `In Defense of the Triplet Loss for Person
    Re-Identification <https://arxiv.org/abs/1703.07737>`_, arXiv 2017.
  """
  checks.check_non_negative(margin, 'margin')
  checks.check_python_bool(squared, 'squared')
  checks.check_python_bool(soft, 'soft')
  checks.check_block_size(block_size)
  x, y, reference, reference_labels, reference_mask, own_rows = (
    _pairwise.resolve_reference(embeddings, labels, reference, anchor_indices)
  )
  # Which samples are hardest does not depend differentiably on the
  # embeddings, so the search runs on constants: nothing of it is stored
  # for, or recomputed in, the backward pass.
  search_reference = jax.lax.stop_gradient(reference)
  reference_norms = jnp.sum(search_reference * search_reference, axis=1)

  def hardest(x_rows, y_rows, own):
    # The anchor's own squared norm is constant along the row and cannot
    # change which column is extreme: it is left out.
    scores = reference_norms[None, :] - 2.0 * jnp.matmul(
      x_rows, search_reference.T
    )
    same_class = y_rows[:, None] == reference_labels[None, :]
    keep = _pairwise.not_self_mask(own, search_reference.shape[0])
    if reference_mask is not None:
      keep = keep & reference_mask[None, :]
    positive_scores = jnp.where(same_class & keep, scores, -jnp.inf)
    negative_scores = jnp.where(keep & ~same_class, scores, jnp.inf)
    positive = jnp.argmax(positive_scores, axis=1)
    negative = jnp.argmin(negative_scores, axis=1)
    # A row without candidates selects a masked (infinite) entry.
    has_positive = _selected(positive_scores, positive) > -jnp.inf
    has_negative = _selected(negative_scores, negative) < jnp.inf
    return positive, negative, has_positive & has_negative

  positive, negative, valid = _pairwise.map_row_blocks(
    hardest, (jax.lax.stop_gradient(x), y, own_rows), block_size=block_size
  )
  positive_distances = _distance(x, reference[positive], squared)
  negative_distances = _distance(x, reference[negative], squared)
  excess = (
    jnp.asarray(margin, x.dtype) + positive_distances - negative_distances
  )
  losses = jax.nn.softplus(excess) if soft else jax.nn.relu(excess)
  return jnp.where(valid, losses, 0.0)


def _selected(scores: jax.Array, columns: jax.Array) -> jax.Array:
  """``[rows]`` entry of each row of `scores` at `columns`."""
  return jnp.take_along_axis(scores, columns[:, None], axis=1)[:, 0]


def _distance(a: jax.Array, b: jax.Array, squared: bool) -> jax.Array:
  """``[batch]`` distances between matching rows of two ``[batch, dim]``."""
  difference = a - b
  squared_distance = jnp.sum(difference * difference, axis=1)
  return squared_distance if squared else _pairwise.safe_sqrt(squared_distance)
