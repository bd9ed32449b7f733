"""The user's image folders: preparation, contents and bad input."""

import os

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from input_pipeline.datasets import image_folder
from tests import support


def _create(config, process_index=0, process_count=1):
  return input_pipeline.create_dataset(
    config, seed=0, process_index=process_index, process_count=process_count
  )


def _eval_all(dataset, split):
  images, labels = [], []
  for batch in dataset.eval_batches(split, 4):
    images.append(batch['image'][batch['mask']])
    labels.append(batch['label'][batch['mask']])
  return np.concatenate(images), np.concatenate(labels)


def test_prepares_once_and_reads_back_every_pixel(tmp_path):
  root, data_dir = str(tmp_path / 'images'), str(tmp_path / 'tfds')
  written = support.write_image_folder(
    root, classes=('dog', 'cat'), per_class=3
  )
  config = support.make_input_config(
    name='image_folder', image_folder=root, data_dir=data_dir, batch_size=2
  )
  dataset = _create(config)
  info = dataset.info
  assert info.class_names == ('cat', 'dog')  # sorted folder names
  assert info.num_classes == 2
  assert info.image_shape == (6, 5, 3)
  assert info.num_train_examples == 6 and info.num_test_examples == 6
  for split in ('train', 'test'):
    images, labels = _eval_all(dataset, split)
    # Records are ordered by class, then file name.
    expected = [
      (written[(split, name, i)], class_id)
      for class_id, name in enumerate(('cat', 'dog'))
      for i in range(3)
    ]
    np.testing.assert_array_equal(labels, [label for _, label in expected])
    for image, (pixels, _) in zip(images, expected, strict=True):
      np.testing.assert_array_equal(image, pixels / np.float32(255))
  batch = dataset.train_batch(0)
  assert batch['image'].shape == (2, 6, 5, 3)
  assert batch['label'].dtype == np.int32

  prepared = os.path.join(data_dir, 'user_image_folder')
  before = sorted(os.listdir(prepared))
  again = _create(config)
  assert sorted(os.listdir(prepared)) == before
  np.testing.assert_array_equal(
    again.train_batch(3)['image'], dataset.train_batch(3)['image']
  )


def test_grey_images_resized_and_class_disjoint(tmp_path):
  root = str(tmp_path / 'images')
  support.write_image_folder(
    root, classes=('a', 'b', 'c', 'd'), per_class=2, size=(9, 7), mode='L'
  )
  config = support.make_input_config(
    name='image_folder',
    image_folder=root,
    data_dir=str(tmp_path / 'd'),
    image_size=4,
    batch_size=2,
    class_disjoint=True,
    sampler='class_balanced',
    samples_per_class=2,
  )
  dataset = _create(config)
  info = dataset.info
  assert info.image_shape == (4, 4, 1)
  assert info.num_classes == 2 and info.class_names == ('a', 'b')
  assert info.test_class_names == ('c', 'd')
  _, test_labels = _eval_all(dataset, 'test')
  np.testing.assert_array_equal(test_labels, [0, 0, 1, 1])
  batch = dataset.train_batch(0)
  assert batch['image'].shape == (2, 4, 4, 1)
  assert len(set(batch['label'].tolist())) == 1


def test_edited_folder_is_prepared_again(tmp_path):
  root, data_dir = str(tmp_path / 'images'), str(tmp_path / 'tfds')
  support.write_image_folder(root, per_class=2)
  config = support.make_input_config(
    name='image_folder', image_folder=root, data_dir=data_dir, batch_size=2
  )
  assert _create(config).info.num_train_examples == 4
  Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(
    os.path.join(root, 'train', 'cat', 'new.png')
  )
  assert _create(config).info.num_train_examples == 5


@pytest.mark.parametrize('corruption', ['garbage', 'truncated'])
def test_unreadable_image_names_its_path(tmp_path, corruption):
  root = str(tmp_path / 'images')
  support.write_image_folder(root, size=(32, 32))
  bad = os.path.join(root, 'test', 'dog', '1.png')
  if corruption == 'garbage':
    data = b'this is not an image'
  else:
    with open(bad, 'rb') as f:
      data = f.read()[:200]
  with open(bad, 'wb') as f:
    f.write(data)
  config = support.make_input_config(
    name='image_folder', image_folder=root, data_dir=str(tmp_path / 'd')
  )
  with pytest.raises(ValueError, match='cannot read image') as error:
    _create(config)
  assert bad in str(error.value)


