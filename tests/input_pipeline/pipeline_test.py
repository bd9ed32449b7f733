"""Determinism, resumption, multi-process slicing and evaluation passes."""

import itertools

import numpy as np
import pytest

import input_pipeline
from tests import support


def _create(config, process_index=0, process_count=1, seed=7):
  return input_pipeline.create_dataset(
    config,
    seed=seed,
    process_index=process_index,
    process_count=process_count,
  )


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope='module')
def color_folder_dir(tmp_path_factory):
  """A prepared 4-class folder of 12x12 RGB images (CIFAR-like aug)."""
  root = str(tmp_path_factory.mktemp('images'))
  support.write_image_folder(
    root, classes=('a', 'b', 'c', 'd'), per_class=6, size=(12, 12)
  )
  return root, str(tmp_path_factory.mktemp('tfds_folder'))


@pytest.mark.parametrize('sampler', ['random', 'class_balanced'])
def test_resumed_iterator_equals_uninterrupted(digits_dir, sampler):
  config = support.make_input_config(
    data_dir=digits_dir,
    batch_size=40,
    sampler=sampler,
    num_threads=2,
    prefetch=3,
  )
  dataset = _create(config)
  # Crosses an epoch boundary (35 steps per epoch for random).
  uninterrupted = list(itertools.islice(dataset.train_batches(), 40))
  resumed_at = 33
  resumed = list(itertools.islice(dataset.train_batches(resumed_at), 7))
  for k, batch in enumerate(resumed):
    _assert_batches_equal(batch, uninterrupted[resumed_at + k])
  # A fresh Dataset object (a restarted job) gives the same batches.
  again = _create(config)
  _assert_batches_equal(again.train_batch(37), uninterrupted[37])
  # Threads and prefetching do not change the order.
  config.num_threads = 0
  _assert_batches_equal(
    next(_create(config).train_batches(12)), uninterrupted[12]
  )


def test_seed_changes_the_order(digits_dir):
  config = support.make_input_config(data_dir=digits_dir, batch_size=32)
  a = _create(config, seed=0).global_batch_indices(0)
  b = _create(config, seed=1).global_batch_indices(0)
  assert not np.array_equal(a, b)


@pytest.mark.parametrize(
  'sampler,batch_size,m', [('random', 32, 4), ('class_balanced', 24, 3)]
)
def test_two_processes_concatenate_to_the_global_batch(
  digits_dir, sampler, batch_size, m
):
  config = support.make_input_config(
    data_dir=digits_dir,
    batch_size=batch_size,
    sampler=sampler,
    samples_per_class=m,
  )
  single = _create(config)
  halves = [_create(config, p, 2) for p in range(2)]
  assert halves[0].local_batch_size == batch_size // 2
  assert halves[0].global_batch_size == batch_size
  for step in (0, 5, 60):
    whole = single.train_batch(step)
    parts = [h.train_batch(step) for h in halves]
    for key in whole:
      np.testing.assert_array_equal(
        np.concatenate([p[key] for p in parts]), whole[key]
      )


def test_augmentation_is_process_independent_and_resumable(color_folder_dir):
  root, data_dir = color_folder_dir
  config = support.make_input_config(
    name='image_folder',
    image_folder=root,
    data_dir=data_dir,
    batch_size=8,
    augment=True,
  )
  single = _create(config)
  halves = [_create(config, p, 2) for p in range(2)]
  plain = _create(
    support.make_input_config(
      name='image_folder',
      image_folder=root,
      data_dir=data_dir,
      batch_size=8,
    )
  )
  for step in (0, 3, 11):
    whole = single.train_batch(step)
    parts = [h.train_batch(step) for h in halves]
    np.testing.assert_array_equal(
      np.concatenate([p['image'] for p in parts]), whole['image']
    )
    # Resumption: a later iterator from `step` gives the same images.
    np.testing.assert_array_equal(
      next(single.train_batches(step))['image'], whole['image']
    )
    # Augmentation really changes images (crop offsets / flips).
    assert not np.array_equal(whole['image'], plain.train_batch(step)['image'])
    assert whole['image'].shape == (8, 12, 12, 3)


