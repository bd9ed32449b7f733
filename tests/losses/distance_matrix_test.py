"""Tests of the LDMAT distance-matrix loss against NumPy float64 references."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import losses
from losses import _distance_matrix

loss_fn = _distance_matrix.distance_matrix_loss
# Compiled once per static configuration: op-by-op dispatch of the eager
# function would dominate the run time of these small cases.
jit_loss = jax.jit(
  loss_fn, static_argnames=('distance', 'normalize', 'block_size')
)
DISTANCES = ('euclidean', 'squared_euclidean', 'cosine')
SQRT2 = math.sqrt(2.0)


def _reference(
  x,
  y,
  *,
  distance='euclidean',
  inter=SQRT2,
  intra=0.0,
  relaxation=0.0,
  normalize=False,
  ref=None,
  ref_y=None,
  own=None,
):
  """Per-anchor loss straight from the formula, one anchor at a time."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y)
  if ref is None:
    ref, ref_y = x, y
    own = np.arange(len(x)) if own is None else np.asarray(own)
  else:
    ref = np.asarray(ref, np.float64)
    ref_y = np.asarray(ref_y)
    own = -np.ones(len(x), int) if own is None else np.asarray(own)
  if normalize or distance == 'cosine':

    def unit(a):
      return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    x, ref = unit(x), unit(ref)
  out = np.zeros(len(x))
  for i in range(len(x)):
    differences = x[i][None, :] - ref
    if distance == 'euclidean':
      features = np.linalg.norm(differences, axis=1)
    elif distance == 'squared_euclidean':
      features = np.sum(differences**2, axis=1)
    else:
      features = 1.0 - ref @ x[i]
    targets = np.where(ref_y == y[i], intra, inter)
    cost = np.maximum(np.abs(features - targets) - relaxation, 0.0) ** 2
    keep = np.arange(len(ref)) != own[i]
    out[i] = cost[keep].sum() / max(keep.sum(), 1)
  return out


def _data(n, dim, num_classes, seed, dtype=np.float64):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim)).astype(dtype)
  y = rng.integers(0, num_classes, size=n).astype(np.int32)
  return jnp.asarray(x), jnp.asarray(y)


def _assert_finite(*trees):
  for leaf in jax.tree.leaves(trees):
    assert np.all(np.isfinite(np.asarray(leaf, np.float64))), leaf


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('distance', DISTANCES)
@pytest.mark.parametrize('normalize', [False, True])
@pytest.mark.parametrize(
  'n,dim,num_classes,seed', [(6, 3, 2, 0), (11, 5, 4, 1)]
)
def test_matches_reference_float64(
  distance, normalize, n, dim, num_classes, seed
):
  x, y = _data(n, dim, num_classes, seed)
  for relaxation in (0.0, 0.3):  # Traced: one compilation for both.
    got = jit_loss(
      x,
      y,
      distance=distance,
      inter_class_distance=1.2,
      intra_class_distance=0.1,
      relaxation=relaxation,
      normalize=normalize,
    )
    want = _reference(
      x,
      y,
      distance=distance,
      inter=1.2,
      intra=0.1,
      relaxation=relaxation,
      normalize=normalize,
    )
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('distance', DISTANCES)
def test_matches_reference_float32(distance):
  x, y = _data(16, 8, 3, 2, np.float32)
  got = jax.jit(functools.partial(loss_fn, distance=distance))(x, y)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
    got, _reference(x, y, distance=distance), rtol=2e-5, atol=1e-6
  )


def test_defaults_are_one_hot_euclidean_targets():
  x, y = _data(7, 3, 3, 3)
  np.testing.assert_allclose(
    jit_loss(x, y), _reference(x, y, inter=SQRT2, intra=0.0)
  )


