"""Tests for SoftTriple against a float64 NumPy reference."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import losses

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-10}


def _unit(v):
  norm = np.linalg.norm(v)
  return v / norm if norm > 0 else v


def _reference(x, centers, y, la, gamma, margin, tau):
  # Eqs. 7, 8 and 10 of the paper, the official code's normaliser.
  x = np.asarray(x, np.float64)
  centers = np.asarray(centers, np.float64)
  num_classes, k, _ = centers.shape
  reg = 0.0
  for c in range(num_classes):
    for a, b in itertools.combinations(range(k), 2):
      reg += np.linalg.norm(_unit(centers[c, a]) - _unit(centers[c, b]))
  reg = reg / (num_classes * k * (k - 1)) if k > 1 else 0.0
  out = np.empty(len(y))
  for i, label in enumerate(y):
    logits = np.empty(num_classes)
    for c in range(num_classes):
      s = np.array([_unit(x[i]) @ _unit(w) for w in centers[c]])
      p = np.exp((s - s.max()) / gamma)
      logits[c] = la * (np.sum(p / p.sum() * s) - (margin if c == label else 0))
    top = logits.max()
    ce = top + np.log(np.sum(np.exp(logits - top))) - logits[label]
    out[i] = ce + tau * reg
  return out


def _case(seed, batch, num_classes, k, dim, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = (2.0 * rng.standard_normal((batch, dim))).astype(dtype)
  centers = rng.standard_normal((num_classes, k, dim)).astype(dtype)
  return x, centers, rng.integers(0, num_classes, batch)


_LOSS = jax.jit(losses.soft_triple_loss)
_SETTINGS = [
  {'la': 20.0, 'gamma': 0.1, 'margin': 0.01, 'tau': 0.2},
  {'la': 5.0, 'gamma': 0.5, 'margin': 0.2, 'tau': 0.0},
]


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_matches_reference(dtype):
  tolerance = F64 if dtype == np.float64 else F32
  for k in (1, 4):
    x, centers, y = _case(k, 20, 5, k, 6, dtype)
    for setting in _SETTINGS:
      got = _LOSS(x, centers, y, **setting)
      assert got.shape == (20,)
      assert got.dtype == jnp.promote_types(dtype, jnp.float32)
      want = _reference(x, centers, y, **setting)
      np.testing.assert_allclose(got, want, **tolerance)


def test_defaults_are_the_papers():
  x, centers, y = _case(0, 4, 3, 2, 3, np.float64)
  np.testing.assert_allclose(
    _LOSS(x, centers, y), _reference(x, centers, y, 20.0, 0.1, 0.01, 0.2), **F64
  )


def test_check_grads():
  x, centers, y = _case(2, 5, 3, 3, 4, np.float64)
  fn = jax.jit(
    lambda x, c, la, gamma, margin, tau: losses.soft_triple_loss(
      x, c, y, la=la, gamma=gamma, margin=margin, tau=tau
    )
  )
  test_util.check_grads(
    fn, (x, centers, 5.0, 0.5, 0.1, 0.2), order=1, modes=['rev']
  )


def test_coincident_centres_and_zero_vectors_are_finite():
  x, centers, y = _case(3, 4, 3, 3, 3)
  centers[0, 1] = 2.0 * centers[0, 0]  # Distance 0 in the regulariser.
  centers[1, 2] = 0.0
  x[0] = 0.0
  value, grads = jax.jit(
    jax.value_and_grad(
      lambda x, c: jnp.sum(losses.soft_triple_loss(x, c, y)), argnums=(0, 1)
    )
  )(x, centers)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_allclose(
    _LOSS(x, centers, y), _reference(x, centers, y, 20.0, 0.1, 0.01, 0.2), **F32
  )


@pytest.mark.parametrize(
  'change,error',
  [
    ({'centers': np.ones((3, 4), np.float32)}, ValueError),
    ({'centers': np.ones((3, 2, 5), np.float32)}, ValueError),
    ({'la': 0.0}, ValueError),
    ({'gamma': -1.0}, ValueError),
    ({'margin': -0.1}, ValueError),
    ({'tau': -0.1}, ValueError),
  ],
)
def test_bad_inputs(change, error):
  kwargs = {
    'embeddings': np.zeros((2, 4), np.float32),
    'centers': np.ones((3, 2, 4), np.float32),
    'labels': np.array([0, 1]),
    **change,
  }
  with pytest.raises(error):
    losses.soft_triple_loss(**kwargs)
