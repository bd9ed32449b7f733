"""Catalog sets under `tfds.testing.mock_data`, and missing data errors.

No test reads or downloads real catalog data: `mock_data` serves random
records (random sizes for the large-image sets), and the "prepared" check
is satisfied by a fake dataset_info.json (`support.mark_prepared`). The
class-disjoint tests instead read tiny array_record copies prepared offline
(`support.prepare_catalog_records`): their labels are scanned from
serialized records, which `mock_data` makes only with TensorFlow.
"""

import importlib.util
import json
import os
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import input_pipeline
from input_pipeline import preparation
from tests import support

# name: (num_classes, image_shape with image_size=12, multilabel)
_EXPECTED = {
  'mnist': (10, (28, 28, 1), False),
  'fashion_mnist': (10, (28, 28, 1), False),
  'cifar10': (10, (32, 32, 3), False),
  'cifar100': (100, (32, 32, 3), False),
  'caltech_birds2011': (200, (12, 12, 3), False),
  'cars196': (196, (12, 12, 3), False),
  'stanford_online_products': (22634, (12, 12, 3), False),
  'coco': (80, (12, 12, 3), True),
}
_LARGE = ('caltech_birds2011', 'cars196', 'stanford_online_products', 'coco')
# TFDS's coco builder needs TensorFlow, which only the coco extra installs:
# marked `tensorflow`, they skip in the default venv and run in
# `make test-coco` (pytest -m tensorflow in a venv with that extra).
_SKIP_WITHOUT_TENSORFLOW = pytest.mark.skipif(
  importlib.util.find_spec('tensorflow') is None,
  reason="TFDS's coco builder needs TensorFlow (make test-coco runs this)",
)


def _create(config, process_index=0, process_count=1):
  return input_pipeline.create_dataset(
    config, seed=0, process_index=process_index, process_count=process_count
  )


@pytest.mark.parametrize(
  'name',
  [
    pytest.param(name, marks=[pytest.mark.tensorflow, _SKIP_WITHOUT_TENSORFLOW])
    if name == 'coco'
    else name
    for name in sorted(_EXPECTED)
  ],
)
def test_catalog_set_under_mock_data(tmp_path, name):
  num_classes, image_shape, multilabel = _EXPECTED[name]
  data_dir = str(tmp_path)
  support.mark_prepared(name, data_dir)
  config = support.make_input_config(
    name=name,
    data_dir=data_dir,
    batch_size=4,
    augment=True,
    image_size=12 if name in _LARGE else None,
  )
  with tfds.testing.mock_data(num_examples=9):
    dataset = _create(config)
    info = dataset.info
    assert info.num_classes == num_classes
    assert info.image_shape == image_shape
    assert info.multilabel == multilabel
    assert info.num_train_examples == 9 and info.num_test_examples == 9
    label_shape = (4, num_classes) if multilabel else (4,)
    for step in (0, 3):
      batch = dataset.train_batch(step)
      assert batch['image'].shape == (4, *image_shape)
      assert batch['image'].dtype == np.float32
      assert 0 <= batch['image'].min() and batch['image'].max() <= 1
      assert batch['label'].shape == label_shape
      assert batch['label'].dtype == np.int32
      assert batch['label'].min() >= 0
      if multilabel:
        assert batch['label'].max() <= 1
      else:
        assert batch['label'].max() < num_classes
    masks = [b['mask'] for b in dataset.eval_batches('test', 5)]
    assert [m.sum() for m in masks] == [5, 4]
    # Augmentation draws are per global row: two processes agree with one.
    halves = [_create(config, p, 2).train_batch(1) for p in range(2)]
    np.testing.assert_array_equal(
      np.concatenate([h['image'] for h in halves]),
      dataset.train_batch(1)['image'],
    )


@pytest.mark.tensorflow
@_SKIP_WITHOUT_TENSORFLOW
def test_coco_targets_are_multi_hot_of_the_objects(tmp_path):
  support.mark_prepared('coco', str(tmp_path))
  config = support.make_input_config(
    name='coco', data_dir=str(tmp_path), image_size=8, batch_size=2
  )
  with tfds.testing.mock_data(num_examples=6):
    dataset = _create(config)
    source = tfds.data_source('coco/2017', split='validation', download=False)
    batch = next(dataset.eval_batches('test', 6))
    for row in range(6):
      expected = np.zeros(80, np.int32)
      expected[np.asarray(source[row]['objects']['label'])] = 1
      np.testing.assert_array_equal(batch['label'][row], expected)