def test_batch_mean_is_mean_squared_off_diagonal_difference():
  # The docstring's identity, with explicit B x B matrices.
  x, y = _data(9, 4, 3, 4)
  xs, ys = np.asarray(x), np.asarray(y)
  feature_matrix = np.linalg.norm(xs[:, None, :] - xs[None, :, :], axis=-1)
  label_matrix = np.where(ys[:, None] == ys[None, :], 0.0, math.sqrt(2.0))
  off_diagonal = ~np.eye(len(xs), dtype=bool)
  want = np.mean((feature_matrix - label_matrix)[off_diagonal] ** 2)
  np.testing.assert_allclose(jnp.mean(jit_loss(x, y)), want, rtol=1e-12)


def test_relaxation_band_is_free():
  # Two points of different classes at distance 1.3, target sqrt(2): the
  # error 0.114 lies inside a band of 0.2 and outside one of 0.1.
  x = jnp.array([[0.0, 0.0], [1.3, 0.0]])
  y = jnp.array([0, 1])
  np.testing.assert_allclose(jit_loss(x, y, relaxation=0.2), [0.0, 0.0])
  excess = math.sqrt(2.0) - 1.3 - 0.1
  np.testing.assert_allclose(
    jit_loss(x, y, relaxation=0.1), [excess**2, excess**2], rtol=1e-12
  )


# ---------------------------------------------------------------------------
# Gradients.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  'distance,normalize,relaxation',
  [
    ('euclidean', False, 0.0),
    ('euclidean', True, 0.05),
    ('squared_euclidean', False, 0.05),
    ('squared_euclidean', True, 0.0),
    ('cosine', False, 0.0),
    ('cosine', False, 0.05),
  ],
)
def test_gradients_match_finite_differences(distance, relaxation, normalize):
  x, y = _data(7, 3, 3, 5)
  weights = jnp.arange(1.0, 8.0)  # Distinguishes the rows' cotangents.

  def objective(x, intra, inter, relax=relaxation):
    per_anchor = loss_fn(
      x,
      y,
      distance=distance,
      intra_class_distance=intra,
      inter_class_distance=inter,
      relaxation=relax,
      normalize=normalize,
    )
    return jnp.sum(weights * per_anchor)

  # Also differentiates with respect to the relaxation when it is > 0 (the
  # finite differences would step below 0 otherwise).
  args = (x, 0.1, 1.2) + ((relaxation,) if relaxation else ())
  test_util.check_grads(jax.jit(objective), args, order=1, modes=('fwd', 'rev'))


@pytest.mark.parametrize('distance', DISTANCES)
def test_gradients_with_reference_set(distance):
  x, y = _data(5, 3, 2, 6)
  ref, ref_y = _data(6, 3, 2, 7)
  own = jnp.array([0, -1, 3, 5, -1])

  def objective(x, ref):
    return jnp.sum(
      jnp.arange(1.0, 6.0)
      * loss_fn(
        x,
        y,
        distance=distance,
        reference=losses.ReferenceSet(ref, ref_y),
        anchor_indices=own,
      )
    )

  test_util.check_grads(
    jax.jit(objective), (x, ref), order=1, modes=('fwd', 'rev')
  )


def test_gradient_of_batch_mean_matches_numpy_derivative():
  # d/dx_i of the off-diagonal mean, derived by hand for the Euclidean case.
  x, y = _data(6, 3, 2, 8)
  xs, ys = np.asarray(x), np.asarray(y)
  n = len(xs)
  want = np.zeros_like(xs)
  for i in range(n):
    for j in range(n):
      if i == j:
        continue
      diff = xs[i] - xs[j]
      dist = np.linalg.norm(diff)
      target = 0.0 if ys[i] == ys[j] else math.sqrt(2.0)
      # Pair (i, j) and pair (j, i) both move with x_i.
      want[i] += 2 * 2 * (dist - target) * diff / dist / (n * (n - 1))
  got = jax.grad(lambda x: jnp.mean(jit_loss(x, y)))(x)
  np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Edge cases: finite values and gradients.
# ---------------------------------------------------------------------------


def _value_and_grad(x, y, **kwargs):
  return jax.jit(
    jax.value_and_grad(lambda x: jnp.mean(loss_fn(x, y, **kwargs)))
  )(x)


