"""Pair-based baselines against float64 NumPy references of the papers."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import losses

F64 = {'rtol': 1e-9, 'atol': 1e-11}


# ---------------------------------------------------------------------------
# References, from each paper's formula with loops, in float64. Each takes
# the anchor, its positives' and negatives' embeddings (already chosen) and
# returns the anchor's loss.
# ---------------------------------------------------------------------------


def _unit(v):
  return v / max(np.linalg.norm(v), 1e-12)


def _contrastive(a, ps, ns, pos_margin=0.0, neg_margin=1.0, power=2):
  def cost(h):
    return h**2 / 2 if power == 2 else h

  pos = [cost(max(np.linalg.norm(a - p) - pos_margin, 0.0)) for p in ps]
  neg = [cost(max(neg_margin - np.linalg.norm(a - n), 0.0)) for n in ns]
  return (np.mean(pos) if pos else 0.0) + (np.mean(neg) if neg else 0.0)


def _multi_similarity(a, ps, ns, alpha=2.0, beta=50.0, base=0.5):
  a = _unit(a)
  pos = sum(np.exp(-alpha * (a @ _unit(p) - base)) for p in ps)
  neg = sum(np.exp(beta * (a @ _unit(n) - base)) for n in ns)
  return np.log1p(pos) / alpha + np.log1p(neg) / beta


def _lifted(a, ps, ns, neg_margin=1.0, pos_margin=0.0):
  pos = np.log(sum(np.exp(np.linalg.norm(a - p) - pos_margin) for p in ps))
  neg = np.log(sum(np.exp(neg_margin - np.linalg.norm(a - n)) for n in ns))
  return max(pos + neg, 0.0)


def _n_pairs(a, ps, ns):
  return np.mean([np.log1p(sum(np.exp(a @ n - a @ p) for n in ns)) for p in ps])


def _triplet(a, ps, ns, margin, triplets='all', squared=False):
  def d(u, v):
    squared_distance = np.sum((u - v) ** 2)
    return squared_distance if squared else np.sqrt(squared_distance)

  total = 0.0
  for p in ps:
    for n in ns:
      d_ap, d_an = d(a, p), d(a, n)
      if triplets == 'semihard' and not d_ap < d_an < d_ap + margin:
        continue
      if triplets == 'hard' and not d_an < d_ap:
        continue
      total += max(d_ap - d_an + margin, 0.0)
  return total / (len(ps) * len(ns))


def _angular(a, ps, ns, alpha=40.0):
  tan_squared = math.tan(math.radians(alpha)) ** 2
  a = _unit(a)
  values = []
  for p in ps:
    p = _unit(p)
    f = [
      4 * tan_squared * (a + p) @ _unit(n) - 2 * (1 + tan_squared) * a @ p
      for n in ns
    ]
    values.append(np.log1p(np.sum(np.exp(f))))
  return np.mean(values)


def _supcon(a, ps, ns, temperature=0.1):
  a = _unit(a)
  everything = [np.exp(a @ _unit(b) / temperature) for b in [*ps, *ns]]
  return -np.mean(
    [np.log(np.exp(a @ _unit(p) / temperature) / sum(everything)) for p in ps]
  )


def _ntxent(a, ps, ns, temperature=0.07):
  a = _unit(a)
  negatives = sum(np.exp(a @ _unit(n) / temperature) for n in ns)
  values = []
  for p in ps:
    positive = np.exp(a @ _unit(p) / temperature)
    values.append(-np.log(positive / (positive + negatives)))
  return np.mean(values)


# name -> (function, reference, hyperparameters of the test).
_LOSSES = {
  'contrastive': (losses.contrastive_loss, _contrastive, {}),
  'multi_similarity': (losses.multi_similarity_loss, _multi_similarity, {}),
  'lifted_structure': (losses.lifted_structure_loss, _lifted, {}),
  'n_pairs': (losses.n_pairs_loss, _n_pairs, {}),
  'triplet_margin': (losses.triplet_margin_loss, _triplet, {'margin': 0.3}),
  'angular': (losses.angular_loss, _angular, {}),
  'supcon': (losses.supcon_loss, _supcon, {}),
  'ntxent': (losses.ntxent_loss, _ntxent, {}),
}
# Each term separately: an anchor with pairs of one kind only has a value.
_PER_TERM = ('contrastive', 'multi_similarity')


def _reference_losses(
  name,
  x,
  labels,
  reference=None,
  reference_labels=None,
  anchor_indices=None,
  valid=None,
  pair_mask=None,
  **hyperparameters,
):
  reference_fn = _LOSSES[name][1]
  if reference is None:
    reference, reference_labels = x, labels
    if anchor_indices is None:
      anchor_indices = np.arange(len(labels))
  elif anchor_indices is None:
    anchor_indices = np.full(len(labels), -1)
  if valid is None:
    valid = np.ones(len(reference_labels), bool)
  out = np.zeros(len(labels))
  for i in range(len(labels)):
    ps, ns = [], []
    for j in range(len(reference_labels)):
      if j == anchor_indices[i] or not valid[j]:
        continue
      if pair_mask is not None and not pair_mask[i, j]:
        continue
      (ps if labels[i] == reference_labels[j] else ns).append(reference[j])
    if (ps and ns) or (name in _PER_TERM and (ps or ns)):
      out[i] = reference_fn(x[i], ps, ns, **hyperparameters)
  return out


def _case(seed, batch, dim, num_classes, scale=0.5):
  rng = np.random.default_rng(seed)
  x = scale * rng.standard_normal((batch, dim))
  labels = rng.integers(0, num_classes, batch)
  return x, labels


def _loss(name, x, labels, **kwargs):
  hyperparameters = {**_LOSSES[name][2], **kwargs}
  # Compiled (labels and hyperparameters as constants): one program per
  # call instead of one per operation, most of these tests' time.
  return jax.jit(lambda x_: _LOSSES[name][0](x_, labels, **hyperparameters))(x)


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(_LOSSES))
@pytest.mark.parametrize('seed, batch, num_classes', [(0, 8, 3), (1, 7, 2)])
def test_matches_reference(name, seed, batch, num_classes):
  x, labels = _case(seed, batch, 4, num_classes)
  got = _loss(name, x, labels)
  assert got.dtype == jnp.float64
  expected = _reference_losses(name, x, labels, **_LOSSES[name][2])
  np.testing.assert_allclose(got, expected, **F64)


@pytest.mark.parametrize('name', sorted(_LOSSES))
def test_reference_set_valid_rows_and_own_copies(name):
  """Invalid rows are neither pairs; an anchor's own copy is no pair."""
  x, labels = _case(2, 5, 3, 2)
  reference, reference_labels = _case(3, 9, 3, 2)
  valid = np.array([True, True, False, True, True, False, True, True, True])
  anchor_indices = np.array([0, -1, 3, -1, 8])
  got = _loss(
    name,
    x,
    labels,
    reference=losses.ReferenceSet(
      jnp.asarray(reference), jnp.asarray(reference_labels), jnp.asarray(valid)
    ),
    anchor_indices=anchor_indices,
  )
  expected = _reference_losses(
    name,
    x,
    labels,
    reference,
    reference_labels,
    anchor_indices,
    valid,
    **_LOSSES[name][2],
  )
  np.testing.assert_allclose(got, expected, **F64)
  # Dropping the invalid rows gives the same losses.
  kept = np.flatnonzero(valid)
  remap = np.full(len(valid), -1)
  remap[kept] = np.arange(len(kept))
  dropped = _loss(
    name,
    x,
    labels,
    reference=losses.ReferenceSet(reference[kept], reference_labels[kept]),
    anchor_indices=np.where(anchor_indices >= 0, remap[anchor_indices], -1),
  )
  np.testing.assert_allclose(got, dropped, **F64)


