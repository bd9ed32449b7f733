"""MXNet RecordIO face sets: written in the real format, read without MXNet."""

import io
import os

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from input_pipeline import preparation
from input_pipeline.datasets import recordio
from tests import support

_MAGIC = support.RECORDIO_MAGIC


def write_face_set(root, labels, size=(6, 5), seed=0):
  """A face set as insightface's tools lay it out.

  Record 0 is a header with labels (first, last): the images are records
  1..first-1 (PNG, so pixels read back exactly), the identity records
  first..last-1 each label their images' range.

  Returns:
    The written uint8 images ``[n, H, W, 3]``.
  """
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (len(labels), *size, 3), np.uint8)
  encoded = []
  for image in images:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='PNG')
    encoded.append(buffer.getvalue())
  support.write_recordio_face_set(root, encoded, labels, size)
  return images


def _eval_all(dataset, split):
  images, labels = [], []
  for batch in dataset.eval_batches(split, 4):
    images.append(batch['image'][batch['mask']])
    labels.append(batch['label'][batch['mask']])
  return np.concatenate(images), np.concatenate(labels)


def _config(root, data_dir, **overrides):
  return support.make_input_config(
    name='recordio', recordio=root, data_dir=data_dir, **overrides
  )


def test_reads_back_images_and_labels(tmp_path):
  root, data_dir = str(tmp_path / 'faces'), str(tmp_path / 'tfds')
  labels = [0, 0, 0, 1, 1, 2, 2, 2]
  written = write_face_set(root, labels)
  dataset = input_pipeline.create_dataset(
    _config(
      root,
      data_dir,
      batch_size=4,
      sampler='class_balanced',
      samples_per_class=2,
    ),
    seed=0,
    process_index=0,
    process_count=1,
  )
  info = dataset.info
  assert info.num_classes == 3  # from the header records
  assert info.image_shape == (6, 5, 3)
  assert (info.num_train_examples, info.num_test_examples) == (8, 3)
  images, read_labels = _eval_all(dataset, 'train')
  np.testing.assert_array_equal(read_labels, labels)
  np.testing.assert_array_equal(images, written / np.float32(255))
  # One bytes value per image (version 1.1.0), not one int64 per pixel.
  version_dir = preparation.recordio_dir(root, None, data_dir)
  assert version_dir.endswith('1.1.0')
  image = support.stored_image_feature(version_dir)
  assert image['encoding'] == 'bytes' and image['dtype'] == 'uint8'
  # The test split: each identity's first image.
  images, read_labels = _eval_all(dataset, 'test')
  np.testing.assert_array_equal(read_labels, [0, 1, 2])
  np.testing.assert_array_equal(images, written[[0, 3, 5]] / np.float32(255))
  batch = next(iter(dataset.train_batches(0)))
  assert batch['image'].shape == (4, 6, 5, 3)
  assert len(set(batch['label'].tolist())) == 2  # 2 identities x 2


def test_record_in_parts_and_label_arrays(tmp_path):
  # A payload holding the magic at a 4-byte boundary is written in three
  # parts; reading puts the magic back. Labels may come as arrays.
  image = b'abcd' + _MAGIC + b'efgh' + _MAGIC + b'ij'
  payload = support.pack_recordio(0, image, labels=(5.0, 1.0))
  support.write_recordio(str(tmp_path), [b'', payload])
  assert support.recordio_record(payload).count(_MAGIC) == 3
  offsets = recordio.read_index(str(tmp_path / 'train.idx'))
  with recordio.RecordFile(str(tmp_path / 'train.rec'), offsets) as records:
    header, data = recordio.unpack(records.read(1))
  assert header.labels == (5.0, 1.0) and data == image


def test_corrupt_records_and_missing_files(tmp_path):
  root, data_dir = str(tmp_path / 'faces'), str(tmp_path / 'tfds')
  write_face_set(root, [0, 1, 1])
  offsets = recordio.read_index(os.path.join(root, 'train.idx'))
  rec_path = os.path.join(root, 'train.rec')
  with open(rec_path, 'rb') as file:
    data = bytearray(file.read())
  # Record 2's magic overwritten.
  bad = bytearray(data)
  bad[offsets[2] : offsets[2] + 4] = b'\0\0\0\0'
  with open(rec_path, 'wb') as file:
    file.write(bad)
  with pytest.raises(recordio.RecordIOError) as error:
    input_pipeline.create_dataset(
      _config(root, data_dir), seed=0, process_index=0, process_count=1
    )
  message = str(error.value)
  assert f'record index 2 at offset {offsets[2]}' in message
  assert 'bad magic 0x00000000' in message and '\n' not in message
  # The file cut inside record 3's image.
  with open(rec_path, 'wb') as file:
    file.write(data[: offsets[3] + 40])
  with pytest.raises(
    recordio.RecordIOError,
    match=f'record index 3 at offset {offsets[3]}: payload of .* cut short',
  ):
    input_pipeline.create_dataset(
      _config(root, str(tmp_path / 'tfds2')),
      seed=0,
      process_index=0,
      process_count=1,
    )
  os.remove(os.path.join(root, 'train.idx'))
  with pytest.raises(recordio.RecordIOError, match='missing: train.idx'):
    input_pipeline.create_dataset(
      _config(root, data_dir), seed=0, process_index=0, process_count=1
    )
  with pytest.raises(ValueError, match='needs config.input.recordio'):
    input_pipeline.create_dataset(
      _config(None, data_dir), seed=0, process_index=0, process_count=1
    )