@pytest.mark.parametrize(
  'distance,normalize',
  [
    ('euclidean', False),
    ('euclidean', True),
    ('squared_euclidean', False),
    ('cosine', False),
  ],
)
def test_zero_embeddings(distance, normalize):
  x = jnp.zeros((5, 3))
  y = jnp.array([0, 1, 0, 2, 1])
  value, grad = _value_and_grad(x, y, distance=distance, normalize=normalize)
  _assert_finite(value, grad)
  want = _reference(x, y, distance=distance, normalize=normalize)
  np.testing.assert_allclose(value, want.mean(), rtol=1e-12)


@pytest.mark.parametrize('distance', DISTANCES)
def test_identical_embeddings(distance):
  x = jnp.tile(jnp.array([[0.3, -1.2, 2.0]]), (6, 1))
  y = jnp.array([0, 1, 0, 2, 1, 2])
  value, grad = _value_and_grad(x, y, distance=distance, relaxation=0.1)
  _assert_finite(value, grad)
  want = _reference(x, y, distance=distance, relaxation=0.1)
  np.testing.assert_allclose(value, want.mean(), rtol=1e-6)


def test_duplicates_within_a_random_batch():
  x, y = _data(6, 3, 3, 9)
  x = x.at[3].set(x[0]).at[5].set(x[0])
  value, grad = _value_and_grad(x, y, block_size=4)
  _assert_finite(value, grad)
  np.testing.assert_allclose(value, _reference(x, y).mean(), rtol=1e-7)


@pytest.mark.parametrize('distance', DISTANCES)
def test_one_class_batch(distance):
  x, y = _data(6, 3, 1, 10)
  assert np.all(np.asarray(y) == 0)
  value, grad = _value_and_grad(x, y, distance=distance)
  _assert_finite(value, grad)
  np.testing.assert_allclose(
    value, _reference(x, y, distance=distance).mean(), rtol=1e-12
  )


def test_singleton_classes():
  x, _ = _data(5, 3, 1, 11)
  y = jnp.arange(5)
  value, grad = _value_and_grad(x, y)
  _assert_finite(value, grad)
  np.testing.assert_allclose(value, _reference(x, y).mean(), rtol=1e-12)


def test_single_anchor_gets_zero():
  x = jnp.array([[1.0, 2.0]])
  value, grad = _value_and_grad(x, jnp.array([0]))
  _assert_finite(value, grad)
  np.testing.assert_array_equal(jit_loss(x, jnp.array([0])), [0.0])


@pytest.mark.parametrize('distance', DISTANCES)
def test_bfloat16_inputs_compute_in_float32(distance):
  # Inputs rounded to bfloat16 are exact in float32, so the only error is
  # float32 round-off: tolerance rtol 1e-4, atol 1e-5.
  x, y = _data(10, 4, 3, 12)
  x16 = x.astype(jnp.bfloat16)
  got = jax.jit(functools.partial(loss_fn, distance=distance))(x16, y)
  assert got.dtype == jnp.float32
  want = _reference(np.asarray(x16, np.float64), y, distance=distance)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  grad = jax.grad(lambda x: jnp.mean(jit_loss(x, y, distance=distance)))(x16)
  assert grad.dtype == jnp.bfloat16
  _assert_finite(grad)
  grad32 = jax.grad(lambda x: jnp.mean(jit_loss(x, y, distance=distance)))(
    x16.astype(jnp.float32)
  )
  np.testing.assert_allclose(
    np.asarray(grad, np.float32), grad32, rtol=2e-2, atol=2e-3
  )


# ---------------------------------------------------------------------------
# Structure: permutation, vmap, blocks, reference sets.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('distance', DISTANCES)
def test_permuting_the_batch_permutes_the_output(distance):
  x, y = _data(9, 4, 3, 13)
  permutation = np.random.default_rng(0).permutation(9)
  full = jit_loss(x, y, distance=distance)
  permuted = jit_loss(x[permutation], y[permutation], distance=distance)
  np.testing.assert_allclose(permuted, full[permutation], rtol=1e-12)


