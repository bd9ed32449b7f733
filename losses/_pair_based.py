r"""Pair-based baselines: contrastive, multi-similarity, lifted structure,
N-pair, triplet margin, angular, supervised contrastive and NT-Xent.

Each scores every anchor (a row of the batch) against a reference set (by
default the batch itself, the anchor's own copy excluded; or a
`ReferenceSet` such as the global batch gathered across devices or a
cross-batch memory) and returns one value per anchor. The rows are
independent, so all run in row blocks of bounded memory with
``block_size`` (`_pairwise.map_row_blocks`): neither pass then holds more
than ``block_size * num_reference`` pairwise entries (times a small
constant for the angular loss, whose (positive, negative) terms run in
chunks of positives; the triplet margin loss sums its triplets from sorted
distances, except with a ``[batch, m, m]`` `triplet_mask`).

The pairwise matrices are built with one matrix product; distances go
through `_pairwise.safe_sqrt`, so coincident embeddings (an anchor and an
earlier copy of itself in a memory, say) have a finite gradient. Non-pairs
are masked out of every log-sum-exp (never multiplied by 0), so large
scales (multi-similarity's beta = 50) stay finite.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from common import checks as common_checks
from losses import _pairwise, checks

_TRIPLETS = ('all', 'semihard', 'hard')
_DISTANCES = ('euclidean', 'squared_euclidean')
# Positive columns per step of `angular_loss`'s memory-bounded path: each
# step holds ``[block_size, _ANGULAR_CHUNK, num_reference]`` terms.
_ANGULAR_CHUNK = 8


# ---------------------------------------------------------------------------
# The shared row iteration.
# ---------------------------------------------------------------------------


def _check_pair_mask(pair_mask, batch, num_reference):
  checks.check_rank(pair_mask, 2, 'pair_mask', '[batch, num_reference]')
  checks.check_bool(pair_mask, 'pair_mask')
  checks.check_dim(jnp.shape(pair_mask)[0], batch, 'pair_mask', 0, 'batch')
  checks.check_dim(
    jnp.shape(pair_mask)[1],
    num_reference,
    'pair_mask',
    1,
    'rows of the reference set',
  )


def _pair_rows(
  row_fn: Callable[..., jax.Array],
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  reference: _pairwise.ReferenceSet | None,
  anchor_indices: ArrayLike | None,
  block_size: int | None,
  normalize: bool,
  pair_mask: ArrayLike | None = None,
  require_both: bool = True,
) -> jax.Array:
  """``[batch]`` values of ``row_fn(x_rows, reference, positive, negative)``.

  Args:
    row_fn: (``[rows, dim]`` anchors, ``[num_reference, dim]`` reference,
      ``[rows, num_reference]`` positive and negative masks) -> ``[rows]``
      values, finite on rows without pairs.
    embeddings, labels, reference, anchor_indices, block_size: as the
      losses take them.
    normalize: L2-normalise anchors and reference first.
    pair_mask: ``[batch, num_reference]`` bool, the pairs kept (a miner's
      output), or None for all.
    require_both: a row without a positive or without a negative is 0.
  """
  checks.check_block_size(block_size)
  batch_is_reference = reference is None
  x, y, reference, reference_labels, reference_mask, own_rows = (
    _pairwise.resolve_reference(embeddings, labels, reference, anchor_indices)
  )
  if normalize:
    x = _pairwise.l2_normalize(x)
    # One normalisation for both roles when the reference is the batch, so
    # that the two gradient paths meet on the same array.
    reference = x if batch_is_reference else _pairwise.l2_normalize(reference)
  num_reference = reference.shape[0]
  row_args = (x, y, own_rows)
  if pair_mask is not None:
    _check_pair_mask(pair_mask, x.shape[0], num_reference)
    row_args = (*row_args, jnp.asarray(pair_mask))

  def rows(x_rows, y_rows, own, *mask_rows):
    same_class = y_rows[:, None] == reference_labels[None, :]
    keep = _pairwise.not_self_mask(own, num_reference)
    if reference_mask is not None:
      keep = keep & reference_mask[None, :]
    if mask_rows:
      keep = keep & mask_rows[0]
    positive = same_class & keep
    negative = keep & ~same_class
    values = row_fn(x_rows, reference, positive, negative)
    if not require_both:
      return values
    valid = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
    return jnp.where(valid, values, 0.0)

  return _pairwise.map_row_blocks(rows, row_args, block_size=block_size)


def _masked_logsumexp(
  logits: jax.Array, mask: jax.Array, *, add_one: bool = False
) -> jax.Array:
  r"""``[rows]`` :math:`\log(\,[1 +]\sum_{mask} e^{z})`; 0 on empty rows.

  Masked entries are -inf before the exp, so neither their value nor their
  gradient can overflow.
  """
  logits = jnp.where(mask, logits, -jnp.inf)
  shift = jnp.max(logits, axis=1)
  if add_one:
    shift = jnp.maximum(shift, 0.0)
  # The shift cancels in value and gradient: it needs none of its own.
  shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
  total = jnp.sum(jnp.exp(logits - shift[:, None]), axis=1)
  if add_one:
    total = total + jnp.exp(-shift)
  return shift + jnp.log(jnp.where(total > 0, total, 1.0))


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """``[rows]`` mean of `values` over `mask`; 0 on empty rows."""
  count = jnp.sum(mask, axis=1)
  total = jnp.sum(jnp.where(mask, values, 0.0), axis=1)
  return total / jnp.maximum(count, 1).astype(values.dtype)


def _distances(x_rows, reference, distance):
  squared = _pairwise._squared_distance(x_rows, reference)
  if distance == 'squared_euclidean':
    return squared
  return _pairwise.safe_sqrt(squared)


def _sorted_triplet_sums(d, positive, negative, margin, triplets):
  r"""``[rows]`` :math:`\sum_{(p, n)} [d_{ap} - d_{an} + m]_+` over `triplets`.

  The negatives' distances of each row are sorted once; a positive's
  triplets are then a contiguous run of them, found by binary search, and
  its sum is ``count * (d_ap + m) - (sum of that run)`` from prefix sums:
  O(m log m) time and O(m) memory per row instead of an ``[m, m]`` table.
  Each pair in a run has a positive hinge, so the gradient is the hinge's
  (1 for d_ap, -1 for d_an); the runs' bounds are not differentiated.
  """
  fixed = jax.lax.stop_gradient(d)
  keys = jnp.where(negative, fixed, jnp.inf)
  order = jnp.argsort(keys, axis=1)
  sorted_keys = jnp.take_along_axis(keys, order, axis=1)
  sorted_d = jnp.where(
    jnp.take_along_axis(negative, order, axis=1),
    jnp.take_along_axis(d, order, axis=1),
    0.0,
  )
  prefix = jnp.concatenate(
    [jnp.zeros_like(sorted_d[:, :1]), jnp.cumsum(sorted_d, axis=1)], axis=1
  )
  search = jax.vmap(jnp.searchsorted, in_axes=(0, 0, None))
  if triplets == 'hard':
    # d_an < d_ap.
    high = search(sorted_keys, fixed, 'left')
  else:
    # d_an < d_ap + m.
    high = search(sorted_keys, fixed + margin, 'left')
  if triplets == 'semihard':
    # d_ap < d_an.
    low = search(sorted_keys, fixed, 'right')
    low = jnp.minimum(low, high)
  else:
    low = jnp.zeros_like(high)
  run = jnp.take_along_axis(prefix, high, axis=1) - jnp.take_along_axis(
    prefix, low, axis=1
  )
  total = (high - low).astype(d.dtype) * (d + margin) - run
  return jnp.sum(jnp.where(positive, total, 0.0), axis=1)


def _check_common(normalize, distance=None):
  common_checks.check_python_bool(normalize, 'normalize')
  if distance is not None:
    common_checks.check_choice(distance, 'distance', _DISTANCES)


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------


def contrastive_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  pos_margin: ArrayLike = 0.0,
  neg_margin: ArrayLike = 1.0,
  power: int = 2,
  distance: str = 'euclidean',
  normalize: bool = False,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  pair_mask: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Contrastive loss (Hadsell, Chopra and LeCun, 2006), per anchor.

  With the distances :math:`d` between the anchor :math:`a` and its
  positives :math:`P(a)` and negatives :math:`N(a)` in the reference set:

  .. math::
    \ell(a) = \frac{1}{|P|}\sum_{p \in P} \frac{[d(a, p) - m_+]_+^q}{q}
      + \frac{1}{|N|}\sum_{n \in N} \frac{[m_- - d(a, n)]_+^q}{q}

  With :math:`q = 2` and :math:`m_+ = 0` this is the paper's
  :math:`\tfrac12 D^2` and :math:`\tfrac12 \max(0, m - D)^2`.
  pytorch-metric-learning's ``ContrastiveLoss`` uses :math:`q = 1` (plain
  hinges) on L2-normalised embeddings (``power=1, normalize=True`` here)
  and averages each kind over its non-zero pairs (docs/losses.md).

  Each term is 0 for an anchor without pairs of its kind (an empty sum);
  the objective weighs only anchors with both. A mean over anchors whose
  counts :math:`|P|` and :math:`|N|` agree (a class-balanced batch) is the
  mean over positive pairs plus the mean over negative pairs.

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids of the anchors.
    pos_margin: :math:`m_+ \ge 0`, the distance below which a positive
      pair costs nothing.
    neg_margin: :math:`m_- \ge 0`, the distance beyond which a negative
      pair costs nothing.
    power: :math:`q`, 1 or 2.
    distance: ``'euclidean'`` or ``'squared_euclidean'``.
    normalize: L2-normalise the embeddings first.
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    pair_mask: ``[batch, num_reference]`` bool: only these pairs count
      (e.g. `mine_pairs_by_margin`'s); None: all.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes, negative margins, a `power` other than 1
      or 2, an unknown `distance` or a `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0., 0.], [0., 1.], [0.5, 0.], [2., 0.]])
    >>> loss = contrastive_loss(x, jnp.array([0, 0, 1, 1]))
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.5625 0.5    1.1875 1.125 ]

  References:
    Hadsell, Chopra and LeCun, `Dimensionality Reduction by Learning an
    Invariant Mapping <https://doi.org/10.1109/CVPR.2006.100>`_, CVPR 2006.
  """
  checks.check_non_negative(pos_margin, 'pos_margin')
  checks.check_non_negative(neg_margin, 'neg_margin')
  if power not in (1, 2):
    raise ValueError(f'`power` must be 1 or 2, received {power!r}')
  _check_common(normalize, distance)

  def row_fn(x_rows, reference, positive, negative):
    d = _distances(x_rows, reference, distance)
    positive_hinge = jax.nn.relu(d - pos_margin)
    negative_hinge = jax.nn.relu(neg_margin - d)
    if power == 2:
      positive_hinge = 0.5 * positive_hinge**2
      negative_hinge = 0.5 * negative_hinge**2
    return _masked_mean(positive_hinge, positive) + _masked_mean(
      negative_hinge, negative
    )

  return _pair_rows(
    row_fn,
    embeddings,
    labels,
    reference=reference,
    anchor_indices=anchor_indices,
    block_size=block_size,
    normalize=normalize,
    pair_mask=pair_mask,
    require_both=False,
  )


