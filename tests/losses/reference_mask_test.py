"""`ReferenceSet.valid`: a masked reference row is as if it were not there.

Every pair-wise loss (and `valid_pairwise_anchors`) with a mask must equal
the same call on the reference set with the masked rows removed: values
and gradients, dense and in row blocks, with and without own copies of the
anchors in the reference set (an own copy may sit in a masked row).
"""

import functools

import jax
import numpy as np
import pytest

import losses

_LOSSES = {
  'circle': functools.partial(
    losses.circle_loss_pairwise, margin=0.25, gamma=16.0
  ),
  'triplet': functools.partial(losses.batch_hard_triplet_loss, margin=0.3),
  'ldmat': losses.distance_matrix_loss,
  'ldmat_cosine': functools.partial(
    losses.distance_matrix_loss,
    distance='cosine',
    inter_class_distance=1.0,
    relaxation=0.05,
  ),
}


def _case(seed, with_own_copies):
  rng = np.random.default_rng(seed)
  reference = rng.standard_normal((11, 5)).astype(np.float32)
  reference_labels = rng.integers(0, 3, 11).astype(np.int32)
  mask = np.ones(11, bool)
  mask[[1, 4, 5, 9]] = False
  # Masked rows hold what an unwritten memory row holds: zeros.
  reference[~mask] = 0.0
  if with_own_copies:
    # The anchors are rows 3..7 of the reference set (the global batch);
    # rows 4 and 5 are masked, so two anchors' own copies are masked.
    indices = np.arange(3, 8, dtype=np.int32)
    anchors = reference[indices] + 0.0
    anchors[[1, 2]] = rng.standard_normal((2, 5))
    labels = reference_labels[indices]
  else:
    indices = None
    anchors = rng.standard_normal((6, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 6).astype(np.int32)
  return anchors, labels, reference, reference_labels, mask, indices


def _kept_indices(indices, mask):
  """Each anchor's own row in the reference set without the masked rows."""
  if indices is None:
    return None
  new_rows = np.cumsum(mask) - 1
  return np.where(mask[indices], new_rows[indices], -1).astype(np.int32)


# Each loss dense without own copies and in blocks with them: both
# features on each, at half the compilations of the full product.
@pytest.mark.parametrize(
  ('name', 'block_size', 'with_own_copies'),
  [(name, None, False) for name in sorted(_LOSSES)]
  + [(name, 2, True) for name in sorted(_LOSSES)],
)
def test_masked_rows_are_as_if_removed(name, block_size, with_own_copies):
  loss_fn = functools.partial(_LOSSES[name], block_size=block_size)
  anchors, labels, reference, reference_labels, mask, indices = _case(
    0, with_own_copies
  )

  def masked(x, r):
    return loss_fn(
      x,
      labels,
      reference=losses.ReferenceSet(r, reference_labels, mask),
      anchor_indices=indices,
    )

  def removed(x, r):
    return loss_fn(
      x,
      labels,
      reference=losses.ReferenceSet(r, reference_labels[mask]),
      anchor_indices=_kept_indices(indices, mask),
    )

  got = jax.jit(masked)(anchors, reference)
  want = jax.jit(removed)(anchors, reference[mask])
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  cotangent = np.linspace(0.5, 1.5, len(labels)).astype(np.float32)
  grad_masked = jax.jit(
    jax.grad(lambda x, r: (masked(x, r) * cotangent).sum(), (0, 1))
  )
  grad_removed = jax.jit(
    jax.grad(lambda x, r: (removed(x, r) * cotangent).sum(), (0, 1))
  )
  x_grad, r_grad = grad_masked(anchors, reference)
  x_want, r_want = grad_removed(anchors, reference[mask])
  np.testing.assert_allclose(x_grad, x_want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(r_grad[mask], r_want, rtol=1e-4, atol=1e-5)
  # No gradient reaches a masked row.
  np.testing.assert_array_equal(r_grad[~mask], 0.0)


@pytest.mark.parametrize('with_own_copies', [False, True])
def test_valid_anchors_with_mask_are_as_if_removed(with_own_copies):
  valid = jax.jit(losses.valid_pairwise_anchors)
  for seed in range(4):
    _, labels, reference, reference_labels, mask, indices = _case(
      seed, with_own_copies
    )
    got = valid(
      labels,
      reference=losses.ReferenceSet(reference, reference_labels, mask),
      anchor_indices=indices,
    )
    want = valid(
      labels,
      reference=losses.ReferenceSet(reference[mask], reference_labels[mask]),
      anchor_indices=_kept_indices(indices, mask),
    )
    np.testing.assert_array_equal(got, want)


def test_mask_with_the_sentinel_label_and_an_empty_reference():
  # An anchor labelled with the dtype's largest value (the sentinel the
  # masked rows take inside) still sees the masked rows as absent.
  top = np.iinfo(np.int32).max
  labels = np.array([top, 5], np.int32)
  reference_labels = np.array([top, top, 0, 5], np.int32)
  mask = np.array([True, False, True, False])
  reference = np.zeros((4, 3), np.float32)
  got = losses.valid_pairwise_anchors(
    labels, reference=losses.ReferenceSet(reference, reference_labels, mask)
  )
  np.testing.assert_array_equal(got, [True, False])
  # Everything masked: no anchor has a pair; the losses are 0, finite.
  nothing = losses.ReferenceSet(reference, reference_labels, np.zeros(4, bool))
  got = losses.valid_pairwise_anchors(labels, reference=nothing)
  np.testing.assert_array_equal(got, [False, False])
  for loss_fn in _LOSSES.values():
    values = jax.jit(loss_fn)(
      np.ones((2, 3), np.float32), labels, reference=nothing
    )
    np.testing.assert_array_equal(values, 0.0)


def test_bad_mask_is_rejected():
  x = np.zeros((2, 3), np.float32)
  labels = np.zeros(2, np.int32)
  rows = np.zeros((4, 3), np.float32), np.zeros(4, np.int32)
  with pytest.raises(ValueError, match='`reference.valid` must have size 4'):
    losses.circle_loss_pairwise(
      x,
      labels,
      margin=0.25,
      gamma=16.0,
      reference=losses.ReferenceSet(*rows, valid=np.ones(3, bool)),
    )
  with pytest.raises(TypeError, match='`reference.valid` must be a bool'):
    losses.batch_hard_triplet_loss(
      x,
      labels,
      margin=0.1,
      reference=losses.ReferenceSet(*rows, valid=np.ones(4, np.int32)),
    )
