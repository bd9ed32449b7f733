"""Pairwise similarity kernels and the memory-bounded row iteration.

The kernels build ``[n, m]`` matrices with one matrix product, never an
``[n, m, dim]`` broadcast: the broadcast form costs ``n * m * dim`` memory
(6 GiB at n = m = 1024, dim = 512) where the product costs ``n * m``.

Pairwise losses (Circle pair-wise, LDMAT, batch-hard triplet) are sums of
independent per-anchor rows. `map_row_blocks` evaluates such rows a block at a
time under `jax.checkpoint`, so neither the forward nor the backward pass holds
more than ``block_size * m`` pairwise entries.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import checks

# Below this squared distance two points count as coincident: the distance is
# 0 and its gradient is taken as 0 (the subgradient), not 1 / (2 sqrt(0)).
_COINCIDENT = 1e-12
# Per-row values that a `map_row_blocks` row function tags with
# `jax.ad_checkpoint.checkpoint_name(value, ROW_RESIDUAL)` are stored for the
# backward pass instead of being recomputed.
ROW_RESIDUAL = 'pairwise_row_residual'
# Norms are floored here so that zero vectors have finite cosines (= 0).
_NORM_FLOOR = 1e-12


def _prepare(x: ArrayLike, y: ArrayLike | None, name_x: str, name_y: str):
  checks.check_rank(x, 2, name_x, '[n, dim]')
  checks.check_floating(x, name_x)
  if y is None:
    dtype = checks.compute_dtype(x)
    x = jnp.asarray(x, dtype)
    return x, x, True
  checks.check_rank(y, 2, name_y, '[m, dim]')
  checks.check_floating(y, name_y)
  checks.check_dim(
    jnp.shape(y)[1], jnp.shape(x)[1], name_y, 1, f'dim of `{name_x}`'
  )
  dtype = checks.compute_dtype(x, y)
  return jnp.asarray(x, dtype), jnp.asarray(y, dtype), False


def l2_normalize(x: ArrayLike, axis: int = -1) -> jax.Array:
  """Scales `x` to unit L2 norm along `axis`; zero vectors stay zero.

  The norm is floored at 1e-12, so the value and the gradient are finite for
  a zero vector.
  """
  x = jnp.asarray(x)
  squared_norm = jnp.sum(x * x, axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(squared_norm, _NORM_FLOOR**2))


def pairwise_cosine_similarity(
  x: ArrayLike,
  y: ArrayLike | None = None,
  *,
  precision: jax.lax.PrecisionLike = None,
) -> jax.Array:
  r"""Cosine similarity between every row of `x` and every row of `y`.

  .. math::
    S_{ij} = \frac{x_i^\top y_j}{\max(\|x_i\|, \epsilon)\max(\|y_j\|, \epsilon)}

  A zero vector has cosine 0 with everything, with a finite gradient.

  Args:
    x: ``[n, dim]`` floating array.
    y: ``[m, dim]`` floating array; defaults to `x`.
    precision: passed to the matrix product (e.g. ``'highest'`` on TPU).

  Returns:
    ``[n, m]`` similarities in ``[-1, 1]``, in at least float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 0.], [0., 2.], [0., 0.]])
    >>> pairwise_cosine_similarity(x)
    Array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 0.]], dtype=float32)
  """
  x, y, same = _prepare(x, y, 'x', 'y')
  x = l2_normalize(x)
  y = x if same else l2_normalize(y)
  return jnp.matmul(x, y.T, precision=precision)


def pairwise_squared_distance(
  x: ArrayLike,
  y: ArrayLike | None = None,
  *,
  precision: jax.lax.PrecisionLike = None,
) -> jax.Array:
  r"""Squared Euclidean distance between every row of `x` and of `y`.

  .. math::
    D_{ij} = \max(\|x_i\|^2 + \|y_j\|^2 - 2 x_i^\top y_j, 0)

  The expansion turns the ``[n, m, dim]`` difference tensor into one matrix
  product; the clamp removes the small negatives its round-off produces. When
  `y` is omitted the diagonal is exactly 0.

  Args:
    x: ``[n, dim]`` floating array.
    y: ``[m, dim]`` floating array; defaults to `x`.
    precision: passed to the matrix product (e.g. ``'highest'`` on TPU).

  Returns:
    ``[n, m]`` non-negative squared distances, in at least float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> pairwise_squared_distance(jnp.array([[0., 0.], [3., 4.]]))
    Array([[ 0., 25.],
           [25.,  0.]], dtype=float32)
  """
  x, y, same = _prepare(x, y, 'x', 'y')
  squared = _squared_distance(x, y, precision=precision)
  if same:
    n = x.shape[0]
    squared = jnp.where(jnp.eye(n, dtype=bool), 0.0, squared)
  return squared


def pairwise_distance(
  x: ArrayLike,
  y: ArrayLike | None = None,
  *,
  precision: jax.lax.PrecisionLike = None,
) -> jax.Array:
  r"""Euclidean distance between every row of `x` and every row of `y`.

  .. math::
    D_{ij} = \sqrt{\max(\|x_i\|^2 + \|y_j\|^2 - 2 x_i^\top y_j, 0)}

  Where two points coincide (the diagonal included) the distance is 0 and its
  gradient is 0 (a subgradient) instead of the infinite derivative of
  ``sqrt`` at 0.

  Args:
    x: ``[n, dim]`` floating array.
    y: ``[m, dim]`` floating array; defaults to `x`.
    precision: passed to the matrix product (e.g. ``'highest'`` on TPU).

  Returns:
    ``[n, m]`` non-negative distances, in at least float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> pairwise_distance(jnp.array([[0., 0.], [3., 4.]]))
    Array([[0., 5.],
           [5., 0.]], dtype=float32)
  """
  return safe_sqrt(pairwise_squared_distance(x, y, precision=precision))


def _squared_distance(
  x: jax.Array, y: jax.Array, *, precision: jax.lax.PrecisionLike = None
) -> jax.Array:
  """Clamped squared distances of already validated, same-dtype inputs."""
  x_sq = jnp.sum(x * x, axis=1)
  y_sq = jnp.sum(y * y, axis=1)
  cross = jnp.matmul(x, y.T, precision=precision)
  return jnp.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * cross, 0.0)


def safe_sqrt(squared: ArrayLike) -> jax.Array:
  """``sqrt`` with value and gradient 0 below 1e-12 instead of inf/NaN."""
  squared = jnp.asarray(squared)
  positive = squared > _COINCIDENT
  # The inner where keeps sqrt's backward pass away from 0: jnp.where alone
  # would still multiply a zero cotangent by an infinite derivative.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


# ---------------------------------------------------------------------------
# Anchors against a reference set, and the blocked row iteration.
# ---------------------------------------------------------------------------


class ReferenceSet(NamedTuple):
  """The samples a pair-wise loss scores its anchors against.

  By default (``reference=None``) the pair-wise losses score each anchor
  against the batch itself, its own row excluded. A `ReferenceSet` replaces
  the batch: e.g. the global batch gathered across devices (with
  ``anchor_indices`` pointing at each anchor's own copy in it) or a
  cross-batch memory of earlier embeddings (with `valid` marking the rows
  written so far). A NamedTuple, so a pytree: it passes through `jax.jit`,
  `jax.vmap` and `jax.grad` like its arrays.

  Attributes:
    embeddings: ``[num_reference, dim]`` floating features, the dim of the
      anchors'.
    labels: ``[num_reference]`` integer class ids.
    valid: ``[num_reference]`` bool, or None (every row counts): rows where
      it is False are neither positives nor negatives of any anchor and are
      not counted, e.g. the unwritten rows of a memory.

  Examples:
    >>> import jax.numpy as jnp
    >>> reference = ReferenceSet(
    ...     jnp.array([[1., 0.], [0., 1.], [0., 0.]]),
    ...     jnp.array([0, 1, 0]),
    ...     valid=jnp.array([True, True, False]))
    >>> valid_pairwise_anchors(jnp.array([0, 1]), reference=reference)
    Array([ True,  True], dtype=bool)
  """

  embeddings: ArrayLike
  labels: ArrayLike
  valid: ArrayLike | None = None


def _check_reference_type(
  reference: Any, fields: tuple[str, ...] = ('embeddings', 'labels')
) -> None:
  """Raises unless `reference` is a `ReferenceSet` with `fields` given."""
  if not isinstance(reference, ReferenceSet):
    raise TypeError(
      '`reference` must be a losses.ReferenceSet or None, received '
      f'{type(reference).__name__}'
    )
  for field in fields:
    if getattr(reference, field) is None:
      raise ValueError(f'`reference.{field}` must be an array, received None')


def _resolve_valid(reference: ReferenceSet) -> jax.Array | None:
  """The ``[num_reference]`` bool mask of the valid rows, or None."""
  if reference.valid is None:
    return None
  num_reference = jnp.shape(reference.labels)[0]
  checks.check_rank(reference.valid, 1, 'reference.valid', '[num_reference]')
  checks.check_dim(
    jnp.shape(reference.valid)[0],
    num_reference,
    'reference.valid',
    0,
    'rows of `reference.labels`',
  )
  checks.check_bool(reference.valid, 'reference.valid')
  return jnp.asarray(reference.valid)


def resolve_reference(
  embeddings: ArrayLike,
  labels: ArrayLike,
  reference: ReferenceSet | None,
  anchor_indices: ArrayLike | None,
) -> tuple[
  jax.Array, jax.Array, jax.Array, jax.Array, jax.Array | None, jax.Array
]:
  """Validates a pairwise loss's inputs and fixes the anchor/reference roles.

  Every pairwise loss scores each anchor (a row of `embeddings`) against a
  reference set. By default the reference set is the batch itself and each
  anchor's own row is excluded. In data-parallel training the reference set
  is the global batch gathered from all devices, and `anchor_indices` gives
  each local anchor's row in it so that its own copy is excluded.

  Args:
    embeddings: ``[batch, dim]`` anchors.
    labels: ``[batch]`` integer class ids of the anchors.
    reference: a `ReferenceSet`, or None (the batch).
    anchor_indices: ``[batch]`` int row of each anchor in the reference set,
      or None: the identity when the reference is the batch, and "no own
      copy" when a reference set is given. A negative index means the
      anchor has no copy in the reference set.

  Returns:
    ``(embeddings, labels, reference_embeddings, reference_labels,
    reference_valid, anchor_indices)`` as arrays, the embeddings in the
    compute dtype; `reference_valid` is None when every row counts.
  """
  checks.check_embeddings_and_labels(embeddings, labels, rows='batch')
  batch, dim = jnp.shape(embeddings)
  if reference is None:
    dtype = checks.compute_dtype(embeddings)
    embeddings = jnp.asarray(embeddings, dtype)
    reference_embeddings = embeddings
    reference_labels = jnp.asarray(labels)
    reference_valid = None
    default_indices = jnp.arange(batch)
  else:
    _check_reference_type(reference)
    checks.check_embeddings_and_labels(
      reference.embeddings,
      reference.labels,
      embeddings_name='reference.embeddings',
      labels_name='reference.labels',
      rows='num_reference',
    )
    checks.check_dim(
      jnp.shape(reference.embeddings)[1],
      dim,
      'reference.embeddings',
      1,
      'dim of `embeddings`',
    )
    reference_valid = _resolve_valid(reference)
    dtype = checks.compute_dtype(embeddings, reference.embeddings)
    embeddings = jnp.asarray(embeddings, dtype)
    reference_embeddings = jnp.asarray(reference.embeddings, dtype)
    reference_labels = jnp.asarray(reference.labels)
    default_indices = jnp.full((batch,), -1)
  if anchor_indices is None:
    anchor_indices = default_indices
  else:
    _check_anchor_indices(anchor_indices, batch)
  return (
    embeddings,
    jnp.asarray(labels),
    reference_embeddings,
    reference_labels,
    reference_valid,
    jnp.asarray(anchor_indices, jnp.int32),
  )


def _check_anchor_indices(anchor_indices: ArrayLike, batch: int) -> None:
  checks.check_rank(anchor_indices, 1, 'anchor_indices', '[batch]')
  checks.check_integer(anchor_indices, 'anchor_indices')
  checks.check_dim(
    jnp.shape(anchor_indices)[0], batch, 'anchor_indices', 0, 'batch'
  )


def valid_pairwise_anchors(
  labels: ArrayLike,
  *,
  reference: ReferenceSet | None = None,
  anchor_indices: ArrayLike | None = None,
) -> jax.Array:
  """Which anchors have at least one positive and one negative.

  A pairwise loss is undefined for an anchor whose class has no other member
  in the reference set, or whose reference set holds only its own class; the
  pairwise losses of this package return exactly 0 for such anchors. Use this
  mask to average over the valid anchors only::

    per_anchor = circle_loss_pairwise(x, y, margin=0.25, gamma=256)
    valid = valid_pairwise_anchors(y)
    loss = per_anchor.sum() / jnp.maximum(valid.sum(), 1)

  Runs in O(n log n) time and O(n) memory (sorting, no ``[n, m]`` mask).

  Args:
    labels: ``[batch]`` integer class ids of the anchors.
    reference: the `ReferenceSet` the loss was given, or None (the batch).
      Only its `labels` and `valid` are read; its `embeddings` may be
      None here.
    anchor_indices: as in the pairwise losses: each anchor's row in the
      reference set (its own copy, which is not a positive), negative for
      none. Defaults to the identity when `reference` is None and to "no
      own copy" otherwise.

  Returns:
    ``[batch]`` bool.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
    TypeError: on non-integer labels or `anchor_indices`, a non-bool
      ``reference.valid``, or a `reference` that is not a `ReferenceSet`.

  Examples:
    >>> import jax.numpy as jnp
    >>> valid_pairwise_anchors(jnp.array([0, 0, 1]))
    Array([ True,  True, False], dtype=bool)
  """
  checks.check_rank(labels, 1, 'labels', '[batch]')
  checks.check_integer(labels, 'labels')
  labels = jnp.asarray(labels)
  if anchor_indices is not None:
    _check_anchor_indices(anchor_indices, labels.shape[0])
  if reference is None:
    reference_labels = labels
    reference_mask = None
    own_copy = jnp.ones(labels.shape, jnp.int32)
    if anchor_indices is not None:
      own_copy = (jnp.asarray(anchor_indices) >= 0).astype(jnp.int32)
  else:
    _check_reference_type(reference, fields=('labels',))
    checks.check_rank(
      reference.labels, 1, 'reference.labels', '[num_reference]'
    )
    checks.check_integer(reference.labels, 'reference.labels')
    reference_labels = jnp.asarray(reference.labels)
    reference_mask = _resolve_valid(reference)
    if anchor_indices is None:
      own_copy = jnp.zeros(labels.shape, jnp.int32)
    else:
      own_copy = (jnp.asarray(anchor_indices) >= 0).astype(jnp.int32)
  num_reference = reference_labels.shape[0]
  num_counted = num_reference
  if reference_mask is not None:
    # Masked rows all take one sentinel label, so that they can be taken
    # back out of the count of an anchor that happens to carry it.
    sentinel = jnp.iinfo(reference_labels.dtype).max
    num_masked = jnp.sum(~reference_mask).astype(jnp.int32)
    reference_labels = jnp.where(reference_mask, reference_labels, sentinel)
    num_counted = num_reference - num_masked
    # An own copy in a masked row is not counted either (identity rows when
    # the reference is the batch and no indices are given).
    own_rows = (
      jnp.arange(labels.shape[0])
      if anchor_indices is None
      else jnp.clip(jnp.asarray(anchor_indices), 0, num_reference - 1)
    )
    own_copy = own_copy * reference_mask[own_rows].astype(jnp.int32)
  sorted_reference = jnp.sort(reference_labels)
  same = jnp.searchsorted(
    sorted_reference, labels, side='right'
  ) - jnp.searchsorted(sorted_reference, labels, side='left')
  if reference_mask is not None:
    same = same - jnp.where(labels == sentinel, num_masked, 0)
  has_positive = same - own_copy >= 1
  has_negative = num_counted - same >= 1
  return has_positive & has_negative


def map_row_blocks(
  row_fn: Callable[..., Any],
  row_args: tuple[jax.Array, ...],
  *,
  block_size: int | None,
) -> Any:
  """Applies a per-row function to blocks of rows, within bounded memory.

  `row_fn(*blocks)` receives the rows ``[start:start + block_size]`` of each
  array in `row_args` and returns a pytree of per-row results (leading axis
  the block). Anything else it needs (the reference set) it closes over.

  The blocks run sequentially (`jax.lax.map`) under `jax.checkpoint`, so the
  backward pass stores only each block's inputs and recomputes its
  ``[block_size, m]`` intermediates: peak memory is O(block_size * m) instead
  of O(n * m), at the cost of one more forward evaluation. Gradients with
  respect to the closed-over reference set are accumulated across blocks.
  Per-row values that `row_fn` tags with
  ``jax.ad_checkpoint.checkpoint_name(value, ROW_RESIDUAL)`` (e.g. the
  maxima and sums of a log-sum-exp) are stored instead, O(n) in all, so the
  backward pass need not recompute the reductions that produced them.

  The last block is completed with copies of row 0 (not zeros, which could
  produce NaN in, e.g., a norm's gradient and leak through a zero cotangent);
  their results are discarded.

  Args:
    row_fn: maps blocks of `row_args` to per-row outputs.
    row_args: arrays sharing the leading (row) dimension n.
    block_size: rows per block; None or >= n evaluates all rows at once.

  Returns:
    The pytree `row_fn` returns, with leading dimension n.
  """
  checks.check_block_size(block_size)
  n = row_args[0].shape[0]
  if block_size is None or block_size >= n:
    return row_fn(*row_args)
  num_blocks = -(-n // block_size)
  padding = num_blocks * block_size - n

  def to_blocks(array):
    if padding:
      filler = jnp.broadcast_to(array[:1], (padding, *array.shape[1:]))
      array = jnp.concatenate([array, filler])
    return array.reshape(num_blocks, block_size, *array.shape[1:])

  blocked = tuple(to_blocks(array) for array in row_args)
  # Only values tagged ROW_RESIDUAL (per-row, O(n) in all) are kept for the
  # backward pass; everything else is recomputed block by block.
  keep_row_residuals = jax.checkpoint_policies.save_only_these_names(
    ROW_RESIDUAL
  )
  outputs = jax.lax.map(
    jax.checkpoint(lambda blocks: row_fn(*blocks), policy=keep_row_residuals),
    blocked,
  )
  return jax.tree.map(
    lambda out: out.reshape(num_blocks * block_size, *out.shape[2:])[:n],
    outputs,
  )


def not_self_mask(anchor_indices: jax.Array, num_reference: int) -> jax.Array:
  """``[block, num_reference]`` bool: False where the column is the anchor."""
  columns = jax.lax.broadcasted_iota(
    jnp.int32, (anchor_indices.shape[0], num_reference), 1
  )
  return columns != anchor_indices[:, None]
