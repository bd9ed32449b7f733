"""Tests for L-Softmax and SphereFace against float64 NumPy references."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import losses
from losses import _large_margin

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-10}


def _psi_ref(c, m):
  # The paper's Eq. 6: k from the angle, cos(m theta) from the angle.
  theta = math.acos(min(max(c, -1.0), 1.0))
  k = min(math.floor(theta * m / math.pi), m)
  return (-1) ** k * math.cos(m * theta) - 2 * k


def _reference(x, w, y, margin, lambda_, weight_norms):
  x = np.asarray(x, np.float64)
  w = np.asarray(w, np.float64)
  out = np.empty(len(y))
  for i, label in enumerate(y):
    logits = np.empty(len(w))
    for j in range(len(w)):
      norms = np.linalg.norm(x[i]) * (
        np.linalg.norm(w[j]) if weight_norms else 1.0
      )
      both = np.linalg.norm(x[i]) * np.linalg.norm(w[j])
      c = x[i] @ w[j] / both if both > 0 else 0.0
      if j == label:
        c = (lambda_ * c + _psi_ref(c, margin)) / (1.0 + lambda_)
      logits[j] = norms * c
    top = logits.max()
    out[i] = top + np.log(np.sum(np.exp(logits - top))) - logits[label]
  return out


def _case(seed, batch, num_classes, dim, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = (2.0 * rng.standard_normal((batch, dim))).astype(dtype)
  w = (0.5 + rng.random((num_classes, 1))) * rng.standard_normal(
    (num_classes, dim)
  )
  return x, w.astype(dtype), rng.integers(0, num_classes, batch)


_LOSSES = {
  'lsoftmax': (losses.large_margin_softmax_loss, True),
  'sphereface': (losses.sphereface_loss, False),
}


@pytest.mark.parametrize('name', list(_LOSSES))
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_matches_reference(name, dtype):
  fn, weight_norms = _LOSSES[name]
  x, w, y = _case(0, 24, 5, 3, dtype)
  loss = jax.jit(fn, static_argnames='margin')
  tolerance = F64 if dtype == np.float64 else F32
  for margin, lambda_ in [(1, 0.0), (2, 0.0), (3, 1.5), (4, 0.0), (4, 5.0)]:
    got = loss(x, w, y, margin=margin, lambda_=lambda_)
    assert got.shape == (24,)
    assert got.dtype == jnp.promote_types(dtype, jnp.float32)
    want = _reference(x, w, y, margin, lambda_, weight_norms)
    np.testing.assert_allclose(got, want, **tolerance)


def test_psi_is_the_papers_piecewise_function():
  # Every branch k = 0..m-1, both ends of [0, pi] and the branch points.
  for margin in (1, 2, 3, 4):
    theta = np.concatenate(
      [
        np.linspace(0.0, math.pi, 101),
        np.arange(margin + 1) * math.pi / margin + 1e-9,
        np.arange(1, margin + 1) * math.pi / margin - 1e-9,
      ]
    )
    cosines = np.cos(np.clip(theta, 0.0, math.pi))
    psi = jax.jit(_large_margin._psi, static_argnums=1)
    got = psi(jnp.asarray(cosines), margin)
    want = [_psi_ref(c, margin) for c in cosines]
    np.testing.assert_allclose(got, want, atol=1e-7)
    # Decreasing in theta (increasing in the cosine).
    grid = psi(jnp.linspace(-1.0, 1.0, 401), margin)
    assert np.all(np.diff(np.asarray(grid)) >= -1e-12)


def test_margin_one_is_softmax_whatever_lambda():
  x, w, y = _case(1, 8, 4, 3, np.float64)
  loss = jax.jit(losses.large_margin_softmax_loss, static_argnames='margin')
  softmax = -jax.nn.log_softmax(x @ w.T)[np.arange(8), y]
  for lambda_ in (0.0, 3.0):
    got = loss(x, w, y, margin=1, lambda_=lambda_)
    np.testing.assert_allclose(got, softmax, **F64)


@pytest.mark.parametrize('name', list(_LOSSES))
def test_check_grads(name):
  fn, _ = _LOSSES[name]
  x, w, y = _case(1, 5, 3, 3, np.float64)
  # Away from the branch points of k (piecewise constant, so check_grads'
  # finite differences would straddle them): the case's target angles are
  # at least 0.05 pi / 4 from every j pi / 4, and in all four branches.
  cosines = np.sum(x * w[y], axis=1) / (
    np.linalg.norm(x, axis=1) * np.linalg.norm(w[y], axis=1)
  )
  phases = np.arccos(cosines) / (math.pi / 4)
  assert np.all(np.abs(phases - np.round(phases)) > 0.05)
  assert set(np.floor(phases)) == {0, 1, 2, 3}
  test_util.check_grads(
    jax.jit(lambda x, w, lam: fn(x, w, y, margin=4, lambda_=lam)),
    (x, w, 2.0),
    order=1,
    modes=['rev'],
  )


@pytest.mark.parametrize('name', list(_LOSSES))
def test_zero_embeddings_and_weights_are_finite(name):
  fn, weight_norms = _LOSSES[name]
  x, w, y = _case(3, 4, 3, 3)
  x[0] = 0.0
  w[y[1]] = 0.0

  @jax.jit
  def value_and_grads(x, w):
    return jax.value_and_grad(
      lambda x, w: jnp.sum(fn(x, w, y)), argnums=(0, 1)
    )(x, w)

  value, grads = value_and_grads(x, w)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_allclose(
    jax.jit(fn)(x, w, y), _reference(x, w, y, 4, 0.0, weight_norms), **F32
  )


@pytest.mark.parametrize(
  'kwargs,error',
  [
    ({'margin': 0}, ValueError),
    ({'margin': 2.0}, TypeError),
    ({'lambda_': -1.0}, ValueError),
  ],
)
def test_bad_hyperparameters(kwargs, error):
  x, w, y = _case(4, 2, 2, 2)
  for fn, _ in _LOSSES.values():
    with pytest.raises(error):
      fn(x, w, y, **kwargs)


def test_is_exported_and_documented():
  assert losses.sphereface_loss is _large_margin.sphereface_loss
  # The examples print float32, as without tests/conftest.py's x64.
  with jax.enable_x64(False):
    failures, tried = doctest.testmod(_large_margin)
  assert tried > 0 and failures == 0
