"""MXNet RecordIO face sets: written in the real format, read without MXNet."""

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from input_pipeline.datasets import recordio
from tests import support

_MAGIC = struct.pack('<I', 0xCED7230A)


def _record(payload: bytes) -> bytes:
  """One record as dmlc-core writes it, in parts where the payload holds
  the magic at a 4-byte boundary (flags 1, 2, 3; 0 for a whole one)."""
  cuts = [
    i for i in range(0, len(payload) - 3, 4) if payload[i : i + 4] == _MAGIC
  ]
  pieces, start = [], 0
  for cut in cuts:
    pieces.append(payload[start:cut])
    start = cut + 4
  pieces.append(payload[start:])
  out = b''
  for number, piece in enumerate(pieces):
    if len(pieces) == 1:
      flag = 0
    else:
      flag = 1 if number == 0 else 3 if number == len(pieces) - 1 else 2
    out += _MAGIC + struct.pack('<I', (flag << 29) | len(piece))
    out += piece + b'\0' * (-len(piece) % 4)
  return out


def _pack(label, image=b'', labels=None, record_id=0):
  """An IRHeader (flag, label, id, id2) + labels + image, as MXNet packs."""
  if labels is None:
    return struct.pack('<IfQQ', 0, label, record_id, 0) + image
  return (
    struct.pack('<IfQQ', len(labels), 0.0, record_id, 0)
    + np.asarray(labels, '<f4').tobytes()
    + image
  )


def _write(root, payloads):
  """Writes train.rec and train.idx (``index\\toffset`` lines)."""
  os.makedirs(root, exist_ok=True)
  offset, lines = 0, []
  with open(os.path.join(root, 'train.rec'), 'wb') as rec:
    for index, payload in enumerate(payloads):
      lines.append(f'{index}\t{offset}\n')
      data = _record(payload)
      rec.write(data)
      offset += len(data)
  with open(os.path.join(root, 'train.idx'), 'w') as idx:
    idx.writelines(lines)


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
  first = len(labels) + 1
  identities = sorted(set(labels))
  payloads = [_pack(0, labels=(first, first + len(identities)))]
  payloads += [
    _pack(label, image, record_id=i + 1)
    for i, (label, image) in enumerate(zip(labels, encoded, strict=True))
  ]
  for identity in identities:
    where = [i + 1 for i, label in enumerate(labels) if label == identity]
    payloads.append(_pack(0, labels=(where[0], where[-1] + 1)))
  _write(root, payloads)
  with open(os.path.join(root, 'property'), 'w') as file:
    file.write(f'{len(identities)},{size[0]},{size[1]}')
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
  payload = _pack(0, image, labels=(5.0, 1.0))
  _write(str(tmp_path), [b'', payload])
  assert _record(payload).count(_MAGIC) == 3
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
