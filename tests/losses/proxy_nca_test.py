"""Tests for ProxyNCA against a float64 NumPy reference."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import losses
from losses import _proxy_baselines

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-10}


def _unit(v):
  norm = np.linalg.norm(v)
  return v / norm if norm > 0 else v


def _reference(x, proxies, y, scale, exclude_positive):
  # The paper's Eq. with d the squared distance of the unit vectors.
  x = np.asarray(x, np.float64)
  proxies = np.asarray(proxies, np.float64)
  out = np.empty(len(y))
  for i, label in enumerate(y):
    d = np.array([np.sum((_unit(x[i]) - _unit(p)) ** 2) for p in proxies])
    others = [
      j for j in range(len(proxies)) if j != label or not exclude_positive
    ]
    out[i] = scale * d[label] + np.log(np.sum(np.exp(-scale * d[others])))
  return out


def _case(seed, batch, num_classes, dim, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = (2.0 * rng.standard_normal((batch, dim))).astype(dtype)
  proxies = rng.standard_normal((num_classes, dim)).astype(dtype)
  return x, proxies, rng.integers(0, num_classes, batch)


_LOSS = jax.jit(losses.proxy_nca_loss, static_argnames='exclude_positive')


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_matches_reference(dtype):
  tolerance = F64 if dtype == np.float64 else F32
  x, proxies, y = _case(0, 24, 6, 5, dtype)
  for scale, exclude in [(1.0, False), (9.0, False), (3.0, True)]:
    got = _LOSS(x, proxies, y, softmax_scale=scale, exclude_positive=exclude)
    assert got.shape == (24,)
    assert got.dtype == jnp.promote_types(dtype, jnp.float32)
    want = _reference(x, proxies, y, scale, exclude)
    np.testing.assert_allclose(got, want, **tolerance)


def test_check_grads():
  x, proxies, y = _case(1, 5, 3, 4, np.float64)
  for exclude in (False, True):
    fn = jax.jit(
      lambda x, p, s, exclude=exclude: losses.proxy_nca_loss(
        x, p, y, softmax_scale=s, exclude_positive=exclude
      )
    )
    test_util.check_grads(fn, (x, proxies, 2.0), order=1, modes=['rev'])


def test_zero_and_coincident_vectors_are_finite():
  x, proxies, y = _case(2, 4, 3, 3)
  x[0] = 0.0
  x[1] = 3.0 * proxies[y[1]]  # At its proxy: squared distance 0.
  proxies[(y[2] + 1) % 3] = 0.0
  value, grads = jax.jit(
    jax.value_and_grad(
      lambda x, p: jnp.sum(losses.proxy_nca_loss(x, p, y)), argnums=(0, 1)
    )
  )(x, proxies)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_allclose(
    _LOSS(x, proxies, y), _reference(x, proxies, y, 1.0, False), **F32
  )


def test_bad_inputs():
  x, proxies, y = _case(3, 2, 2, 3)
  with pytest.raises(ValueError, match='softmax_scale'):
    losses.proxy_nca_loss(x, proxies, y, softmax_scale=0.0)
  with pytest.raises(TypeError, match='exclude_positive'):
    losses.proxy_nca_loss(x, proxies, y, exclude_positive=1)
  with pytest.raises(ValueError, match='at least 2'):
    losses.proxy_nca_loss(
      x, proxies[:1], np.zeros(2, np.int32), exclude_positive=True
    )
  with pytest.raises(ValueError):
    losses.proxy_nca_loss(x, proxies[:, :2], y)


def test_docstring_example():
  with jax.enable_x64(False):
    failures, tried = doctest.testmod(_proxy_baselines)
  assert tried > 0 and failures == 0
