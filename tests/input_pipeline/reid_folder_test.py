"""Tests for `input_pipeline.datasets.reid_folder` on tiny written layouts."""

import os

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from input_pipeline import preparation
from input_pipeline.datasets import image_folder, reid_folder
from tests import support


def _touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as file:
    file.write(b'')


def test_parse_market_name():
  assert reid_folder.parse_market_name('0002_c1s1_000451_03.jpg') == (2, 0)
  assert reid_folder.parse_market_name('-1_c3s1_000401_03.jpg') == (-1, 2)
  # DukeMTMC-reID's names.
  assert reid_folder.parse_market_name('0005_c2_f0046182.jpg') == (5, 1)
  with pytest.raises(ValueError, match='<identity>_c<camera>'):
    reid_folder.parse_market_name('Thumbs.jpg')


def test_market1501_layout(tmp_path):
  names = {
    'bounding_box_train': [
      '0007_c2s1_000001_01.jpg',
      '0002_c1s1_000451_03.jpg',
      '0002_c3s1_000551_01.jpg',
      '-1_c1s1_000001_00.jpg',
    ],
    'query': ['0001_c1s1_001051_00.jpg'],
    'bounding_box_test': [
      '0001_c2s1_000301_01.jpg',
      '0000_c1s1_000151_01.jpg',
      '-1_c1s1_000401_03.jpg',
      'readme.txt',
    ],
  }
  for folder, files in names.items():
    for name in files:
      _touch(tmp_path / folder / name)
  listing = reid_folder.list_market1501(str(tmp_path))
  # Junk dropped everywhere; training identities 2, 7 become classes 0, 1.
  assert [(i.identity, i.camera) for i in listing['train']] == [
    (0, 0),
    (0, 2),
    (1, 1),
  ]
  assert [(i.identity, i.camera) for i in listing['query']] == [(1, 0)]
  # The distractor (identity 0) stays in the gallery.
  assert [(i.identity, i.camera) for i in listing['gallery']] == [
    (0, 0),
    (1, 1),
  ]
  assert listing['gallery'][0].path == str(
    tmp_path / 'bounding_box_test' / '0000_c1s1_000151_01.jpg'
  )


def test_market1501_missing_folder(tmp_path):
  (tmp_path / 'query').mkdir()
  with pytest.raises(ValueError, match='missing: bounding_box_train'):
    reid_folder.list_market1501(str(tmp_path))


def test_msmt17_lists(tmp_path):
  lists = {
    'list_train.txt': '0003/0003_010_05_0303morning_0015_0.jpg 3\n'
    '0001/0001_004_01_0303morning_0016_1.jpg 1\n',
    'list_val.txt': '0002/0002_000_02_0303morning_0017_0.jpg 2\n',
    'list_query.txt': '0000/0000_000_01_0303noon_0015_0.jpg 0\n',
    'list_gallery.txt': '0000/0000_001_15_0303noon_0016_0.jpg 0\n\n',
  }
  for name, text in lists.items():
    (tmp_path / name).write_text(text)
  (tmp_path / 'train').mkdir()
  (tmp_path / 'test').mkdir()
  listing = reid_folder.list_msmt17(str(tmp_path))
  assert [(i.identity, i.camera) for i in listing['train']] == [(1, 4), (0, 0)]
  assert [(i.identity, i.camera) for i in listing['query']] == [(0, 0)]
  assert [(i.identity, i.camera) for i in listing['gallery']] == [(0, 14)]
  assert listing['query'][0].path == str(
    tmp_path / 'test' / '0000' / '0000_000_01_0303noon_0015_0.jpg'
  )
  (tmp_path / 'list_query.txt').write_text('just-a-path.jpg\n')
  with pytest.raises(ValueError, match='list_query.txt:1'):
    reid_folder.list_msmt17(str(tmp_path))


def _reid_config(root, data_dir, **overrides):
  settings = {
    'name': 'reid_folder',
    'reid_root': str(root),
    'data_dir': str(data_dir),
    'image_size': (16, 8),
    'batch_size': 8,
    'sampler': 'class_balanced',
    'samples_per_class': 4,
  }
  return support.make_input_config(**{**settings, **overrides})


def test_prepared_market1501_through_the_pipeline(tmp_path):
  root = tmp_path / 'market'
  support.write_market1501(str(root))
  config = _reid_config(root, tmp_path / 'tfds', augment=True)
  dataset = input_pipeline.create_dataset(
    config, seed=0, process_index=0, process_count=1
  )
  info = dataset.info
  # 4 training identities are the classes; the gallery is the test split.
  assert info.reid and info.num_classes == 4
  assert info.image_shape == (16, 8, 3)
  assert (info.num_train_examples, info.num_test_examples) == (16, 5)
  assert dataset.num_examples('query') == 2
  # Identity-balanced batches: 2 identities x 4 images.
  batch = dataset.train_batch(0)
  assert batch['image'].shape == (8, 16, 8, 3)
  assert sorted(np.bincount(batch['label'], minlength=4)) == [0, 0, 4, 4]

  def split(name):
    rows = [b for b in dataset.eval_batches(name, 4)]
    mask = np.concatenate([b['mask'] for b in rows])
    return (
      np.concatenate([b['label'] for b in rows])[mask],
      np.concatenate([b['camera'] for b in rows])[mask],
    )

  # Listing order (by file name); junk dropped, the distractor kept;
  # cameras from 0; query and gallery identities as distributed.
  np.testing.assert_array_equal(split('query'), [[1, 3], [0, 0]])
  gallery = [[0, 1, 1, 3, 3], [0, 0, 1, 0, 1]]
  np.testing.assert_array_equal(split('gallery'), gallery)
  np.testing.assert_array_equal(split('test'), gallery)
  with pytest.raises(ValueError, match="'query' or 'gallery'"):
    next(dataset.eval_batches('val', 4))


