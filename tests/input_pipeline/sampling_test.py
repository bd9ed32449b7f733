"""Samplers and the class-disjoint selection, on synthetic labels."""

import numpy as np
import pytest

import input_pipeline
from input_pipeline import sampling, sources
from tests import support


def _labels(counts):
  return np.repeat(np.arange(len(counts)), counts)


def test_random_sampler_epochs_are_permutations():
  sampler = sampling.RandomSampler(num_examples=23, batch_size=5, seed=1)
  assert sampler.steps_per_epoch == 4
  for epoch in range(3):
    steps = range(epoch * 4, epoch * 4 + 4)
    indices = np.concatenate([sampler.global_indices(s) for s in steps])
    assert len(indices) == 20 and len(np.unique(indices)) == 20
    assert indices.min() >= 0 and indices.max() < 23
  # Epochs differ, and the same step is the same in a fresh sampler.
  assert not np.array_equal(
    sampler.global_indices(0), sampler.global_indices(4)
  )
  np.testing.assert_array_equal(
    sampling.RandomSampler(23, 5, 1).global_indices(9),
    sampler.global_indices(9),
  )


@pytest.mark.parametrize('m', [2, 4])
def test_class_balanced_batches_hold_p_classes_of_m(m):
  # Class 3 has fewer than m examples: drawn with replacement.
  labels = _labels([9, 7, 12, 1, 5, 8])
  rng = np.random.default_rng(0)
  labels = labels[rng.permutation(len(labels))]
  batch_size = 4 * m
  sampler = sampling.ClassBalancedSampler(
    labels, batch_size, m, seed=3, local_batch_size=batch_size // 2
  )
  seen_classes = set()
  for step in range(50):
    indices = sampler.global_indices(step)
    assert indices.shape == (batch_size,)
    groups = labels[indices].reshape(4, m)
    # P = 4 distinct classes, each exactly m times, grouped contiguously.
    assert np.all(groups == groups[:, :1])
    assert len(np.unique(groups[:, 0])) == 4
    for group_indices, cls in zip(
      indices.reshape(4, m), groups[:, 0], strict=True
    ):
      if np.sum(labels == cls) >= m:
        assert len(np.unique(group_indices)) == m  # no replacement
    # Each half (process slice) holds whole class groups.
    for half in labels[indices].reshape(2, -1):
      _, counts = np.unique(half, return_counts=True)
      assert np.all(counts == m)
    seen_classes |= set(groups[:, 0].tolist())
  assert seen_classes == set(range(6))
  np.testing.assert_array_equal(
    sampler.global_indices(17),
    sampling.ClassBalancedSampler(labels, batch_size, m, 3).global_indices(17),
  )


def test_class_balanced_errors():
  labels = _labels([5, 5, 5])
  with pytest.raises(
    ValueError,
    match=r'batch_size=10 must be a multiple of'
    r' config.input.samples_per_class=4',
  ):
    sampling.ClassBalancedSampler(labels, 10, 4, seed=0)
  with pytest.raises(
    ValueError,
    match=r'per-process batch \(6 = batch_size 12'
    r' / process count\) must be a multiple of',
  ):
    sampling.ClassBalancedSampler(labels, 12, 4, seed=0, local_batch_size=6)
  with pytest.raises(
    ValueError,
    match='4 classes per batch, but the training set has only 3 classes',
  ):
    sampling.ClassBalancedSampler(labels, 8, 2, seed=0)
  with pytest.raises(ValueError, match='samples_per_class must be >= 1'):
    sampling.ClassBalancedSampler(labels, 8, 0, seed=0)


def test_class_balanced_errors_through_create_dataset(digits_dir):
  config = support.make_input_config(
    data_dir=digits_dir,
    sampler='class_balanced',
    batch_size=20,
    samples_per_class=3,
  )
  with pytest.raises(ValueError, match='batch_size=20 must be a multiple'):
    input_pipeline.create_dataset(
      config, seed=0, process_index=0, process_count=1
    )
  config.batch_size, config.samples_per_class = 24, 4
  with pytest.raises(ValueError, match='per-process batch'):
    input_pipeline.create_dataset(
      config, seed=0, process_index=1, process_count=4
    )
  config.batch_size = 32
  dataset = input_pipeline.create_dataset(
    config, seed=0, process_index=1, process_count=2
  )
  labels = dataset.train_batch(4)['label']
  np.testing.assert_array_equal(
    np.unique(labels, return_counts=True)[1], [4, 4, 4, 4]
  )


def test_class_disjoint_same_split():
  train = np.array([0, 3, 1, 2, 3, 0])
  test = np.array([2, 1, 3, 0, 3])
  (tr_split, tr_ids, tr_labels), (te_split, te_ids, te_labels) = (
    sources.class_disjoint_selection(train, test, pool='same_split', boundary=2)
  )
  np.testing.assert_array_equal(tr_split, 0)
  np.testing.assert_array_equal(tr_ids, [0, 2, 5])
  np.testing.assert_array_equal(tr_labels, [0, 1, 0])
  np.testing.assert_array_equal(te_split, 1)
  np.testing.assert_array_equal(te_ids, [0, 2, 4])
  np.testing.assert_array_equal(te_labels, [0, 1, 1])


def test_class_disjoint_all_splits_pools_both_splits():
  train = np.array([0, 3, 1, 2])
  test = np.array([2, 1, 3, 0])
  (tr_split, tr_ids, tr_labels), (te_split, te_ids, te_labels) = (
    sources.class_disjoint_selection(train, test, pool='all_splits', boundary=2)
  )
  np.testing.assert_array_equal(tr_split, [0, 0, 1, 1])
  np.testing.assert_array_equal(tr_ids, [0, 2, 1, 3])
  np.testing.assert_array_equal(tr_labels, [0, 1, 1, 0])
  np.testing.assert_array_equal(te_split, [0, 0, 1, 1])
  np.testing.assert_array_equal(te_ids, [1, 3, 0, 2])
  np.testing.assert_array_equal(te_labels, [1, 0, 0, 1])
  with pytest.raises(ValueError, match='pool must be'):
    sources.class_disjoint_selection(train, test, pool='x', boundary=2)