def test_vmap_over_batches_equals_loop():
  xs = jnp.stack([_data(6, 3, 2, seed)[0] for seed in range(3)])
  ys = jnp.stack([_data(6, 3, 2, seed)[1] for seed in range(3)])
  batched = jax.jit(jax.vmap(functools.partial(loss_fn, relaxation=0.1)))(
    xs, ys
  )
  for k in range(3):
    np.testing.assert_allclose(
      batched[k], _reference(xs[k], ys[k], relaxation=0.1), rtol=1e-10
    )


def test_traced_hyperparameters_under_jit():
  x, y = _data(6, 3, 2, 14)

  @jax.jit
  def scheduled(x, relaxation, inter):
    return loss_fn(x, y, relaxation=relaxation, inter_class_distance=inter)

  np.testing.assert_allclose(
    scheduled(x, 0.2, 1.5),
    _reference(x, y, relaxation=0.2, inter=1.5),
    rtol=1e-10,
  )


@pytest.mark.parametrize(
  'distance,block_size,with_reference',
  [
    ('euclidean', 1, False),
    ('euclidean', 3, False),  # 8 rows: 3 blocks, the last one padded.
    ('euclidean', 4, False),  # 8 rows: 2 full blocks.
    ('euclidean', 3, True),
    ('euclidean', 4, True),
    ('squared_euclidean', 3, False),
    ('cosine', 3, True),
  ],
)
def test_blocks_equal_dense(distance, block_size, with_reference):
  x, y = _data(8, 4, 3, 15, np.float32)
  kwargs = dict(distance=distance, relaxation=0.05)
  if with_reference:
    ref, ref_y = _data(10, 4, 3, 16, np.float32)
    kwargs.update(anchor_indices=jnp.array([0, 2, -1, 4, 9, -1, 6, 1]))
  else:
    ref = ref_y = None
  weights = jnp.linspace(0.5, 2.0, 8)

  def objective(x, ref, block_size):
    extra = (
      {} if ref is None else {'reference': losses.ReferenceSet(ref, ref_y)}
    )
    per_anchor = loss_fn(x, y, block_size=block_size, **kwargs, **extra)
    return jnp.sum(weights * per_anchor), per_anchor

  grad_fn = jax.jit(
    jax.grad(objective, argnums=(0, 1), has_aux=True),
    static_argnums=2,
  )
  dense_grads, dense = grad_fn(x, ref, None)
  block_grads, blocked = grad_fn(x, ref, block_size)
  np.testing.assert_allclose(blocked, dense, rtol=1e-6, atol=1e-6)
  for got, want in zip(
    jax.tree.leaves(block_grads), jax.tree.leaves(dense_grads), strict=True
  ):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('block_size', [None, 2])
def test_anchor_slice_against_whole_batch_equals_rows_of_full_loss(
  block_size,
):
  x, y = _data(10, 4, 3, 17)
  full = jit_loss(x, y, relaxation=0.1)
  rows = np.arange(3, 8)
  sliced = jax.jit(
    functools.partial(loss_fn, relaxation=0.1, block_size=block_size)
  )(
    x[rows],
    y[rows],
    reference=losses.ReferenceSet(x, y),
    anchor_indices=jnp.asarray(rows),
  )
  np.testing.assert_allclose(sliced, full[rows], rtol=1e-12)


@pytest.mark.parametrize('block_size', [None, 3])
def test_data_parallel_shards_equal_the_global_batch(block_size):
  # The training loop's use: each device scores its anchors against the
  # all_gather'd global batch. vmap with an axis name runs the same
  # collectives on one device; values and gradients must match the loss on
  # the whole batch.
  x, y = _data(8, 3, 3, 22)
  num_shards, local = 2, 4

  def shard_loss(x_local, y_local):
    index = jax.lax.axis_index('devices')
    return loss_fn(
      x_local,
      y_local,
      relaxation=0.05,
      block_size=block_size,
      reference=losses.ReferenceSet(
        jax.lax.all_gather(x_local, 'devices', tiled=True),
        jax.lax.all_gather(y_local, 'devices', tiled=True),
      ),
      anchor_indices=index * local + jnp.arange(local),
    )

  def sharded_total(x):
    per_anchor = jax.vmap(shard_loss, axis_name='devices')(
      x.reshape(num_shards, local, -1), y.reshape(num_shards, local)
    )
    return jnp.sum(per_anchor * jnp.arange(1.0, 9.0).reshape(2, 4))

  def global_total(x):
    return jnp.sum(loss_fn(x, y, relaxation=0.05) * jnp.arange(1.0, 9.0))

  value, grad = jax.jit(jax.value_and_grad(sharded_total))(x)
  want_value, want_grad = jax.jit(jax.value_and_grad(global_total))(x)
  np.testing.assert_allclose(value, want_value, rtol=1e-12)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-13)


