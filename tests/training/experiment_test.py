"""The run assembly: what `experiment.build` refuses, and in which order."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from configs import image_folder, image_folder_finetune, tiny
from training import experiment as experiment_lib


def _write_folder(root, *, train_per_class, test_per_class=2, classes=2):
  rng = np.random.default_rng(0)
  for split, count in (('train', train_per_class), ('test', test_per_class)):
    for label in range(classes):
      directory = os.path.join(root, split, f'class{label}')
      os.makedirs(directory)
      for index in range(count):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(directory, f'{index}.png'))


def test_a_small_folder_is_refused_with_the_flag_to_change(tmp_path):
  # 48 training images; the config's batch is 64.
  _write_folder(str(tmp_path / 'images'), train_per_class=24)
  config = image_folder.get_config('softmax')
  config.input.image_folder = str(tmp_path / 'images')
  config.input.data_dir = str(tmp_path / 'tfds')
  with pytest.raises(ValueError) as error:
    experiment_lib.build(config)
  assert str(error.value) == (
    'config.input.batch_size=64 is larger than the 48 training examples: '
    'pass a smaller one, e.g. --config.input.batch_size=32'
  )
  config.input.batch_size = 32
  assert experiment_lib.build(config).steps_per_epoch == 1


def test_missing_weights_are_refused_before_the_folder_is_prepared(tmp_path):
  _write_folder(str(tmp_path / 'images'), train_per_class=4)
  config = image_folder_finetune.get_config('proxy_anchor')
  config.input.image_folder = str(tmp_path / 'images')
  config.input.data_dir = str(tmp_path / 'tfds')
  with pytest.raises(ValueError, match='config.model.init_from is not set'):
    experiment_lib.build(config)
  assert not (tmp_path / 'tfds').exists()


def test_a_pairwise_loss_needs_the_class_balanced_sampler(tmp_path):
  config = tiny.get_config('circle_pairwise')
  config.input.data_dir = str(tmp_path / 'tfds')
  config.input.sampler = 'random'
  with pytest.raises(ValueError) as error:
    experiment_lib.build(config)
  assert str(error.value) == (
    "The loss 'circle_pairwise' compares examples of the same class in a "
    "batch: it needs config.input.sampler='class_balanced' (the configs set "
    "it with the loss: --config=CONFIG.py:LOSS), received 'random'"
  )
  assert not (tmp_path / 'tfds').exists()


def test_a_memory_smaller_than_the_batch_is_refused(tmp_path):
  config = tiny.get_config('circle_pairwise')
  config.input.data_dir = str(tmp_path / 'tfds')
  config.memory.size = config.input.batch_size - 1
  with pytest.raises(ValueError, match=r'must be at least the global batch'):
    experiment_lib.build(config)


def test_the_abstract_state_is_the_initial_state_s_structure(tmp_path):
  config = tiny.get_config('vmf')
  config.input.data_dir = str(tmp_path / 'tfds')
  config.memory.size = 0
  experiment = experiment_lib.build(config)
  abstract = experiment.abstract_state()
  state = experiment.initial_state()
  assert jax.tree.structure(abstract) == jax.tree.structure(state)
  for want, have in zip(
    jax.tree.leaves(abstract), jax.tree.leaves(state), strict=True
  ):
    assert want.shape == np.shape(have)
    if isinstance(have, jax.Array):
      assert want.dtype == have.dtype
  assert experiment.num_train_steps == config.num_train_steps
  assert experiment.refresh_every_steps > 0  # vMF refreshes its directions.
