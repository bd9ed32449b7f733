"""Tests for the Proxy-Anchor loss against a float64 NumPy reference."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import losses
from losses import _proxy_anchor

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-10}
# Central differences with h = 1e-6 in float64.
FD = {'rtol': 1e-6, 'atol': 1e-6}


# ---------------------------------------------------------------------------
# Reference, written from the paper's Eq. 4 with loops, in float64.
# ---------------------------------------------------------------------------


def _unit(x):
  x = np.asarray(x, np.float64)
  norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  return x / norms


def _log_one_plus_sum_exp(values):
  """``log(1 + sum(exp(values)))``, stably."""
  return np.logaddexp.reduce(np.array([0.0, *values], np.float64))


def _reference(x, proxies, labels, margin=0.1, alpha=32.0):
  unit_x, unit_p = _unit(x), _unit(proxies)
  positive_terms, negative_terms = [], []
  for p in range(len(proxies)):
    positive, negative = [], []
    for i in range(len(labels)):
      s = float(unit_x[i] @ unit_p[p])
      if labels[i] == p:
        positive.append(-alpha * (s - margin))
      else:
        negative.append(alpha * (s + margin))
    if positive:  # p is in P+.
      positive_terms.append(_log_one_plus_sum_exp(positive))
    negative_terms.append(_log_one_plus_sum_exp(negative))
  positive_loss = np.mean(positive_terms) if positive_terms else 0.0
  return positive_loss + np.mean(negative_terms)


def _finite_difference(fn, x, h=1e-6):
  """Central differences of the scalar `fn` at every entry of `x`."""
  x = np.asarray(x, np.float64)
  gradient = np.zeros_like(x)
  for index in np.ndindex(x.shape):
    up, down = x.copy(), x.copy()
    up[index] += h
    down[index] -= h
    gradient[index] = (fn(up) - fn(down)) / (2 * h)
  return gradient


def _case(seed, batch, dim, num_classes, dtype=np.float64):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, dim)).astype(dtype)
  proxies = rng.standard_normal((num_classes, dim)).astype(dtype)
  labels = rng.integers(0, num_classes, batch)
  return x, proxies, labels


_jit = jax.jit(
  lambda x, proxies, labels, margin, alpha: _proxy_anchor.proxy_anchor_loss(
    x, proxies, labels, margin=margin, alpha=alpha
  )
)


def _value_and_grads(x, proxies, labels, margin=0.1, alpha=32.0):
  return jax.jit(
    jax.value_and_grad(
      lambda x_, p_: _proxy_anchor.proxy_anchor_loss(
        x_, p_, labels, margin=margin, alpha=alpha
      ),
      argnums=(0, 1),
    )
  )(x, proxies)


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  'seed, batch, dim, num_classes, margin, alpha',
  [
    (0, 8, 3, 3, 0.1, 32.0),
    (1, 12, 5, 20, 0.1, 32.0),  # Most proxies have no positive.
    (2, 6, 2, 2, 0.0, 1.0),
    (3, 16, 8, 6, 0.3, 64.0),
    (4, 1, 4, 5, 0.1, 16.0),
    (5, 30, 16, 4, 0.05, 8.0),
  ],
)
def test_matches_reference(seed, batch, dim, num_classes, margin, alpha):
  x, proxies, labels = _case(seed, batch, dim, num_classes)
  expected = _reference(x, proxies, labels, margin, alpha)
  got = _jit(x, proxies, labels, margin, alpha)
  assert got.shape == () and got.dtype == jnp.float64
  np.testing.assert_allclose(got, expected, **F64)
  got32 = _jit(
    x.astype(np.float32), proxies.astype(np.float32), labels, margin, alpha
  )
  assert got32.dtype == jnp.float32
  # float32 cosines carry ~1e-7 error, which alpha amplifies.
  np.testing.assert_allclose(got32, expected, rtol=2e-5, atol=2e-7 * alpha)


def test_defaults_are_the_papers():
  x, proxies, labels = _case(6, 10, 4, 3)
  np.testing.assert_allclose(
    jax.jit(_proxy_anchor.proxy_anchor_loss)(x, proxies, labels),
    _reference(x, proxies, labels, margin=0.1, alpha=32.0),
    **F64,
  )


def test_is_exported():
  assert losses.proxy_anchor_loss is _proxy_anchor.proxy_anchor_loss
  assert 'proxy_anchor_loss' in losses.__all__


def test_docstring_example():
  failures, tried = doctest.testmod(_proxy_anchor, verbose=False)
  assert tried > 0 and failures == 0


# ---------------------------------------------------------------------------
# Gradients.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  'seed, num_classes, margin, alpha',
  [(0, 3, 0.1, 32.0), (1, 6, 0.2, 4.0)],
)
def test_check_grads(seed, num_classes, margin, alpha):
  x, proxies, labels = _case(seed, 5, 3, num_classes)

  @jax.jit
  def fn(x_, p_):
    return _proxy_anchor.proxy_anchor_loss(
      x_, p_, labels, margin=margin, alpha=alpha
    )

  test_util.check_grads(
    fn, (x, proxies), order=1, modes=['fwd', 'rev'], eps=1e-6
  )


def test_gradient_matches_reference_differences():
  x, proxies, labels = _case(7, 6, 3, 4)
  labels = np.array([0, 0, 1, 1, 1, 2])  # Class 3 has no positive.
  _, (got_x, got_p) = _value_and_grads(x, proxies, labels)
  np.testing.assert_allclose(
    got_x,
    _finite_difference(lambda x_: _reference(x_, proxies, labels), x),
    **FD,
  )
  np.testing.assert_allclose(
    got_p,
    _finite_difference(lambda p_: _reference(x, p_, labels), proxies),
    **FD,
  )


def test_hyperparameter_gradients():
  x, proxies, labels = _case(8, 6, 3, 3)
  test_util.check_grads(
    jax.jit(
      lambda margin, alpha: _proxy_anchor.proxy_anchor_loss(
        x, proxies, labels, margin=margin, alpha=alpha
      )
    ),
    (0.1, 32.0),
    order=1,
    modes=['fwd', 'rev'],
    eps=1e-6,
  )


# ---------------------------------------------------------------------------
# Edge cases.
# ---------------------------------------------------------------------------


def _assert_finite(value, grads):
  assert np.isfinite(value)
  for gradient in grads:
    assert np.all(np.isfinite(np.asarray(gradient, np.float32)))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_proxy_without_positives(dtype):
  x, proxies, _ = _case(9, 6, 4, 5, dtype)
  labels = np.array([0, 0, 1, 1, 3, 3])  # 2 and 4 have no positive.
  value, (grad_x, grad_p) = _value_and_grads(x, proxies, labels)
  _assert_finite(value, (grad_x, grad_p))
  np.testing.assert_allclose(
    value, _reference(x, proxies, labels), rtol=1e-5, atol=1e-5
  )
  # P+ holds 3 proxies and P all 5: the two without positives are still
  # pushed away from every example.
  assert np.all(np.any(np.asarray(grad_p)[[2, 4]] != 0, axis=1))


def test_all_examples_of_one_class():
  x, proxies, _ = _case(10, 7, 3, 4)
  labels = np.full(7, 2)
  value, grads = _value_and_grads(x, proxies, labels)
  _assert_finite(value, grads)
  np.testing.assert_allclose(value, _reference(x, proxies, labels), **F64)


def test_labels_out_of_range_are_negatives_of_every_proxy():
  x, proxies, _ = _case(11, 4, 3, 3)
  # No positive anywhere: P+ is empty and the positive term is 0.
  labels = np.array([3, 5, -1, 7])
  value, grads = _value_and_grads(x, proxies, labels)
  _assert_finite(value, grads)
  np.testing.assert_allclose(value, _reference(x, proxies, labels), **F64)


def test_empty_batch_is_zero():
  _, proxies, _ = _case(12, 1, 3, 4)
  value, (grad_x, grad_p) = _value_and_grads(
    np.zeros((0, 3)), proxies, np.zeros(0, np.int32)
  )
  assert value == 0.0 and grad_x.shape == (0, 3)
  np.testing.assert_array_equal(grad_p, np.zeros_like(proxies))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_identical_and_zero_vectors(dtype):
  labels = np.array([0, 0, 1, 2, 2])
  _, proxies, _ = _case(13, 1, 3, 4, dtype)
  for x in (np.ones((5, 3), dtype), np.zeros((5, 3), dtype)):
    value, grads = _value_and_grads(x, proxies, labels)
    _assert_finite(value, grads)
    np.testing.assert_allclose(value, _reference(x, proxies, labels), rtol=1e-5)
  # Zero proxies: every cosine is 0.
  x, _, _ = _case(14, 5, 3, 1, dtype)
  zero_proxies = np.zeros((4, 3), dtype)
  value, grads = _value_and_grads(x, zero_proxies, labels)
  _assert_finite(value, grads)
  np.testing.assert_allclose(
    value, _reference(x, zero_proxies, labels), rtol=1e-5
  )


@pytest.mark.parametrize('alpha', [256.0, 1e4])
def test_large_alpha_is_stable(alpha):
  # Positives opposite their proxy and negatives on theirs: exponents near
  # alpha * 1.1, far beyond float32's exp range.
  proxies = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
  x = np.array([[-1.0, 1e-3], [-1.0, -1e-3], [1.0, 0.0], [0.0, -1.0]])
  labels = np.array([0, 0, 1, 2])
  expected = _reference(x, proxies, labels, alpha=alpha)
  assert expected > 100
  value, grads = _value_and_grads(
    x.astype(np.float32), proxies.astype(np.float32), labels, alpha=alpha
  )
  _assert_finite(value, grads)
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_bfloat16_inputs():
  x, proxies, labels = _case(15, 10, 8, 4, np.float32)
  x16 = jnp.asarray(x, jnp.bfloat16)
  p16 = jnp.asarray(proxies, jnp.bfloat16)
  got = _jit(x16, p16, labels, 0.1, 32.0)
  assert got.dtype == jnp.float32
  # Computed in float32 from the rounded inputs...
  np.testing.assert_allclose(
    got,
    _jit(
      np.asarray(x16, np.float32),
      np.asarray(p16, np.float32),
      labels,
      0.1,
      32.0,
    ),
    **F32,
  )
  # ...which differ from the float32 inputs by bfloat16's 2^-8 relative
  # rounding: cosines move by ~1e-2, exponents by up to ~alpha * 1e-2.
  np.testing.assert_allclose(
    got, _reference(x, proxies, labels), rtol=5e-2, atol=5e-2
  )
  value, grads = _value_and_grads(x16, p16, labels)
  _assert_finite(value, grads)
  assert grads[0].dtype == jnp.bfloat16 and grads[1].dtype == jnp.bfloat16


# ---------------------------------------------------------------------------
# Invariances.
# ---------------------------------------------------------------------------


def test_scale_invariance():
  x, proxies, labels = _case(16, 9, 4, 3)
  loss = _jit(x, proxies, labels, 0.1, 32.0)
  rng = np.random.default_rng(1)
  np.testing.assert_allclose(
    _jit(
      x * rng.uniform(0.1, 10.0, (9, 1)),
      proxies * rng.uniform(0.1, 10.0, (3, 1)),
      labels,
      0.1,
      32.0,
    ),
    loss,
    **F64,
  )


def test_permutation_invariance():
  x, proxies, labels = _case(17, 12, 4, 5)
  loss, (grad_x, grad_p) = _value_and_grads(x, proxies, labels)
  # Of the batch: the gradients follow their rows.
  order = np.random.default_rng(0).permutation(12)
  permuted, (permuted_x, permuted_p) = _value_and_grads(
    x[order], proxies, labels[order]
  )
  np.testing.assert_allclose(permuted, loss, **F64)
  np.testing.assert_allclose(permuted_x, grad_x[order], **F64)
  np.testing.assert_allclose(permuted_p, grad_p, **F64)
  # Of the classes, with the labels renamed to match.
  classes = np.random.default_rng(1).permutation(5)
  renamed = np.argsort(classes)[labels]
  np.testing.assert_allclose(
    _jit(x, proxies[classes], renamed, 0.1, 32.0), loss, **F64
  )


def test_batch_is_not_decomposable():
  # The loss of a batch is not the mean of the losses of its halves: under
  # data parallelism the global batch must be passed whole.
  x, proxies, labels = _case(18, 8, 3, 3)
  whole = _jit(x, proxies, labels, 0.1, 32.0)
  halves = [
    _jit(x[rows], proxies, labels[rows], 0.1, 32.0)
    for rows in (slice(0, 4), slice(4, 8))
  ]
  assert abs(float(whole) - float(np.mean(halves))) > 1e-3


def test_vmap_matches_loop():
  xs = np.stack([_case(seed, 6, 3, 3)[0] for seed in range(3)])
  _, proxies, _ = _case(19, 1, 3, 3)
  labels = np.array([0, 0, 1, 1, 2, 2])
  batched = jax.jit(
    jax.vmap(lambda x: _proxy_anchor.proxy_anchor_loss(x, proxies, labels))
  )(xs)
  for x, got in zip(xs, batched, strict=True):
    np.testing.assert_allclose(got, _reference(x, proxies, labels), **F64)


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def _call(**overrides):
  kwargs = {
    'embeddings': np.zeros((4, 3), np.float32),
    'proxies': np.zeros((5, 3), np.float32),
    'labels': np.zeros(4, np.int32),
    'margin': 0.1,
    'alpha': 32.0,
  }
  kwargs.update(overrides)
  return _proxy_anchor.proxy_anchor_loss(**kwargs)


@pytest.mark.parametrize(
  'overrides, error, message',
  [
    ({'alpha': 0.0}, ValueError, r'`alpha` must be > 0, received 0.0'),
    ({'alpha': -1.0}, ValueError, r'`alpha` must be > 0, received -1.0'),
    ({'alpha': np.ones(2)}, ValueError, r'`alpha`.*scalar.*\(2,\)'),
    ({'margin': -0.1}, ValueError, r'`margin` must be >= 0, received -0.1'),
    ({'margin': np.ones(3)}, ValueError, r'`margin`.*scalar.*\(3,\)'),
    (
      {'embeddings': np.zeros((4,), np.float32)},
      ValueError,
      r'`embeddings` must have rank 2.*received shape \(4,\)',
    ),
    (
      {'embeddings': np.zeros((4, 3), np.int32)},
      TypeError,
      r'`embeddings` must have a floating dtype, received dtype int32',
    ),
    (
      {'proxies': np.zeros((5, 3, 1), np.float32)},
      ValueError,
      r'`proxies` must have rank 2 \(\[num_classes, dim\]\).*\(5, 3, 1\)',
    ),
    (
      {'proxies': np.zeros((5, 4), np.float32)},
      ValueError,
      r'`proxies` must have size 3 along axis 1.*received 4',
    ),
    (
      {'proxies': np.zeros((5, 3), np.int32)},
      TypeError,
      r'`proxies` must have a floating dtype, received dtype int32',
    ),
    (
      {'labels': np.zeros(3, np.int32)},
      ValueError,
      r'`labels` must have size 4 along axis 0.*received 3',
    ),
    (
      {'labels': np.zeros((4, 1), np.int32)},
      ValueError,
      r'`labels` must have rank 1.*\(4, 1\)',
    ),
    (
      {'labels': np.zeros(4, np.float32)},
      TypeError,
      r'`labels` must hold integer class ids, received dtype float32',
    ),
  ],
)
def test_bad_input(overrides, error, message):
  with pytest.raises(error, match=message):
    _call(**overrides)


def test_traced_hyperparameters_are_let_through():
  x, proxies, labels = _case(20, 4, 3, 2)
  got = jax.jit(
    lambda alpha: _proxy_anchor.proxy_anchor_loss(
      x, proxies, labels, alpha=alpha
    )
  )(16.0)
  np.testing.assert_allclose(got, _reference(x, proxies, labels, alpha=16.0))
