"""Miners against brute-force loops, and their masks in the losses."""

import numpy as np
import pytest

import losses


def _case(seed, batch=9, dim=3, num_classes=3):
  rng = np.random.default_rng(seed)
  return rng.standard_normal((batch, dim)), rng.integers(0, num_classes, batch)


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pairs(labels):
  for i in range(len(labels)):
    for j in range(len(labels)):
      if i != j:
        yield i, j, labels[i] == labels[j]


def test_pairs_by_margin_match_loops():
  x, labels = _case(0)
  got = np.asarray(
    losses.mine_pairs_by_margin(x, labels, pos_margin=0.9, neg_margin=1.1)
  )
  unit = _unit(x)
  expected = np.zeros_like(got)
  for i, j, same in _pairs(labels):
    d = np.linalg.norm(unit[i] - unit[j])
    expected[i, j] = d > 0.9 if same else d < 1.1
  np.testing.assert_array_equal(got, expected)


def test_multi_similarity_pairs_match_loops():
  x, labels = _case(1)
  got = np.asarray(losses.mine_multi_similarity_pairs(x, labels, epsilon=0.1))
  s = _unit(x) @ _unit(x).T
  expected = np.zeros_like(got)
  for i in range(len(labels)):
    pos = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
    neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
    for j in pos:
      expected[i, j] = bool(neg) and s[i, j] - 0.1 < max(s[i, neg])
    for j in neg:
      expected[i, j] = bool(pos) and s[i, j] + 0.1 > min(s[i, pos])
  np.testing.assert_array_equal(got, expected)
  assert 0 < got.sum() < len(labels) * (len(labels) - 1)


@pytest.mark.parametrize('triplets', ['all', 'semihard', 'hard'])
def test_triplets_match_loops(triplets):
  x, labels = _case(2)
  got = np.asarray(
    losses.mine_triplets(x, labels, margin=0.3, triplets=triplets)
  )
  unit = _unit(x)
  n = len(labels)
  expected = np.zeros((n, n, n), bool)
  for a in range(n):
    for p in range(n):
      for q in range(n):
        if p == a or labels[p] != labels[a] or labels[q] == labels[a]:
          continue
        d_ap = np.linalg.norm(unit[a] - unit[p])
        d_an = np.linalg.norm(unit[a] - unit[q])
        expected[a, p, q] = {
          'all': d_an < d_ap + 0.3,
          'semihard': d_ap < d_an < d_ap + 0.3,
          'hard': d_an < d_ap,
        }[triplets]
  np.testing.assert_array_equal(got, expected)


def test_masks_drive_the_losses():
  x, labels = _case(3)
  # Clustered by class: the easy pairs are mined out.
  clustered = np.eye(3)[labels] + 0.3 * x
  pair_mask = losses.mine_multi_similarity_pairs(clustered, labels)
  assert not np.all(np.asarray(pair_mask) | np.eye(len(labels), dtype=bool))
  mined = losses.multi_similarity_loss(clustered, labels, pair_mask=pair_mask)
  assert not np.allclose(mined, losses.multi_similarity_loss(clustered, labels))
  pair_mask = losses.mine_pairs_by_margin(x, labels)
  losses.contrastive_loss(x, labels, pair_mask=pair_mask)
  # The semi-hard miner's triplets are the loss's own semi-hard selection.
  triplet_mask = losses.mine_triplets(
    x, labels, margin=0.3, triplets='semihard', normalize=False
  )
  np.testing.assert_allclose(
    losses.triplet_margin_loss(
      x, labels, margin=0.3, triplet_mask=triplet_mask
    ),
    losses.triplet_margin_loss(x, labels, margin=0.3, triplets='semihard'),
    rtol=1e-12,
  )
  blocked = losses.triplet_margin_loss(
    x, labels, margin=0.3, triplet_mask=triplet_mask, block_size=4
  )
  np.testing.assert_allclose(
    blocked,
    losses.triplet_margin_loss(x, labels, margin=0.3, triplets='semihard'),
    rtol=1e-12,
  )