def test_prepared_records_are_resized_images(tmp_path):
  root = tmp_path / 'market'
  support.write_market1501(str(root), size=(30, 14))
  data_dir = str(tmp_path / 'tfds')
  version_dir = preparation.reid_folder_dir(
    str(root), 'market1501', (16, 8), data_dir
  )
  # Prepared once: the same folder at the same size is found again.
  assert (
    preparation.prepare(
      'reid_folder', data_dir, reid_root=str(root), image_size=(16, 8)
    )
    == version_dir
  )
  # One bytes value per image (version 1.1.0), not one int64 per pixel.
  assert version_dir.endswith('1.1.0')
  image = support.stored_image_feature(version_dir)
  assert image['encoding'] == 'bytes' and image['dtype'] == 'uint8'
  config = _reid_config(root, data_dir, normalization=None)
  dataset = input_pipeline.create_dataset(
    config, seed=0, process_index=0, process_count=1
  )
  first = next(dataset.eval_batches('query', 2))['image'][0]
  path = root / 'query' / '0001_c1s1_000100_01.jpg'
  expected = np.asarray(
    Image.open(path).convert('RGB').resize((8, 16), Image.Resampling.BILINEAR)
  )
  np.testing.assert_array_equal(first, expected / np.float32(255))


def test_reid_folder_needs_its_settings(tmp_path):
  root = tmp_path / 'market'
  support.write_market1501(str(root))
  with pytest.raises(ValueError, match='reid_root'):
    input_pipeline.create_dataset(
      _reid_config(root, tmp_path / 'tfds', reid_root=None), seed=0
    )
  with pytest.raises(ValueError, match='image_size'):
    input_pipeline.create_dataset(
      _reid_config(root, tmp_path / 'tfds', image_size=None), seed=0
    )
  with pytest.raises(ValueError, match='does not apply to re-id sets'):
    input_pipeline.create_dataset(
      _reid_config(root, tmp_path / 'tfds', class_disjoint=True), seed=0
    )
  with pytest.raises(ValueError, match='reid_layout'):
    input_pipeline.create_dataset(
      _reid_config(root, tmp_path / 'tfds', reid_layout='cuhk03'), seed=0
    )


def test_image_size_as_height_and_width():
  assert image_folder.image_height_width(None) is None
  assert image_folder.image_height_width(64) == (64, 64)
  assert image_folder.image_height_width((256, 128)) == (256, 128)
  assert image_folder.image_height_width([256, 128]) == (256, 128)
  for bad in (0, (256,), (256, 0), 'big', (1.5, 2)):
    with pytest.raises(ValueError, match='config.input.image_size'):
      image_folder.image_height_width(bad)
  # A side keeps the key existing prepared folders were named with.
  assert image_folder.size_key(64) == '64'
  assert image_folder.size_key((256, 128)) == '256x128'


def test_prepared_msmt17_through_the_pipeline(tmp_path):
  # MSMT17's list files name the images; cameras from the third field.
  root = tmp_path / 'MSMT17_V1'
  rng = np.random.default_rng(0)
  lists = {'list_train.txt': [], 'list_query.txt': [], 'list_gallery.txt': []}
  rows = [
    ('train', 'list_train.txt', identity, camera)
    for identity in (3, 5)
    for camera in (1, 2)
    for _ in range(2)
  ] + [
    ('test', 'list_query.txt', 0, 1),
    ('test', 'list_gallery.txt', 0, 15),
    ('test', 'list_gallery.txt', 4, 2),
  ]
  for index, (folder, list_name, identity, camera) in enumerate(rows):
    name = f'{identity:04d}_{index:03d}_{camera:02d}_0303morning_0015_0.jpg'
    relative = f'{identity:04d}/{name}'
    path = root / folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (12, 6, 3), np.uint8)).save(path)
    lists[list_name].append(f'{relative} {identity}\n')
  lists['list_val.txt'] = []
  for name, lines in lists.items():
    (root / name).write_text(''.join(lines))
  config = _reid_config(
    root, tmp_path / 'tfds', reid_layout='msmt17', samples_per_class=4
  )
  dataset = input_pipeline.create_dataset(
    config, seed=0, process_index=0, process_count=1
  )
  assert dataset.info.num_classes == 2
  assert dataset.num_examples('query') == 1
  (gallery,) = dataset.eval_batches('gallery', 4)
  mask = gallery['mask']
  np.testing.assert_array_equal(gallery['label'][mask], [0, 4])
  np.testing.assert_array_equal(gallery['camera'][mask], [14, 1])
  assert sorted(set(dataset.train_batch(0)['label'])) == [0, 1]
