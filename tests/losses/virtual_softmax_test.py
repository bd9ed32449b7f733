"""Tests for Virtual Softmax against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import test_util

from losses import _virtual_softmax

F32 = {'rtol': 1e-5, 'atol': 1e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-12}

_loss = jax.jit(_virtual_softmax.virtual_softmax_cross_entropy)


def _reference(embeddings, class_weights, labels):
  """Cross-entropy over the C class logits and one virtual logit, float64."""
  x = np.asarray(embeddings, np.float64)
  w = np.asarray(class_weights, np.float64)
  out = np.empty(len(labels))
  for i, y in enumerate(labels):
    logits = w @ x[i]
    virtual = np.linalg.norm(w[y]) * np.linalg.norm(x[i])
    all_logits = np.append(logits, virtual)
    top = all_logits.max()
    log_normalizer = top + np.log(np.sum(np.exp(all_logits - top)))
    out[i] = log_normalizer - logits[y]
  return out


def _case(seed, batch, num_classes, dim, dtype=np.float32, norm=1.0):
  rng = np.random.default_rng(seed)
  x = (norm * rng.standard_normal((batch, dim))).astype(dtype)
  w = rng.standard_normal((num_classes, dim)).astype(dtype)
  y = rng.integers(0, num_classes, batch)
  return x, w, y


def _value_and_grads(x, w, y):
  return jax.jit(
    jax.value_and_grad(
      lambda x, w: jnp.sum(
        _virtual_softmax.virtual_softmax_cross_entropy(x, w, y)
      ),
      argnums=(0, 1),
    )
  )(x, w)


def _assert_finite(value, grads):
  assert np.all(np.isfinite(value))
  for g in grads:
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize(
  'batch,num_classes,dim', [(1, 2, 3), (8, 5, 4), (32, 17, 16)]
)
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_reference_float32(batch, num_classes, dim, seed):
  x, w, y = _case(seed, batch, num_classes, dim)
  got = _loss(x, w, y)
  assert got.shape == (batch,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _reference(x, w, y), **F32)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_reference_float64(seed):
  x, w, y = _case(seed, 9, 6, 5, np.float64)
  got = _loss(x, w, y)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, _reference(x, w, y), **F64)


def test_large_norms_are_neither_clipped_nor_overflowing():
  # Virtual logits of several hundred: third-party ports clip them at 15.
  x, w, y = _case(3, 6, 4, 8, np.float32, norm=30.0)
  got = _loss(x, w, y)
  virtual = np.linalg.norm(w[y], axis=1) * np.linalg.norm(x, axis=1)
  assert virtual.min() > 15.0
  np.testing.assert_allclose(got, _reference(x, w, y), rtol=1e-5, atol=1e-3)
  _assert_finite(*_value_and_grads(x, w, y))


@pytest.mark.parametrize('modes', [['rev'], ['fwd']])
def test_gradients(modes):
  x, w, y = _case(4, 5, 4, 3, np.float64)
  test_util.check_grads(
    jax.jit(
      lambda x, w: _virtual_softmax.virtual_softmax_cross_entropy(x, w, y)
    ),
    (x, w),
    order=1,
    modes=modes,
  )


def test_virtual_logit_gradient_is_not_detached():
  # Closed form of d loss / d x_i: softmax-weighted logit gradients, the
  # virtual one being ||W_y|| x_i / ||x_i||, minus W_y.
  x, w, y = _case(5, 6, 5, 4, np.float64)
  _, (grad_x, grad_w) = _value_and_grads(x, w, y)
  want_x = np.zeros_like(x)
  want_w = np.zeros_like(w)
  for i, label in enumerate(y):
    x_norm = np.linalg.norm(x[i])
    w_norm = np.linalg.norm(w[label])
    logits = np.append(w @ x[i], w_norm * x_norm)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    want_x[i] = p[:-1] @ w + p[-1] * w_norm * x[i] / x_norm - w[label]
    want_w += np.outer(p[:-1], x[i])
    want_w[label] += p[-1] * x_norm * w[label] / w_norm - x[i]
  np.testing.assert_allclose(grad_x, want_x, **F64)
  np.testing.assert_allclose(grad_w, want_w, **F64)


def test_is_larger_than_plain_softmax_cross_entropy():
  x, w, y = _case(6, 16, 7, 6)
  plain = optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y)
  assert np.all(np.asarray(_loss(x, w, y)) > np.asarray(plain))


def test_zero_embeddings_give_log_of_classes_plus_one():
  _, w, y = _case(7, 4, 5, 3)
  x = np.zeros((4, 3), np.float32)
  value, grads = _value_and_grads(x, w, y)
  _assert_finite(value, grads)
  np.testing.assert_allclose(_loss(x, w, y), np.full(4, np.log(6.0)), **F32)


def test_zero_class_weight_is_finite():
  x, w, y = _case(8, 6, 4, 3)
  w[y[0]] = 0.0
  _assert_finite(*_value_and_grads(x, w, y))
  np.testing.assert_allclose(_loss(x, w, y), _reference(x, w, y), **F32)


@pytest.mark.parametrize('where', ['identical', 'one_class', 'singletons'])
def test_degenerate_batches_are_finite(where):
  x, w, y = _case(9, 6, 6, 4)
  if where == 'identical':
    x[:] = x[0]
  elif where == 'one_class':
    y[:] = 2
  else:
    y = np.arange(6)
  _assert_finite(*_value_and_grads(x, w, y))
  np.testing.assert_allclose(_loss(x, w, y), _reference(x, w, y), **F32)


def test_embedding_equal_to_its_class_weight():
  # The target logit equals the virtual one: loss >= log 2, finite grads.
  _, w, _ = _case(10, 3, 4, 5)
  y = np.array([0, 1, 2])
  x = 8.0 * w[y]
  _assert_finite(*_value_and_grads(x, w, y))
  np.testing.assert_allclose(_loss(x, w, y), _reference(x, w, y), **F32)


def test_bfloat16_inputs_compute_in_float32():
  x, w, y = _case(11, 8, 5, 6)
  x_low = jnp.asarray(x, jnp.bfloat16)
  w_low = jnp.asarray(w, jnp.bfloat16)
  got = _loss(x_low, w_low, y)
  assert got.dtype == jnp.float32
  rounded = (np.asarray(x_low, np.float32), np.asarray(w_low, np.float32))
  np.testing.assert_allclose(got, _reference(*rounded, y), **F32)
  # bfloat16 rounding (2^-8 relative) of logits of magnitude <= ~10.
  np.testing.assert_allclose(got, _loss(x, w, y), rtol=0, atol=1e-1)


def test_batch_permutation_permutes_the_output():
  x, w, y = _case(12, 10, 4, 3)
  perm = np.random.default_rng(2).permutation(10)
  np.testing.assert_allclose(
    _loss(x[perm], w, y[perm]), np.asarray(_loss(x, w, y))[perm], rtol=1e-6
  )


def test_vmap_over_stacked_batches_equals_a_loop():
  cases = [_case(s, 4, 3, 5) for s in range(3)]
  x = np.stack([c[0] for c in cases])
  y = np.stack([c[2] for c in cases])
  w = cases[0][1]
  got = jax.jit(
    jax.vmap(_virtual_softmax.virtual_softmax_cross_entropy, (0, None, 0))
  )(x, w, y)
  for b in range(3):
    np.testing.assert_allclose(got[b], _reference(x[b], w, y[b]), **F32)


def test_bad_inputs():
  x = np.zeros((4, 3), np.float32)
  w = np.zeros((5, 3), np.float32)
  y = np.zeros(4, np.int32)
  fn = _virtual_softmax.virtual_softmax_cross_entropy
  with pytest.raises(
    ValueError, match=r'`embeddings` must have rank 2.*\(3,\)'
  ):
    fn(np.zeros(3, np.float32), w, y)
  with pytest.raises(TypeError, match=r'`embeddings`.*floating.*int32'):
    fn(np.zeros((4, 3), np.int32), w, y)
  with pytest.raises(ValueError, match=r'`class_weights` must have rank 2'):
    fn(x, np.zeros((5, 3, 1), np.float32), y)
  with pytest.raises(ValueError, match=r'`class_weights`.*size 3.*received 4'):
    fn(x, np.zeros((5, 4), np.float32), y)
  with pytest.raises(TypeError, match=r'`class_weights`.*floating.*int64'):
    fn(x, np.zeros((5, 3), np.int64), y)
  with pytest.raises(ValueError, match=r'`labels`.*size 4.*received 2'):
    fn(x, w, np.zeros(2, np.int32))
  with pytest.raises(TypeError, match=r'`labels`.*integer.*float32'):
    fn(x, w, np.zeros(4, np.float32))
