"""Tests for the G-softmax losses against float64 NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import test_util
from scipy import special

from losses import _g_softmax

F32 = {'rtol': 1e-5, 'atol': 1e-6}
F64 = {'rtol': 1e-10, 'atol': 1e-12}


# ---------------------------------------------------------------------------
# References, written from the formulas in float64.
# ---------------------------------------------------------------------------


def _phi(z, mu, sigma):
  """Gaussian CDF of z under N(mu, sigma^2)."""
  return 0.5 * (1.0 + special.erf((z - mu) / (sigma * math.sqrt(2.0))))


def _shifted_ref(z, mu, sigma, scale):
  z = np.asarray(z, np.float64)
  return z + scale * _phi(z, np.asarray(mu, np.float64), sigma)


def _cross_entropy_ref(logits, labels, mu, sigma, scale):
  shifted = _shifted_ref(logits, mu, sigma, scale)
  out = np.empty(len(labels))
  for i, y in enumerate(labels):
    row = shifted[i]
    out[i] = -(row[y] - np.log(np.sum(np.exp(row - row.max()))) - row.max())
  return out


def _multilabel_ref(logits, labels, mu, sigma, scale):
  shifted = _shifted_ref(logits, mu, sigma, scale)
  batch, num_labels, _ = shifted.shape
  out = np.zeros(batch)
  for i in range(batch):
    for label in range(num_labels):
      present, absent = shifted[i, label]
      log_norm = np.logaddexp(present, absent)
      t = float(labels[i, label])
      out[i] -= t * (present - log_norm) + (1 - t) * (absent - log_norm)
  return out


def _probabilities_ref(logits, mu, sigma, scale):
  shifted = _shifted_ref(logits, mu, sigma, scale)
  return 1.0 / (1.0 + np.exp(shifted[..., 1] - shifted[..., 0]))


def _single_label_case(seed, batch, num_classes, dtype=np.float32):
  rng = np.random.default_rng(seed)
  logits = (2.0 * rng.standard_normal((batch, num_classes))).astype(dtype)
  labels = rng.integers(0, num_classes, batch)
  mu = rng.normal(0.0, 0.5, num_classes).astype(dtype)
  sigma = rng.uniform(0.5, 2.0, num_classes).astype(dtype)
  return logits, labels, mu, sigma


def _multilabel_case(seed, batch, num_labels, dtype=np.float32):
  rng = np.random.default_rng(seed)
  logits = (2.0 * rng.standard_normal((batch, num_labels, 2))).astype(dtype)
  labels = rng.integers(0, 2, (batch, num_labels))
  mu = rng.normal(0.0, 0.5, (num_labels, 2)).astype(dtype)
  sigma = rng.uniform(0.5, 2.0, (num_labels, 2)).astype(dtype)
  return logits, labels, mu, sigma


def _jit_ce(scale):
  # mu and sigma are traced arguments here, as when they are learned.
  return jax.jit(
    lambda z, y, mu, sigma: _g_softmax.g_softmax_cross_entropy(
      z, y, mu=mu, sigma=sigma, scale=scale
    )
  )


def _jit_multilabel(scale):
  return jax.jit(
    lambda z, y, mu, sigma: _g_softmax.g_softmax_multilabel_cross_entropy(
      z, y, mu=mu, sigma=sigma, scale=scale
    )
  )


# ---------------------------------------------------------------------------
# Single label.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('batch,num_classes', [(1, 2), (7, 3), (16, 11)])
@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('scale', [0.0, 0.1, 1.0, 5.0])
def test_cross_entropy_matches_reference_float32(
  batch, num_classes, seed, scale
):
  logits, labels, mu, sigma = _single_label_case(seed, batch, num_classes)
  got = _jit_ce(scale)(logits, labels, mu, sigma)
  assert got.shape == (batch,) and got.dtype == jnp.float32
  want = _cross_entropy_ref(logits, labels, mu, sigma, scale)
  np.testing.assert_allclose(got, want, **F32)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_cross_entropy_matches_reference_float64(seed):
  logits, labels, mu, sigma = _single_label_case(seed, 9, 5, np.float64)
  got = _jit_ce(0.7)(logits, labels, mu, sigma)
  assert got.dtype == jnp.float64
  want = _cross_entropy_ref(logits, labels, mu, sigma, 0.7)
  np.testing.assert_allclose(got, want, **F64)


def test_scalar_mu_sigma_broadcast_to_every_class():
  logits, labels, _, _ = _single_label_case(3, 6, 4)
  got = jax.jit(
    lambda z, y: _g_softmax.g_softmax_cross_entropy(
      z, y, mu=0.0, sigma=1.0, scale=0.1
    )
  )(logits, labels)
  want = _cross_entropy_ref(logits, labels, 0.0, 1.0, 0.1)
  np.testing.assert_allclose(got, want, **F32)


def test_logits_match_reference_and_keep_leading_dims():
  rng = np.random.default_rng(4)
  logits = rng.standard_normal((2, 3, 5))
  mu = rng.normal(size=5)
  sigma = rng.uniform(0.5, 2.0, 5)
  got = jax.jit(
    lambda z: _g_softmax.g_softmax_logits(z, mu=mu, sigma=sigma, scale=2.0)
  )(logits)
  assert got.shape == (2, 3, 5)
  np.testing.assert_allclose(got, _shifted_ref(logits, mu, sigma, 2.0), **F64)


def test_zero_scale_equals_optax_softmax_cross_entropy():
  logits, labels, mu, sigma = _single_label_case(5, 12, 7)
  got = _jit_ce(0.0)(logits, labels, mu, sigma)
  want = optax.softmax_cross_entropy_with_integer_labels(
    jnp.asarray(logits), jnp.asarray(labels)
  )
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('modes', [['rev'], ['fwd']])
def test_gradients_wrt_logits_mu_and_sigma(modes):
  logits, labels, mu, sigma = _single_label_case(6, 5, 4, np.float64)

  def loss(z, mu, sigma):
    return _g_softmax.g_softmax_cross_entropy(
      z, labels, mu=mu, sigma=sigma, scale=0.8
    )

  test_util.check_grads(
    jax.jit(loss), (logits, mu, sigma), order=1, modes=modes
  )


def test_mu_and_sigma_gradients_have_the_finite_difference_sign():
  # The official code's mu update has the wrong sign; ours must agree with
  # a central finite difference of the loss, entry by entry.
  logits, labels, mu, sigma = _single_label_case(7, 32, 4, np.float64)
  scale = 1.5

  def mean_loss(mu, sigma):
    return jnp.mean(
      _g_softmax.g_softmax_cross_entropy(
        logits, labels, mu=mu, sigma=sigma, scale=scale
      )
    )

  grad_mu, grad_sigma = jax.jit(jax.grad(mean_loss, argnums=(0, 1)))(mu, sigma)
  step = 1e-6
  for k in range(len(mu)):
    e = np.zeros_like(mu)
    e[k] = step
    fd_mu = (mean_loss(mu + e, sigma) - mean_loss(mu - e, sigma)) / (2 * step)
    fd_sigma = (mean_loss(mu, sigma + e) - mean_loss(mu, sigma - e)) / (
      2 * step
    )
    assert np.sign(grad_mu[k]) == np.sign(fd_mu)
    assert np.sign(grad_sigma[k]) == np.sign(fd_sigma)
    np.testing.assert_allclose(grad_mu[k], fd_mu, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(grad_sigma[k], fd_sigma, rtol=1e-6, atol=1e-10)

  # And with the closed form: dL/dmu_k = -lambda * N(z_k) * (p_k - t_k).
  shifted = _shifted_ref(logits, mu, sigma, scale)
  p = special.softmax(shifted, axis=1)
  t = np.eye(len(mu))[labels]
  u = (logits - mu) / sigma
  pdf = np.exp(-0.5 * u * u) / (sigma * math.sqrt(2 * math.pi))
  want_mu = np.mean(-scale * pdf * (p - t), axis=0)
  want_sigma = np.mean(-scale * pdf * u * (p - t), axis=0)
  np.testing.assert_allclose(grad_mu, want_mu, **F64)
  np.testing.assert_allclose(grad_sigma, want_sigma, **F64)


def test_traced_sigma_below_the_floor_stays_finite():
  logits, labels, mu, _ = _single_label_case(8, 4, 3)
  sigma = np.array([1e-9, 0.0, -1.0], np.float32)  # traced: not validated

  def loss(z, sigma):
    return jnp.sum(
      _g_softmax.g_softmax_cross_entropy(
        z, labels, mu=mu, sigma=sigma, scale=1.0
      )
    )

  value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(
    logits, sigma
  )
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)
  # Every sigma is floored at 1e-6, so the reference uses 1e-6.
  want = _cross_entropy_ref(logits, labels, mu, np.full(3, 1e-6), 1.0)
  np.testing.assert_allclose(
    _jit_ce(1.0)(logits, labels, mu, sigma), want, **F32
  )


def test_extreme_logits_are_finite():
  logits = np.array([[1e4, -1e4, 0.0], [-80.0, 80.0, 0.0]], np.float32)
  labels = np.array([1, 0])

  def loss(z):
    return jnp.sum(
      _g_softmax.g_softmax_cross_entropy(
        z, labels, mu=0.0, sigma=1.0, scale=1.0
      )
    )

  value, grad = jax.jit(jax.value_and_grad(loss))(logits)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  want = _cross_entropy_ref(logits, labels, 0.0, 1.0, 1.0).sum()
  np.testing.assert_allclose(value, want, rtol=1e-6)


def test_bfloat16_logits_compute_in_float32():
  logits, labels, mu, sigma = _single_label_case(9, 8, 5)
  low = jnp.asarray(logits, jnp.bfloat16)
  got = _jit_ce(0.5)(low, labels, mu, sigma)
  assert got.dtype == jnp.float32
  # Exactly the float32 loss of the rounded inputs ...
  rounded = np.asarray(low.astype(jnp.float32))
  np.testing.assert_allclose(
    got, _jit_ce(0.5)(rounded, labels, mu, sigma), rtol=1e-6, atol=1e-6
  )
  # ... and within the bfloat16 input rounding (2^-8 relative on logits of
  # magnitude <= ~6) of the float32 loss of the original inputs.
  np.testing.assert_allclose(
    got, _jit_ce(0.5)(logits, labels, mu, sigma), rtol=0, atol=5e-2
  )


def test_batch_permutation_permutes_the_output():
  logits, labels, mu, sigma = _single_label_case(10, 10, 6)
  perm = np.random.default_rng(0).permutation(10)
  fn = _jit_ce(0.3)
  np.testing.assert_allclose(
    fn(logits[perm], labels[perm], mu, sigma),
    np.asarray(fn(logits, labels, mu, sigma))[perm],
    rtol=1e-6,
  )


def test_vmap_over_stacked_batches_equals_a_loop():
  stacked = [_single_label_case(s, 5, 4) for s in range(3)]
  logits = np.stack([c[0] for c in stacked])
  labels = np.stack([c[1] for c in stacked])
  mu, sigma = stacked[0][2], stacked[0][3]

  def loss(z, y):
    return _g_softmax.g_softmax_cross_entropy(
      z, y, mu=mu, sigma=sigma, scale=0.5
    )

  got = jax.jit(jax.vmap(loss))(logits, labels)
  for b in range(3):
    np.testing.assert_allclose(got[b], loss(logits[b], labels[b]), **F32)


def test_traced_scale_is_accepted():
  logits, labels, mu, sigma = _single_label_case(11, 4, 3)
  got = jax.jit(
    lambda s: _g_softmax.g_softmax_cross_entropy(
      logits, labels, mu=mu, sigma=sigma, scale=s
    )
  )(0.25)
  np.testing.assert_allclose(
    got, _cross_entropy_ref(logits, labels, mu, sigma, 0.25), **F32
  )


# ---------------------------------------------------------------------------
# Multi-label.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('batch,num_labels', [(1, 1), (6, 3), (12, 9)])
@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('scale', [0.0, 1.0])
def test_multilabel_matches_reference_float32(batch, num_labels, seed, scale):
  logits, labels, mu, sigma = _multilabel_case(seed, batch, num_labels)
  got = _jit_multilabel(scale)(logits, labels, mu, sigma)
  assert got.shape == (batch,) and got.dtype == jnp.float32
  want = _multilabel_ref(logits, labels, mu, sigma, scale)
  np.testing.assert_allclose(got, want, **F32)


def test_multilabel_matches_reference_float64():
  logits, labels, mu, sigma = _multilabel_case(2, 5, 4, np.float64)
  got = _jit_multilabel(0.3)(logits, labels, mu, sigma)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(
    got, _multilabel_ref(logits, labels, mu, sigma, 0.3), **F64
  )


@pytest.mark.parametrize('label_dtype', [np.int32, np.float32, np.bool_])
def test_multilabel_accepts_int_float_and_bool_labels(label_dtype):
  logits, labels, mu, sigma = _multilabel_case(3, 4, 5)
  got = _jit_multilabel(1.0)(logits, labels.astype(label_dtype), mu, sigma)
  np.testing.assert_allclose(
    got, _multilabel_ref(logits, labels, mu, sigma, 1.0), **F32
  )


def test_multilabel_without_cdf_term_is_sigmoid_cross_entropy():
  logits, labels, mu, sigma = _multilabel_case(4, 6, 3)
  got = _jit_multilabel(0.0)(logits, labels, mu, sigma)
  want = optax.sigmoid_binary_cross_entropy(
    logits[..., 0] - logits[..., 1], labels.astype(np.float32)
  ).sum(axis=1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_multilabel_probabilities_match_reference():
  logits, _, mu, sigma = _multilabel_case(5, 6, 4)
  got = jax.jit(
    lambda z: _g_softmax.g_softmax_multilabel_probabilities(
      z, mu=mu, sigma=sigma, scale=1.0
    )
  )(logits)
  assert got.shape == (6, 4) and got.dtype == jnp.float32
  np.testing.assert_allclose(
    got, _probabilities_ref(logits, mu, sigma, 1.0), **F32
  )


@pytest.mark.parametrize('modes', [['rev'], ['fwd']])
def test_multilabel_gradients_wrt_logits_mu_and_sigma(modes):
  logits, labels, mu, sigma = _multilabel_case(6, 3, 4, np.float64)

  def loss(z, mu, sigma):
    return _g_softmax.g_softmax_multilabel_cross_entropy(
      z, labels, mu=mu, sigma=sigma, scale=0.9
    )

  test_util.check_grads(
    jax.jit(loss), (logits, mu, sigma), order=1, modes=modes
  )


def test_multilabel_extreme_logits_are_finite():
  logits = np.array([[[200.0, -200.0], [-1e4, 1e4]]], np.float32)
  labels = np.array([[0, 1]])

  def loss(z, mu, sigma):
    return jnp.sum(
      _g_softmax.g_softmax_multilabel_cross_entropy(
        z, labels, mu=mu, sigma=sigma, scale=1.0
      )
    )

  mu = np.zeros((2, 2), np.float32)
  sigma = np.ones((2, 2), np.float32)
  value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
    logits, mu, sigma
  )
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
  want = _multilabel_ref(logits, labels, mu, sigma, 1.0).sum()
  np.testing.assert_allclose(value, want, rtol=1e-6)


def test_multilabel_bfloat16_logits_compute_in_float32():
  logits, labels, mu, sigma = _multilabel_case(7, 5, 3)
  low = jnp.asarray(logits, jnp.bfloat16)
  got = _jit_multilabel(1.0)(low, labels, mu, sigma)
  assert got.dtype == jnp.float32
  rounded = np.asarray(low.astype(jnp.float32))
  np.testing.assert_allclose(
    got, _multilabel_ref(rounded, labels, mu, sigma, 1.0), **F32
  )
  # Within the bfloat16 rounding of the inputs: 3 labels, each < 2e-2.
  np.testing.assert_allclose(
    got, _multilabel_ref(logits, labels, mu, sigma, 1.0), atol=6e-2
  )


def test_multilabel_batch_permutation_permutes_the_output():
  logits, labels, mu, sigma = _multilabel_case(8, 7, 3)
  perm = np.random.default_rng(1).permutation(7)
  fn = _jit_multilabel(1.0)
  np.testing.assert_allclose(
    fn(logits[perm], labels[perm], mu, sigma),
    np.asarray(fn(logits, labels, mu, sigma))[perm],
    rtol=1e-6,
  )


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def _ce(logits, labels, mu=0.0, sigma=1.0, scale=0.1):
  return _g_softmax.g_softmax_cross_entropy(
    logits, labels, mu=mu, sigma=sigma, scale=scale
  )


def test_bad_single_label_inputs():
  logits = np.zeros((4, 3), np.float32)
  labels = np.zeros(4, np.int32)
  with pytest.raises(ValueError, match=r'`logits` must have rank 2.*\(4,\)'):
    _ce(np.zeros(4, np.float32), labels)
  with pytest.raises(TypeError, match=r'`logits`.*floating.*int32'):
    _ce(np.zeros((4, 3), np.int32), labels)
  with pytest.raises(TypeError, match=r'`labels`.*integer.*float32'):
    _ce(logits, np.zeros(4, np.float32))
  with pytest.raises(ValueError, match=r'`labels`.*size 4.*received 5'):
    _ce(logits, np.zeros(5, np.int32))
  with pytest.raises(ValueError, match=r'`labels` must have rank 1.*\(4, 1\)'):
    _ce(logits, np.zeros((4, 1), np.int32))
  with pytest.raises(ValueError, match=r'`mu`.*\(3,\).*received shape \(4,\)'):
    _ce(logits, labels, mu=np.zeros(4, np.float32))
  with pytest.raises(ValueError, match=r'`sigma`.*received shape \(2, 3\)'):
    _ce(logits, labels, sigma=np.ones((2, 3), np.float32))
  with pytest.raises(TypeError, match=r'`mu`.*floating.*int'):
    _ce(logits, labels, mu=np.zeros(3, np.int32))


@pytest.mark.parametrize(
  'sigma,shown',
  [(0.0, r'0\.0'), (-1.0, r'-1\.0'), (np.array([1.0, 0.0, 2.0]), r'0\.0')],
)
def test_non_positive_sigma_is_rejected(sigma, shown):
  with pytest.raises(ValueError, match=rf'`sigma` must be > 0.*{shown}'):
    _ce(np.zeros((2, 3), np.float32), np.zeros(2, np.int32), sigma=sigma)


def test_negative_scale_is_rejected():
  with pytest.raises(ValueError, match=r'`scale` must be >= 0.*-0\.5'):
    _ce(np.zeros((2, 3), np.float32), np.zeros(2, np.int32), scale=-0.5)
  with pytest.raises(ValueError, match=r'`scale`.*-1\.0'):
    _g_softmax.g_softmax_logits(
      np.zeros((2, 3), np.float32), mu=0.0, sigma=1.0, scale=-1.0
    )


def test_bad_multilabel_inputs():
  logits = np.zeros((4, 3, 2), np.float32)
  labels = np.zeros((4, 3), np.int32)

  def call(logits=logits, labels=labels, mu=0.0, sigma=1.0, scale=1.0):
    return _g_softmax.g_softmax_multilabel_cross_entropy(
      logits, labels, mu=mu, sigma=sigma, scale=scale
    )

  with pytest.raises(ValueError, match=r'`logits` must have rank 3.*\(4, 6\)'):
    call(logits=np.zeros((4, 6), np.float32))
  with pytest.raises(ValueError, match=r'`logits`.*size 2 along axis 2.*3'):
    call(logits=np.zeros((4, 3, 3), np.float32))
  with pytest.raises(ValueError, match=r'`labels`.*\(4, 3\).*\(4, 2\)'):
    call(labels=np.zeros((4, 2), np.int32))
  with pytest.raises(ValueError, match=r'`mu`.*\(3, 2\).*received.*\(3,\)'):
    call(mu=np.zeros(3, np.float32))
  with pytest.raises(ValueError, match=r'`sigma` must be > 0.*-2\.0'):
    call(sigma=np.full((3, 2), -2.0))
  with pytest.raises(ValueError, match=r'`scale`.*-1\.0'):
    call(scale=-1.0)
  with pytest.raises(ValueError, match=r'`sigma` must be > 0'):
    _g_softmax.g_softmax_multilabel_probabilities(
      logits, mu=0.0, sigma=0.0, scale=1.0
    )