def multi_similarity_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: ArrayLike = 2.0,
  beta: ArrayLike = 50.0,
  base: ArrayLike = 0.5,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  pair_mask: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Multi-similarity loss (Wang et al., CVPR 2019), per anchor.

  With the cosine similarities :math:`S` of the anchor :math:`a` to its
  positives :math:`P` and negatives :math:`N`:

  .. math::
    \ell(a) = \frac{1}{\alpha}\log\Big[1 + \sum_{p \in P}
      e^{-\alpha (S_{ap} - \lambda)}\Big]
      + \frac{1}{\beta}\log\Big[1 + \sum_{n \in N}
      e^{\beta (S_{an} - \lambda)}\Big]

  with :math:`\lambda` = `base`. The paper's pair mining (keep a positive
  less similar than the most similar negative plus :math:`\epsilon`, a
  negative more similar than the least similar positive minus
  :math:`\epsilon`) is `mine_multi_similarity_pairs`, passed as
  `pair_mask`; without it every pair counts, as in pytorch-metric-learning's
  ``MultiSimilarityLoss``. Each term is 0 for an anchor without pairs of
  its kind (as there); the objective weighs only anchors with both.

  Args:
    embeddings: ``[batch, dim]`` floating anchors; L2-normalised here.
    labels: ``[batch]`` integer class ids of the anchors.
    alpha: :math:`\alpha > 0`, the positives' scale.
    beta: :math:`\beta > 0`, the negatives' scale.
    base: :math:`\lambda`, the similarity margin.
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    pair_mask: ``[batch, num_reference]`` bool: only these pairs count;
      None: all.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes, a non-positive `alpha` or `beta`, or a
      `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 1.], [-1., 1.]])
    >>> loss = multi_similarity_loss(x, jnp.array([0, 0, 1, 1]))
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.2537 0.4608 0.4608 0.2537]

  References:
    Wang, Han, Huang, Dong and Scott, `Multi-Similarity Loss with General
    Pair Weighting for Deep Metric Learning
    <https://arxiv.org/abs/1904.06627>`_, CVPR 2019.
  """
  checks.check_positive(alpha, 'alpha')
  checks.check_positive(beta, 'beta')

  def row_fn(x_rows, reference, positive, negative):
    s = jnp.matmul(x_rows, reference.T)
    positive_term = _masked_logsumexp(
      -alpha * (s - base), positive, add_one=True
    )
    negative_term = _masked_logsumexp(beta * (s - base), negative, add_one=True)
    return positive_term / alpha + negative_term / beta

  return _pair_rows(
    row_fn,
    embeddings,
    labels,
    reference=reference,
    anchor_indices=anchor_indices,
    block_size=block_size,
    normalize=True,
    pair_mask=pair_mask,
    require_both=False,
  )


def lifted_structure_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  neg_margin: ArrayLike = 1.0,
  pos_margin: ArrayLike = 0.0,
  normalize: bool = False,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Generalised lifted structure loss (Hermans et al. 2017), per anchor.

  The per-anchor form that Hermans, Beyer and Leibe give for Oh Song et
  al.'s lifted structure loss, with the Euclidean distances :math:`d`:

  .. math::
    \ell(a) = \Big[\log \sum_{p \in P} e^{d(a, p) - m_+}
      + \log \sum_{n \in N} e^{m_- - d(a, n)}\Big]_+

  (:math:`m_+ = 0` in the paper; pytorch-metric-learning's
  ``GeneralizedLiftedStructureLoss`` adds it). 0 for an anchor without a
  positive or a negative.

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids of the anchors.
    neg_margin: :math:`m_-`, the margin of the negatives.
    pos_margin: :math:`m_+`, subtracted from the positives' distances.
    normalize: L2-normalise the embeddings first (pytorch-metric-learning
      does by default).
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes or a `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0., 0.], [0., 1.], [2., 0.], [1., 2.]])
    >>> loss = lifted_structure_loss(x, jnp.array([0, 0, 1, 1]))
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.5821 0.9502 1.8181 2.1862]

  References:
    Hermans, Beyer and Leibe, `In Defense of the Triplet Loss for Person
    Re-Identification <https://arxiv.org/abs/1703.07737>`_, arXiv 2017;
    Oh Song, Xiang, Jegelka and Savarese, `Deep Metric Learning via Lifted
    Structured Feature Embedding <https://arxiv.org/abs/1511.06452>`_, CVPR
    2016.
  """
  _check_common(normalize)

  def row_fn(x_rows, reference, positive, negative):
    d = _distances(x_rows, reference, 'euclidean')
    total = _masked_logsumexp(d - pos_margin, positive) + _masked_logsumexp(
      neg_margin - d, negative
    )
    return jax.nn.relu(total)

  return _pair_rows(
    row_fn,
    embeddings,
    labels,
    reference=reference,
    anchor_indices=anchor_indices,
    block_size=block_size,
    normalize=normalize,
  )