def test_explicit_reference_without_indices_excludes_nothing():
  x, y = _data(4, 3, 2, 18)
  ref, ref_y = _data(5, 3, 2, 19)
  got = jit_loss(x, y, reference=losses.ReferenceSet(ref, ref_y))
  np.testing.assert_allclose(
    got, _reference(x, y, ref=ref, ref_y=ref_y), rtol=1e-12
  )


def test_gradient_through_reference_and_anchors_adds_up():
  # The batch as its own explicit reference set must give the same gradient
  # as the default, where both roles share one array.
  x, y = _data(7, 3, 3, 20)

  def default(x):
    return jnp.mean(jit_loss(x, y, normalize=True))

  def explicit(x):
    return jnp.mean(
      jit_loss(
        x,
        y,
        normalize=True,
        reference=losses.ReferenceSet(x, y),
        anchor_indices=jnp.arange(7),
      )
    )

  np.testing.assert_allclose(
    jax.jit(jax.grad(explicit))(x),
    jax.jit(jax.grad(default))(x),
    rtol=1e-10,
    atol=1e-14,
  )


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------

_X, _Y = _data(4, 3, 2, 21)


@pytest.mark.parametrize(
  'kwargs,error,match',
  [
    ({'distance': 'manhattan'}, ValueError, "`distance`.*'manhattan'"),
    ({'inter_class_distance': 0.0}, ValueError, '`inter_class_distance`'),
    ({'intra_class_distance': -0.1}, ValueError, '`intra_class_distance`'),
    (
      {'intra_class_distance': 2.0, 'inter_class_distance': 1.0},
      ValueError,
      r'`intra_class_distance`.*received 2\.0',
    ),
    ({'relaxation': -1.0}, ValueError, '`relaxation`.*-1.0'),
    ({'normalize': 'yes'}, TypeError, "`normalize`.*'yes'"),
    ({'block_size': 0}, ValueError, '`block_size`'),
    (
      {'reference': losses.ReferenceSet(jnp.zeros((3, 3)), None)},
      ValueError,
      '`reference.labels`',
    ),
    (
      {
        'reference': losses.ReferenceSet(
          jnp.zeros((3, 2)), jnp.zeros((3,), jnp.int32)
        )
      },
      ValueError,
      '`reference.embeddings`',
    ),
    (
      {'anchor_indices': jnp.zeros((5,), jnp.int32)},
      ValueError,
      '`anchor_indices`',
    ),
  ],
)
def test_bad_hyperparameters_raise(kwargs, error, match):
  with pytest.raises(error, match=match):
    loss_fn(_X, _Y, **kwargs)


@pytest.mark.parametrize(
  'embeddings,labels,error,match',
  [
    (jnp.zeros((4,)), _Y, ValueError, r'`embeddings`.*\(4,\)'),
    (jnp.zeros((4, 3), jnp.int32), _Y, TypeError, '`embeddings`.*int32'),
    (_X, jnp.zeros((4,)), TypeError, '`labels`.*float'),
    (_X, jnp.zeros((5,), jnp.int32), ValueError, '`labels`.*5'),
    (_X, jnp.zeros((4, 1), jnp.int32), ValueError, '`labels`'),
  ],
)
def test_bad_arrays_raise(embeddings, labels, error, match):
  with pytest.raises(error, match=match):
    loss_fn(embeddings, labels)
