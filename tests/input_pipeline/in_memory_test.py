"""Small training sets held in memory give the records' batches exactly."""

import numpy as np
import pytest

import input_pipeline
from tests import support


def _batches(config, steps):
  dataset = input_pipeline.create_dataset(config, seed=3)
  return dataset, [dataset.train_batch(step) for step in steps]


@pytest.mark.parametrize(
  'overrides',
  [
    {},  # digits: no augmentation, random sampler.
    {'sampler': 'class_balanced', 'samples_per_class': 4},
    {'class_disjoint': True},
  ],
  ids=['random', 'class_balanced', 'class_disjoint'],
)
def test_digits_in_memory_equal_the_records(digits_dir, overrides):
  config = support.make_input_config(
    name='digits', data_dir=digits_dir, batch_size=16, **overrides
  )
  held, in_memory = _batches(config, range(5))
  config.in_memory_mb = 0
  read, from_records = _batches(config, range(5))
  assert held._held_train_view() is not None
  assert read._held_train_view() is None
  for a, b in zip(in_memory, from_records, strict=True):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
    assert a['image'].dtype == b['image'].dtype == np.float32


def test_crop_flip_folder_in_memory_equals_the_records(tmp_path):
  root = str(tmp_path / 'images')
  support.write_image_folder(root, per_class=6, size=(8, 8))
  config = support.make_input_config(
    name='image_folder',
    image_folder=root,
    data_dir=str(tmp_path / 'tfds'),
    batch_size=4,
    augment=True,
    normalization='imagenet',
  )
  held, in_memory = _batches(config, range(6))
  config.in_memory_mb = 0
  _, from_records = _batches(config, range(6))
  assert held.spec.augmentation == 'crop_flip'
  assert held._held_train_view() is not None
  for a, b in zip(in_memory, from_records, strict=True):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])


def test_a_set_over_the_budget_is_read_from_the_records(digits_dir):
  # Digits' 1,438 training images of 8x8x1 bytes: 11,504 bytes > 0 MiB.
  config = support.make_input_config(
    name='digits', data_dir=digits_dir, batch_size=16, in_memory_mb=0
  )
  dataset = input_pipeline.create_dataset(config, seed=0)
  dataset.train_batch(0)
  assert dataset._held_train_view() is None
