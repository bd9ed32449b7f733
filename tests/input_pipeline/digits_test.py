"""The embedded digits sets: preparation, contents, multi-label composition."""

import glob
import os
import time

import numpy as np
import pytest
from sklearn import datasets as sk_datasets

import input_pipeline
from input_pipeline.datasets import digits
from tests import support


def _all_batches(dataset, split, batch_size=128):
  images, labels = [], []
  for batch in dataset.eval_batches(split, batch_size):
    images.append(batch['image'][batch['mask']])
    labels.append(batch['label'][batch['mask']])
  return np.concatenate(images), np.concatenate(labels)


def test_split_is_stratified_deterministic_and_complete():
  train_x, train_y = digits.load_split('train')
  test_x, test_y = digits.load_split('test')
  again_x, again_y = digits.load_split('train')
  np.testing.assert_array_equal(train_x, again_x)
  np.testing.assert_array_equal(train_y, again_y)
  assert len(train_y) + len(test_y) == 1797
  # Stratified: every class sends round(20%) of its digits to test.
  total = np.bincount(sk_datasets.load_digits().target, minlength=10)
  np.testing.assert_array_equal(
    np.bincount(test_y, minlength=10), np.round(0.2 * total).astype(int)
  )
  # The two splits partition sklearn's digits: each image appears as often
  # as in the source.
  source = sk_datasets.load_digits().images.astype(np.uint8)
  ours = np.concatenate([train_x, test_x])[..., 0]
  key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))
  assert key(ours) == key(source)


def test_prepared_records_match_the_split(digits_dir):
  dataset = input_pipeline.create_dataset(
    support.make_input_config(data_dir=digits_dir),
    seed=0,
    process_index=0,
    process_count=1,
  )
  info = dataset.info
  assert info.name == 'digits'
  assert info.num_classes == 10 and not info.multilabel
  assert info.image_shape == (8, 8, 1)
  assert info.num_train_examples + info.num_test_examples == 1797
  assert info.class_names == tuple(str(d) for d in range(10))
  for split in ('train', 'test'):
    images, labels = _all_batches(dataset, split)
    expected_x, expected_y = digits.load_split(split)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (len(expected_y), 8, 8, 1)
    assert labels.min() >= 0 and labels.max() <= 9
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(labels, expected_y)
    np.testing.assert_allclose(images, expected_x / 16.0, rtol=0, atol=0)


def test_second_create_dataset_does_not_prepare_again(digits_dir):
  files = glob.glob(os.path.join(digits_dir, 'digits', '*', '*'))
  before = {f: os.stat(f).st_mtime_ns for f in files}
  start = time.perf_counter()
  input_pipeline.create_dataset(
    support.make_input_config(data_dir=digits_dir),
    seed=0,
    process_index=0,
    process_count=1,
  )
  elapsed = time.perf_counter() - start
  after = {
    f: os.stat(f).st_mtime_ns
    for f in glob.glob(os.path.join(digits_dir, 'digits', '*', '*'))
  }
  assert after == before
  assert not glob.glob(os.path.join(digits_dir, 'digits', 'incomplete*'))
  assert elapsed < 5.0


def test_train_batches_shapes_and_epoch_coverage(digits_dir):
  dataset = input_pipeline.create_dataset(
    support.make_input_config(data_dir=digits_dir, batch_size=100),
    seed=3,
    process_index=0,
    process_count=1,
  )
  assert dataset.steps_per_epoch == dataset.info.num_train_examples // 100
  batches = dataset.train_batches()
  first_epoch = [next(batches) for _ in range(dataset.steps_per_epoch)]
  for batch in first_epoch:
    assert batch['image'].shape == (100, 8, 8, 1)
    assert batch['image'].dtype == np.float32
    assert batch['label'].shape == (100,) and batch['label'].dtype == np.int32
  # One epoch = distinct examples (a permutation with the remainder dropped).
  indices = np.concatenate(
    [dataset.global_batch_indices(s) for s in range(dataset.steps_per_epoch)]
  )
  assert len(np.unique(indices)) == len(indices)
  # Labels agree with the split at those indices.
  _, train_y = digits.load_split('train')
  np.testing.assert_array_equal(
    np.concatenate([b['label'] for b in first_epoch]), train_y[indices]
  )


def test_multilabel_targets_mark_exactly_the_digits_shown(digits_dir):
  dataset = input_pipeline.create_dataset(
    support.make_input_config(name='digits_multilabel', data_dir=digits_dir),
    seed=0,
    process_index=0,
    process_count=1,
  )
  info = dataset.info
  assert info.multilabel and info.num_classes == 10
  assert info.image_shape == (8, 16, 1)
  for split in ('train', 'test'):
    images, targets = _all_batches(dataset, split)
    source_x, source_y = digits.load_split(split)
    pairs = digits.compose_pairs(split)
    assert images.shape == (len(source_y), 8, 16, 1)
    assert targets.shape == (len(source_y), 10) and targets.dtype == np.int32
    for row, (left, right) in enumerate(pairs):
      np.testing.assert_allclose(images[row, :, :8], source_x[left] / 16.0)
      np.testing.assert_allclose(images[row, :, 8:], source_x[right] / 16.0)
      expected = np.zeros(10, np.int32)
      expected[source_y[left]] = expected[source_y[right]] = 1
      np.testing.assert_array_equal(targets[row], expected)
  # Some composites show one digit twice (a single label), most show two.
  counts = targets.sum(axis=1)
  assert set(np.unique(counts)) == {1, 2}


def test_multilabel_train_batches(digits_dir):
  dataset = input_pipeline.create_dataset(
    support.make_input_config(
      name='digits_multilabel', data_dir=digits_dir, batch_size=8
    ),
    seed=0,
    process_index=0,
    process_count=1,
  )
  batch = dataset.train_batch(5)
  assert batch['image'].shape == (8, 8, 16, 1)
  assert batch['label'].shape == (8, 10) and batch['label'].dtype == np.int32
  assert set(np.unique(batch['label'])) <= {0, 1}


def test_multilabel_rejects_class_protocols(digits_dir):
  with pytest.raises(ValueError, match='class_balanced.*multi-label'):
    input_pipeline.create_dataset(
      support.make_input_config(
        name='digits_multilabel',
        data_dir=digits_dir,
        sampler='class_balanced',
      ),
      seed=0,
      process_index=0,
      process_count=1,
    )
  with pytest.raises(ValueError, match='class_disjoint'):
    input_pipeline.create_dataset(
      support.make_input_config(
        name='digits_multilabel', data_dir=digits_dir, class_disjoint=True
      ),
      seed=0,
      process_index=0,
      process_count=1,
    )


def test_unknown_name_lists_valid_names(tmp_path):
  with pytest.raises(ValueError) as error:
    input_pipeline.create_dataset(
      support.make_input_config(name='imagenet', data_dir=str(tmp_path)),
      seed=0,
      process_index=0,
      process_count=1,
    )
  message = str(error.value)
  assert "'imagenet'" in message
  for name in input_pipeline.NAMES:
    assert name in message