def _grey(value, shape):
  """A PIL image of one grey `value` (TFDS encodes PIL images without TF)."""
  pixels = np.full(shape, value, np.uint8)
  return Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels)


# name: (TFDS split -> record labels, train classes, test classes, boundary)
_DISJOINT = {
  'mnist': ({'train': list(range(10)) * 2, 'test': list(range(10))}, 5, 5, 5),
  'stanford_online_products': (
    {'train': [0, 7, 11317, 11318, 22633], 'test': [3, 11318, 11319, 22633]},
    11318,
    11316,
    11318,
  ),
}


def _disjoint_record(name, label, value, index):
  if name == 'mnist':
    return {'image': _grey(value, (28, 28, 1)), 'label': label}
  return {
    'image': _grey(value, (6 + index, 9, 3)),  # SOP's sizes vary.
    'class_id': label,
    'super_class_id/num': 1,
    'super_class_id': 'cabinet',
  }


@pytest.mark.parametrize('name', sorted(_DISJOINT))
def test_class_disjoint_catalog_on_prepared_records(tmp_path, name):
  # Real array_record data (a tiny copy of the TFDS builder's output, made
  # offline), so the labels are scanned from real serialized records, as in
  # production; `mock_data` serialises its records with TensorFlow. Each
  # record's image is one grey value naming it, so every row read back can
  # be checked against the record it must come from.
  labels, train_classes, test_classes, boundary = _DISJOINT[name]
  splits, expected, value = {}, {'train': {}, 'test': {}}, 4
  for split, split_labels in labels.items():
    splits[split] = []
    for index, label in enumerate(split_labels):
      splits[split].append(_disjoint_record(name, label, value, index))
      # same_split protocol: train keeps the train split's classes
      # [0, boundary), test the test split's others, re-based.
      if split == 'train' and label < boundary:
        expected['train'][value] = label
      elif split == 'test' and label >= boundary:
        expected['test'][value] = label - boundary
      value += 8
  support.prepare_catalog_records(name, str(tmp_path), splits)
  config = support.make_input_config(
    name=name,
    data_dir=str(tmp_path),
    batch_size=2,
    class_disjoint=True,
    image_size=8,
  )
  dataset = _create(config)
  info = dataset.info
  assert info.class_disjoint
  assert info.num_classes == train_classes
  assert info.num_test_classes == test_classes
  assert info.num_train_examples == len(expected['train'])
  assert info.num_test_examples == len(expected['test'])
  for split in ('train', 'test'):
    batches = list(dataset.eval_batches(split, 3))
    images = np.concatenate([b['image'][b['mask']] for b in batches])
    values = np.round(images.reshape(len(images), -1) * 255).astype(int)
    assert (values == values[:, :1]).all()  # Constant images.
    read = [int(v) for v in values[:, 0]]
    assert sorted(read) == sorted(expected[split])
    got = np.concatenate([b['label'][b['mask']] for b in batches])
    assert got.tolist() == [expected[split][v] for v in read]
  for step in range(4):
    batch = dataset.train_batch(step)
    assert batch['image'].shape == (2, *info.image_shape)
    assert 0 <= batch['label'].min() and batch['label'].max() < train_classes


def test_missing_catalog_set_fails_fast_with_the_prepare_command(tmp_path):
  data_dir = str(tmp_path / 'empty')
  config = support.make_input_config(name='mnist', data_dir=data_dir)
  # The check must decide from the file system alone: any TFDS reader or
  # download here would be a bug (and could hang on DNS retries).
  forbidden = mock.Mock(side_effect=AssertionError('TFDS was called'))
  start = time.perf_counter()
  with (
    mock.patch.object(tfds, 'data_source', forbidden),
    mock.patch.object(
      tfds.core.DatasetBuilder, 'download_and_prepare', forbidden
    ),
    pytest.raises(input_pipeline.DataNotPreparedError) as error,
  ):
    _create(config)
  elapsed = time.perf_counter() - start
  assert elapsed < 10.0
  message = str(error.value)
  assert "'mnist'" in message
  assert data_dir in message
  assert 'python -m input_pipeline.prepare --dataset=mnist' in message
  assert f'--data_dir={data_dir}' in message
  assert 'download' in message
  forbidden.assert_not_called()
  assert isinstance(error.value, FileNotFoundError)


def test_tfrecord_copy_is_reported(tmp_path):
  path = support.mark_prepared('cifar10', str(tmp_path))
  with open(os.path.join(path, 'dataset_info.json'), 'w') as f:
    json.dump({'fileFormat': 'tfrecord'}, f)
  with pytest.raises(input_pipeline.DataNotPreparedError, match='tfrecord'):
    _create(support.make_input_config(name='cifar10', data_dir=str(tmp_path)))