@pytest.mark.parametrize(
  'hyperparameters',
  [
    {'pos_margin': 0.2, 'neg_margin': 0.8, 'power': 1},
    {'pos_margin': 0.1, 'neg_margin': 1.5, 'power': 2},
  ],
)
def test_contrastive_hyperparameters_and_pair_mask(hyperparameters):
  x, labels = _case(4, 8, 3, 3)
  pair_mask = np.random.default_rng(5).random((8, 8)) < 0.6
  got = losses.contrastive_loss(
    x, labels, pair_mask=jnp.asarray(pair_mask), **hyperparameters
  )
  expected = _reference_losses(
    'contrastive', x, labels, pair_mask=pair_mask, **hyperparameters
  )
  np.testing.assert_allclose(got, expected, **F64)


def test_multi_similarity_hyperparameters_and_pair_mask():
  x, labels = _case(6, 8, 3, 3)
  pair_mask = np.random.default_rng(7).random((8, 8)) < 0.6
  hyperparameters = {'alpha': 3.0, 'beta': 20.0, 'base': 0.2}
  got = losses.multi_similarity_loss(
    x, labels, pair_mask=jnp.asarray(pair_mask), **hyperparameters
  )
  expected = _reference_losses(
    'multi_similarity', x, labels, pair_mask=pair_mask, **hyperparameters
  )
  np.testing.assert_allclose(got, expected, **F64)


@pytest.mark.parametrize('triplets', ['all', 'semihard', 'hard'])
@pytest.mark.parametrize('squared', [False, True])
def test_triplet_selections(triplets, squared):
  x, labels = _case(8, 10, 3, 3, scale=1.0)
  kwargs = {'margin': 0.5, 'triplets': triplets, 'squared': squared}
  got = losses.triplet_margin_loss(x, labels, **kwargs)
  expected = _reference_losses('triplet_margin', x, labels, **kwargs)
  np.testing.assert_allclose(got, expected, **F64)
  if triplets != 'all':
    assert np.any(expected > 0)