def _per_positive(row_terms):
  """A row function averaging ``row_terms(s, positive, negative)`` over P.

  `row_terms` maps the anchors, the reference, the ``[rows,
  num_reference]`` inner products and the masks to ``[rows,
  num_reference]`` losses of each (anchor, positive) pair.
  """

  def row_fn(x_rows, reference, positive, negative):
    s = jnp.matmul(x_rows, reference.T)
    terms = row_terms(x_rows, reference, s, positive, negative)
    return _masked_mean(terms, positive)

  return row_fn


def n_pairs_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Multi-class N-pair loss (Sohn, NeurIPS 2016), per anchor.

  With inner products :math:`s` (the embeddings as given, not normalised),
  for each positive :math:`p` of the anchor :math:`a`:

  .. math::
    \ell(a) = \frac{1}{|P|}\sum_{p \in P}
      \log\Big(1 + \sum_{n \in N} e^{s_{an} - s_{ap}}\Big)

  With one positive per anchor and one negative per other class (the
  paper's N-pair batch: pass the anchors as `embeddings` and their pairs as
  the `reference`) this is the paper's loss; pytorch-metric-learning's
  ``NPairsLoss`` builds that batch from the first two samples of each class
  and, unlike the paper, L2-normalises the embeddings by default (pass
  ``l2_normalize``\ d embeddings for its convention). The paper's L2
  penalty on the embeddings is not included. 0 for an anchor
  without a positive or a negative.

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids of the anchors.
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes or a `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 1.], [-1., 1.]])
    >>> loss = n_pairs_loss(x, jnp.array([0, 0, 1, 1]))
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.4076 0.862  0.862  0.4076]

  References:
    Sohn, `Improved Deep Metric Learning with Multi-class N-pair Loss
    Objective <https://papers.nips.cc/paper/6200>`_, NeurIPS 2016.
  """

  def terms(x_rows, reference, s, positive, negative):
    # log(1 + sum_n e^{s_an - s_ap}) = softplus(LSE_n s_an - s_ap).
    negatives = _masked_logsumexp(s, negative)
    return jax.nn.softplus(negatives[:, None] - s)

  return _pair_rows(
    _per_positive(terms),
    embeddings,
    labels,
    reference=reference,
    anchor_indices=anchor_indices,
    block_size=block_size,
    normalize=False,
  )


def triplet_margin_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike,
  triplets: str = 'all',
  squared: bool = False,
  normalize: bool = False,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  triplet_mask: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Triplet margin loss over all, semi-hard or hard triplets, per anchor.

  Over the triplets :math:`T(a)` of the anchor :math:`a` (a positive
  :math:`p` and a negative :math:`n` of the reference set) that `triplets`
  selects:

  .. math::
    \ell(a) = \frac{1}{|P||N|}\sum_{(p, n) \in T(a)}
      [d(a, p) - d(a, n) + m]_+

  ``'all'``: every triplet; ``'semihard'`` (Schroff et al.):
  :math:`d(a, p) < d(a, n) < d(a, p) + m`; ``'hard'``: :math:`d(a, n) <
  d(a, p)` (pytorch-metric-learning's ``TripletMarginMiner`` types). The
  sum is divided by all :math:`|P||N|` triplets of the anchor, so that a
  mean over anchors of a class-balanced batch is the mean over all triplets
  with the unselected ones counted 0 (pytorch-metric-learning's
  ``TripletMarginLoss`` averages over its non-zero triplets instead). The
  selection is piecewise constant and not differentiated. FaceNet uses the
  squared distance of L2-normalised embeddings with :math:`m = 0.2`
  (``squared=True, normalize=True``).

  Without `triplet_mask`, each anchor's triplet sum comes from its sorted
  negative distances and their prefix sums: O(num_reference) memory per
  anchor, so ``[rows, num_reference]`` per block. A `triplet_mask` is
  ``[batch, num_reference, num_reference]`` and so is the evaluation then:
  a `block_size` of a few anchors bounds the memory. 0 for an anchor
  without a positive or a negative.

  Args:
    embeddings: ``[batch, dim]`` floating anchors.
    labels: ``[batch]`` integer class ids of the anchors.
    margin: :math:`m \ge 0`.
    triplets: ``'all'``, ``'semihard'`` or ``'hard'``.
    squared: use the squared Euclidean distance.
    normalize: L2-normalise the embeddings first.
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    triplet_mask: ``[batch, num_reference, num_reference]`` bool (e.g.
      `mine_triplets`'): only these (anchor, positive, negative) count, on
      top of `triplets`; None: all.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes, a negative `margin`, an unknown
      `triplets` or a `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0., 0.], [0., 1.], [2., 0.], [1., 2.]])
    >>> loss = triplet_margin_loss(x, jnp.array([0, 0, 1, 1]), margin=0.5)
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.     0.0429 0.618  0.9109]

  References:
    Schroff, Kalenichenko and Philbin, `FaceNet: A Unified Embedding for
    Face Recognition and Clustering <https://arxiv.org/abs/1503.03832>`_,
    CVPR 2015.
  """
  checks.check_non_negative(margin, 'margin')
  common_checks.check_choice(triplets, 'triplets', _TRIPLETS)
  common_checks.check_python_bool(squared, 'squared')
  _check_common(normalize)
  distance = 'squared_euclidean' if squared else 'euclidean'
  x_batch = jnp.shape(embeddings)[0]
  if triplet_mask is not None:
    checks.check_rank(
      triplet_mask, 3, 'triplet_mask', '[batch, num_reference, num_reference]'
    )
    checks.check_bool(triplet_mask, 'triplet_mask')
    checks.check_dim(
      jnp.shape(triplet_mask)[0], x_batch, 'triplet_mask', 0, 'batch'
    )

  def triplet_rows(x_rows, reference, positive, negative, mask_rows=None):
    d = _distances(x_rows, reference, distance)
    count = jnp.sum(positive, axis=1) * jnp.sum(negative, axis=1)
    count = jnp.maximum(count, 1).astype(d.dtype)
    if mask_rows is None:
      return (
        _sorted_triplet_sums(d, positive, negative, margin, triplets) / count
      )
    # [rows, positive column, negative column].
    excess = d[:, :, None] - d[:, None, :] + margin
    selected = positive[:, :, None] & negative[:, None, :]
    fixed = jax.lax.stop_gradient(excess)
    if triplets == 'semihard':
      # d_ap < d_an < d_ap + m  <=>  0 < excess < m.
      selected = selected & (fixed > 0) & (fixed < margin)
    elif triplets == 'hard':
      selected = selected & (fixed > margin)
    if mask_rows is not None:
      selected = selected & mask_rows
    hinge = jnp.where(selected, jax.nn.relu(excess), 0.0)
    return jnp.sum(hinge, axis=(1, 2)) / count

  if triplet_mask is None:
    return _pair_rows(
      triplet_rows,
      embeddings,
      labels,
      reference=reference,
      anchor_indices=anchor_indices,
      block_size=block_size,
      normalize=normalize,
    )
  # The ``[batch, m, m]`` mask is blocked with the anchors: one row
  # iteration of its own.
  checks.check_block_size(block_size)
  batch_is_reference = reference is None
  x, y, reference, reference_labels, reference_valid, own_rows = (
    _pairwise.resolve_reference(embeddings, labels, reference, anchor_indices)
  )
  if normalize:
    x = _pairwise.l2_normalize(x)
    reference = x if batch_is_reference else _pairwise.l2_normalize(reference)
  num_reference = reference.shape[0]
  checks.check_dim(
    jnp.shape(triplet_mask)[1],
    num_reference,
    'triplet_mask',
    1,
    'rows of the reference set',
  )

  def rows(x_rows, y_rows, own, mask_rows):
    same_class = y_rows[:, None] == reference_labels[None, :]
    keep = _pairwise.not_self_mask(own, num_reference)
    if reference_valid is not None:
      keep = keep & reference_valid[None, :]
    positive = same_class & keep
    negative = keep & ~same_class
    return triplet_rows(x_rows, reference, positive, negative, mask_rows)

  return _pairwise.map_row_blocks(
    rows, (x, y, own_rows, jnp.asarray(triplet_mask)), block_size=block_size
  )


