"""The fine-grained retrieval protocol (configs/cub200.py, cars196.py, sop.py).

A tiny copy of the protocol runs end to end on SOP records written by the
test through the real TFDS builder (as tests/input_pipeline does; CUB's
random `mock_data` records carry invalid boxes that the class-disjoint
label scan rejects): ImageNet-style weights written by the test,
frozen BatchNorm, the backbone frozen for its first epoch while the new
embedding layer and the proxies (at 100x the learning rate) learn, and
the class-disjoint Recall@K and MAP@R at the end.
"""

import jax
import numpy as np
import pytest
from PIL import Image

import train
from configs import cars196, common, cub200, image_folder_finetune, sop
from tests import support

_STAGE_FILTERS = (4, 8, 8, 8)


@pytest.mark.parametrize(
  'module,name,learning_rate,boundaries,factor,frozen_bn,ks',
  [
    (cub200, 'caltech_birds2011', 1e-4, (10, 20, 30, 40, 50), 0.5, True,
     (1, 2, 4, 8)),
    (cars196, 'cars196', 1e-4, (20, 40), 0.5, True, (1, 2, 4, 8)),
    (sop, 'stanford_online_products', 6e-4, (20, 40), 0.25, False,
     (1, 10, 100, 1000)),
  ],
)  # fmt: skip
def test_protocol_settings(
  module, name, learning_rate, boundaries, factor, frozen_bn, ks
):
  config = module.get_config()
  assert config.input.name == name and config.input.class_disjoint
  assert config.loss.name == 'proxy_anchor'
  assert (config.model.name, config.model.embedding_dim) == ('resnet50', 512)
  assert config.model.freeze_batch_norm == frozen_bn
  assert config.input.normalization == 'imagenet'
  assert config.input.image_size == 224 and config.input.augment
  assert config.optimizer.name == 'adamw'
  assert config.optimizer.learning_rate == learning_rate
  np.testing.assert_allclose(
    np.asarray(config.optimizer.decay_boundaries) * config.num_epochs,
    boundaries,
  )
  assert config.optimizer.decay_factor == factor
  assert dict(config.optimizer.lr_multipliers) == {
    'backbone': 1.0,
    'embedding': 1.0,
    'head': 100.0,
    'gaussians': 100.0,
  }
  assert tuple(config.retrieval_ks) == ks
  # Pair-wise losses get class-balanced batches.
  assert module.get_config('triplet').input.sampler == 'class_balanced'


def _tiny(config, data_dir):
  common.set_model(
    config,
    'resnet18',
    embedding_dim=8,
    stage_filters=_STAGE_FILTERS,
    freeze_batch_norm=True,
  )
  config.input.data_dir = data_dir
  config.input.image_size = 16
  config.input.batch_size = 8
  config.input.num_threads = 0
  config.num_train_steps = 3
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.eval_batch_size = 16
  config.write_features = False
  return config


def _sop_records(data_dir):
  # 12 training products and 6 test products, 4 photos each; products
  # >= 11318 are SOP's test classes.
  rng = np.random.default_rng(0)

  def record(label):
    return {
      # PIL images: TFDS encodes those without TensorFlow.
      'image': Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)),
      'class_id': label,
      'super_class_id/num': 1,
      'super_class_id': 'cabinet',
    }

  splits = {
    'train': [record(label) for label in range(0, 120, 10) for _ in range(4)],
    'test': [record(11318 + label) for label in range(6) for _ in range(4)],
  }
  support.prepare_catalog_records('stanford_online_products', data_dir, splits)


def test_tiny_protocol_end_to_end(tmp_path, first_train_states):
  data_dir = str(tmp_path / 'tfds')
  _sop_records(data_dir)
  weights = tmp_path / 'resnet18.safetensors'
  params, batch_stats = support.write_random_resnet18(
    weights, _STAGE_FILTERS, 16, seed=7
  )
  config = _tiny(sop.get_config('proxy_anchor'), data_dir)
  config.model.init_from = str(weights)
  workdir = tmp_path / 'run'
  # 48 training images in batches of 8: all 3 steps fall in the
  # backbone's frozen first epoch.
  results = train.train_and_evaluate(
    config, str(workdir), hooks=[first_train_states]
  )

  assert results['step'] == 3
  for key in ('recall@1', 'recall@10', 'recall@100', 'recall@1000', 'map@r'):
    assert 0 <= results[key] <= 1, key
  _, state = support.latest_checkpoint(workdir)
  # Frozen backbone and BatchNorm: still the loaded weights and statistics.
  jax.tree.map(
    np.testing.assert_array_equal,
    support.without_embedding(state['params']['backbone']),
    support.without_embedding(params),
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    state['batch_stats']['backbone'],
    batch_stats,
  )
  # The new layers learned. An Adam step moves a parameter by at most
  # about (1 - b1) / sqrt(1 - b2) = 3.16 learning rates, usually by about
  # one: the proxies (100x) moved about 100x as far as the embedding (1x).
  (start,) = first_train_states

  def moved(new, old):
    return max(
      float(np.abs(np.asarray(a) - np.asarray(b)).max())
      for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True)
    )

  embedding = moved(
    state['params']['backbone']['embedding'],
    start.params['backbone']['embedding'],
  )
  proxies = moved(state['params']['head'], start.params['head'])
  assert 0 < embedding <= 3 * 3.17 * 6e-4  # SOP's learning rate: 6e-4.
  assert 50 < proxies / embedding < 200


def test_imagenet_normalization_without_weights_is_refused(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  _sop_records(data_dir)
  config = _tiny(sop.get_config(), data_dir)
  with pytest.raises(ValueError, match='config.model.init_from is not set'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_image_folder_fine_tuning(tmp_path):
  # configs/image_folder_finetune.py on a folder of 3 classes: the folder's
  # own train/test split (not class-disjoint), ImageNet-style weights.
  root = tmp_path / 'images'
  support.write_image_folder(
    str(root), classes=('a', 'b', 'c'), per_class=8, size=(20, 24)
  )
  weights = tmp_path / 'resnet18.safetensors'
  params, _ = support.write_random_resnet18(weights, _STAGE_FILTERS, 16, seed=7)
  config = _tiny(
    image_folder_finetune.get_config('softmax'), str(tmp_path / 'tfds')
  )
  config.input.image_folder = str(root)
  config.model.init_from = str(weights)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['step'] == 3
  assert 0 <= results['accuracy'] <= 1 and 0 <= results['recall@1'] <= 1
  _, state = support.latest_checkpoint(tmp_path / 'run')
  jax.tree.map(
    np.testing.assert_array_equal,
    support.without_embedding(state['params']['backbone']),
    support.without_embedding(params),
  )
