"""Tests of the hand-written derivatives of the classification losses.

NormFace, CosFace, ArcFace, the class-level Circle loss and G-softmax
cross-entropy are differentiated by custom JVP rules (they keep the
``[batch, num_classes]`` softmax out of memory). The per-loss test files
check their values and the gradients with respect to the features; these
tests check the rules everywhere else they must hold: derivatives with
respect to the hyperparameters, forward and reverse mode on all inputs at
once, gradients with respect to one input alone (the other tangents
symbolically zero), second order, `vmap` of a gradient and bfloat16 inputs.
Gradients are compared with central finite differences (`check_grads`) or,
for Circle's constant alphas, with finite differences of a float64 NumPy
reference whose alphas are frozen.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from losses import _circle, _g_softmax, _margin_softmax

# Central differences with h = 1e-6 in float64.
FD = {'rtol': 1e-6, 'atol': 1e-6}


def _margin_case(seed, batch=5, num_classes=4, dim=3):
  rng = np.random.default_rng(seed)
  x = 2.0 * rng.standard_normal((batch, dim))
  w = rng.standard_normal((num_classes, dim))
  y = rng.integers(0, num_classes, batch)
  return x, w, y


def _logits_case(seed, batch=5, num_classes=4):
  rng = np.random.default_rng(seed)
  logits = 2.0 * rng.standard_normal((batch, num_classes))
  labels = rng.integers(0, num_classes, batch)
  mu = 0.5 * rng.standard_normal(num_classes)
  sigma = rng.uniform(0.5, 2.0, num_classes)
  return logits, labels, mu, sigma


# name -> loss of (x, w, y, hyperparameter 0, hyperparameter 1), and the
# point at which the hyperparameters are differentiated. The ArcFace margins
# put targets on both sides of theta + m = pi (the fallback branch).
_MARGIN_LOSSES = {
  'normface': (
    lambda x, w, y, s, m: _margin_softmax.normalized_softmax_cross_entropy(
      x, w, y, scale=s
    ),
    (6.0, 0.0),
  ),
  'cosface': (
    lambda x, w, y, s, m: _margin_softmax.cosface_loss(
      x, w, y, scale=s, margin=m
    ),
    (6.0, 0.35),
  ),
  'arcface': (
    lambda x, w, y, s, m: _margin_softmax.arcface_loss(
      x, w, y, scale=s, margin=m
    ),
    (6.0, 0.5),
  ),
  'arcface_large_margin': (
    lambda x, w, y, s, m: _margin_softmax.arcface_loss(
      x, w, y, scale=s, margin=m
    ),
    (4.0, 1.4),
  ),
  'arcface_easy': (
    lambda x, w, y, s, m: _margin_softmax.arcface_loss(
      x, w, y, scale=s, margin=m, easy_margin=True
    ),
    (6.0, 0.5),
  ),
}
MARGIN_IDS = list(_MARGIN_LOSSES)


def _class_level_ref(x, w, labels, margin, gamma, alphas):
  """Class-level Circle loss in float64 with the given (frozen) alphas."""
  x = np.asarray(x, np.float64)
  w = np.asarray(w, np.float64)
  unit_x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  unit_w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
  cosines = unit_x @ unit_w.T
  out = np.empty(len(labels))
  for i, label in enumerate(labels):
    logits = gamma * alphas[i] * (cosines[i] - margin)
    logits[label] = gamma * alphas[i, label] * (cosines[i, label] - 1 + margin)
    top = logits.max()
    out[i] = top + np.log(np.sum(np.exp(logits - top))) - logits[label]
  return out


def _class_level_alphas(x, w, labels, margin):
  unit_x = x / np.linalg.norm(x, axis=1, keepdims=True)
  unit_w = w / np.linalg.norm(w, axis=1, keepdims=True)
  cosines = unit_x @ unit_w.T
  alphas = np.maximum(cosines + margin, 0.0)
  rows = np.arange(len(labels))
  alphas[rows, labels] = np.maximum(1 + margin - cosines[rows, labels], 0.0)
  return alphas


def _central_difference(fn, value, h=1e-6):
  return (fn(value + h) - fn(value - h)) / (2 * h)


# ---------------------------------------------------------------------------
# NormFace, CosFace, ArcFace.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('name', MARGIN_IDS)
@pytest.mark.parametrize('modes', [['fwd'], ['rev']])
def test_margin_losses_derivatives_wrt_all_inputs(name, modes):
  loss, (s, m) = _MARGIN_LOSSES[name]
  x, w, y = _margin_case(0)

  def fn(x_, w_, s_, m_):
    return loss(x_, w_, y, s_, m_)

  test_util.check_grads(jax.jit(fn), (x, w, s, m), order=1, modes=modes)


@pytest.mark.parametrize('name', ['normface', 'cosface', 'arcface'])
def test_margin_losses_second_order(name):
  loss, (s, m) = _MARGIN_LOSSES[name]
  x, w, y = _margin_case(1, batch=3, num_classes=3, dim=2)
  test_util.check_grads(
    jax.jit(lambda x_, w_, s_: loss(x_, w_, y, s_, m)),
    (x, w, s),
    order=2,
    modes=['fwd', 'rev'],
  )


@pytest.mark.parametrize('name', MARGIN_IDS)
def test_margin_losses_single_input_gradients_match_the_joint_one(name):
  # jax.grad with respect to one argument leaves the other tangents
  # symbolically zero, a separate path through the rule.
  loss, (s, m) = _MARGIN_LOSSES[name]
  x, w, y = _margin_case(2)
  cotangent = np.random.default_rng(2).uniform(0.5, 1.5, len(y))

  def fn(x_, w_, s_, m_):
    return jnp.sum(cotangent * loss(x_, w_, y, s_, m_))

  joint = jax.jit(jax.grad(fn, argnums=(0, 1, 2, 3)))(x, w, s, m)
  for argnum, expected in enumerate(joint):
    got = jax.jit(jax.grad(fn, argnums=argnum))(x, w, s, m)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', ['cosface', 'arcface'])
def test_margin_losses_vmap_of_gradient_equals_a_loop(name):
  loss, (s, m) = _MARGIN_LOSSES[name]
  rng = np.random.default_rng(3)
  x = rng.standard_normal((3, 5, 4))
  y = rng.integers(0, 6, (3, 5))
  w = rng.standard_normal((6, 4))

  def grads(x_, w_, y_):
    return jax.grad(lambda a, b: jnp.sum(loss(a, b, y_, s, m)), argnums=(0, 1))(
      x_, w_
    )

  got_x, got_w = jax.jit(jax.vmap(grads, (0, None, 0)))(x, w, y)
  loop_grads = jax.jit(grads)
  for i in range(3):
    want_x, want_w = loop_grads(x[i], w, y[i])
    np.testing.assert_allclose(got_x[i], want_x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_w[i], want_w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', MARGIN_IDS)
def test_margin_losses_bfloat16_gradients(name):
  loss, (s, m) = _MARGIN_LOSSES[name]
  x, w, y = _margin_case(4)
  x16 = jnp.asarray(x, jnp.bfloat16)
  w16 = jnp.asarray(w, jnp.bfloat16)

  def fn(x_, w_):
    return jnp.sum(loss(x_, w_, y, s, m))

  got_x, got_w = jax.jit(jax.grad(fn, argnums=(0, 1)))(x16, w16)
  assert got_x.dtype == jnp.bfloat16 and got_w.dtype == jnp.bfloat16
  want_x, want_w = jax.jit(jax.grad(fn, argnums=(0, 1)))(
    np.asarray(x16, np.float32), np.asarray(w16, np.float32)
  )
  np.testing.assert_allclose(
    np.asarray(got_x, np.float32), want_x, rtol=2e-2, atol=2e-2
  )
  np.testing.assert_allclose(
    np.asarray(got_w, np.float32), want_w, rtol=2e-2, atol=2e-2
  )


# ---------------------------------------------------------------------------
# Class-level Circle loss.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('margin, gamma', [(0.25, 16.0), (0.4, 4.0)])
def test_circle_margin_and_gamma_gradients_hold_alphas_constant(margin, gamma):
  x, w, y = _margin_case(5)
  cotangent = np.random.default_rng(5).uniform(0.5, 1.5, len(y))
  alphas = _class_level_alphas(x, w, y, margin)

  def fn(m_, g_):
    return jnp.sum(
      cotangent * _circle.circle_loss_class_level(x, w, y, margin=m_, gamma=g_)
    )

  got_margin, got_gamma = jax.jit(jax.grad(fn, argnums=(0, 1)))(margin, gamma)
  want_margin = _central_difference(
    lambda m_: cotangent @ _class_level_ref(x, w, y, m_, gamma, alphas),
    margin,
  )
  want_gamma = _central_difference(
    lambda g_: cotangent @ _class_level_ref(x, w, y, margin, g_, alphas),
    gamma,
  )
  np.testing.assert_allclose(got_margin, want_margin, **FD)
  np.testing.assert_allclose(got_gamma, want_gamma, **FD)
  # Forward mode gives the same numbers.
  _, forward_margin = jax.jvp(lambda m_: fn(m_, gamma), (margin,), (1.0,))
  np.testing.assert_allclose(forward_margin, want_margin, **FD)


def test_circle_forward_mode_agrees_with_reverse_mode():
  x, w, y = _margin_case(6)
  rng = np.random.default_rng(6)
  primals = (x, w, 0.3, 12.0)
  tangents = (
    rng.standard_normal(x.shape),
    rng.standard_normal(w.shape),
    0.7,
    -1.3,
  )

  @jax.jit
  def fn(x_, w_, m_, g_):
    return _circle.circle_loss_class_level(x_, w_, y, margin=m_, gamma=g_)

  _, forward = jax.jvp(fn, primals, tangents)
  _, pullback = jax.vjp(fn, *primals)
  cotangent = rng.standard_normal(len(y))
  reverse = pullback(cotangent)
  np.testing.assert_allclose(
    cotangent @ forward,
    sum(np.sum(r * t) for r, t in zip(reverse, tangents, strict=True)),
    rtol=1e-12,
  )


def test_circle_single_input_gradients_match_the_joint_one():
  x, w, y = _margin_case(7)

  def fn(x_, w_, m_, g_):
    return jnp.sum(
      _circle.circle_loss_class_level(x_, w_, y, margin=m_, gamma=g_)
    )

  args = (x, w, 0.25, 32.0)
  joint = jax.jit(jax.grad(fn, argnums=(0, 1, 2, 3)))(*args)
  for argnum, expected in enumerate(joint):
    got = jax.jit(jax.grad(fn, argnums=argnum))(*args)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_circle_vmap_of_gradient_equals_a_loop():
  rng = np.random.default_rng(8)
  x = rng.standard_normal((3, 5, 4))
  y = rng.integers(0, 6, (3, 5))
  w = rng.standard_normal((6, 4))
  loss = functools.partial(
    _circle.circle_loss_class_level, margin=0.25, gamma=64.0
  )

  def grads(x_, w_, y_):
    return jax.grad(lambda a, b: jnp.sum(loss(a, b, y_)), argnums=(0, 1))(
      x_, w_
    )

  got_x, got_w = jax.jit(jax.vmap(grads, (0, None, 0)))(x, w, y)
  loop_grads = jax.jit(grads)
  for i in range(3):
    want_x, want_w = loop_grads(x[i], w, y[i])
    np.testing.assert_allclose(got_x[i], want_x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_w[i], want_w, rtol=1e-12, atol=1e-12)


def test_circle_gamma_256_at_unit_cosines_has_finite_gradients():
  # Logits of +-gamma * (1 + m) * ...: ~+-300 at cosines of +-1.
  _, w, _ = _margin_case(9, num_classes=4)
  y = np.array([0, 1, 2, 3, 0, 1])
  x = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])[:, None] * w[y]

  def fn(x_, w_, m_, g_):
    return jnp.sum(
      _circle.circle_loss_class_level(x_, w_, y, margin=m_, gamma=g_)
    )

  for dtype in (np.float32, np.float64):
    args = (x.astype(dtype), w.astype(dtype), 0.25, 256.0)
    value, grads = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2, 3)))(*args)
    assert np.isfinite(value)
    for grad in grads:
      assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------------------
# G-softmax cross-entropy.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('modes', [['fwd'], ['rev']])
@pytest.mark.parametrize('shared', [False, True])
def test_g_softmax_derivatives_wrt_all_inputs(modes, shared):
  logits, labels, mu, sigma = _logits_case(10)
  if shared:
    mu, sigma = 0.3, 1.2

  def fn(z, mu_, sigma_, scale):
    return _g_softmax.g_softmax_cross_entropy(
      z, labels, mu=mu_, sigma=sigma_, scale=scale
    )

  test_util.check_grads(
    jax.jit(fn), (logits, mu, sigma, 0.8), order=1, modes=modes
  )


def test_g_softmax_second_order():
  logits, labels, mu, sigma = _logits_case(11, batch=3, num_classes=3)

  def fn(z, mu_, sigma_, scale):
    return _g_softmax.g_softmax_cross_entropy(
      z, labels, mu=mu_, sigma=sigma_, scale=scale
    )

  test_util.check_grads(
    jax.jit(fn), (logits, mu, sigma, 0.8), order=2, modes=['fwd', 'rev']
  )


def test_g_softmax_single_input_gradients_match_the_joint_one():
  logits, labels, mu, sigma = _logits_case(12)

  def fn(z, mu_, sigma_, scale):
    return jnp.sum(
      _g_softmax.g_softmax_cross_entropy(
        z, labels, mu=mu_, sigma=sigma_, scale=scale
      )
    )

  args = (logits, mu, sigma, 0.5)
  joint = jax.jit(jax.grad(fn, argnums=(0, 1, 2, 3)))(*args)
  for argnum, expected in enumerate(joint):
    got = jax.jit(jax.grad(fn, argnums=argnum))(*args)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_g_softmax_vmap_of_gradient_equals_a_loop():
  rng = np.random.default_rng(13)
  logits = rng.standard_normal((3, 5, 4))
  labels = rng.integers(0, 4, (3, 5))
  _, _, mu, sigma = _logits_case(13)

  def grads(z, y_):
    return jax.grad(
      lambda z_, mu_: jnp.sum(
        _g_softmax.g_softmax_cross_entropy(
          z_, y_, mu=mu_, sigma=sigma, scale=0.5
        )
      ),
      argnums=(0, 1),
    )(z, mu)

  got_z, got_mu = jax.jit(jax.vmap(grads))(logits, labels)
  loop_grads = jax.jit(grads)
  for i in range(3):
    want_z, want_mu = loop_grads(logits[i], labels[i])
    np.testing.assert_allclose(got_z[i], want_z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_mu[i], want_mu, rtol=1e-12, atol=1e-12)
