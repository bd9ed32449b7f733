"""Tests for sub-centre ArcFace against a float64 NumPy reference."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import losses
from losses import _subcenter_arcface

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-10}


def _reference(x, centers, y, scale, margin):
  x = np.asarray(x, np.float64)
  centers = np.asarray(centers, np.float64)
  out = np.empty(len(y))
  for i, label in enumerate(y):
    logits = np.empty(len(centers))
    for j, class_centers in enumerate(centers):
      cosines = [
        x[i] @ c / (np.linalg.norm(x[i]) * np.linalg.norm(c))
        if np.linalg.norm(x[i]) * np.linalg.norm(c) > 0
        else 0.0
        for c in class_centers
      ]
      c = max(cosines)
      if j == label:
        theta = math.acos(min(max(c, -1.0), 1.0))
        # The InsightFace fallback beyond theta + m = pi.
        if theta + margin < math.pi:
          c = math.cos(theta + margin)
        else:
          c = c - margin * math.sin(margin)
      logits[j] = scale * c
    top = logits.max()
    out[i] = top + np.log(np.sum(np.exp(logits - top))) - logits[label]
  return out


def _case(seed, batch, num_classes, k, dim, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = (2.0 * rng.standard_normal((batch, dim))).astype(dtype)
  centers = rng.standard_normal((num_classes, k, dim)).astype(dtype)
  return x, centers, rng.integers(0, num_classes, batch)


_LOSS = jax.jit(losses.subcenter_arcface_loss)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_matches_reference(dtype):
  tolerance = F64 if dtype == np.float64 else F32
  for scale, margin in [(64.0, 0.5), (8.0, 1.4)]:
    # dim 2 with m = 1.4 puts a target past pi - m: the fallback branch.
    for dim in (2, 6):
      x, centers, y = _case(dim, 24, 5, 3, dim, dtype)
      got = _LOSS(x, centers, y, scale=scale, margin=margin)
      assert got.shape == (24,)
      assert got.dtype == jnp.promote_types(dtype, jnp.float32)
      want = _reference(x, centers, y, scale, margin)
      np.testing.assert_allclose(got, want, **tolerance)


def test_one_subcenter_is_arcface():
  x, centers, y = _case(1, 12, 4, 1, 3, np.float64)
  got = _LOSS(x, centers, y, scale=30.0, margin=0.5)
  want = jax.jit(losses.arcface_loss)(
    x, centers[:, 0], y, scale=30.0, margin=0.5
  )
  np.testing.assert_allclose(got, want, **F64)


def test_check_grads_and_only_the_closest_subcenter_learns():
  x, centers, y = _case(2, 5, 3, 3, 4, np.float64)
  fn = jax.jit(
    lambda x, c, s, m: losses.subcenter_arcface_loss(x, c, y, scale=s, margin=m)
  )
  test_util.check_grads(fn, (x, centers, 10.0, 0.4), order=1, modes=['rev'])
  grad = jax.grad(lambda c: jnp.sum(fn(x, c, 10.0, 0.4)))(centers)
  unit_x = x / np.linalg.norm(x, axis=1, keepdims=True)
  unit_c = centers / np.linalg.norm(centers, axis=2, keepdims=True)
  closest = np.einsum('bd,ckd->bck', unit_x, unit_c).argmax(axis=2)
  used = np.zeros(centers.shape[:2], bool)
  used[np.arange(3)[None, :].repeat(5, 0), closest] = True
  assert np.all(np.abs(grad[~used]) == 0.0)
  assert np.all(np.abs(grad[used]).sum(axis=1) > 0.0)


def test_zero_vectors_are_finite():
  x, centers, y = _case(3, 4, 3, 2, 3)
  x[0] = 0.0
  centers[y[1]] = 0.0
  value, grads = jax.jit(
    jax.value_and_grad(
      lambda x, c: jnp.sum(
        losses.subcenter_arcface_loss(x, c, y, scale=64.0, margin=0.5)
      ),
      argnums=(0, 1),
    )
  )(x, centers)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize(
  'change,error',
  [
    ({'subcenters': np.zeros((3, 4), np.float32)}, ValueError),
    ({'subcenters': np.zeros((3, 2, 5), np.float32)}, ValueError),
    ({'subcenters': np.zeros((3, 2, 4), np.int32)}, TypeError),
    ({'scale': 0.0}, ValueError),
    ({'margin': 2.0}, ValueError),
  ],
)
def test_bad_inputs(change, error):
  kwargs = {
    'embeddings': np.zeros((2, 4), np.float32),
    'subcenters': np.ones((3, 2, 4), np.float32),
    'labels': np.array([0, 1]),
    'scale': 64.0,
    'margin': 0.5,
    **change,
  }
  with pytest.raises(error):
    losses.subcenter_arcface_loss(**kwargs)


def test_docstring_example():
  with jax.enable_x64(False):
    failures, tried = doctest.testmod(_subcenter_arcface)
  assert tried > 0 and failures == 0
