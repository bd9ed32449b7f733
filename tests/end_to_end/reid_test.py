"""Person re-identification end to end (configs/market1501.py).

A tiny Market-1501-style folder written by the test (4 training
identities from 2 cameras; 2 query identities; a distractor and junk
images in the gallery) is prepared, trained on for 3 steps with the strong
baseline's ID + triplet losses and BNNeck from ImageNet-style weights
written by the test, and evaluated query against gallery; the query
split's embeddings keep their camera ids and are, restored from the
checkpoint and exported, the feature after the BNNeck.
"""

import functools
import json

import jax
import numpy as np

import models
import train
from configs import common, market1501
from inference import embed as embed_lib
from inference import embeddings_file, export
from inference import model as model_lib
from models import heads
from tests import support

# The last stage widens, so that its first block has a projection at any
# stride (as every real ResNet has).
_STAGE_FILTERS = (4, 8, 8, 16)


def test_market1501_settings():
  config = market1501.get_config()
  assert config.loss.name == 'circle_pairwise'
  assert (config.loss.margin, config.loss.gamma) == (0.25, 128.0)
  assert config.input.name == 'reid_folder'
  assert tuple(config.input.image_size) == (256, 128)
  assert config.input.augment and config.input.normalization == 'imagenet'
  assert config.input.sampler == 'class_balanced'
  assert (config.input.batch_size, config.input.samples_per_class) == (64, 4)
  assert (config.model.name, config.model.last_stride) == ('resnet50', 1)
  assert config.optimizer.learning_rate == 3.5e-4
  np.testing.assert_allclose(
    np.asarray(config.optimizer.decay_boundaries) * config.num_epochs,
    (40, 70),
  )
  # Identity-balanced batches whatever the loss.
  assert market1501.get_config('softmax').input.sampler == 'class_balanced'
  # BNNeck where the loss's head is a classifier or none.
  assert config.model.bnneck
  baseline = market1501.get_config('softmax+triplet')
  assert baseline.model.bnneck and baseline.loss.triplet.margin == 0.3
  assert not market1501.get_config('cosface').model.bnneck


def test_tiny_market1501_end_to_end(tmp_path):
  root = tmp_path / 'market'
  support.write_market1501(str(root))
  weights = tmp_path / 'resnet18.safetensors'
  support.write_random_resnet18(weights, _STAGE_FILTERS, 16, seed=7)
  config = market1501.get_config('softmax+triplet')
  common.set_model(
    config,
    'resnet18',
    embedding_dim=8,
    stage_filters=_STAGE_FILTERS,
    last_stride=1,
    bnneck=True,
  )
  config.model.init_from = str(weights)
  config.input.reid_root = str(root)
  config.input.data_dir = str(tmp_path / 'tfds')
  config.input.image_size = (32, 16)
  config.input.batch_size = 8
  config.input.num_threads = 0
  config.optimizer.warmup_steps = 1
  config.num_train_steps = 3
  config.eval_every_steps = 1000  # Only the final evaluation.
  config.checkpoint_every_steps = 3
  # 4 test devices: the evaluation batch is split over them.
  config.eval_batch_size = 8
  workdir = tmp_path / 'run'
  results = train.train_and_evaluate(config, str(workdir))

  assert results['step'] == 3
  for key in ('cmc@1', 'cmc@5', 'cmc@10', 'map', 'minp'):
    assert 0 <= results[f'reid/{key}'] <= 1, key
  # Both queries keep a match taken by the other camera.
  assert results['reid/num_valid_queries'] == 2
  assert results['reid/num_skipped_queries'] == 0
  # With 5 gallery images, rank 5 finds every query's match.
  assert results['reid/cmc@5'] == 1
  assert 'accuracy' not in results and 'recall@1' not in results
  with open(workdir / 'results.json') as file:
    written = json.load(file)
  assert json.dumps(written).count('reid/map') >= 1

  # embed.py --split=query: the embeddings file keeps the camera ids.
  model = model_lib.load(str(workdir))
  query = embed_lib.embed_split(model, 'query', progress=False)
  path = embeddings_file.save(tmp_path / 'query.npz', query)
  loaded = embeddings_file.load(path)
  np.testing.assert_array_equal(loaded.labels, support.MARKET_TEST_IDS)
  np.testing.assert_array_equal(loaded.cameras, [0, 0])
  assert loaded.split == 'query' and loaded.embeddings.shape == (2, 8)

  # Evaluated, embedded and exported: the restored backbone's embedding
  # through the BNNeck's running statistics and scale (trained: not 0, 1).
  batch = next(model.dataset.eval_batches('query', 8))
  images, mask = batch['image'], batch['mask']
  params, stats = model.state.params, model.state.batch_stats
  backbone = models.get_model(
    'resnet18', embedding_dim=8, stage_filters=_STAGE_FILTERS, last_stride=1
  )
  # Compiled once: eagerly, each layer would compile on its own.
  features = jax.jit(functools.partial(backbone.apply, train=False))(
    {'params': params['backbone'], 'batch_stats': stats['backbone']}, images
  )
  neck = stats[heads.BNNECK]
  assert np.all(np.asarray(neck['mean']) != 0)
  expected = (features - neck['mean']) / np.sqrt(neck['var'] + 1e-5)
  expected = expected * params[heads.BNNECK]['scale']
  embedded = model.embed_batch(images)
  np.testing.assert_allclose(embedded, expected, atol=1e-5)
  np.testing.assert_allclose(embedded[mask], query.embeddings, atol=1e-6)
  exported = export.export_embedding(model)
  np.testing.assert_allclose(
    export.embed(exported, images), embedded, atol=1e-5
  )
