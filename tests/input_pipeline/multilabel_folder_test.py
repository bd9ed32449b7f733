"""NUS-WIDE and MS-COCO 2014 read as distributed, through the pipeline."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import input_pipeline
from input_pipeline import preparation
from input_pipeline.datasets import multilabel_folder
from tests import support


def _config(name, root, data_dir, **overrides):
  settings = {
    'name': name,
    f'{name}_root': None if root is None else str(root),
    'data_dir': str(data_dir),
    'image_size': 8,
    'batch_size': 2,
    'normalization': None,
  }
  return support.make_input_config(**{**settings, **overrides})


def _eval_labels(dataset, split):
  rows = list(dataset.eval_batches(split, 2))
  mask = np.concatenate([b['mask'] for b in rows])
  return np.concatenate([b['label'] for b in rows])[mask]


def test_nuswide_listing_skips_missing_images(tmp_path):
  root = str(tmp_path / 'NUS-WIDE')
  support.write_nuswide(root)
  listing = multilabel_folder.list_nuswide(root)
  assert listing.class_names == support.NUSWIDE_CONCEPTS
  assert listing.skipped['train'] == {'missing': 1, 'unlabelled': 0}
  assert [labels for _, labels in listing.files['train']] == [
    (0,),
    (1, 2),
    (),
  ]
  assert listing.files['test'][1][0] == os.path.join(
    root, 'Flickr', 'animal', '0006_16.png'
  )


def test_nuswide_through_the_pipeline(tmp_path):
  root = tmp_path / 'NUS-WIDE'
  support.write_nuswide(str(root))
  dataset = input_pipeline.create_dataset(
    _config('nuswide', root, tmp_path / 'tfds'),
    seed=0,
    process_index=0,
    process_count=1,
  )
  info = dataset.info
  assert info.multilabel and info.num_classes == 3
  assert info.class_names == support.NUSWIDE_CONCEPTS
  assert info.image_shape == (8, 8, 3)
  assert (info.num_train_examples, info.num_test_examples) == (3, 2)
  batch = dataset.train_batch(0)
  assert batch['image'].shape == (2, 8, 8, 3)
  assert batch['label'].shape == (2, 3)
  np.testing.assert_array_equal(
    _eval_labels(dataset, 'test'), [[0, 0, 1], [1, 0, 1]]
  )
  # The stored image is the resized file (evaluation then center-crops).
  version_dir = preparation.multilabel_folder_dir(
    'nuswide', str(root), 8, str(tmp_path / 'tfds')
  )
  # One bytes value per image (version 1.1.0), not one int64 per pixel.
  assert version_dir.endswith('1.1.0')
  image = support.stored_image_feature(version_dir)
  assert image['encoding'] == 'bytes' and image['dtype'] == 'uint8'
  record = tfds.builder_from_directory(version_dir).as_data_source('test')[0]
  path = root / 'Flickr' / 'water' / '0005_15.jpg'
  expected = np.asarray(
    Image.open(path).convert('RGB').resize((8, 8), Image.Resampling.BILINEAR)
  )
  np.testing.assert_array_equal(record['image'], expected)
  assert record['path'] == b'Flickr/water/0005_15.jpg'


def test_nuswide_label_file_of_another_length(tmp_path):
  root = str(tmp_path / 'NUS-WIDE')
  support.write_nuswide(root)
  path = os.path.join(
    root, 'Groundtruth', 'TrainTestLabels', 'Labels_sky_Test.txt'
  )
  with open(path, 'w') as file:
    file.write('0\n')
  with pytest.raises(ValueError, match='Labels_sky_Test.txt'):
    multilabel_folder.list_nuswide(root)


def test_coco2014_listing(tmp_path):
  root = str(tmp_path / 'coco')
  support.write_coco2014(root)
  listing = multilabel_folder.list_coco2014(root)
  assert listing.class_names == ('person', 'car', 'airplane')
  assert listing.skipped['train'] == {'missing': 1, 'unlabelled': 1}
  assert [
    (os.path.basename(path), labels) for path, labels in listing.files['train']
  ] == [
    ('COCO_train2014_000000000002.jpg', (1,)),
    ('COCO_train2014_000000000009.jpg', (0, 2)),
  ]


def test_coco2014_through_the_pipeline(tmp_path):
  root = tmp_path / 'coco'
  support.write_coco2014(str(root))
  data_dir = str(tmp_path / 'tfds')
  version_dir = preparation.multilabel_folder_dir(
    'coco2014', str(root), 8, data_dir
  )
  # Prepared once: the same set at the same size is found again.
  assert (
    preparation.prepare(
      'coco2014', data_dir, multilabel_root=str(root), image_size=8
    )
    == version_dir
  )
  dataset = input_pipeline.create_dataset(
    _config('coco2014', root, data_dir, augment=True),
    seed=0,
    process_index=0,
    process_count=1,
  )
  info = dataset.info
  assert info.multilabel and info.num_classes == 3
  assert (info.num_train_examples, info.num_test_examples) == (2, 2)
  assert dataset.train_batch(0)['label'].shape == (2, 3)
  # val2014 in image id order: 40 (airplane), 42 (person, car).
  np.testing.assert_array_equal(
    _eval_labels(dataset, 'test'), [[0, 0, 1], [1, 1, 0]]
  )


def test_multilabel_sets_need_their_settings(tmp_path):
  root = tmp_path / 'coco'
  support.write_coco2014(str(root))
  with pytest.raises(ValueError, match='coco2014_root'):
    input_pipeline.create_dataset(
      _config('coco2014', None, tmp_path / 'tfds'),
      seed=0,
      process_index=0,
      process_count=1,
    )
  with pytest.raises(ValueError, match='image_size'):
    input_pipeline.create_dataset(
      _config('coco2014', root, tmp_path / 'tfds', image_size=None),
      seed=0,
      process_index=0,
      process_count=1,
    )
