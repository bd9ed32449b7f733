"""Tests for the vMF loss and the mean-direction estimates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from losses import _margin_softmax, _vmf

F32 = {'rtol': 1e-5, 'atol': 1e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-12}


# ---------------------------------------------------------------------------
# References, written from the formulas in float64.
# ---------------------------------------------------------------------------


def _unit(v):
  norm = np.linalg.norm(v)
  return v / norm if norm > 0 else np.zeros_like(v)


def _loss_ref(x, mu, y, kappa):
  x = np.asarray(x, np.float64)
  mu = np.asarray(mu, np.float64)
  out = np.empty(len(y))
  for i, label in enumerate(y):
    logits = kappa * (mu @ _unit(x[i]))
    top = logits.max()
    out[i] = top + np.log(np.sum(np.exp(logits - top))) - logits[label]
  return out


def _sums_ref(x, y, num_classes):
  sums = np.zeros((num_classes, x.shape[1]))
  counts = np.zeros(num_classes, np.int64)
  for xi, label in zip(np.asarray(x, np.float64), y, strict=True):
    if 0 <= label < num_classes:
      sums[label] += _unit(xi)
      counts[label] += 1
  return sums, counts


def _directions_ref(x, y, num_classes, previous=None):
  sums, counts = _sums_ref(x, y, num_classes)
  out = np.zeros_like(sums) if previous is None else np.array(previous)
  for c in range(num_classes):
    if counts[c]:
      out[c] = _unit(sums[c])
  return out


def _case(seed, batch, num_classes, dim, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = (2.0 * rng.standard_normal((batch, dim))).astype(dtype)
  mu = rng.standard_normal((num_classes, dim))
  mu = (mu / np.linalg.norm(mu, axis=1, keepdims=True)).astype(dtype)
  y = rng.integers(0, num_classes, batch)
  return x, mu, y


def _jit_loss(kappa):
  return jax.jit(functools.partial(_vmf.vmf_cross_entropy, kappa=kappa))


def _value_and_grads(x, mu, y, kappa=16.0):
  return jax.jit(
    jax.value_and_grad(
      lambda x, mu: jnp.sum(_vmf.vmf_cross_entropy(x, mu, y, kappa=kappa)),
      argnums=(0, 1),
    )
  )(x, mu)


def _assert_finite(value, grads):
  assert np.all(np.isfinite(value))
  for g in grads:
    assert np.all(np.isfinite(g))


# ---------------------------------------------------------------------------
# The loss.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  'batch,num_classes,dim', [(1, 2, 3), (9, 5, 4), (24, 13, 8)]
)
@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('kappa', [1.0, 15.0, 64.0])
def test_matches_reference_float32(batch, num_classes, dim, seed, kappa):
  x, mu, y = _case(seed, batch, num_classes, dim)
  got = _jit_loss(kappa)(x, mu, y)
  assert got.shape == (batch,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _loss_ref(x, mu, y, kappa), **F32)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_reference_float64(seed):
  x, mu, y = _case(seed, 11, 6, 5, np.float64)
  got = _jit_loss(5.0)(x, mu, y)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, _loss_ref(x, mu, y, 5.0), **F64)


@pytest.mark.parametrize('modes', [['rev'], ['fwd']])
def test_gradients_wrt_embeddings(modes):
  x, mu, y = _case(3, 5, 4, 3, np.float64)
  test_util.check_grads(
    jax.jit(lambda x: _vmf.vmf_cross_entropy(x, mu, y, kappa=3.0)),
    (x,),
    order=1,
    modes=modes,
  )


def test_mean_directions_get_no_gradient():
  x, mu, y = _case(4, 8, 4, 3)
  _, (grad_x, grad_mu) = _value_and_grads(x, mu, y)
  assert np.any(np.asarray(grad_x) != 0)
  np.testing.assert_array_equal(grad_mu, np.zeros_like(mu))


def test_equals_normface_with_mean_directions_as_weights():
  x, mu, y = _case(5, 16, 7, 4, np.float64)
  mu[3] = 0.0  # an unseen class: zero direction on both sides
  want = _margin_softmax.normalized_softmax_cross_entropy(x, mu, y, scale=12.0)
  np.testing.assert_allclose(_jit_loss(12.0)(x, mu, y), want, **F64)


def test_zero_direction_gives_logit_zero():
  x, mu, y = _case(6, 6, 3, 4, np.float64)
  mu[1] = 0.0
  logits = 7.0 * (x / np.linalg.norm(x, axis=1, keepdims=True)) @ mu.T
  assert np.all(logits[:, 1] == 0.0)
  np.testing.assert_allclose(
    _jit_loss(7.0)(x, mu, y), _loss_ref(x, mu, y, 7.0), **F64
  )


def test_embedding_scale_is_ignored():
  x, mu, y = _case(7, 12, 6, 5, np.float64)
  fn = _jit_loss(20.0)
  np.testing.assert_allclose(fn(3.7 * x, mu, y), fn(x, mu, y), **F64)


def test_zero_embeddings_are_finite_and_uniform():
  _, mu, y = _case(8, 4, 5, 3)
  x = np.zeros((4, 3), np.float32)
  _assert_finite(*_value_and_grads(x, mu, y, kappa=64.0))
  np.testing.assert_allclose(
    _jit_loss(64.0)(x, mu, y), np.full(4, np.log(5.0)), **F32
  )


@pytest.mark.parametrize('sign', [1.0, -1.0])
def test_cosines_at_plus_minus_one_with_kappa_64(sign):
  _, mu, _ = _case(9, 4, 5, 6)
  y = np.array([0, 1, 2, 3])
  x = (sign * 2.5 * mu[y]).astype(np.float32)
  _assert_finite(*_value_and_grads(x, mu, y, kappa=64.0))
  np.testing.assert_allclose(
    _jit_loss(64.0)(x, mu, y), _loss_ref(x, mu, y, 64.0), rtol=1e-5, atol=1e-4
  )


@pytest.mark.parametrize('where', ['identical', 'one_class', 'singletons'])
def test_degenerate_batches_are_finite(where):
  x, mu, y = _case(10, 6, 6, 4)
  if where == 'identical':
    x[:] = x[0]
  elif where == 'one_class':
    y[:] = 2
  else:
    y = np.arange(6)
  _assert_finite(*_value_and_grads(x, mu, y))
  np.testing.assert_allclose(
    _jit_loss(16.0)(x, mu, y), _loss_ref(x, mu, y, 16.0), **F32
  )


def test_bfloat16_inputs_compute_in_float32():
  x, mu, y = _case(11, 8, 5, 6)
  x_low = jnp.asarray(x, jnp.bfloat16)
  mu_low = jnp.asarray(mu, jnp.bfloat16)
  got = _jit_loss(16.0)(x_low, mu_low, y)
  assert got.dtype == jnp.float32
  rounded = (np.asarray(x_low, np.float32), np.asarray(mu_low, np.float32))
  np.testing.assert_allclose(got, _loss_ref(*rounded, y, 16.0), **F32)
  # bfloat16 rounding moves cosines by ~2^-8, logits by ~16 * 2^-8.
  np.testing.assert_allclose(got, _jit_loss(16.0)(x, mu, y), atol=0.3)


def test_batch_permutation_permutes_the_output():
  x, mu, y = _case(12, 10, 4, 3)
  perm = np.random.default_rng(4).permutation(10)
  fn = _jit_loss(10.0)
  np.testing.assert_allclose(
    fn(x[perm], mu, y[perm]), np.asarray(fn(x, mu, y))[perm], rtol=1e-6
  )


def test_vmap_over_stacked_batches_equals_a_loop():
  cases = [_case(s, 4, 3, 5) for s in range(3)]
  x = np.stack([c[0] for c in cases])
  y = np.stack([c[2] for c in cases])
  mu = cases[0][1]
  fn = functools.partial(_vmf.vmf_cross_entropy, kappa=8.0)
  got = jax.jit(jax.vmap(fn, (0, None, 0)))(x, mu, y)
  for b in range(3):
    np.testing.assert_allclose(got[b], _loss_ref(x[b], mu, y[b], 8.0), **F32)


# ---------------------------------------------------------------------------
# Mean directions.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_direction_sums_match_reference(dtype):
  x, _, y = _case(13, 20, 6, 4, dtype)
  x[3] = 0.0  # a zero embedding adds nothing
  sums, counts = jax.jit(_vmf.vmf_direction_sums, static_argnums=2)(x, y, 6)
  assert sums.shape == (6, 4) and sums.dtype == dtype
  assert counts.shape == (6,) and counts.dtype == jnp.int32
  want_sums, want_counts = _sums_ref(x, y, 6)
  tolerance = F64 if dtype == np.float64 else F32
  np.testing.assert_allclose(sums, want_sums, **tolerance)
  np.testing.assert_array_equal(counts, want_counts)


def test_direction_sums_drop_out_of_range_labels():
  x, _, _ = _case(14, 5, 3, 4)
  y = np.array([0, 3, -1, 2, 0])
  sums, counts = _vmf.vmf_direction_sums(x, y, 3)
  want_sums, want_counts = _sums_ref(x, y, 3)
  np.testing.assert_allclose(sums, want_sums, **F32)
  np.testing.assert_array_equal(counts, want_counts)


def test_direction_sums_of_two_halves_add_up_to_the_whole():
  x, _, y = _case(15, 18, 5, 4, np.float64)
  fn = jax.jit(_vmf.vmf_direction_sums, static_argnums=2)
  sums_a, counts_a = fn(x[:7], y[:7], 5)
  sums_b, counts_b = fn(x[7:], y[7:], 5)
  sums, counts = fn(x, y, 5)
  np.testing.assert_allclose(sums_a + sums_b, sums, **F64)
  np.testing.assert_array_equal(counts_a + counts_b, counts)


def test_direction_sums_psum_across_devices():
  num_devices = min(jax.device_count(), 4)
  if num_devices < 2:
    pytest.skip('needs several (fake) devices')
  mesh = jax.make_mesh(
    (num_devices,),
    ('data',),
    axis_types=(jax.sharding.AxisType.Explicit,),
  )
  x, _, y = _case(16, 4 * num_devices, 5, 3)

  def local(x, y):
    sums, counts = _vmf.vmf_direction_sums(x, y, 5)
    return jax.lax.psum(sums, 'data'), jax.lax.psum(counts, 'data')

  spec = jax.sharding.PartitionSpec('data')
  sharding = jax.sharding.NamedSharding(mesh, spec)
  sums, counts = jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(spec, spec),
      out_specs=(jax.sharding.PartitionSpec(),) * 2,
    )
  )(jax.device_put(x, sharding), jax.device_put(y, sharding))
  want_sums, want_counts = _sums_ref(x, y, 5)
  np.testing.assert_allclose(sums, want_sums, **F32)
  np.testing.assert_array_equal(counts, want_counts)


@pytest.mark.parametrize('with_previous', [False, True])
def test_mean_directions_match_reference(with_previous):
  x, previous, _ = _case(17, 12, 6, 4, np.float64)
  y = np.array([0, 0, 1, 1, 1, 2, 4, 4, 4, 4, 2, 0])  # classes 3, 5 unseen
  previous = previous if with_previous else None
  got = jax.jit(_vmf.vmf_mean_directions, static_argnums=2)(
    x, y, 6, previous=previous
  )
  want = _directions_ref(x, y, 6, previous)
  np.testing.assert_allclose(got, want, **F64)
  got = np.asarray(got)
  norms = np.linalg.norm(got, axis=1)
  np.testing.assert_allclose(norms[[0, 1, 2, 4]], 1.0, **F64)
  if with_previous:
    np.testing.assert_array_equal(got[[3, 5]], previous[[3, 5]])
  else:
    np.testing.assert_array_equal(got[[3, 5]], 0.0)


def test_mean_directions_from_sums_equals_the_composition():
  x, _, y = _case(18, 15, 5, 3)
  sums, counts = _vmf.vmf_direction_sums(x, y, 5)
  np.testing.assert_allclose(
    _vmf.vmf_mean_directions_from_sums(sums, counts),
    _vmf.vmf_mean_directions(x, y, 5),
    rtol=1e-6,
  )


def test_mean_direction_of_cancelling_features_is_zero():
  x = np.array([[1.0, 2.0], [-2.0, -4.0], [0.0, 1.0]], np.float32)
  got = _vmf.vmf_mean_directions(x, np.array([0, 0, 1]), 2)
  np.testing.assert_allclose(got, [[0.0, 0.0], [0.0, 1.0]], atol=1e-7)
  assert np.all(np.isfinite(got))


def test_mean_directions_make_the_training_batch_easier():
  # With the ML directions of a batch, its own loss is below that of
  # random directions: a sanity check of the alternating algorithm.
  x, random_mu, y = _case(19, 64, 4, 8, np.float64)
  x += 3.0 * np.eye(4, 8)[y]  # class-dependent offset
  fitted = _vmf.vmf_mean_directions(x, y, 4)
  fn = _jit_loss(10.0)
  assert np.mean(fn(x, fitted, y)) < np.mean(fn(x, random_mu, y))


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def test_bad_loss_inputs():
  x = np.zeros((4, 3), np.float32)
  mu = np.zeros((5, 3), np.float32)
  y = np.zeros(4, np.int32)
  fn = _vmf.vmf_cross_entropy
  with pytest.raises(
    ValueError, match=r'`embeddings` must have rank 2.*\(3,\)'
  ):
    fn(np.zeros(3, np.float32), mu, y, kappa=1.0)
  with pytest.raises(TypeError, match=r'`embeddings`.*floating.*int32'):
    fn(np.zeros((4, 3), np.int32), mu, y, kappa=1.0)
  with pytest.raises(ValueError, match=r'`mean_directions`.*size 3.*2'):
    fn(x, np.zeros((5, 2), np.float32), y, kappa=1.0)
  with pytest.raises(ValueError, match=r'`labels`.*size 4.*received 6'):
    fn(x, mu, np.zeros(6, np.int32), kappa=1.0)
  with pytest.raises(TypeError, match=r'`labels`.*integer.*float'):
    fn(x, mu, np.zeros(4, np.float32), kappa=1.0)
  for kappa in (0.0, -3.0):
    with pytest.raises(ValueError, match=rf'`kappa` must be > 0.*{kappa}'):
      fn(x, mu, y, kappa=kappa)


def test_bad_direction_inputs():
  x = np.zeros((4, 3), np.float32)
  y = np.zeros(4, np.int32)
  with pytest.raises(ValueError, match=r'`num_classes` must be >= 1.*0'):
    _vmf.vmf_direction_sums(x, y, 0)
  with pytest.raises(TypeError, match=r'`num_classes`.*int.*2\.0'):
    _vmf.vmf_direction_sums(x, y, 2.0)
  with pytest.raises(ValueError, match=r'`labels`.*size 4.*received 3'):
    _vmf.vmf_direction_sums(x, np.zeros(3, np.int32), 2)
  with pytest.raises(TypeError, match=r'`embeddings`.*floating.*int'):
    _vmf.vmf_direction_sums(np.zeros((4, 3), np.int32), y, 2)
  sums = np.zeros((5, 3), np.float32)
  counts = np.zeros(5, np.int32)
  fn = _vmf.vmf_mean_directions_from_sums
  with pytest.raises(ValueError, match=r'`counts`.*size 5.*received 4'):
    fn(sums, np.zeros(4, np.int32))
  with pytest.raises(TypeError, match=r'`counts`.*integer.*float32'):
    fn(sums, np.zeros(5, np.float32))
  with pytest.raises(ValueError, match=r'`sums` must have rank 2.*\(5,\)'):
    fn(np.zeros(5, np.float32), counts)
  with pytest.raises(ValueError, match=r'`previous`.*`sums`.*\(5, 2\).*\(5, 3'):
    fn(sums, counts, previous=np.zeros((5, 2), np.float32))
  with pytest.raises(TypeError, match=r'`previous`.*floating.*int32'):
    fn(sums, counts, previous=np.zeros((5, 3), np.int32))