def test_download_true_prepares_then_reads(tmp_path):
  data_dir = str(tmp_path)
  calls = []

  def fake_download(name, directory):
    calls.append((name, directory))
    return support.mark_prepared(name, directory)

  config = support.make_input_config(
    name='fashion_mnist', data_dir=data_dir, download=True
  )
  with (
    mock.patch.object(
      preparation, 'download_and_prepare_catalog', fake_download
    ),
    tfds.testing.mock_data(num_examples=70),
  ):
    dataset = _create(config)
  assert calls == [('fashion_mnist', data_dir)]
  assert dataset.info.num_train_examples == 70


def test_data_dir_defaults_to_env(tmp_path, monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'from_env'))
  with pytest.raises(input_pipeline.DataNotPreparedError) as error:
    _create(support.make_input_config(name='cifar100'))
  assert str(tmp_path / 'from_env') in str(error.value)


def test_coco_without_tensorflow_names_the_extra(tmp_path):
  # The default install has no TensorFlow, which TFDS's coco builder needs:
  # training and preparing say so before TFDS (or a download) is touched.
  find_spec = importlib.util.find_spec

  def without_tensorflow(name, *args, **kwargs):
    return None if name == 'tensorflow' else find_spec(name, *args, **kwargs)

  forbidden = mock.Mock(side_effect=AssertionError('TFDS was called'))
  config = support.make_input_config(
    name='coco', data_dir=str(tmp_path), download=True
  )
  for make in (
    lambda: _create(config),
    lambda: preparation.prepare('coco', str(tmp_path)),
  ):
    with (
      mock.patch.object(importlib.util, 'find_spec', without_tensorflow),
      mock.patch.object(tfds, 'builder_cls', forbidden),
      mock.patch.object(tfds, 'builder', forbidden),
      mock.patch.object(tfds, 'data_source', forbidden),
      pytest.raises(ImportError) as error,
    ):
      make()
    message = str(error.value)
    assert "config.input.name='coco' needs TensorFlow" in message
    assert "pip install -e '.[coco]'" in message
  forbidden.assert_not_called()
  assert not os.listdir(tmp_path)


def test_check_input_refuses_what_creating_the_data_set_would(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  config = support.make_input_config(name='mnist', data_dir=data_dir)
  with pytest.raises(input_pipeline.DataNotPreparedError) as checked:
    input_pipeline.check_input(config)
  with pytest.raises(input_pipeline.DataNotPreparedError) as created:
    _create(config)
  assert str(checked.value) == str(created.value)
  # With download=True, or once prepared, there is nothing to refuse.
  config.download = True
  input_pipeline.check_input(config)
  config.download = False
  support.mark_prepared('mnist', data_dir)
  input_pipeline.check_input(config)


@pytest.mark.parametrize(
  'name,field',
  [
    ('image_folder', 'image_folder'),
    ('reid_folder', 'reid_root'),
    ('recordio', 'recordio'),
    ('nuswide', 'nuswide_root'),
    ('coco2014', 'coco2014_root'),
  ],
)
def test_check_input_names_a_missing_folder_and_prepares_nothing(
  name, field, tmp_path
):
  data_dir = tmp_path / 'tfds'
  config = support.make_input_config(name=name, data_dir=str(data_dir))
  with pytest.raises(ValueError) as unset:
    input_pipeline.check_input(config)
  assert str(unset.value).startswith(
    f'config.input.name={name!r} needs config.input.{field} ('
  )
  assert str(unset.value).endswith('), received None')
  config[field] = str(tmp_path / 'nope')
  with pytest.raises(ValueError) as missing:
    input_pipeline.check_input(config)
  assert str(missing.value) == (
    f'config.input.{field} must be an existing folder, received '
    f'{str(tmp_path / "nope")!r}, which does not exist'
  )
  # An existing folder passes without being read: its layout is checked
  # when the set is prepared.
  config[field] = str(tmp_path)
  input_pipeline.check_input(config)
  assert not data_dir.exists()


def test_check_input_passes_embedded_sets_without_preparing(tmp_path):
  data_dir = tmp_path / 'tfds'
  for name in ('digits', 'digits_multilabel'):
    config = support.make_input_config(name=name, data_dir=str(data_dir))
    input_pipeline.check_input(config)
  assert not data_dir.exists()
  with pytest.raises(ValueError, match='nope'):
    input_pipeline.check_input(support.make_input_config(name='nope'))
