"""Tests for NormFace, CosFace and ArcFace against float64 NumPy references."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from losses import _margin_softmax

F32 = {'rtol': 1e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-10}


# ---------------------------------------------------------------------------
# References, written from the formulas in float64.
# ---------------------------------------------------------------------------


def _cosines_ref(x, w):
  x = np.asarray(x, np.float64)
  w = np.asarray(w, np.float64)
  out = np.zeros((len(x), len(w)))
  for i in range(len(x)):
    for j in range(len(w)):
      norms = np.linalg.norm(x[i]) * np.linalg.norm(w[j])
      out[i, j] = x[i] @ w[j] / norms if norms > 0 else 0.0
  return out


def _ce_ref(logits, labels):
  out = np.empty(len(labels))
  for i, y in enumerate(labels):
    top = logits[i].max()
    out[i] = top + np.log(np.sum(np.exp(logits[i] - top))) - logits[i, y]
  return out


def _normface_ref(x, w, y, scale):
  return _ce_ref(scale * _cosines_ref(x, w), y)


def _cosface_ref(x, w, y, scale, margin):
  cos = _cosines_ref(x, w)
  cos[np.arange(len(y)), y] -= margin
  return _ce_ref(scale * cos, y)


def _arcface_target_ref(c, margin, easy_margin):
  theta = math.acos(min(max(c, -1.0), 1.0))
  if easy_margin:
    return math.cos(theta + margin) if c > 0 else c
  # InsightFace fallback beyond theta + m = pi.
  if theta + margin < math.pi:
    return math.cos(theta + margin)
  return c - margin * math.sin(margin)


def _arcface_ref(x, w, y, scale, margin, easy_margin=False):
  cos = _cosines_ref(x, w)
  for i, label in enumerate(y):
    cos[i, label] = _arcface_target_ref(cos[i, label], margin, easy_margin)
  return _ce_ref(scale * cos, y)


# ---------------------------------------------------------------------------
# Cases and wrappers.
# ---------------------------------------------------------------------------


def _case(seed, batch, num_classes, dim, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = (3.0 * rng.standard_normal((batch, dim))).astype(dtype)
  w = rng.standard_normal((num_classes, dim)).astype(dtype)
  y = rng.integers(0, num_classes, batch)
  return x, w, y


# name -> (loss, reference, hyperparameters)
_SPECS = {
  'normface': (
    _margin_softmax.normalized_softmax_cross_entropy,
    _normface_ref,
    {'scale': 16.0},
  ),
  'cosface': (
    _margin_softmax.cosface_loss,
    _cosface_ref,
    {'scale': 30.0, 'margin': 0.35},
  ),
  'arcface': (
    _margin_softmax.arcface_loss,
    _arcface_ref,
    {'scale': 64.0, 'margin': 0.5},
  ),
  'arcface_large_margin': (
    _margin_softmax.arcface_loss,
    _arcface_ref,
    {'scale': 8.0, 'margin': 1.4},
  ),
  'arcface_easy': (
    _margin_softmax.arcface_loss,
    _arcface_ref,
    {'scale': 10.0, 'margin': 0.5, 'easy_margin': True},
  ),
}
BY_NAME = {
  name: (functools.partial(fn, **kw), functools.partial(ref, **kw))
  for name, (fn, ref, kw) in _SPECS.items()
}
LOSS_IDS = list(BY_NAME)
LOSS_FNS = [fn for fn, _ in BY_NAME.values()]


def _value_and_grads(fn, x, w, y):
  return jax.jit(
    jax.value_and_grad(lambda x, w: jnp.sum(fn(x, w, y)), argnums=(0, 1))
  )(x, w)


def _assert_finite(value, grads):
  assert np.all(np.isfinite(value))
  for g in grads:
    assert np.all(np.isfinite(g))


# ---------------------------------------------------------------------------
# Against the references.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('name', LOSS_IDS)
@pytest.mark.parametrize(
  'batch,num_classes,dim', [(1, 2, 3), (9, 5, 4), (24, 13, 8)]
)
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_reference_float32(name, batch, num_classes, dim, seed):
  fn, ref = BY_NAME[name]
  x, w, y = _case(seed, batch, num_classes, dim)
  got = jax.jit(fn)(x, w, y)
  assert got.shape == (batch,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref(x, w, y), **F32)


@pytest.mark.parametrize('name', LOSS_IDS)
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_reference_float64(name, seed):
  fn, ref = BY_NAME[name]
  x, w, y = _case(seed, 16, 7, 3, np.float64)
  got = jax.jit(fn)(x, w, y)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, ref(x, w, y), **F64)


def test_arcface_reference_cases_cover_both_branches():
  # The large-margin case must exercise the fallback and the main branch.
  x, w, y = _case(0, 24, 13, 8, np.float64)
  target = _cosines_ref(x, w)[np.arange(24), y]
  beyond = target <= math.cos(math.pi - 1.4)
  assert beyond.any() and not beyond.all()
  assert (target > 0).any() and (target <= 0).any()


@pytest.mark.parametrize('name', LOSS_IDS)
@pytest.mark.parametrize('modes', [['rev'], ['fwd']])
def test_gradients(name, modes):
  fn, _ = BY_NAME[name]
  x, w, y = _case(2, 5, 4, 3, np.float64)
  test_util.check_grads(
    jax.jit(lambda x, w: fn(x, w, y)), (x, w), order=1, modes=modes
  )


# ---------------------------------------------------------------------------
# Edge cases.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('name', LOSS_IDS)
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_cosines_at_plus_minus_one_with_scale_64(name, dtype):
  # Embeddings exactly along (rows 0-3) or against (rows 4-7) their class
  # weight: target cosines of +-1 up to rounding, where d sin / d cos is
  # infinite.
  _, w, _ = _case(3, 4, 5, 6, dtype)
  y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
  x = (2.5 * np.array([1.0] * 4 + [-1.0] * 4)[:, None] * w[y]).astype(dtype)
  base_fn, base_ref, kwargs = _SPECS[name]
  kwargs = {**kwargs, 'scale': 64.0}
  fn = functools.partial(base_fn, **kwargs)
  ref = functools.partial(base_ref, **kwargs)
  value, grads = _value_and_grads(fn, x, w, y)
  _assert_finite(value, grads)
  target = _cosines_ref(x, w)[np.arange(8), y]
  assert np.all(np.abs(np.abs(target) - 1.0) < 1e-7)
  if dtype == np.float64:
    tolerance = F64
  elif name.startswith('arcface'):
    # A float32 cosine within ~1e-7 of +-1 makes sqrt(1 - cos^2) ~ 5e-4
    # instead of ~0 (the square root's conditioning, in every
    # sqrt(1 - cos^2) ArcFace), so the target logit is off by up to
    # scale * sin(margin) * 5e-4 ~ 0.03 at scale 64.
    tolerance = {'rtol': 0, 'atol': 5e-2}
  else:
    tolerance = {'rtol': 1e-5, 'atol': 1e-4}
  np.testing.assert_allclose(jax.jit(fn)(x, w, y), ref(x, w, y), **tolerance)


@pytest.mark.parametrize('fn', LOSS_FNS, ids=LOSS_IDS)
def test_zero_embeddings_are_finite(fn):
  _, w, y = _case(4, 3, 5, 4)
  x = np.zeros((3, 4), np.float32)
  _assert_finite(*_value_and_grads(fn, x, w, y))


def test_zero_embeddings_give_uniform_normface():
  _, w, y = _case(4, 3, 5, 4)
  x = np.zeros((3, 4), np.float32)
  got = _margin_softmax.normalized_softmax_cross_entropy(x, w, y, scale=64.0)
  np.testing.assert_allclose(got, np.full(3, np.log(5.0)), **F32)


@pytest.mark.parametrize('name', LOSS_IDS)
def test_zero_class_weight_is_finite(name):
  fn, ref = BY_NAME[name]
  x, w, y = _case(5, 6, 4, 3)
  w[y[0]] = 0.0
  w[(y[1] + 1) % 4] = 0.0
  _assert_finite(*_value_and_grads(fn, x, w, y))
  np.testing.assert_allclose(jax.jit(fn)(x, w, y), ref(x, w, y), **F32)


@pytest.mark.parametrize('name', LOSS_IDS)
@pytest.mark.parametrize('where', ['identical', 'one_class', 'singletons'])
def test_degenerate_batches_are_finite(name, where):
  fn, ref = BY_NAME[name]
  x, w, y = _case(6, 6, 6, 4)
  if where == 'identical':
    x[:] = x[0]
  elif where == 'one_class':
    y[:] = 3
  else:
    y = np.arange(6)
  _assert_finite(*_value_and_grads(fn, x, w, y))
  np.testing.assert_allclose(jax.jit(fn)(x, w, y), ref(x, w, y), **F32)


@pytest.mark.parametrize('name', LOSS_IDS)
def test_a_single_class_is_finite(name):
  fn, ref = BY_NAME[name]
  x, w, _ = _case(7, 4, 1, 3)
  y = np.zeros(4, np.int32)
  _assert_finite(*_value_and_grads(fn, x, w, y))
  np.testing.assert_allclose(jax.jit(fn)(x, w, y), ref(x, w, y), **F32)


@pytest.mark.parametrize('name', LOSS_IDS)
def test_bfloat16_inputs_compute_in_float32(name):
  fn, ref = BY_NAME[name]
  x, w, y = _case(8, 8, 5, 6)
  x_low = jnp.asarray(x, jnp.bfloat16)
  w_low = jnp.asarray(w, jnp.bfloat16)
  got = jax.jit(fn)(x_low, w_low, y)
  assert got.dtype == jnp.float32
  rounded = (np.asarray(x_low, np.float32), np.asarray(w_low, np.float32))
  # float32 compute on the rounded inputs (cosines carry ~1e-7 error, times
  # the scale of up to 64).
  np.testing.assert_allclose(got, ref(*rounded, y), rtol=1e-5, atol=1e-4)
  # bfloat16 rounding moves cosines by ~2^-8; times the scale (<= 64).
  np.testing.assert_allclose(got, jax.jit(fn)(x, w, y), rtol=0, atol=1.0)


# ---------------------------------------------------------------------------
# Invariances and relations.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('fn', LOSS_FNS, ids=LOSS_IDS)
def test_batch_permutation_permutes_the_output(fn):
  x, w, y = _case(9, 10, 4, 3)
  perm = np.random.default_rng(3).permutation(10)
  fn = jax.jit(fn)
  np.testing.assert_allclose(
    fn(x[perm], w, y[perm]), np.asarray(fn(x, w, y))[perm], rtol=1e-6
  )


@pytest.mark.parametrize('fn', LOSS_FNS, ids=LOSS_IDS)
def test_embedding_and_weight_scale_are_ignored(fn):
  x, w, y = _case(10, 12, 6, 5, np.float64)
  fn = jax.jit(fn)
  base = fn(x, w, y)
  np.testing.assert_allclose(fn(3.7 * x, w, y), base, **F64)
  np.testing.assert_allclose(fn(x, 0.3 * w, y), base, **F64)


@pytest.mark.parametrize('fn', LOSS_FNS, ids=LOSS_IDS)
def test_vmap_over_stacked_batches_equals_a_loop(fn):
  cases = [_case(s, 4, 3, 5) for s in range(3)]
  x = np.stack([c[0] for c in cases])
  y = np.stack([c[2] for c in cases])
  w = cases[0][1]
  got = jax.jit(jax.vmap(fn, (0, None, 0)))(x, w, y)
  for b in range(3):
    np.testing.assert_allclose(got[b], jax.jit(fn)(x[b], w, y[b]), **F32)


@pytest.mark.parametrize(
  'margin_loss',
  [
    functools.partial(_margin_softmax.cosface_loss, margin=0.0),
    functools.partial(_margin_softmax.arcface_loss, margin=0.0),
    functools.partial(
      _margin_softmax.arcface_loss, margin=0.0, easy_margin=True
    ),
  ],
  ids=['cosface', 'arcface', 'arcface_easy'],
)
def test_zero_margin_equals_normface(margin_loss):
  x, w, y = _case(11, 16, 7, 4, np.float64)
  want = jax.jit(
    functools.partial(
      _margin_softmax.normalized_softmax_cross_entropy, scale=20.0
    )
  )(x, w, y)
  got = jax.jit(functools.partial(margin_loss, scale=20.0))(x, w, y)
  np.testing.assert_allclose(got, want, **F64)


def test_margins_increase_the_loss():
  x, w, y = _case(12, 16, 7, 4)
  normface = BY_NAME['normface'][0](x, w, y)  # scale 16
  cosface = jax.jit(
    functools.partial(_margin_softmax.cosface_loss, scale=16.0, margin=0.3)
  )(x, w, y)
  arcface = jax.jit(
    functools.partial(_margin_softmax.arcface_loss, scale=16.0, margin=0.3)
  )(x, w, y)
  assert np.all(np.asarray(cosface) > np.asarray(normface))
  assert np.all(np.asarray(arcface) > np.asarray(normface))


def test_traced_scale_and_margin_are_accepted():
  x, w, y = _case(13, 5, 4, 3)
  got = jax.jit(
    lambda s, m: _margin_softmax.arcface_loss(x, w, y, scale=s, margin=m)
  )(32.0, 0.4)
  np.testing.assert_allclose(got, _arcface_ref(x, w, y, 32.0, 0.4), **F32)


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('fn', LOSS_FNS, ids=LOSS_IDS)
def test_bad_shapes_and_dtypes(fn):
  x = np.zeros((4, 3), np.float32)
  w = np.zeros((5, 3), np.float32)
  y = np.zeros(4, np.int32)
  with pytest.raises(
    ValueError, match=r'`embeddings` must have rank 2.*\(3,\)'
  ):
    fn(np.zeros(3, np.float32), w, y)
  with pytest.raises(TypeError, match=r'`embeddings`.*floating.*int32'):
    fn(np.zeros((4, 3), np.int32), w, y)
  with pytest.raises(ValueError, match=r'`class_weights`.*size 3.*received 2'):
    fn(x, np.zeros((5, 2), np.float32), y)
  with pytest.raises(ValueError, match=r'`class_weights` must have rank 2'):
    fn(x, np.zeros(5, np.float32), y)
  with pytest.raises(ValueError, match=r'`labels`.*size 4.*received 3'):
    fn(x, w, np.zeros(3, np.int32))
  with pytest.raises(TypeError, match=r'`labels`.*integer.*float'):
    fn(x, w, np.zeros(4, np.float32))


@pytest.mark.parametrize(
  'fn',
  [
    _margin_softmax.normalized_softmax_cross_entropy,
    functools.partial(_margin_softmax.cosface_loss, margin=0.2),
    functools.partial(_margin_softmax.arcface_loss, margin=0.2),
  ],
  ids=['normface', 'cosface', 'arcface'],
)
@pytest.mark.parametrize('scale', [0.0, -2.0])
def test_non_positive_scale_is_rejected(fn, scale):
  x, w, y = _case(0, 2, 3, 4)
  with pytest.raises(ValueError, match=rf'`scale` must be > 0.*{scale}'):
    fn(x, w, y, scale=scale)


@pytest.mark.parametrize(
  'fn,margin',
  [
    (_margin_softmax.cosface_loss, -0.1),
    (_margin_softmax.cosface_loss, 2.0),
    (_margin_softmax.arcface_loss, -0.1),
    (_margin_softmax.arcface_loss, math.pi / 2),
    (_margin_softmax.arcface_loss, 2.0),
  ],
)
def test_margin_out_of_range_is_rejected(fn, margin):
  x, w, y = _case(0, 2, 3, 4)
  with pytest.raises(ValueError, match=rf'`margin` must lie in.*{margin}'):
    fn(x, w, y, scale=30.0, margin=margin)