def test_n_pairs_is_sohns_loss_on_an_n_pair_batch():
  """Anchors against their pairs: one positive, one negative per class."""
  rng = np.random.default_rng(9)
  anchors, positives = rng.standard_normal((2, 4, 3))
  labels = np.arange(4)
  got = losses.n_pairs_loss(
    anchors, labels, reference=losses.ReferenceSet(positives, labels)
  )
  logits = anchors @ positives.T
  expected = np.log1p(
    np.sum(np.exp(logits - np.diag(logits)[:, None]), axis=1) - 1.0
  )
  np.testing.assert_allclose(got, expected, **F64)


@pytest.mark.parametrize('name', ['multi_similarity', 'supcon', 'ntxent'])
def test_large_scales_stay_finite(name):
  x, labels = _case(10, 8, 4, 2)
  scale = {'multi_similarity': {'beta': 1e4}}.get(name, {'temperature': 1e-4})
  values, grads = jax.value_and_grad(
    lambda x_: jnp.sum(_loss(name, x_, labels, **scale))
  )(jnp.asarray(x, jnp.float32))
  assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))


# ---------------------------------------------------------------------------
# Blocks, gradients, coincident embeddings.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(_LOSSES))
def test_blocks_equal_dense(name):
  x, labels = _case(11, 7, 3, 3)
  weights = np.random.default_rng(12).random(7)

  @functools.partial(jax.jit, static_argnames='block_size')
  def value_and_grad(x_, block_size):
    return jax.value_and_grad(
      lambda z: jnp.sum(weights * _loss(name, z, labels, block_size=block_size))
    )(x_)

  dense = value_and_grad(x, None)
  blocked = value_and_grad(x, 3)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, **F64), blocked, dense
  )


@pytest.mark.parametrize('num_classes', [2, 6])
def test_angular_blocks_chunk_each_anchors_positives(num_classes):
  """Over 8 positives (chunks filled, one partly) or few (chunks skipped)."""
  x, labels = _case(15, 30, 4, num_classes)
  weights = np.random.default_rng(16).random(30)

  @functools.partial(jax.jit, static_argnames='block_size')
  def value_and_grad(x_, block_size):
    return jax.value_and_grad(
      lambda z: jnp.sum(
        weights * losses.angular_loss(z, labels, block_size=block_size)
      )
    )(x_)

  blocked = value_and_grad(x, 4)
  np.testing.assert_allclose(
    blocked[0], weights @ _reference_losses('angular', x, labels), **F64
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, **F64),
    blocked,
    value_and_grad(x, None),
  )


@pytest.mark.parametrize('name', sorted(_LOSSES))
def test_check_grads(name):
  x, labels = _case(13, 6, 3, 2)
  reference, reference_labels = _case(14, 4, 3, 2)
  test_util.check_grads(
    # Compiled: check_grads calls it for every direction and order.
    jax.jit(
      lambda x_, r: _loss(
        name, x_, labels, reference=losses.ReferenceSet(r, reference_labels)
      )
    ),
    (x, reference),
    order=1,
    modes=('rev',),
    eps=1e-6,
  )


@pytest.mark.parametrize('name', sorted(_LOSSES))
def test_coincident_embeddings_have_finite_gradients(name):
  x = np.zeros((4, 3), np.float32)
  x[2:] = 1.0
  labels = np.array([0, 0, 1, 1])
  # A memory holding the same points again: exact duplicates of anchors.
  reference = losses.ReferenceSet(jnp.asarray(x), jnp.asarray(labels))
  for kwargs in ({}, {'reference': reference}):
    grads = jax.jit(
      jax.grad(
        lambda x_, kwargs=kwargs: jnp.sum(_loss(name, x_, labels, **kwargs))
      )
    )(jnp.asarray(x))
    assert np.all(np.isfinite(grads)), (name, kwargs)


def test_anchors_without_pairs_are_zero():
  x, _ = _case(15, 3, 3, 1)
  labels = np.array([0, 1, 2])
  for name in sorted(set(_LOSSES) - set(_PER_TERM)):

    def loss(x_, name=name):
      values = _loss(name, x_, labels)
      return jnp.sum(values), values

    # Compiled: one program per loss instead of one per operation.
    grads, values = jax.jit(jax.grad(loss, has_aux=True))(x)
    np.testing.assert_array_equal(values, 0.0)
    np.testing.assert_array_equal(grads, 0.0)


def test_rejects_bad_arguments():
  x, labels = _case(16, 4, 3, 2)
  with pytest.raises(ValueError, match='triplets'):
    losses.triplet_margin_loss(x, labels, margin=0.1, triplets='easy')
  with pytest.raises(ValueError, match='power'):
    losses.contrastive_loss(x, labels, power=3)
  with pytest.raises(ValueError, match='alpha'):
    losses.angular_loss(x, labels, alpha=90.0)
  with pytest.raises(ValueError, match='pair_mask'):
    losses.multi_similarity_loss(x, labels, pair_mask=jnp.ones((4, 3), bool))
  with pytest.raises(TypeError, match='ReferenceSet'):
    losses.supcon_loss(x, labels, reference=(x, labels))
