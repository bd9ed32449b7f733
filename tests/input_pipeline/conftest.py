"""Fixtures for the input pipeline tests: prepared data in temporary dirs."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import input_pipeline
from input_pipeline import preparation
from input_pipeline.datasets import catalog


def make_config(**overrides):
  """`default_input_config()` with `overrides` and single-threaded reads."""
  config = input_pipeline.default_input_config()
  config.num_threads = 0
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  """A data dir with digits and digits_multilabel prepared (once)."""
  data_dir = str(tmp_path_factory.mktemp('tfds_digits'))
  preparation.prepare('digits', data_dir)
  preparation.prepare('digits_multilabel', data_dir)
  return data_dir


def write_image_folder(
  root, *, classes=('cat', 'dog'), per_class=3, size=(6, 5), mode='RGB', seed=0
):
  """Writes ROOT/{train,test}/<class>/<i>.png of random pixels.

  Returns:
    ``{(split, class, i): uint8 array}`` of what was written.
  """
  rng = np.random.default_rng(seed)
  channels = 3 if mode == 'RGB' else 1
  written = {}
  for split in ('train', 'test'):
    for name in classes:
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(per_class):
        pixels = rng.integers(0, 256, (size[0], size[1], channels), np.uint8)
        image = pixels if channels == 3 else pixels[..., 0]
        Image.fromarray(image).save(os.path.join(root, split, name, f'{i}.png'))
        written[(split, name, i)] = pixels
  return written


def mark_prepared(name, data_dir):
  """Writes the dataset_info.json that marks `name` as prepared.

  Under `tfds.testing.mock_data` TFDS serves random records instead of
  reading files, but the pipeline first checks (without TFDS) that the set
  was prepared as array_record; this fakes that metadata.
  """
  spec = catalog.get_spec(name)
  path, _ = catalog.version_dir(spec.tfds_name, data_dir)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'dataset_info.json'), 'w') as f:
    json.dump({'fileFormat': 'array_record'}, f)
  return path


def prepare_catalog_records(name, data_dir, splits):
  """Prepares catalog set `name` in `data_dir` from the given records.

  A copy of the real TFDS builder (same name, version and features) whose
  examples are `splits` instead of a download, prepared as array_record:
  the pipeline then reads it through ``tfds.data_source`` exactly like a
  prepared catalog set. Needs no TensorFlow when images are PIL images.

  Args:
    name: a catalog name (``config.input.name``).
    data_dir: the TFDS data dir.
    splits: TFDS split name -> list of example dicts.

  Returns:
    The prepared version directory.
  """
  base = tfds.builder_cls(catalog.get_spec(name).tfds_name)

  class Offline(base, skip_registration=True):
    name = base.name

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: self._generate_examples(r) for s, r in splits.items()}

    def _generate_examples(self, records):
      yield from enumerate(records)

  builder = Offline(data_dir=data_dir, file_format=preparation.FILE_FORMAT)
  builder.download_and_prepare(file_format=preparation.FILE_FORMAT)
  return builder.data_dir
