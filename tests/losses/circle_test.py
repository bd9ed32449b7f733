"""Tests for the Circle losses against float64 NumPy references.

The weights alpha are constants in back-propagation (stop_gradient), so the
gradients are not those of the loss as a function: they are checked against
central finite differences of a NumPy reference whose alphas are frozen at
their values at the evaluation point.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from losses import _circle, _pairwise

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-10}
# Central differences with h = 1e-6 in float64: truncation ~1e-12 * third
# derivative, cancellation ~1e-10 / h-relative.
FD = {'rtol': 1e-6, 'atol': 1e-6}


# ---------------------------------------------------------------------------
# References, written from the paper's formulas with loops, in float64.
# ---------------------------------------------------------------------------


def _unit(x):
  x = np.asarray(x, np.float64)
  norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  return x / norms


def _log_sum_exp(values):
  values = np.asarray(values, np.float64)
  top = np.max(values)
  return top + np.log(np.sum(np.exp(values - top)))


def _pairwise_alphas(x, labels, m, reference, reference_labels):
  """``[batch, num_reference]`` alpha_p (same class) or alpha_n (other)."""
  cosines = _unit(x) @ _unit(reference).T
  same = np.asarray(labels)[:, None] == np.asarray(reference_labels)[None, :]
  return np.where(
    same, np.maximum(1 + m - cosines, 0), np.maximum(cosines + m, 0)
  )


def _pairwise_ref(
  x,
  labels,
  m,
  gamma,
  reference=None,
  reference_labels=None,
  anchor_indices=None,
  alphas=None,
):
  """Per-anchor Circle loss; `alphas` frozen if given, else from `x`."""
  if reference is None:
    reference, reference_labels = x, labels
    if anchor_indices is None:
      anchor_indices = np.arange(len(labels))
  elif anchor_indices is None:
    anchor_indices = np.full(len(labels), -1)
  if alphas is None:
    alphas = _pairwise_alphas(x, labels, m, reference, reference_labels)
  unit_x, unit_reference = _unit(x), _unit(reference)
  out = np.zeros(len(labels))
  for i in range(len(labels)):
    positive_logits, negative_logits = [], []
    for j in range(len(reference_labels)):
      if j == anchor_indices[i]:
        continue
      s = float(unit_x[i] @ unit_reference[j])
      if labels[i] == reference_labels[j]:
        positive_logits.append(-gamma * alphas[i, j] * (s - (1 - m)))
      else:
        negative_logits.append(gamma * alphas[i, j] * (s - m))
    if positive_logits and negative_logits:
      total = _log_sum_exp(negative_logits) + _log_sum_exp(positive_logits)
      out[i] = np.logaddexp(0.0, total)
  return out


def _class_level_ref(x, weights, labels, m, gamma, alphas=None):
  cosines = _unit(x) @ _unit(weights).T
  if alphas is None:
    alphas = np.maximum(cosines + m, 0)
    for i, y in enumerate(labels):
      alphas[i, y] = max(1 + m - cosines[i, y], 0)
  out = np.zeros(len(labels))
  for i, y in enumerate(labels):
    logits = [
      gamma * alphas[i, j] * (cosines[i, j] - m) for j in range(len(weights))
    ]
    logits[y] = gamma * alphas[i, y] * (cosines[i, y] - (1 - m))
    out[i] = _log_sum_exp(logits) - logits[y]
  return out


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
  labels = rng.integers(0, num_classes, batch)
  return x, labels


@functools.partial(jax.jit, static_argnames=('block_size',))
def _pairwise_jit(
  x,
  labels,
  margin,
  gamma,
  reference=None,
  reference_labels=None,
  anchor_indices=None,
  block_size=None,
):
  return _circle.circle_loss_pairwise(
    x,
    labels,
    margin=margin,
    gamma=gamma,
    reference=_reference_set(reference, reference_labels),
    anchor_indices=anchor_indices,
    block_size=block_size,
  )


def _reference_set(embeddings, labels):
  """The `ReferenceSet`, or None for the batch (no reference embeddings)."""
  if embeddings is None:
    return None
  return _pairwise.ReferenceSet(embeddings, labels)


def _pairwise_grad(
  x, labels, weights, reference=None, reference_labels=None, **kwargs
):
  """Gradient of ``weights . loss`` w.r.t. the embeddings (and reference)."""

  def weighted(x, reference):
    loss = _circle.circle_loss_pairwise(
      x,
      labels,
      reference=_reference_set(reference, reference_labels),
      **kwargs,
    )
    return jnp.sum(weights * loss)

  argnums = 0 if reference is None else (0, 1)
  return jax.jit(jax.grad(weighted, argnums=argnums))(x, reference)


# ---------------------------------------------------------------------------
# Pair-wise form: values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  'seed, batch, dim, num_classes, margin, gamma',
  [
    (0, 8, 3, 3, 0.25, 32.0),
    (1, 12, 5, 4, 0.4, 80.0),
    (2, 6, 2, 2, 0.0, 1.0),
    (3, 16, 8, 6, 0.25, 256.0),
    (4, 2, 4, 2, 0.9, 16.0),
  ],
)
def test_pairwise_matches_reference(
  seed, batch, dim, num_classes, margin, gamma
):
  x, labels = _case(seed, batch, dim, num_classes)
  expected = _pairwise_ref(x, labels, margin, gamma)
  got = _pairwise_jit(x, labels, margin, gamma)
  assert got.dtype == jnp.float64 and got.shape == (batch,)
  np.testing.assert_allclose(got, expected, **F64)
  got32 = _pairwise_jit(x.astype(np.float32), labels, margin, gamma)
  assert got32.dtype == jnp.float32
  # float32 cosines carry ~1e-7 error, which gamma amplifies.
  np.testing.assert_allclose(got32, expected, rtol=2e-5, atol=2e-7 * gamma)


@pytest.mark.parametrize('seed', range(3))
def test_pairwise_with_reference_set_matches_reference(seed):
  rng = np.random.default_rng(seed)
  x, labels = _case(seed, 5, 4, 3)
  reference = rng.standard_normal((9, 4))
  reference_labels = rng.integers(0, 3, 9)
  for anchor_indices in (None, np.array([2, -1, 0, 8, 5])):
    expected = _pairwise_ref(
      x,
      labels,
      0.25,
      64.0,
      reference,
      reference_labels,
      anchor_indices,
    )
    got = _pairwise_jit(
      x, labels, 0.25, 64.0, reference, reference_labels, anchor_indices
    )
    np.testing.assert_allclose(got, expected, **F64)


# ---------------------------------------------------------------------------
# Pair-wise form: gradients.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('block_size', [None, 4])
@pytest.mark.parametrize(
  'seed, margin, gamma', [(0, 0.25, 16.0), (1, 0.4, 4.0)]
)
def test_pairwise_gradient_matches_frozen_alpha_differences(
  seed, margin, gamma, block_size
):
  x, labels = _case(seed, 7, 3, 3)
  weights = np.random.default_rng(seed + 10).uniform(0.5, 1.5, 7)
  alphas = _pairwise_alphas(x, labels, margin, x, labels)
  expected = _finite_difference(
    lambda x_: (
      weights @ _pairwise_ref(x_, labels, margin, gamma, alphas=alphas)
    ),
    x,
  )
  got = _pairwise_grad(
    x, labels, weights, margin=margin, gamma=gamma, block_size=block_size
  )
  np.testing.assert_allclose(got, expected, **FD)


def test_pairwise_gradient_reference_set_frozen_alpha_differences():
  rng = np.random.default_rng(5)
  x, labels = _case(5, 4, 3, 3)
  reference = rng.standard_normal((6, 3))
  reference_labels = rng.integers(0, 3, 6)
  weights = rng.uniform(0.5, 1.5, 4)
  margin, gamma = 0.25, 8.0
  alphas = _pairwise_alphas(x, labels, margin, reference, reference_labels)
  anchor_indices = np.array([1, -1, 3, 0])

  def ref_loss(x_, reference_):
    return weights @ _pairwise_ref(
      x_,
      labels,
      margin,
      gamma,
      reference_,
      reference_labels,
      anchor_indices,
      alphas=alphas,
    )

  expected_x = _finite_difference(lambda x_: ref_loss(x_, reference), x)
  expected_reference = _finite_difference(lambda r: ref_loss(x, r), reference)
  for block_size in (None, 3):

    def weighted(x_, reference_, block_size=block_size):
      loss = _circle.circle_loss_pairwise(
        x_,
        labels,
        margin=margin,
        gamma=gamma,
        reference=_pairwise.ReferenceSet(reference_, reference_labels),
        anchor_indices=anchor_indices,
        block_size=block_size,
      )
      return jnp.sum(weights * loss)

    got_x, got_reference = jax.jit(jax.grad(weighted, argnums=(0, 1)))(
      x, reference
    )
    np.testing.assert_allclose(got_x, expected_x, **FD)
    np.testing.assert_allclose(got_reference, expected_reference, **FD)


def test_pairwise_forward_mode_agrees_with_reverse_mode():
  x, labels = _case(6, 6, 3, 2)
  tangent = np.random.default_rng(0).standard_normal(x.shape)

  @jax.jit
  def fn(x_):
    return _circle.circle_loss_pairwise(x_, labels, margin=0.25, gamma=16.0)

  _, forward = jax.jvp(fn, (x,), (tangent,))
  _, pullback = jax.vjp(fn, x)
  cotangent = np.random.default_rng(1).standard_normal(6)
  (reverse,) = pullback(cotangent)
  np.testing.assert_allclose(cotangent @ forward, np.sum(reverse * tangent))


def test_pairwise_gamma_gradient():
  # The alphas do not depend on gamma, so this derivative is that of the
  # loss as a function: finite differences apply directly.
  x, labels = _case(7, 6, 3, 2)

  def fn(gamma):
    return _circle.circle_loss_pairwise(x, labels, margin=0.25, gamma=gamma)

  test_util.check_grads(jax.jit(fn), (12.0,), order=1, modes=['fwd', 'rev'])


def test_pairwise_margin_gradient_holds_alphas_constant():
  x, labels = _case(8, 6, 3, 2)
  margin, gamma = 0.3, 8.0
  alphas = _pairwise_alphas(x, labels, margin, x, labels)
  weights = np.linspace(0.5, 1.5, 6)
  expected = _finite_difference(
    lambda m: weights @ _pairwise_ref(x, labels, m[0], gamma, alphas=alphas),
    np.array([margin]),
  )[0]
  got = jax.grad(
    lambda m: jnp.sum(
      weights * _circle.circle_loss_pairwise(x, labels, margin=m, gamma=gamma)
    )
  )(margin)
  np.testing.assert_allclose(got, expected, **FD)


# ---------------------------------------------------------------------------
# Pair-wise form: edge cases.
# ---------------------------------------------------------------------------


def _value_and_grad(x, labels, **kwargs):
  return jax.jit(
    jax.value_and_grad(
      lambda x_: jnp.sum(_circle.circle_loss_pairwise(x_, labels, **kwargs))
    )
  )(x)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_pairwise_zero_and_identical_embeddings(dtype):
  labels = np.array([0, 0, 1, 1, 2])
  for x in (np.zeros((5, 3), dtype), np.ones((5, 3), dtype)):
    loss = _pairwise_jit(x, labels, 0.25, 256.0)
    expected = _pairwise_ref(x.astype(np.float64), labels, 0.25, 256.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    value, gradient = _value_and_grad(x, labels, margin=0.25, gamma=256.0)
    assert np.isfinite(value) and np.all(np.isfinite(gradient))


@pytest.mark.parametrize('block_size', [None, 2])
def test_pairwise_one_class_batch_is_zero_with_zero_gradient(block_size):
  x, _ = _case(0, 5, 3, 1, np.float32)
  labels = np.zeros(5, np.int32)
  loss = _pairwise_jit(x, labels, 0.25, 256.0, block_size=block_size)
  np.testing.assert_array_equal(loss, np.zeros(5, np.float32))
  value, gradient = _value_and_grad(
    x, labels, margin=0.25, gamma=256.0, block_size=block_size
  )
  assert value == 0.0
  np.testing.assert_array_equal(gradient, np.zeros_like(x))


def test_pairwise_singleton_classes_contribute_zero():
  x, _ = _case(1, 6, 3, 1)
  labels = np.array([0, 0, 1, 2, 2, 3])  # 1 and 3 are singletons.
  loss = np.asarray(_pairwise_jit(x, labels, 0.25, 64.0))
  assert loss[2] == 0.0 and loss[5] == 0.0
  assert np.all(loss[[0, 1, 3, 4]] > 0)
  np.testing.assert_allclose(loss, _pairwise_ref(x, labels, 0.25, 64.0), **F64)
  valid = _pairwise.valid_pairwise_anchors(labels)
  np.testing.assert_array_equal(valid, loss > 0)
  _, gradient = _value_and_grad(x, labels, margin=0.25, gamma=64.0)
  assert np.all(np.isfinite(gradient))


def test_pairwise_all_singletons_is_zero():
  x, _ = _case(2, 4, 3, 1)
  value, gradient = _value_and_grad(x, np.arange(4), margin=0.25, gamma=256.0)
  assert value == 0.0
  np.testing.assert_array_equal(gradient, np.zeros_like(x))


def test_pairwise_large_gamma_near_unit_cosines_is_stable():
  # Positives nearly opposite and negatives nearly equal: logits near
  # gamma * 4 = 1024, far beyond float32's exp range.
  rng = np.random.default_rng(3)
  direction = np.array([1.0, 0.0, 0.0])
  x = np.stack(
    [direction, -direction, direction, -direction, direction, -direction]
  ) + 1e-3 * rng.standard_normal((6, 3))
  labels = np.array([0, 0, 1, 1, 2, 2])
  expected = _pairwise_ref(x, labels, 0.25, 256.0)
  assert np.all(expected > 500)
  np.testing.assert_allclose(_pairwise_jit(x, labels, 0.25, 256.0), expected)
  got32 = _pairwise_jit(x.astype(np.float32), labels, 0.25, 256.0)
  np.testing.assert_allclose(got32, expected, rtol=1e-5, atol=1e-3)
  _, gradient = _value_and_grad(
    x.astype(np.float32), labels, margin=0.25, gamma=256.0
  )
  assert np.all(np.isfinite(gradient))


def test_pairwise_bfloat16_inputs():
  x, labels = _case(4, 10, 8, 3, np.float32)
  x16 = jnp.asarray(x, jnp.bfloat16)
  got = _pairwise_jit(x16, labels, 0.25, 32.0)
  assert got.dtype == jnp.float32
  # Computed in float32 from the rounded inputs...
  rounded = np.asarray(x16, np.float32)
  np.testing.assert_allclose(
    got, _pairwise_jit(rounded, labels, 0.25, 32.0), rtol=1e-6, atol=1e-6
  )
  # ...which differ from the float32 inputs by bfloat16's 2^-8 relative
  # rounding: cosines move by ~1e-2, logits by up to ~gamma * 2e-2.
  np.testing.assert_allclose(
    got, _pairwise_ref(x, labels, 0.25, 32.0), rtol=5e-2, atol=5e-2
  )
  _, gradient = _value_and_grad(x16, labels, margin=0.25, gamma=32.0)
  assert gradient.dtype == jnp.bfloat16 and np.all(
    np.isfinite(np.asarray(gradient, np.float32))
  )


# ---------------------------------------------------------------------------
# Pair-wise form: invariances, blocks and reference sets.
# ---------------------------------------------------------------------------


def test_pairwise_permutation_and_scale_invariance():
  x, labels = _case(9, 9, 4, 3)
  loss = _pairwise_jit(x, labels, 0.25, 64.0)
  permutation = np.random.default_rng(0).permutation(9)
  np.testing.assert_allclose(
    _pairwise_jit(x[permutation], labels[permutation], 0.25, 64.0),
    loss[permutation],
    **F64,
  )
  scales = np.random.default_rng(1).uniform(0.1, 10.0, (9, 1))
  np.testing.assert_allclose(
    _pairwise_jit(x * scales, labels, 0.25, 64.0), loss, **F64
  )


@pytest.mark.parametrize('block_size', [1, 2, 3, 5, 8, 100])
def test_pairwise_blocks_match_dense(block_size):
  x, labels = _case(10, 10, 4, 3, np.float32)
  weights = np.linspace(0.5, 1.5, 10).astype(np.float32)
  dense = _pairwise_jit(x, labels, 0.25, 128.0)
  blocked = _pairwise_jit(x, labels, 0.25, 128.0, block_size=block_size)
  np.testing.assert_allclose(blocked, dense, **F32)
  kwargs = {'margin': 0.25, 'gamma': 128.0}
  np.testing.assert_allclose(
    _pairwise_grad(x, labels, weights, block_size=block_size, **kwargs),
    _pairwise_grad(x, labels, weights, **kwargs),
    rtol=1e-4,
    atol=1e-5,
  )
  # With an explicit reference set.
  rng = np.random.default_rng(block_size)
  reference = rng.standard_normal((7, 4)).astype(np.float32)
  reference_labels = rng.integers(0, 3, 7)
  kwargs.update(reference_labels=reference_labels)
  for got, expected in zip(
    _pairwise_grad(
      x, labels, weights, reference, block_size=block_size, **kwargs
    ),
    _pairwise_grad(x, labels, weights, reference, **kwargs),
    strict=True,
  ):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('block_size', [None, 2])
def test_pairwise_local_anchors_against_global_batch(block_size):
  # The data-parallel layout: each device scores its slice of the batch
  # against the gathered global batch, its own rows given by anchor_indices.
  x, labels = _case(11, 12, 4, 3)
  full = _pairwise_jit(x, labels, 0.25, 64.0)
  weights = np.linspace(0.5, 1.5, 12)
  slices = [np.arange(0, 5), np.arange(5, 9), np.arange(9, 12)]
  for rows in slices:
    local = _pairwise_jit(
      x[rows], labels[rows], 0.25, 64.0, x, labels, rows, block_size
    )
    np.testing.assert_allclose(local, full[rows], **F64)

  def sliced_total(x_):
    total = 0.0
    for rows in slices:
      loss = _circle.circle_loss_pairwise(
        x_[rows],
        labels[rows],
        margin=0.25,
        gamma=64.0,
        reference=_pairwise.ReferenceSet(x_, labels),
        anchor_indices=rows,
        block_size=block_size,
      )
      total = total + jnp.sum(weights[rows] * loss)
    return total

  np.testing.assert_allclose(
    jax.jit(jax.grad(sliced_total))(x),
    _pairwise_grad(x, labels, weights, margin=0.25, gamma=64.0),
    **F64,
  )


def test_pairwise_vmap_matches_loop():
  xs = np.stack([_case(seed, 6, 3, 2)[0] for seed in range(3)])
  labels = np.array([0, 0, 1, 1, 2, 2])
  batched = jax.jit(
    jax.vmap(
      lambda x: _circle.circle_loss_pairwise(x, labels, margin=0.25, gamma=32.0)
    )
  )(xs)
  for x, got in zip(xs, batched, strict=True):
    np.testing.assert_allclose(got, _pairwise_ref(x, labels, 0.25, 32.0), **F64)


# ---------------------------------------------------------------------------
# Class-level form.
# ---------------------------------------------------------------------------


def _class_case(seed, batch, dim, num_classes, dtype=np.float64):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, dim)).astype(dtype)
  weights = rng.standard_normal((num_classes, dim)).astype(dtype)
  labels = rng.integers(0, num_classes, batch)
  return x, weights, labels


_class_jit = jax.jit(
  lambda x, w, labels, margin, gamma: _circle.circle_loss_class_level(
    x, w, labels, margin=margin, gamma=gamma
  )
)


@pytest.mark.parametrize(
  'seed, batch, dim, num_classes, margin, gamma',
  [
    (0, 5, 3, 4, 0.25, 32.0),
    (1, 8, 6, 10, 0.35, 64.0),
    (2, 3, 2, 2, 0.0, 1.0),
    (3, 16, 8, 5, 0.25, 256.0),
  ],
)
def test_class_level_matches_reference(
  seed, batch, dim, num_classes, margin, gamma
):
  x, weights, labels = _class_case(seed, batch, dim, num_classes)
  expected = _class_level_ref(x, weights, labels, margin, gamma)
  got = _class_jit(x, weights, labels, margin, gamma)
  assert got.shape == (batch,) and got.dtype == jnp.float64
  np.testing.assert_allclose(got, expected, **F64)
  got32 = _class_jit(
    x.astype(np.float32), weights.astype(np.float32), labels, margin, gamma
  )
  assert got32.dtype == jnp.float32
  np.testing.assert_allclose(got32, expected, rtol=2e-5, atol=2e-7 * gamma)


@pytest.mark.parametrize(
  'seed, margin, gamma', [(0, 0.25, 16.0), (1, 0.4, 4.0)]
)
def test_class_level_gradient_matches_frozen_alpha_differences(
  seed, margin, gamma
):
  x, weights, labels = _class_case(seed, 4, 3, 5)
  cotangent = np.random.default_rng(seed).uniform(0.5, 1.5, 4)
  cosines = _unit(x) @ _unit(weights).T
  alphas = np.maximum(cosines + margin, 0)
  for i, y in enumerate(labels):
    alphas[i, y] = max(1 + margin - cosines[i, y], 0)

  def ref(x_, w_):
    return cotangent @ _class_level_ref(
      x_, w_, labels, margin, gamma, alphas=alphas
    )

  got_x, got_w = jax.jit(
    jax.grad(
      lambda x_, w_: jnp.sum(
        cotangent
        * _circle.circle_loss_class_level(
          x_, w_, labels, margin=margin, gamma=gamma
        )
      ),
      argnums=(0, 1),
    )
  )(x, weights)
  np.testing.assert_allclose(
    got_x, _finite_difference(lambda x_: ref(x_, weights), x), **FD
  )
  np.testing.assert_allclose(
    got_w, _finite_difference(lambda w_: ref(x, w_), weights), **FD
  )
  # gamma does not enter the alphas: an ordinary finite-difference check.
  test_util.check_grads(
    jax.jit(
      lambda g: _circle.circle_loss_class_level(
        x, weights, labels, margin=margin, gamma=g
      )
    ),
    (gamma,),
    order=1,
    modes=['fwd', 'rev'],
  )


def test_class_level_edge_cases():
  _, weights, labels = _class_case(0, 4, 3, 3)
  value_and_grad = jax.jit(
    jax.value_and_grad(
      lambda x_: jnp.sum(
        _circle.circle_loss_class_level(
          x_, weights, labels, margin=0.25, gamma=256.0
        )
      )
    )
  )
  for x in (np.zeros((4, 3)), np.ones((4, 3))):
    loss, gradient = value_and_grad(x.astype(np.float32))
    assert np.isfinite(loss) and np.all(np.isfinite(gradient))
  # gamma = 256 with cosines of +-1: logits near 1000.
  x = np.array([[-1.0, 0.0], [1.0, 0.0]])
  w = np.array([[1.0, 0.0], [-1.0, 1e-4]])
  expected = _class_level_ref(x, w, np.array([0, 0]), 0.25, 256.0)
  assert expected[0] > 500
  got = _class_jit(
    x.astype(np.float32), w.astype(np.float32), np.array([0, 0]), 0.25, 256.0
  )
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_class_level_bfloat16_and_invariances():
  x, weights, labels = _class_case(5, 6, 4, 3, np.float32)
  loss = _class_jit(x, weights, labels, 0.25, 32.0)
  x16, w16 = jnp.asarray(x, jnp.bfloat16), jnp.asarray(weights, jnp.bfloat16)
  got = _class_jit(x16, w16, labels, 0.25, 32.0)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
    got,
    _class_jit(
      np.asarray(x16, np.float32),
      np.asarray(w16, np.float32),
      labels,
      0.25,
      32.0,
    ),
    rtol=1e-6,
    atol=1e-6,
  )
  np.testing.assert_allclose(got, loss, rtol=5e-2, atol=5e-2)
  permutation = np.random.default_rng(0).permutation(6)
  np.testing.assert_allclose(
    _class_jit(x[permutation], weights, labels[permutation], 0.25, 32.0),
    loss[permutation],
    **F32,
  )
  np.testing.assert_allclose(
    _class_jit(3.0 * x, 0.2 * weights, labels, 0.25, 32.0), loss, **F32
  )


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def _pairwise_call(**overrides):
  kwargs = {
    'embeddings': np.zeros((4, 3), np.float32),
    'labels': np.zeros(4, np.int32),
    'margin': 0.25,
    'gamma': 64.0,
  }
  kwargs.update(overrides)
  return _circle.circle_loss_pairwise(**kwargs)


def _class_call(**overrides):
  kwargs = {
    'embeddings': np.zeros((4, 3), np.float32),
    'class_weights': np.zeros((5, 3), np.float32),
    'labels': np.zeros(4, np.int32),
    'margin': 0.25,
    'gamma': 64.0,
  }
  kwargs.update(overrides)
  return _circle.circle_loss_class_level(**kwargs)


@pytest.mark.parametrize('call', [_pairwise_call, _class_call])
@pytest.mark.parametrize(
  'overrides, error, message',
  [
    ({'margin': 1.0}, ValueError, r'`margin` must lie in \[0.0, 1.0\).*1.0'),
    ({'margin': -0.1}, ValueError, r'`margin` must lie in .*-0.1'),
    ({'gamma': 0.0}, ValueError, r'`gamma` must be > 0, received 0.0'),
    ({'gamma': -2.0}, ValueError, r'`gamma` must be > 0, received -2.0'),
    ({'gamma': np.ones(2)}, ValueError, r'`gamma`.*scalar.*\(2,\)'),
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
def test_bad_input(call, overrides, error, message):
  with pytest.raises(error, match=message):
    call(**overrides)


@pytest.mark.parametrize(
  'overrides, error, message',
  [
    ({'block_size': 0}, ValueError, r'`block_size`.*received 0'),
    ({'block_size': -3}, ValueError, r'`block_size`.*received -3'),
    ({'block_size': 1.5}, TypeError, r'`block_size`.*received 1.5'),
    (
      {'reference': _pairwise.ReferenceSet(np.zeros((6, 3), np.float32), None)},
      ValueError,
      r'`reference.labels` must be an array, received None',
    ),
    (
      {'reference': _pairwise.ReferenceSet(None, np.zeros(6, np.int32))},
      ValueError,
      r'`reference.embeddings` must be an array, received None',
    ),
    (
      {'reference': (np.zeros((6, 3), np.float32), np.zeros(6, np.int32))},
      TypeError,
      r'`reference` must be a losses.ReferenceSet or None, received tuple',
    ),
    (
      {
        'reference': _pairwise.ReferenceSet(
          np.zeros((6, 2), np.float32), np.zeros(6, np.int32)
        )
      },
      ValueError,
      r'`reference.embeddings` must have size 3 along axis 1.*received 2',
    ),
    (
      {
        'reference': _pairwise.ReferenceSet(
          np.zeros((6, 3), np.float32), np.zeros(5, np.int32)
        )
      },
      ValueError,
      r'`reference.labels` must have size 6 along axis 0.*received 5',
    ),
    (
      {'anchor_indices': np.zeros(3, np.int32)},
      ValueError,
      r'`anchor_indices` must have size 4 along axis 0.*received 3',
    ),
    (
      {'anchor_indices': np.zeros(4, np.float32)},
      TypeError,
      r'`anchor_indices` must hold integer.*float32',
    ),
  ],
)
def test_pairwise_bad_input(overrides, error, message):
  with pytest.raises(error, match=message):
    _pairwise_call(**overrides)


def test_class_level_bad_class_weights():
  with pytest.raises(
    ValueError, match=r'`class_weights` must have size 3 along axis 1.*4'
  ):
    _class_call(class_weights=np.zeros((5, 4), np.float32))
  with pytest.raises(TypeError, match='`class_weights` must have a floating'):
    _class_call(class_weights=np.zeros((5, 3), np.int32))