def _angular_chunk_loop(chunk_values, chunk, num_reference, primals, masks):
  """``[rows, num_chunks * chunk]`` terms by rank, the needed chunks only.

  ``chunk_values(start, s, reference, tan_squared, masks)`` gives the
  ``[rows, chunk]`` terms of the positives of ranks ``start ..``; `primals`
  are ``(s, reference, tan_squared)``, `masks` ``(positive, negative,
  rank)``. The chunks from the block's largest positive count on are never
  computed. Their number is data-dependent, so both passes are ``while``
  loops (a custom VJP, which recomputes each chunk as `jax.checkpoint`
  would): a ``lax.map`` over all chunks with a ``cond`` skipping the
  unneeded ones took 0.46 s per backward pass at 1024 rows of 8 per class
  (2-core CPU), 8x its forward pass.
  """
  rows = masks[2].shape[0]
  num_chunks = -(-num_reference // chunk)

  def needed(rank):
    most_positives = jnp.max(rank[:, -1]) + 1
    return jnp.minimum(-(-most_positives // chunk), num_chunks)

  @jax.custom_vjp
  def loop(primals, masks):
    def body(k, values):
      return values.at[k].set(chunk_values(k * chunk, *primals, masks))

    values = jnp.zeros((num_chunks, rows, chunk), primals[0].dtype)
    return jax.lax.fori_loop(0, needed(masks[2]), body, values)

  def loop_forward(primals, masks):
    return loop(primals, masks), (primals, masks)

  def loop_backward(residuals, cotangent):
    primals, masks = residuals

    def body(k, cotangents):
      _, vjp = jax.vjp(
        lambda *args: chunk_values(k * chunk, *args, masks), *primals
      )
      return jax.tree.map(jnp.add, cotangents, vjp(cotangent[k]))

    zeros = jax.tree.map(jnp.zeros_like, primals)
    cotangents = jax.lax.fori_loop(0, needed(masks[2]), body, zeros)
    # The masks are booleans and integers: no cotangent.
    return cotangents, None

  loop.defvjp(loop_forward, loop_backward)
  values = loop(primals, masks)
  return jnp.moveaxis(values, 0, 1).reshape(rows, -1)


def angular_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: ArrayLike = 40.0,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Angular loss (Wang et al., ICCV 2017), N-pair form, per anchor.

  On L2-normalised embeddings, for each positive :math:`p` of the anchor
  :math:`a` and the negatives :math:`n`:

  .. math::
    f_{a,p,n} = 4 \tan^2\alpha\, (x_a + x_p)^\top x_n
      - 2 (1 + \tan^2\alpha)\, x_a^\top x_p, \quad
    \ell(a) = \frac{1}{|P|}\sum_{p \in P}
      \log\Big(1 + \sum_{n \in N} e^{f_{a,p,n}}\Big)

  as pytorch-metric-learning's ``AngularLoss`` (which averages over the
  positive pairs: the same as the mean over anchors of a class-balanced
  batch), except that it leaves the negatives :math:`x_n` unnormalised: on
  unit-norm inputs the values agree and so do the gradients' components
  tangent to the sphere. The paper's combination with the N-pair loss is
  not included. 0 for an anchor without a positive or a negative. Without
  `block_size` all ``[batch, num_reference, num_reference]`` (positive,
  negative) terms are held at once; with it, ``[block_size, 8,
  num_reference]`` at a time (each anchor's positives in chunks of 8, up to
  the most positives of an anchor in the block).

  Args:
    embeddings: ``[batch, dim]`` floating anchors; L2-normalised here.
    labels: ``[batch]`` integer class ids of the anchors.
    alpha: :math:`\alpha`, in degrees, in ``(0, 90)``.
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes, an `alpha` outside (0, 90), or a
      `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 1.], [-1., 1.]])
    >>> loss = angular_loss(x, jnp.array([0, 0, 1, 1]))
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.513 0.513 0.513 0.513]

  References:
    Wang, Zhou, Wen, Liu and Lin, `Deep Metric Learning with Angular Loss
    <https://arxiv.org/abs/1708.01682>`_, ICCV 2017.
  """
  checks.check_in_range(
    alpha, 'alpha', 0.0, 90.0, low_inclusive=False, high_inclusive=False
  )

  def positive_terms(s, s_positives, products, negative, tan_squared):
    """``[rows, p]`` terms of p positives per row.

    `s_positives`: ``[rows, p]`` anchor-positive products; `products`: the
    positives' x_p^T x_n, ``[p, n]`` (the same positives for every row) or
    ``[rows, p, n]``.
    """
    # (x_a + x_p)^T x_n = s_an + (x_p^T x_n): [rows, p, n].
    f = (
      4.0 * tan_squared * (s[:, None, :] + products)
      - 2.0 * (1.0 + tan_squared) * s_positives[:, :, None]
    )
    mask = jnp.broadcast_to(negative[:, None, :], f.shape)
    flat = f.reshape(-1, f.shape[-1])
    values = _masked_logsumexp(flat, mask.reshape(flat.shape), add_one=True)
    return values.reshape(f.shape[:2])

  def terms(x_rows, reference, s, positive, negative):
    tan_squared = jnp.tan(jnp.asarray(alpha, s.dtype) * (math.pi / 180.0)) ** 2
    num_reference = reference.shape[0]
    if block_size is None:
      return positive_terms(
        s, s, jnp.matmul(reference, reference.T), negative, tan_squared
      )
    # The memory-bounded path: each row's positive columns in chunks of
    # _ANGULAR_CHUNK, each a [rows, chunk, num_reference] table recomputed
    # in the backward pass. Chunk k holds each row's positives of ranks 8k
    # to 8k + 7, so the chunks past the block's largest positive count hold
    # none and are skipped: O(rows |P| num_reference) terms, not
    # O(rows num_reference^2) (one chunk instead of 128 at 1024 rows of 8
    # per class).
    chunk = min(_ANGULAR_CHUNK, num_reference)
    # Each positive's rank among its row's positives, in column order (a
    # cumulative sum: XLA:CPU's sorts cost 0.1 s per 1024 x 1024 here).
    rank = jnp.cumsum(positive, axis=1, dtype=jnp.int32) - 1

    def chunk_values(start, s, reference, tan_squared, masks):
      """``[rows, chunk]`` terms of each row's positives of ranks `start`.."""
      positive, negative, rank = masks
      # Column 0 past a row's last positive (its terms are discarded).
      wanted = start + jnp.arange(chunk, dtype=jnp.int32)
      is_wanted = positive[:, None, :] & (
        rank[:, None, :] == wanted[None, :, None]
      )
      columns = jnp.argmax(is_wanted, axis=2)
      # Each row's own positives: [rows, chunk, n] products.
      products = jnp.einsum('rcd,nd->rcn', reference[columns], reference)
      s_positives = jnp.take_along_axis(s, columns, axis=1)
      return positive_terms(s, s_positives, products, negative, tan_squared)

    values = _angular_chunk_loop(
      chunk_values,
      chunk,
      num_reference,
      (s, reference, tan_squared),
      (positive, negative, rank),
    )
    # [rows, rank] -> [rows, column]; the columns of non-positives get
    # unused values (masked by the caller).
    return jnp.take_along_axis(values, jnp.maximum(rank, 0), axis=1)

  return _pair_rows(
    _per_positive(terms),
    embeddings,
    labels,
    reference=reference,
    anchor_indices=anchor_indices,
    block_size=block_size,
    normalize=True,
  )


def supcon_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  temperature: ArrayLike = 0.1,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), per anchor.

  The paper's :math:`\mathcal{L}^{sup}_{out}`, on cosine similarities
  :math:`s` with the temperature :math:`\tau`, :math:`A(a) = P \cup N`:

  .. math::
    \ell(a) = -\frac{1}{|P|}\sum_{p \in P} \log
      \frac{e^{s_{ap} / \tau}}{\sum_{b \in A(a)} e^{s_{ab} / \tau}}

  The same as pytorch-metric-learning's ``SupConLoss`` per anchor. 0 for
  an anchor without a positive or a negative.

  Args:
    embeddings: ``[batch, dim]`` floating anchors; L2-normalised here.
    labels: ``[batch]`` integer class ids of the anchors.
    temperature: :math:`\tau > 0`.
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes, a non-positive `temperature` or a
      `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 1.], [-1., 1.]])
    >>> loss = supcon_loss(x, jnp.array([0, 0, 1, 1]))
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [0.0008 0.6936 0.6936 0.0008]

  References:
    Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu and
    Krishnan, `Supervised Contrastive Learning
    <https://arxiv.org/abs/2004.11362>`_, NeurIPS 2020.
  """
  checks.check_positive(temperature, 'temperature')

  def terms(x_rows, reference, s, positive, negative):
    logits = s / temperature
    # A(a) is every pair: the positives and the negatives.
    everything = _masked_logsumexp(logits, positive | negative)
    return everything[:, None] - logits

  return _pair_rows(
    _per_positive(terms),
    embeddings,
    labels,
    reference=reference,
    anchor_indices=anchor_indices,
    block_size=block_size,
    normalize=True,
  )


def ntxent_loss(
  embeddings: ArrayLike,
  labels: ArrayLike,
  *,
  temperature: ArrayLike = 0.07,
  reference: _pairwise.ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
  block_size: int | None = None,
) -> jax.Array:
  r"""NT-Xent (Chen et al., ICML 2020) with label-defined pairs, per anchor.

  On cosine similarities :math:`s` with the temperature :math:`\tau`, each
  positive :math:`p` of the anchor against the anchor's negatives only:

  .. math::
    \ell(a) = \frac{1}{|P|}\sum_{p \in P} -\log
      \frac{e^{s_{ap} / \tau}}{e^{s_{ap} / \tau}
      + \sum_{n \in N} e^{s_{an} / \tau}}

  SimCLR's positives are the two views of an image; here, as in
  pytorch-metric-learning's ``NTXentLoss``, they are the samples of the
  anchor's class (the same as its mean over positive pairs for a
  class-balanced batch). 0 for an anchor without a positive or a negative.

  Args:
    embeddings: ``[batch, dim]`` floating anchors; L2-normalised here.
    labels: ``[batch]`` integer class ids of the anchors.
    temperature: :math:`\tau > 0`.
    reference: the `ReferenceSet` the anchors are compared with, or None
      for the batch itself.
    anchor_indices: ``[batch]`` row of each anchor's own copy in the
      reference set (never a pair), negative for none.
    block_size: anchors per block of the memory-bounded path; None: all.

  Returns:
    ``[batch]`` per-anchor losses, in at least float32.

  Raises:
    ValueError: on wrong shapes, a non-positive `temperature` or a
      `block_size` <= 0.
    TypeError: on non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 1.], [-1., 1.]])
    >>> loss = ntxent_loss(x, jnp.array([0, 0, 1, 1]))
    >>> with jnp.printoptions(precision=4):
    ...   print(loss)
    [4.1018e-05 6.9317e-01 6.9317e-01 4.1018e-05]

  References:
    Chen, Kornblith, Norouzi and Hinton, `A Simple Framework for
    Contrastive Learning of Visual Representations
    <https://arxiv.org/abs/2002.05709>`_, ICML 2020.
  """
  checks.check_positive(temperature, 'temperature')

  def terms(x_rows, reference, s, positive, negative):
    logits = s / temperature
    negatives = _masked_logsumexp(logits, negative)
    # -log(e^z / (e^z + e^N)) = softplus(N - z).
    return jax.nn.softplus(negatives[:, None] - logits)

  return _pair_rows(
    _per_positive(terms),
    embeddings,
    labels,
    reference=reference,
    anchor_indices=anchor_indices,
    block_size=block_size,
    normalize=True,
  )
