"""Tests for the pairwise kernels against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from losses import _pairwise

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-12}
# (n, m, dim): m = None compares x with itself.
SHAPES = [(5, None, 3), (7, 4, 3), (3, 9, 8), (1, 1, 2), (6, None, 16)]


# ---------------------------------------------------------------------------
# References, written from the formulas by broadcasting, in float64.
# ---------------------------------------------------------------------------


def _cosine_ref(x, y):
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  x_norm = np.maximum(np.linalg.norm(x, axis=1), 1e-12)
  y_norm = np.maximum(np.linalg.norm(y, axis=1), 1e-12)
  dots = np.sum(x[:, None, :] * y[None, :, :], axis=-1)
  return dots / (x_norm[:, None] * y_norm[None, :])


def _squared_distance_ref(x, y):
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  return np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def _valid_ref(labels, reference_labels, anchor_indices):
  out = []
  for i, label in enumerate(labels):
    has_positive = has_negative = False
    for j, other in enumerate(reference_labels):
      if j == anchor_indices[i]:
        continue
      has_positive |= other == label
      has_negative |= other != label
    out.append(has_positive and has_negative)
  return np.array(out)


def _case(seed, n, m, dim, dtype=np.float64):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, dim)).astype(dtype)
  y = None if m is None else rng.standard_normal((m, dim)).astype(dtype)
  return x, y


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('n, m, dim', SHAPES)
@pytest.mark.parametrize(
  'kernel, reference',
  [
    (_pairwise.pairwise_cosine_similarity, _cosine_ref),
    (_pairwise.pairwise_squared_distance, _squared_distance_ref),
    (
      _pairwise.pairwise_distance,
      lambda x, y: np.sqrt(_squared_distance_ref(x, y)),
    ),
  ],
)
def test_kernel_matches_reference(kernel, reference, n, m, dim):
  for dtype, tolerance in ((np.float64, F64), (np.float32, F32)):
    x, y = _case(n * 100 + dim, n, m, dim, dtype)
    out = jax.jit(kernel)(x, y)
    assert out.dtype == dtype
    assert out.shape == (n, n if m is None else m)
    expected = reference(x, x if y is None else y)
    # The expansion |x|^2 + |y|^2 - 2 x.y loses absolute precision relative
    # to the norms; sqrt amplifies it near 0 (only the diagonal here).
    np.testing.assert_allclose(out, expected, **tolerance)


@pytest.mark.parametrize(
  'kernel', [_pairwise.pairwise_squared_distance, _pairwise.pairwise_distance]
)
def test_distance_diagonal_is_exactly_zero(kernel):
  # Large norms make the expansion's round-off visible off the diagonal.
  x, _ = _case(0, 6, None, 5, np.float32)
  out = np.asarray(jax.jit(kernel)(100.0 * x))
  np.testing.assert_array_equal(np.diag(out), np.zeros(6, np.float32))
  assert np.all(out >= 0)


def test_bfloat16_inputs_compute_in_float32():
  x, y = _case(1, 4, 3, 8, np.float32)
  x16, y16 = jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16)
  rounded_x = np.asarray(x16, np.float32)
  rounded_y = np.asarray(y16, np.float32)
  for kernel, reference in (
    (_pairwise.pairwise_cosine_similarity, _cosine_ref),
    (_pairwise.pairwise_squared_distance, _squared_distance_ref),
  ):
    out = jax.jit(kernel)(x16, y16)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, reference(rounded_x, rounded_y), **F32)


def test_l2_normalize_and_zero_vectors():
  x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0]])
  np.testing.assert_allclose(
    _pairwise.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0], [1e-18, 0.0]], **F64
  )
  cosines = jax.jit(_pairwise.pairwise_cosine_similarity)(x)
  np.testing.assert_allclose(cosines[1], np.zeros(3), **F64)
  np.testing.assert_allclose(cosines[:, 1], np.zeros(3), **F64)
  gradient = jax.grad(
    lambda x: jnp.sum(_pairwise.pairwise_cosine_similarity(x) ** 2)
  )(x)
  assert np.all(np.isfinite(gradient))


def test_safe_sqrt_is_zero_with_zero_gradient_at_zero():
  values = jnp.array([0.0, 1e-14, 4.0])
  np.testing.assert_allclose(_pairwise.safe_sqrt(values), [0.0, 0.0, 2.0])
  gradient = jax.grad(lambda v: jnp.sum(_pairwise.safe_sqrt(v)))(values)
  np.testing.assert_allclose(gradient, [0.0, 0.0, 0.25])


# ---------------------------------------------------------------------------
# Gradients.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  'kernel',
  [
    _pairwise.pairwise_cosine_similarity,
    _pairwise.pairwise_squared_distance,
    _pairwise.pairwise_distance,
  ],
)
@pytest.mark.parametrize('n, m, dim', [(4, None, 3), (3, 5, 4)])
def test_kernel_gradients_match_finite_differences(kernel, n, m, dim):
  # Random points: no two coincide, away from the kink of sqrt at 0 (the
  # self-distances are the constant 0 when m is None).
  x, y = _case(7 + n, n, m, dim)
  weights = np.random.default_rng(3).standard_normal((n, n if m is None else m))
  if m is None:
    test_util.check_grads(
      jax.jit(lambda x: jnp.sum(weights * kernel(x))),
      (x,),
      order=1,
      modes=['rev'],
    )
  else:
    test_util.check_grads(
      jax.jit(lambda x, y: jnp.sum(weights * kernel(x, y))),
      (x, y),
      order=1,
      modes=['fwd', 'rev'],
    )


@pytest.mark.parametrize(
  'kernel',
  [
    _pairwise.pairwise_cosine_similarity,
    _pairwise.pairwise_squared_distance,
    _pairwise.pairwise_distance,
  ],
)
def test_gradients_finite_at_coincident_points(kernel):
  x, _ = _case(2, 5, None, 3, np.float32)
  x[3] = x[1]
  x[4] = 0.0
  for args in ((x,), (x, x[:2])):
    gradient = jax.grad(lambda *a: jnp.sum(kernel(*a)))(*args)
    assert np.all(np.isfinite(gradient)), kernel.__name__


# ---------------------------------------------------------------------------
# Blocked rows and valid anchors.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('block_size', [None, 1, 2, 3, 5, 7, 100])
def test_map_row_blocks_matches_unblocked(block_size):
  x, reference = _case(4, 7, 5, 3)
  scale = np.arange(7.0)

  def row_fn(x_rows, scale_rows):
    distances = _pairwise.pairwise_distance(x_rows, reference)
    return {
      'sum': jnp.sum(distances, axis=1) * scale_rows,
      'rows': distances,
    }

  def total(x, reference_):
    def fn(x_rows, scale_rows):
      distances = _pairwise.pairwise_distance(x_rows, reference_)
      return jnp.sum(jnp.sin(distances), axis=1) * scale_rows

    return jnp.sum(
      _pairwise.map_row_blocks(fn, (x, scale), block_size=block_size)
    )

  blocked = jax.jit(
    lambda x: _pairwise.map_row_blocks(
      row_fn, (x, scale), block_size=block_size
    )
  )(x)
  dense = row_fn(x, scale)
  np.testing.assert_allclose(blocked['sum'], dense['sum'], **F64)
  np.testing.assert_allclose(blocked['rows'], dense['rows'], **F64)
  blocked_grads = jax.jit(jax.grad(total, argnums=(0, 1)))(x, reference)
  dense_grads = jax.grad(
    lambda x, r: jnp.sum(
      jnp.sum(jnp.sin(_pairwise.pairwise_distance(x, r)), axis=1) * scale
    ),
    argnums=(0, 1),
  )(x, reference)
  for got, expected in zip(blocked_grads, dense_grads, strict=True):
    np.testing.assert_allclose(got, expected, **F64)


@pytest.mark.parametrize('block_size', [0, -2])
def test_map_row_blocks_rejects_bad_block_size(block_size):
  with pytest.raises(ValueError, match=f'`block_size`.*received {block_size}'):
    _pairwise.map_row_blocks(
      lambda x: x, (jnp.zeros((3, 2)),), block_size=block_size
    )
  with pytest.raises(TypeError, match='`block_size`.*received 2.0'):
    _pairwise.map_row_blocks(lambda x: x, (jnp.zeros((3, 2)),), block_size=2.0)


@pytest.mark.parametrize('seed', range(4))
def test_valid_pairwise_anchors_matches_loop(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, 9)
  labels[0] = 17  # A singleton class.
  # Without a reference set: the batch, own copy excluded.
  got = jax.jit(_pairwise.valid_pairwise_anchors)(labels)
  np.testing.assert_array_equal(got, _valid_ref(labels, labels, range(9)))
  # Explicit identity indices equal the default.
  got = _pairwise.valid_pairwise_anchors(labels, anchor_indices=np.arange(9))
  np.testing.assert_array_equal(got, _valid_ref(labels, labels, range(9)))
  # A reference set without own copies.
  reference_labels = rng.integers(0, 4, 6)
  # Only the labels (and valid rows) of the reference set are read.
  got = _pairwise.valid_pairwise_anchors(
    labels, reference=_pairwise.ReferenceSet(None, reference_labels)
  )
  np.testing.assert_array_equal(
    got, _valid_ref(labels, reference_labels, [-1] * 9)
  )
  # Local anchors (a slice) inside the global batch.
  indices = np.arange(3, 7)
  got = _pairwise.valid_pairwise_anchors(
    labels[indices],
    reference=_pairwise.ReferenceSet(np.zeros((9, 2)), labels),
    anchor_indices=indices,
  )
  np.testing.assert_array_equal(
    got, _valid_ref(labels[indices], labels, indices)
  )


def test_valid_pairwise_anchors_one_class_and_all_singletons():
  np.testing.assert_array_equal(
    _pairwise.valid_pairwise_anchors(np.zeros(4, np.int32)), [False] * 4
  )
  np.testing.assert_array_equal(
    _pairwise.valid_pairwise_anchors(np.arange(4)), [False] * 4
  )


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def test_kernels_reject_bad_input():
  x = np.zeros((4, 3), np.float32)
  with pytest.raises(ValueError, match=r'`x` must have rank 2.*\(3,\)'):
    _pairwise.pairwise_distance(x[0])
  with pytest.raises(ValueError, match=r'`y` must have rank 2.*\(2, 3, 1\)'):
    _pairwise.pairwise_distance(x, np.zeros((2, 3, 1)))
  with pytest.raises(ValueError, match='`y` must have size 3 along axis 1.*5'):
    _pairwise.pairwise_cosine_similarity(x, np.zeros((2, 5)))
  with pytest.raises(TypeError, match='`x` must have a floating dtype.*int'):
    _pairwise.pairwise_squared_distance(np.zeros((4, 3), np.int32))
  with pytest.raises(TypeError, match='`labels` must hold integer.*float'):
    _pairwise.valid_pairwise_anchors(np.zeros(4, np.float32))


def test_valid_pairwise_anchors_rejects_a_bad_reference():
  labels = np.zeros(4, np.int32)
  with pytest.raises(TypeError, match='`reference` must be a losses.Refer'):
    _pairwise.valid_pairwise_anchors(labels, reference=np.zeros(4, np.int32))
  with pytest.raises(ValueError, match='`reference.labels` must be an array'):
    _pairwise.valid_pairwise_anchors(
      labels, reference=_pairwise.ReferenceSet(np.zeros((4, 2)), None)
    )
  with pytest.raises(TypeError, match='`reference.labels` must hold integer'):
    _pairwise.valid_pairwise_anchors(
      labels, reference=_pairwise.ReferenceSet(None, np.zeros(4))
    )
  with pytest.raises(
    ValueError, match=r'`anchor_indices` must have size 4 along axis 0.*3'
  ):
    _pairwise.valid_pairwise_anchors(labels, anchor_indices=np.arange(3))
