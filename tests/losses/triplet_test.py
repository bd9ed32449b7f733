"""Tests for the batch-hard triplet loss against a float64 NumPy reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

from losses import _pairwise, _triplet

F32 = {'rtol': 2e-5, 'atol': 2e-5}
F64 = {'rtol': 1e-10, 'atol': 1e-12}


# ---------------------------------------------------------------------------
# Reference, written from the paper's formula with loops, in float64.
# ---------------------------------------------------------------------------


def _triplet_ref(
  x,
  labels,
  margin,
  squared=False,
  soft=False,
  reference=None,
  reference_labels=None,
  anchor_indices=None,
):
  x = np.asarray(x, np.float64)
  if reference is None:
    reference, reference_labels = x, labels
    if anchor_indices is None:
      anchor_indices = np.arange(len(labels))
  elif anchor_indices is None:
    anchor_indices = np.full(len(labels), -1)
  reference = np.asarray(reference, np.float64)
  out = np.zeros(len(labels))
  for i in range(len(labels)):
    positives, negatives = [], []
    for j in range(len(reference_labels)):
      if j == anchor_indices[i]:
        continue
      distance = np.sum((x[i] - reference[j]) ** 2)
      if not squared:
        distance = np.sqrt(distance)
      if labels[i] == reference_labels[j]:
        positives.append(distance)
      else:
        negatives.append(distance)
    if positives and negatives:
      excess = margin + max(positives) - min(negatives)
      out[i] = np.logaddexp(0.0, excess) if soft else max(excess, 0.0)
  return out


def _case(seed, batch, dim, num_classes, dtype=np.float64):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, dim)).astype(dtype)
  labels = rng.integers(0, num_classes, batch)
  return x, labels


@functools.partial(jax.jit, static_argnames=('squared', 'soft', 'block_size'))
def _loss_jit(
  x,
  labels,
  margin,
  reference=None,
  reference_labels=None,
  anchor_indices=None,
  squared=False,
  soft=False,
  block_size=None,
):
  return _triplet.batch_hard_triplet_loss(
    x,
    labels,
    margin=margin,
    squared=squared,
    soft=soft,
    reference=(
      None
      if reference is None
      else _pairwise.ReferenceSet(reference, reference_labels)
    ),
    anchor_indices=anchor_indices,
    block_size=block_size,
  )


def _grad(x, labels, weights, **kwargs):
  return jax.jit(
    jax.grad(
      lambda x_: jnp.sum(
        weights * _triplet.batch_hard_triplet_loss(x_, labels, **kwargs)
      )
    )
  )(x)


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('squared', [False, True])
@pytest.mark.parametrize('soft', [False, True])
@pytest.mark.parametrize(
  'seed, batch, dim, num_classes, margin',
  [
    (0, 8, 3, 3, 0.2),
    (1, 12, 5, 4, 1.0),
    (2, 6, 2, 2, 0.0),
    (3, 2, 4, 2, 0.5),
  ],
)
def test_matches_reference(
  seed, batch, dim, num_classes, margin, squared, soft
):
  x, labels = _case(seed, batch, dim, num_classes)
  expected = _triplet_ref(x, labels, margin, squared, soft)
  got = _loss_jit(x, labels, margin, squared=squared, soft=soft)
  assert got.dtype == jnp.float64 and got.shape == (batch,)
  np.testing.assert_allclose(got, expected, **F64)
  got32 = _loss_jit(x.astype(np.float32), labels, margin, squared=squared)
  assert got32.dtype == jnp.float32
  np.testing.assert_allclose(
    got32, _triplet_ref(x, labels, margin, squared), **F32
  )


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('squared', [False, True])
def test_reference_set_matches_reference(seed, squared):
  rng = np.random.default_rng(seed)
  x, labels = _case(seed, 5, 4, 3)
  reference = rng.standard_normal((9, 4))
  reference_labels = rng.integers(0, 3, 9)
  for anchor_indices in (None, np.array([2, -1, 0, 8, 5])):
    expected = _triplet_ref(
      x,
      labels,
      0.3,
      squared,
      reference=reference,
      reference_labels=reference_labels,
      anchor_indices=anchor_indices,
    )
    got = _loss_jit(
      x, labels, 0.3, reference, reference_labels, anchor_indices, squared
    )
    np.testing.assert_allclose(got, expected, **F64)


# ---------------------------------------------------------------------------
# Gradients: no stop_gradient on the loss's value path, so finite
# differences of the full function apply (random points: no ties, no
# coincident points, no anchor at the hinge).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('block_size', [None, 3])
@pytest.mark.parametrize(
  'squared, soft', [(False, False), (True, False), (False, True)]
)
def test_gradients_match_finite_differences(squared, soft, block_size):
  x, labels = _case(4, 8, 3, 3)
  weights = np.linspace(0.5, 1.5, 8)

  def fn(x_):
    loss = _triplet.batch_hard_triplet_loss(
      x_,
      labels,
      margin=1.0,
      squared=squared,
      soft=soft,
      block_size=block_size,
    )
    return jnp.sum(weights * loss)

  assert np.any(_triplet_ref(x, labels, 1.0, squared, soft) > 0)
  test_util.check_grads(jax.jit(fn), (x,), order=1, modes=['fwd', 'rev'])


def test_reference_set_gradients_match_finite_differences():
  rng = np.random.default_rng(5)
  x, labels = _case(5, 4, 3, 2)
  reference = rng.standard_normal((7, 3))
  reference_labels = rng.integers(0, 2, 7)

  def fn(x_, reference_):
    return jnp.sum(
      _triplet.batch_hard_triplet_loss(
        x_,
        labels,
        margin=2.0,
        reference=_pairwise.ReferenceSet(reference_, reference_labels),
        anchor_indices=np.array([1, -1, 3, 0]),
      )
    )

  test_util.check_grads(
    jax.jit(fn), (x, reference), order=1, modes=['fwd', 'rev']
  )


# ---------------------------------------------------------------------------
# Edge cases.
# ---------------------------------------------------------------------------


def _value_and_grad(x, labels, **kwargs):
  return jax.jit(
    jax.value_and_grad(
      lambda x_: jnp.sum(_triplet.batch_hard_triplet_loss(x_, labels, **kwargs))
    )
  )(x)


@pytest.mark.parametrize('squared', [False, True])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_zero_and_identical_embeddings(squared, dtype):
  labels = np.array([0, 0, 1, 1, 2])
  for x in (np.zeros((5, 3), dtype), np.ones((5, 3), dtype)):
    loss = _loss_jit(x, labels, 0.2, squared=squared)
    # Every distance is 0: valid anchors lose exactly the margin.
    np.testing.assert_allclose(loss, [0.2, 0.2, 0.2, 0.2, 0.0], rtol=1e-6)
    value, gradient = _value_and_grad(x, labels, margin=0.2, squared=squared)
    assert np.isfinite(value)
    np.testing.assert_array_equal(gradient, np.zeros_like(x))


def test_coincident_points_have_finite_gradients():
  x, labels = _case(6, 6, 3, 2)
  x[3] = x[0]
  labels[3] = labels[0]
  x[4] = x[1]
  labels[4] = 1 - labels[1]
  np.testing.assert_allclose(
    _loss_jit(x, labels, 0.5), _triplet_ref(x, labels, 0.5), **F64
  )
  _, gradient = _value_and_grad(x, labels, margin=0.5)
  assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize('block_size', [None, 2])
def test_one_class_batch_and_singletons_are_zero(block_size):
  x, _ = _case(0, 5, 3, 1, np.float32)
  for labels in (np.zeros(5, np.int32), np.arange(5)):
    loss = _loss_jit(x, labels, 0.2, block_size=block_size)
    np.testing.assert_array_equal(loss, np.zeros(5, np.float32))
    value, gradient = _value_and_grad(
      x, labels, margin=0.2, block_size=block_size
    )
    assert value == 0.0
    np.testing.assert_array_equal(gradient, np.zeros_like(x))
  labels = np.array([0, 0, 1, 2, 2])  # Class 1 is a singleton.
  loss = np.asarray(_loss_jit(x, labels, 5.0, block_size=block_size))
  assert loss[2] == 0.0 and np.all(loss[[0, 1, 3, 4]] > 0)
  np.testing.assert_array_equal(
    _pairwise.valid_pairwise_anchors(labels), loss > 0
  )


def test_bfloat16_inputs():
  x, labels = _case(7, 10, 8, 3, np.float32)
  x16 = jnp.asarray(x, jnp.bfloat16)
  got = _loss_jit(x16, labels, 0.2)
  assert got.dtype == jnp.float32
  rounded = np.asarray(x16, np.float32)
  np.testing.assert_allclose(got, _loss_jit(rounded, labels, 0.2), **F32)
  # bfloat16 rounds each coordinate by up to 2^-9 relative; distances of
  # order 4 move by ~1e-2.
  np.testing.assert_allclose(
    got, _triplet_ref(x, labels, 0.2), rtol=2e-2, atol=5e-2
  )
  _, gradient = _value_and_grad(x16, labels, margin=0.2)
  assert gradient.dtype == jnp.bfloat16


# ---------------------------------------------------------------------------
# Invariances, blocks and reference sets.
# ---------------------------------------------------------------------------


def test_permutation_and_homogeneity():
  x, labels = _case(8, 9, 4, 3)
  loss = _loss_jit(x, labels, 0.5)
  permutation = np.random.default_rng(0).permutation(9)
  np.testing.assert_allclose(
    _loss_jit(x[permutation], labels[permutation], 0.5),
    loss[permutation],
    **F64,
  )
  # Euclidean distances scale with the embeddings, and so does the loss
  # when the margin scales with them.
  np.testing.assert_allclose(_loss_jit(3.0 * x, labels, 1.5), 3.0 * loss, **F64)
  # Translation changes no distance.
  np.testing.assert_allclose(_loss_jit(x + 2.0, labels, 0.5), loss, **F64)


@pytest.mark.parametrize('block_size', [1, 2, 3, 5, 8, 100])
def test_blocks_match_dense(block_size):
  x, labels = _case(9, 10, 4, 3, np.float32)
  weights = np.linspace(0.5, 1.5, 10).astype(np.float32)
  np.testing.assert_allclose(
    _loss_jit(x, labels, 0.5, block_size=block_size),
    _loss_jit(x, labels, 0.5),
    **F32,
  )
  np.testing.assert_allclose(
    _grad(x, labels, weights, margin=0.5, block_size=block_size),
    _grad(x, labels, weights, margin=0.5),
    **F32,
  )
  rng = np.random.default_rng(block_size)
  reference = rng.standard_normal((7, 4)).astype(np.float32)
  reference_labels = rng.integers(0, 3, 7)
  np.testing.assert_allclose(
    _loss_jit(
      x, labels, 0.5, reference, reference_labels, block_size=block_size
    ),
    _loss_jit(x, labels, 0.5, reference, reference_labels),
    **F32,
  )


@pytest.mark.parametrize('block_size', [None, 2])
def test_local_anchors_against_global_batch(block_size):
  x, labels = _case(10, 12, 4, 3)
  full = _loss_jit(x, labels, 1.0)
  weights = np.linspace(0.5, 1.5, 12)
  slices = [np.arange(0, 5), np.arange(5, 9), np.arange(9, 12)]
  for rows in slices:
    local = _loss_jit(
      x[rows], labels[rows], 1.0, x, labels, rows, block_size=block_size
    )
    np.testing.assert_allclose(local, full[rows], **F64)

  def sliced_total(x_):
    total = 0.0
    for rows in slices:
      loss = _triplet.batch_hard_triplet_loss(
        x_[rows],
        labels[rows],
        margin=1.0,
        reference=_pairwise.ReferenceSet(x_, labels),
        anchor_indices=rows,
        block_size=block_size,
      )
      total = total + jnp.sum(weights[rows] * loss)
    return total

  np.testing.assert_allclose(
    jax.jit(jax.grad(sliced_total))(x),
    _grad(x, labels, weights, margin=1.0),
    **F64,
  )


def test_vmap_matches_loop():
  xs = np.stack([_case(seed, 6, 3, 2)[0] for seed in range(3)])
  labels = np.array([0, 0, 1, 1, 2, 2])
  batched = jax.jit(
    jax.vmap(lambda x: _triplet.batch_hard_triplet_loss(x, labels, margin=0.5))
  )(xs)
  for x, got in zip(xs, batched, strict=True):
    np.testing.assert_allclose(got, _triplet_ref(x, labels, 0.5), **F64)


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def _call(**overrides):
  kwargs = {
    'embeddings': np.zeros((4, 3), np.float32),
    'labels': np.zeros(4, np.int32),
    'margin': 0.2,
  }
  kwargs.update(overrides)
  return _triplet.batch_hard_triplet_loss(**kwargs)


@pytest.mark.parametrize(
  'overrides, error, message',
  [
    ({'margin': -0.1}, ValueError, r'`margin` must be >= 0, received -0.1'),
    ({'margin': np.ones(3)}, ValueError, r'`margin`.*scalar.*\(3,\)'),
    ({'squared': 1}, TypeError, r'`squared` must be a Python bool.*1'),
    ({'soft': 'yes'}, TypeError, r"`soft` must be a Python bool.*'yes'"),
    ({'block_size': 0}, ValueError, r'`block_size`.*received 0'),
    ({'block_size': 2.0}, TypeError, r'`block_size`.*received 2.0'),
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
      {'labels': np.zeros(5, np.int32)},
      ValueError,
      r'`labels` must have size 4 along axis 0.*received 5',
    ),
    (
      {'labels': np.zeros(4, np.float64)},
      TypeError,
      r'`labels` must hold integer class ids, received dtype float64',
    ),
    (
      {'reference': _pairwise.ReferenceSet(np.zeros((6, 3), np.float32), None)},
      ValueError,
      r'`reference.labels` must be an array, received None',
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
      {'anchor_indices': np.zeros((4, 1), np.int32)},
      ValueError,
      r'`anchor_indices` must have rank 1.*\(4, 1\)',
    ),
  ],
)
def test_bad_input(overrides, error, message):
  with pytest.raises(error, match=message):
    _call(**overrides)