def test_layout_errors(tmp_path):
  with pytest.raises(ValueError, match='needs config.input.image_folder'):
    _create(
      support.make_input_config(name='image_folder', data_dir=str(tmp_path))
    )
  root = tmp_path / 'images'
  (root / 'train' / 'a').mkdir(parents=True)
  with pytest.raises(ValueError, match='must hold a test/ directory'):
    _create(
      support.make_input_config(
        name='image_folder', image_folder=str(root), data_dir=str(tmp_path)
      )
    )
  (root / 'test' / 'a').mkdir(parents=True)
  with pytest.raises(ValueError, match='train/ holds no'):
    _create(
      support.make_input_config(
        name='image_folder', image_folder=str(root), data_dir=str(tmp_path)
      )
    )


def test_mixed_sizes_need_image_size(tmp_path):
  root = str(tmp_path / 'images')
  support.write_image_folder(root, per_class=2)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
    os.path.join(root, 'test', 'cat', 'big.png')
  )
  config = support.make_input_config(
    name='image_folder',
    image_folder=root,
    data_dir=str(tmp_path / 'd'),
    batch_size=2,
  )
  with pytest.raises(ValueError, match='images differ in size.*image_size'):
    _create(config)
  config.image_size = 5
  assert _create(config).info.image_shape == (5, 5, 3)


def _write_textured_jpeg(path, height, width):
  """A JPEG (quality 90) of smooth colours, a pattern and grain."""
  rng = np.random.default_rng(9)
  coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
  base = np.asarray(
    coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32
  )
  y, x = np.mgrid[0:height, 0:width]
  pattern = 30 * np.sin(x / 7) * np.cos(y / 11)
  pixels = base + pattern[..., None] + rng.normal(0, 4, base.shape)
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
    path, quality=90
  )


@pytest.mark.parametrize(
  'size,decoded',
  [
    ((120, 160), (160, 120)),  # 1/4 of 640 x 480 fits exactly.
    ((100, 100), (160, 120)),  # 1/4: 1/8 would be narrower than 100.
    ((200, 150), (320, 240)),  # 1/2: 1/4 would be 120 high.
    ((250, 330), (640, 480)),  # Under twice the size: every pixel.
  ],
)
def test_jpeg_decoded_at_reduced_size_is_the_full_decode_resized(
  tmp_path, size, decoded
):
  path = str(tmp_path / 'photo.jpg')
  _write_textured_jpeg(path, 480, 640)
  open_image = image_folder._open_image  # pylint: disable=protected-access
  draft = open_image(path, (size[1], size[0]))
  assert draft.size == decoded
  pixels = image_folder.decode_image(path, 3, size)
  full = Image.open(path).convert('RGB')
  expected = np.asarray(
    full.resize((size[1], size[0]), Image.Resampling.BILINEAR)
  )
  assert pixels.shape == (*size, 3)
  error = np.abs(pixels.astype(np.int16) - expected)
  if decoded == (640, 480):
    assert error.max() == 0
  else:
    # Within JPEG's own error: below one grey level on average, a few at
    # most (measured 0.37-0.68 and 2-5).
    assert error.mean() < 1.0 and error.max() <= 8


def test_png_and_grey_jpeg_decoding(tmp_path):
  # PNGs are decoded whole; a grey JPEG is reduced like a colour one.
  rng = np.random.default_rng(10)
  pixels = rng.integers(0, 256, (64, 48), dtype=np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'a.png')
  np.testing.assert_array_equal(
    image_folder.decode_image(str(tmp_path / 'a.png'), 1, (16, 12)),
    np.asarray(
      Image.fromarray(pixels).resize((12, 16), Image.Resampling.BILINEAR)
    )[..., None],
  )
  Image.fromarray(pixels).save(tmp_path / 'b.jpg', quality=90)
  open_image = image_folder._open_image  # pylint: disable=protected-access
  draft = open_image(str(tmp_path / 'b.jpg'), (12, 16))
  assert draft.size == (12, 16) and draft.mode == 'L'


def test_prepared_pixels_are_stored_as_bytes(tmp_path):
  # One bytes value per image (version 1.1.0), not one int64 per pixel.
  root, data_dir = str(tmp_path / 'images'), str(tmp_path / 'tfds')
  support.write_image_folder(root, per_class=1)
  config = support.make_input_config(
    name='image_folder', image_folder=root, data_dir=data_dir, batch_size=1
  )
  _create(config)
  (version_dir,) = [
    os.path.join(directory, name)
    for directory, names, _ in os.walk(data_dir)
    for name in names
    if name == '1.1.0'
  ]
  image = support.stored_image_feature(version_dir)
  assert image['encoding'] == 'bytes' and image['dtype'] == 'uint8'
