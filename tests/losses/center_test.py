"""Tests for the center loss against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from losses import _center

F32 = {'rtol': 1e-5, 'atol': 1e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-12}

_loss = jax.jit(_center.center_loss)


def _reference(x, centers, y):
  x = np.asarray(x, np.float64)
  centers = np.asarray(centers, np.float64)
  return np.array(
    [0.5 * np.sum((x[i] - centers[label]) ** 2) for i, label in enumerate(y)]
  )


def _case(seed, batch, num_classes, dim, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, dim)).astype(dtype)
  centers = rng.standard_normal((num_classes, dim)).astype(dtype)
  y = rng.integers(0, num_classes, batch)
  return x, centers, y


def _value_and_grads(x, centers, y):
  return jax.jit(
    jax.value_and_grad(
      lambda x, c: jnp.sum(_center.center_loss(x, c, y)), argnums=(0, 1)
    )
  )(x, centers)


@pytest.mark.parametrize(
  'batch,num_classes,dim', [(1, 1, 1), (8, 5, 4), (32, 17, 16)]
)
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_reference_float32(batch, num_classes, dim, seed):
  x, centers, y = _case(seed, batch, num_classes, dim)
  got = _loss(x, centers, y)
  assert got.shape == (batch,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _reference(x, centers, y), **F32)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_reference_float64(seed):
  x, centers, y = _case(seed, 9, 6, 5, np.float64)
  got = _loss(x, centers, y)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, _reference(x, centers, y), **F64)


@pytest.mark.parametrize('modes', [['rev'], ['fwd']])
def test_gradients(modes):
  x, centers, y = _case(3, 6, 4, 3, np.float64)
  test_util.check_grads(
    jax.jit(lambda x, c: _center.center_loss(x, c, y)),
    (x, centers),
    order=1,
    modes=modes,
  )


def test_gradients_reach_the_centers_in_closed_form():
  x, centers, y = _case(4, 10, 3, 4, np.float64)
  y[:4] = 1  # several samples share a centre: their gradients add up
  _, (grad_x, grad_centers) = _value_and_grads(x, centers, y)
  want_centers = np.zeros_like(centers)
  for i, label in enumerate(y):
    want_centers[label] -= x[i] - centers[label]
  np.testing.assert_allclose(grad_x, x - centers[y], **F64)
  np.testing.assert_allclose(grad_centers, want_centers, **F64)


@pytest.mark.parametrize(
  'where', ['zero', 'identical', 'one_class', 'singletons', 'at_center']
)
def test_edge_cases_are_finite(where):
  x, centers, y = _case(5, 6, 6, 4)
  if where == 'zero':
    x[:] = 0.0
  elif where == 'identical':
    x[:] = x[0]
  elif where == 'one_class':
    y[:] = 2
  elif where == 'singletons':
    y = np.arange(6)
  else:
    x = centers[y].copy()
  value, grads = _value_and_grads(x, centers, y)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_allclose(
    _loss(x, centers, y), _reference(x, centers, y), **F32
  )
  if where == 'at_center':
    np.testing.assert_array_equal(_loss(x, centers, y), 0.0)


def test_bfloat16_inputs_compute_in_float32():
  x, centers, y = _case(6, 8, 5, 6)
  x_low = jnp.asarray(x, jnp.bfloat16)
  centers_low = jnp.asarray(centers, jnp.bfloat16)
  got = _loss(x_low, centers_low, y)
  assert got.dtype == jnp.float32
  rounded = (np.asarray(x_low, np.float32), np.asarray(centers_low, np.float32))
  np.testing.assert_allclose(got, _reference(*rounded, y), **F32)
  # bfloat16 rounding (2^-8 relative) of differences of magnitude ~1-3.
  np.testing.assert_allclose(got, _loss(x, centers, y), rtol=2e-2, atol=2e-2)


def test_batch_permutation_permutes_the_output():
  x, centers, y = _case(7, 10, 4, 3)
  perm = np.random.default_rng(5).permutation(10)
  np.testing.assert_allclose(
    _loss(x[perm], centers, y[perm]),
    np.asarray(_loss(x, centers, y))[perm],
    rtol=1e-6,
  )


def test_vmap_over_stacked_batches_equals_a_loop():
  cases = [_case(s, 4, 3, 5) for s in range(3)]
  x = np.stack([c[0] for c in cases])
  y = np.stack([c[2] for c in cases])
  centers = cases[0][1]
  got = jax.jit(jax.vmap(_center.center_loss, (0, None, 0)))(x, centers, y)
  for b in range(3):
    np.testing.assert_allclose(got[b], _reference(x[b], centers, y[b]), **F32)


def test_bad_inputs():
  x = np.zeros((4, 3), np.float32)
  centers = np.zeros((5, 3), np.float32)
  y = np.zeros(4, np.int32)
  fn = _center.center_loss
  with pytest.raises(
    ValueError, match=r'`embeddings` must have rank 2.*\(3,\)'
  ):
    fn(np.zeros(3, np.float32), centers, y)
  with pytest.raises(TypeError, match=r'`embeddings`.*floating.*int32'):
    fn(np.zeros((4, 3), np.int32), centers, y)
  with pytest.raises(ValueError, match=r'`centers`.*size 3.*received 2'):
    fn(x, np.zeros((5, 2), np.float32), y)
  with pytest.raises(ValueError, match=r'`centers` must have rank 2'):
    fn(x, np.zeros(5, np.float32), y)
  with pytest.raises(ValueError, match=r'`labels`.*size 4.*received 1'):
    fn(x, centers, np.zeros(1, np.int32))
  with pytest.raises(TypeError, match=r'`labels`.*integer.*float'):
    fn(x, centers, np.zeros(4, np.float32))
