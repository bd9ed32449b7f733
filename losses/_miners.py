r"""Miners: which pairs or triplets a pair-based loss should count.

Pure functions of the embeddings (not differentiated: the selection is
piecewise constant) returning boolean masks that the pair-based losses
take, ``pair_mask`` (``[batch, num_reference]``) or ``triplet_mask``
(``[batch, num_reference, num_reference]``). A mask is True only on pairs:
never on an anchor's own copy nor on invalid reference rows.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from common import checks as common_checks
from losses import _pairwise, checks


def _pairs(embeddings, labels, reference, anchor_indices, normalize):
  """Constant anchors, reference, and the positive and negative masks."""
  batch_is_reference = reference is None
  x, y, reference, reference_labels, reference_valid, own = (
    _pairwise.resolve_reference(embeddings, labels, reference, anchor_indices)
  )
  x = jax.lax.stop_gradient(x)
  reference = jax.lax.stop_gradient(reference)
  if normalize:
    x = _pairwise.l2_normalize(x)
    reference = x if batch_is_reference else _pairwise.l2_normalize(reference)
  keep = _pairwise.not_self_mask(own, reference.shape[0])
  if reference_valid is not None:
    keep = keep & reference_valid[None, :]
  same_class = y[:, None] == reference_labels[None, :]
  return x, reference, same_class & keep, keep & ~same_class


def mine_pairs_by_margin(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  pos_margin: ArrayLike = 0.2,
  neg_margin: ArrayLike = 0.8,
  normalize: bool = True,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
) -> jax.Array:
  r"""Pairs that violate a distance margin (PML's ``PairMarginMiner``).

  Keeps the positives farther than :math:`m_+` and the negatives closer
  than :math:`m_-`, in Euclidean distance (of L2-normalised embeddings with
  ``normalize=True``, pytorch-metric-learning's default, as are the
  margins).

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids.
    pos_margin: :math:`m_+`.
    neg_margin: :math:`m_-`.
    normalize: L2-normalise the embeddings first.
    reference: the `ReferenceSet` of the loss, or None for the batch.
    anchor_indices: as in the pair-wise losses.

  Returns:
    ``[batch, num_reference]`` bool, for ``pair_mask``.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0., 0.], [0., 1.], [0.5, 0.], [2., 0.]])
    >>> mine_pairs_by_margin(x, jnp.array([0, 0, 1, 1]), normalize=False)
    Array([[False,  True,  True, False],
           [ True, False, False, False],
           [ True, False, False,  True],
           [False, False,  True, False]], dtype=bool)
  """
  common_checks.check_python_bool(normalize, 'normalize')
  x, reference, positive, negative = _pairs(
    embeddings, labels, reference, anchor_indices, normalize
  )
  d = _pairwise.safe_sqrt(_pairwise._squared_distance(x, reference))
  return (positive & (d > pos_margin)) | (negative & (d < neg_margin))


def mine_multi_similarity_pairs(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  epsilon: ArrayLike = 0.1,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
) -> jax.Array:
  r"""The multi-similarity pair mining (Wang et al. 2019).

  On cosine similarities :math:`S`, keeps a negative :math:`n` of the
  anchor :math:`a` if :math:`S_{an} + \epsilon > \min_p S_{ap}` and a
  positive :math:`p` if :math:`S_{ap} - \epsilon < \max_n S_{an}` (as
  pytorch-metric-learning's ``MultiSimilarityMiner``). An anchor without
  positives keeps no negatives, and one without negatives no positives.

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids.
    epsilon: :math:`\epsilon`; 0.1 in the paper.
    reference: the `ReferenceSet` of the loss, or None for the batch.
    anchor_indices: as in the pair-wise losses.

  Returns:
    ``[batch, num_reference]`` bool, for ``pair_mask``.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 1.], [-1., 1.]])
    >>> mine_multi_similarity_pairs(x, jnp.array([0, 0, 1, 1]))
    Array([[False, False, False, False],
           [ True, False,  True, False],
           [False,  True, False,  True],
           [False, False, False, False]], dtype=bool)
  """
  x, reference, positive, negative = _pairs(
    embeddings, labels, reference, anchor_indices, True
  )
  s = jnp.matmul(x, reference.T)
  hardest_positive = jnp.min(jnp.where(positive, s, jnp.inf), axis=1)
  hardest_negative = jnp.max(jnp.where(negative, s, -jnp.inf), axis=1)
  keep_negative = negative & (s + epsilon > hardest_positive[:, None])
  keep_positive = positive & (s - epsilon < hardest_negative[:, None])
  return keep_positive | keep_negative


def mine_triplets(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike,
  triplets: str = 'semihard',
  squared: bool = False,
  normalize: bool = True,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
) -> jax.Array:
  r"""Triplets by margin (PML's ``TripletMarginMiner``).

  Of the triplets (anchor :math:`a`, positive :math:`p`, negative
  :math:`n`), keeps ``'all'`` those with :math:`d(a, n) < d(a, p) + m`
  (a positive hinge), ``'semihard'`` those with :math:`d(a, p) < d(a, n)
  < d(a, p) + m`, ``'hard'`` those with :math:`d(a, n) < d(a, p)`.

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids.
    margin: :math:`m \ge 0`.
    triplets: ``'all'``, ``'semihard'`` or ``'hard'``.
    squared: use the squared Euclidean distance.
    normalize: L2-normalise the embeddings first (PML's default).
    reference: the `ReferenceSet` of the loss, or None for the batch.
    anchor_indices: as in the pair-wise losses.

  Returns:
    ``[batch, num_reference, num_reference]`` bool (anchor, positive,
    negative), for ``triplet_mask``.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0., 0.], [0., 1.], [2., 0.], [1., 2.]])
    >>> mask = mine_triplets(x, jnp.array([0, 0, 1, 1]), margin=0.5,
    ...                      triplets='all', normalize=False)
    >>> int(mask.sum())
    5
  """
  checks.check_non_negative(margin, 'margin')
  common_checks.check_choice(triplets, 'triplets', ('all', 'semihard', 'hard'))
  common_checks.check_python_bool(squared, 'squared')
  common_checks.check_python_bool(normalize, 'normalize')
  x, reference, positive, negative = _pairs(
    embeddings, labels, reference, anchor_indices, normalize
  )
  d = _pairwise._squared_distance(x, reference)
  if not squared:
    d = _pairwise.safe_sqrt(d)
  d_ap, d_an = d[:, :, None], d[:, None, :]
  pairs = positive[:, :, None] & negative[:, None, :]
  if triplets == 'all':
    return pairs & (d_an < d_ap + margin)
  if triplets == 'semihard':
    return pairs & (d_ap < d_an) & (d_an < d_ap + margin)
  return pairs & (d_an < d_ap)
