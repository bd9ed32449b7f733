"""NUS-WIDE and MS-COCO 2014 read as distributed, through the pipeline."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import input_pipeline
from input_pipeline import preparation
from input_pipeline.datasets import multilabel_folder
from tests import support

_CONCEPTS = ('animal', 'sky', 'water')
# (list line, labels, on disk); the release's lines use backslashes.
_NUSWIDE = {
  'train': (
    ('animal\\0001_11.jpg', (1, 0, 0), True),
    ('sky\\0002_12.png', (0, 1, 1), True),
    ('sky\\0003_13.jpg', (1, 1, 0), False),  # Missing on disk.
    ('water\\0004_14.jpg', (0, 0, 0), True),  # No concept: kept.
  ),
  'test': (
    ('water\\0005_15.jpg', (0, 0, 1), True),
    ('animal/0006_16.png', (1, 0, 1), True),
  ),
}


def _write_image(path, rng, size=(10, 12)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = rng.integers(0, 256, (*size, 3), np.uint8)
  Image.fromarray(pixels).save(path)


def _write_nuswide(root):
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, 'ImageList'))
  labels_dir = os.path.join(root, 'Groundtruth', 'TrainTestLabels')
  os.makedirs(labels_dir)
  with open(os.path.join(root, 'Concepts81.txt'), 'w') as file:
    file.write('\r\n'.join(_CONCEPTS) + '\r\n')
  for split, rows in _NUSWIDE.items():
    name = split.capitalize()
    with open(
      os.path.join(root, 'ImageList', f'{name}Imagelist.txt'), 'w'
    ) as f:
      f.write(''.join(f'{line}\r\n' for line, _, _ in rows))
    for column, concept in enumerate(_CONCEPTS):
      with open(
        os.path.join(labels_dir, f'Labels_{concept}_{name}.txt'), 'w'
      ) as file:
        file.write(''.join(f'{row[1][column]} \r\n' for row in rows))
    for line, _, present in rows:
      if present:
        parts = line.replace('\\', '/').split('/')
        _write_image(os.path.join(root, 'Flickr', *parts), rng)


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
  _write_nuswide(root)
  listing = multilabel_folder.list_nuswide(root)
  assert listing.class_names == _CONCEPTS
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
  _write_nuswide(str(root))
  dataset = input_pipeline.create_dataset(
    _config('nuswide', root, tmp_path / 'tfds'),
    seed=0,
    process_index=0,
    process_count=1,
  )
  info = dataset.info
  assert info.multilabel and info.num_classes == 3
  assert info.class_names == _CONCEPTS
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
  record = tfds.builder_from_directory(version_dir).as_data_source('test')[0]
  path = root / 'Flickr' / 'water' / '0005_15.jpg'
  expected = np.asarray(
    Image.open(path).convert('RGB').resize((8, 8), Image.Resampling.BILINEAR)
  )
  np.testing.assert_array_equal(record['image'], expected)
  assert record['path'] == b'Flickr/water/0005_15.jpg'


def test_nuswide_label_file_of_another_length(tmp_path):
  root = str(tmp_path / 'NUS-WIDE')
  _write_nuswide(root)
  path = os.path.join(
    root, 'Groundtruth', 'TrainTestLabels', 'Labels_sky_Test.txt'
  )
  with open(path, 'w') as file:
    file.write('0\n')
  with pytest.raises(ValueError, match='Labels_sky_Test.txt'):
    multilabel_folder.list_nuswide(root)


def _write_coco2014(root):
  rng = np.random.default_rng(1)
  # Category ids with gaps, listed out of order: labels follow the ids.
  categories = [
    {'id': 5, 'name': 'airplane'},
    {'id': 1, 'name': 'person'},
    {'id': 3, 'name': 'car'},
  ]
  splits = {
    'train': (
      # (image id, file, category ids of its annotations, on disk)
      (9, (1, 1, 5), True),
      (2, (3,), True),
      (4, (), True),  # No annotation: dropped.
      (7, (5,), False),  # Missing on disk.
    ),
    'val': ((42, (3, 1), True), (40, (5,), True)),
  }
  os.makedirs(os.path.join(root, 'annotations'))
  for split, rows in splits.items():
    images, annotations = [], []
    for image_id, category_ids, present in rows:
      name = f'COCO_{split}2014_{image_id:012d}.jpg'
      images.append({'id': image_id, 'file_name': name})
      for category in category_ids:
        annotations.append(
          {
            'id': len(annotations) + 1,
            'image_id': image_id,
            'category_id': category,
            'iscrowd': 0,
          }
        )
      if present:
        _write_image(os.path.join(root, f'{split}2014', name), rng)
    path = os.path.join(root, 'annotations', f'instances_{split}2014.json')
    with open(path, 'w') as file:
      json.dump(
        {
          'images': images,
          'annotations': annotations,
          'categories': categories,
        },
        file,
      )


def test_coco2014_listing(tmp_path):
  root = str(tmp_path / 'coco')
  _write_coco2014(root)
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
  _write_coco2014(str(root))
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
  _write_coco2014(str(root))
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