@pytest.mark.parametrize('process_count', [1, 2, 3])
@pytest.mark.parametrize('split', ['train', 'test'])
def test_eval_covers_every_example_once(digits_dir, process_count, split):
  config = support.make_input_config(data_dir=digits_dir, batch_size=48)
  seen, batch_counts, size = [], set(), None
  for p in range(process_count):
    dataset = _create(config, p, process_count)
    size = (
      dataset.info.num_train_examples
      if split == 'train'
      else dataset.info.num_test_examples
    )
    batches = list(dataset.eval_batches(split, 50, with_index=True))
    batch_counts.add(len(batches))
    for batch in batches:
      assert batch['image'].shape == (50, 8, 8, 1)
      assert batch['label'].shape == (50,) and batch['mask'].shape == (50,)
      assert batch['mask'].dtype == bool
      mask = batch['mask']
      # Padding: mask False, index -1, zero images and labels.
      assert np.all(batch['index'][~mask] == -1)
      assert np.all(batch['image'][~mask] == 0)
      assert np.all(batch['label'][~mask] == 0)
      # The valid rows are process p's strided shard.
      assert np.all(batch['index'][mask] % process_count == p)
      seen.append(batch['index'][mask])
  # Every process yields the same number of batches (lockstep collectives).
  assert len(batch_counts) == 1
  seen = np.sort(np.concatenate(seen))
  np.testing.assert_array_equal(seen, np.arange(size))


def test_eval_batches_are_in_split_order(digits_dir):
  dataset = _create(support.make_input_config(data_dir=digits_dir))
  batch = next(dataset.eval_batches('test', 16, with_index=True))
  np.testing.assert_array_equal(batch['index'], np.arange(16))
  with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
    dataset.eval_batches('validation', 16)
  with pytest.raises(ValueError, match='batch_size must be positive'):
    dataset.eval_batches('test', 0)


def test_class_disjoint_digits(digits_dir):
  dataset = _create(
    support.make_input_config(data_dir=digits_dir, class_disjoint=True)
  )
  info = dataset.info
  assert info.class_disjoint
  assert info.num_classes == 5 and info.num_test_classes == 5
  assert info.class_names == ('0', '1', '2', '3', '4')
  assert info.test_class_names == ('5', '6', '7', '8', '9')
  train_labels = np.concatenate(
    [b['label'][b['mask']] for b in dataset.eval_batches('train', 256)]
  )
  test_labels = np.concatenate(
    [b['label'][b['mask']] for b in dataset.eval_batches('test', 256)]
  )
  assert len(train_labels) == info.num_train_examples
  assert len(test_labels) == info.num_test_examples
  # Train: classes 0..4 only; test: the original classes 5..9 re-based.
  assert set(train_labels) == set(range(5))
  assert set(test_labels) == set(range(5))
  for step in range(5):
    assert dataset.train_batch(step)['label'].max() < 5
  # The test examples are the test split's digits of classes 5..9.
  from input_pipeline.datasets import digits  # pylint: disable=g-import-not-at-top

  _, test_y = digits.load_split('test')
  np.testing.assert_array_equal(test_labels, test_y[test_y >= 5] - 5)
  _, train_y = digits.load_split('train')
  np.testing.assert_array_equal(train_labels, train_y[train_y < 5])


def test_batch_size_errors(digits_dir):
  with pytest.raises(ValueError, match='multiple of the process count 3'):
    _create(support.make_input_config(data_dir=digits_dir, batch_size=32), 0, 3)
  with pytest.raises(ValueError, match='process_index must be in'):
    _create(support.make_input_config(data_dir=digits_dir), 2, 2)
  with pytest.raises(ValueError, match='larger than the 1438 training'):
    _create(support.make_input_config(data_dir=digits_dir, batch_size=2000))
  with pytest.raises(ValueError, match='sampler must be one of'):
    _create(support.make_input_config(data_dir=digits_dir, sampler='balanced'))
  with pytest.raises(ValueError, match='start_step must be >= 0'):
    _create(support.make_input_config(data_dir=digits_dir)).train_batches(-1)
