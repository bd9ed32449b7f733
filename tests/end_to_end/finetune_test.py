"""Fine-tuning: config.model.init_from and config.input.normalization.

A tiny ResNet trains a few steps on digits, is exported in torchvision's
naming (models.pretrained), and a new run starts from that file: the state
the first step receives carries the exported backbone, its pooled features
equal the exporting model's on the same images, and training goes on from
there.
"""

import jax
import numpy as np
import pytest

import input_pipeline
import models
import train
from configs import common, tiny
from input_pipeline import augment
from models import pretrained
from tests import support
from training import checkpointing

_STAGE_FILTERS = (8, 16, 32, 64)


@pytest.fixture
def data_dir(digits_data_dir):
  return digits_data_dir


def _config(data_dir, **overrides):
  config = tiny.get_config('softmax')
  common.set_model(
    config, 'resnet18', embedding_dim=8, stage_filters=_STAGE_FILTERS
  )
  config.input.data_dir = data_dir
  config.input.normalization = 'imagenet'  # Grey digits -> RGB, ImageNet's.
  config.num_train_steps = 3
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.write_features = False
  return support.override(config, **overrides)


def test_a_new_run_starts_from_exported_weights(
  data_dir, tmp_path, first_train_states
):
  # The exporting run itself starts from random weights in a file, as
  # ImageNet-normalised input needs init_from.
  random_weights = tmp_path / 'random.safetensors'
  support.write_random_resnet18(random_weights, _STAGE_FILTERS, 8, seed=3)
  train.train_and_evaluate(
    _config(data_dir, **{'model.init_from': str(random_weights)}),
    str(tmp_path / 'first'),
  )
  _, exporting = support.latest_checkpoint(tmp_path / 'first')
  path = tmp_path / 'exported.safetensors'
  pretrained.save_resnet_torchvision(
    path,
    exporting['params']['backbone'],
    exporting['batch_stats']['backbone'],
  )

  # The state the first step of the new run receives (the second run's).
  config = _config(data_dir, seed=1, **{'model.init_from': str(path)})
  results = train.train_and_evaluate(
    config, str(tmp_path / 'second'), hooks=[first_train_states]
  )
  (start,) = first_train_states

  # Every convolution and BatchNorm (running statistics included) is the
  # exported one; the embedding is the new run's own initialisation.
  backbone = start.params['backbone']
  jax.tree.map(
    np.testing.assert_array_equal,
    support.without_embedding(backbone),
    support.without_embedding(exporting['params']['backbone']),
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    start.batch_stats['backbone'],
    exporting['batch_stats']['backbone'],
  )
  assert not np.array_equal(
    backbone['embedding']['kernel'],
    exporting['params']['backbone']['embedding']['kernel'],
  )

  # Before any step, the new run's features of the test images are the
  # exporting model's.
  dataset = input_pipeline.create_dataset(config.input, seed=0)
  images = next(dataset.eval_batches('test', 64))['image']
  assert images.shape[1:] == (8, 8, 3)
  model = models.get_model(
    'resnet18', embedding_dim=8, stage_filters=_STAGE_FILTERS
  )
  pooled = jax.jit(
    lambda variables: model.apply(
      variables, images, train=False, return_pooled=True
    )
  )
  new_features = pooled(
    {'params': backbone, 'batch_stats': start.batch_stats['backbone']}
  )
  exported_features = pooled(
    {
      'params': exporting['params']['backbone'],
      'batch_stats': exporting['batch_stats']['backbone'],
    }
  )
  assert new_features.shape == (64, 64)
  assert float(np.abs(exported_features).max()) > 0
  np.testing.assert_array_equal(new_features, exported_features)

  # Training went on from there: all steps, finite metrics, moved weights.
  assert results['step'] == 3
  assert np.isfinite(results['recall@1'])
  _, finetuned = support.latest_checkpoint(tmp_path / 'second')
  moved = jax.tree.map(
    lambda new, old: float(np.max(np.abs(np.asarray(new) - old))),
    support.without_embedding(finetuned['params']['backbone']),
    support.without_embedding(backbone),
  )
  assert max(jax.tree.leaves(moved)) > 0


def test_init_from_needs_a_resnet_and_a_normalization(data_dir, tmp_path):
  config = _config(data_dir, **{'model.init_from': 'weights.safetensors'})
  config.input.normalization = None
  with pytest.raises(ValueError, match='config.input.normalization'):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  config = tiny.get_config('softmax')
  config.input.data_dir = data_dir
  config.input.normalization = 'none'
  config.model.init_from = 'weights.safetensors'
  with pytest.raises(
    ValueError, match="iresnet18/34/50/100; received .*'lenet'"
  ):
    train.train_and_evaluate(config, str(tmp_path / 'b'))


def test_init_from_is_no_checkpoint_identity(data_dir):
  # A resumed run restores its own weights: where the first run's came from
  # does not matter. The input scaling does; unset means 'none'.
  identity = checkpointing.config_identity
  config = _config(data_dir, **{'input.normalization': None})
  other = _config(data_dir, **{'model.init_from': '/gone.safetensors'})
  other.input.normalization = 'none'
  assert identity(config) == identity(other)
  assert 'init_from' not in identity(config)['model']
  other.input.normalization = 'imagenet'
  assert identity(config) != identity(other)


def test_imagenet_normalization_of_grey_digits(data_dir):
  config = _config(data_dir).input
  config.num_threads = 0
  config.normalization = None
  plain = input_pipeline.create_dataset(config, seed=0)
  config.normalization = 'imagenet'
  normalized = input_pipeline.create_dataset(config, seed=0)
  assert plain.info.image_shape == (8, 8, 1)
  assert normalized.info.image_shape == (8, 8, 3)

  mean = np.array([0.485, 0.456, 0.406], np.float32)
  std = np.array([0.229, 0.224, 0.225], np.float32)
  for batches in (
    lambda d: iter([d.train_batch(0)]),
    lambda d: d.eval_batches('test', 16),
  ):
    grey = next(batches(plain))['image']
    rgb = next(batches(normalized))['image']
    assert 0.0 <= grey.min() and grey.max() <= 1.0
    assert rgb.shape == (*grey.shape[:3], 3)
    np.testing.assert_allclose(
      rgb, (np.repeat(grey, 3, axis=-1) - mean) / std, rtol=1e-6, atol=1e-6
    )
  # RGB images keep their channels.
  colour = np.random.default_rng(0).random((2, 4, 4, 3), np.float32)
  np.testing.assert_allclose(
    augment.normalize(colour, 'imagenet'), (colour - mean) / std, rtol=1e-6
  )
  assert augment.normalize(colour, 'none') is colour


def test_unknown_normalization_is_refused(data_dir):
  config = _config(data_dir).input
  config.normalization = 'imagenet21k'
  with pytest.raises(
    ValueError, match=r"config.input.normalization.*'imagenet21k'"
  ):
    input_pipeline.create_dataset(config, seed=0)
