"""The pmap step on 4 devices equals the 1-device step on the global batch.

tests/conftest.py gives this process 4 fake CPU devices.
"""

import jax
import numpy as np
import optax
import pytest
from sklearn import datasets

import models
from configs import default
from models import heads
from training import objectives, optimizers
from training import steps as steps_lib

_GLOBAL_BATCH = 16


def _batch():
  digits = datasets.load_digits()
  # Two examples of each of 8 classes: every anchor has a positive on
  # another device, so the pairwise losses need the global batch.
  rows = np.concatenate(
    [np.flatnonzero(digits.target == c)[:2] for c in range(8)]
  )
  images = (digits.images[rows] / 16.0).astype(np.float32)[..., None]
  return {
    'image': images,
    'label': digits.target[rows].astype(np.int32),
  }


def _run(loss_name, devices, parallelism='pmap'):
  config = default.get_config(loss_name)
  objective = objectives.get_objective(loss_name)
  hparams = objectives.resolve_hparams(objective, config.loss)
  backbone = models.get_model(
    'lenet',
    embedding_dim=8,
    # One stage has every kind of layer (convolution, BatchNorm, PReLU,
    # pooling, the Dense embedding) and compiles in about half the time.
    stage_filters=(4,),
    bn_axis_name=steps_lib.AXIS_NAME,
  )
  model = heads.EmbeddingModel(
    backbone=backbone, head=objective.make_head(10, hparams)
  )
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 1.0
  config.optimizer.momentum = 0.0
  config.optimizer.weight_decay = 0.0
  config.optimizer.warmup_steps = 0
  learning_rate_fn = optimizers.create_learning_rate_fn(config.optimizer, 10)
  tx = optimizers.create_optimizer(config.optimizer, learning_rate_fn)
  state = steps_lib.create_train_state(jax.random.key(0), model, (8, 8, 1), tx)
  steps = steps_lib.make_steps(
    objective,
    hparams,
    learning_rate_fn,
    10,
    parallelism=parallelism,
    devices=devices,
  )
  new_state, metrics = steps.train(state, _batch())
  return state, new_state, metrics


# Every objective that sees the global batch (pair-wise and batch-level
# losses), and two that see only their shard.
_CROSS_DEVICE = (
  ['softmax', 'g_softmax']
  + [
    objective.name
    for objective in objectives.all_objectives()
    if objective.reference == 'global_batch'
  ]
  # A sum of a pair-wise and a classification loss, each reduced on its
  # own.
  + ['circle_pairwise+softmax']
)


@pytest.mark.parametrize('loss_name', _CROSS_DEVICE)
def test_four_devices_equal_one_device(loss_name):
  assert jax.local_device_count() >= 4
  start, one, one_metrics = _run(loss_name, jax.local_devices()[:1])
  _, four, four_metrics = _run(loss_name, jax.local_devices()[:4])
  assert four_metrics.keys() == one_metrics.keys()
  for key in four_metrics:
    if key.startswith('loss'):  # The sum's terms too.
      np.testing.assert_allclose(four_metrics[key], one_metrics[key], rtol=1e-5)
  # With SGD at learning rate 1, the parameter change is the gradient.
  grads_one = jax.tree.map(lambda a, b: a - b, start.params, one.params)
  grads_four = jax.tree.map(lambda a, b: a - b, start.params, four.params)
  assert optax.tree.norm(grads_one) > 0
  # Circle's gamma = 80 amplifies float32 round-off of the differently
  # ordered sums; a missing cross-device term would be off by O(1).
  circle = loss_name.startswith('circle_pairwise')
  rtol, atol = (2e-3, 2e-5) if circle else (2e-4, 2e-6)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol),
    grads_four,
    grads_one,
  )
  # Cross-device BatchNorm: the running statistics match too.
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    four.batch_stats,
    one.batch_stats,
  )


@pytest.mark.parametrize('loss_name', ['g_softmax', 'circle_pairwise'])
def test_shard_map_equals_pmap(loss_name):
  devices = jax.local_devices()[:4]
  _, pmapped, pmap_metrics = _run(loss_name, devices, 'pmap')
  _, sharded, shard_metrics = _run(loss_name, devices, 'shard_map')
  np.testing.assert_allclose(
    shard_metrics['loss'], pmap_metrics['loss'], rtol=1e-6
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    (sharded.params, sharded.batch_stats),
    (pmapped.params, pmapped.batch_stats),
  )


_COMPILE_EVENTS = []
_RECORDING = []


def _record_compile_event(name, *args, **kwargs):
  del args, kwargs
  if _RECORDING and 'compil' in name:
    _COMPILE_EVENTS.append(name)


jax.monitoring.register_event_listener(_record_compile_event)
jax.monitoring.register_event_duration_secs_listener(_record_compile_event)


@pytest.mark.parametrize('parallelism', ['pmap', 'shard_map'])
def test_replicated_state_compiles_the_step_once(parallelism):
  state, _, _ = _run('softmax', jax.local_devices()[:2], parallelism)
  config = default.get_config('softmax')
  objective = objectives.get_objective('softmax')
  hparams = objectives.resolve_hparams(objective, config.loss)
  steps = steps_lib.make_steps(
    objective,
    hparams,
    lambda step: 0.1,
    10,
    parallelism=parallelism,
    devices=jax.local_devices()[:2],
  )
  # A fresh state (Python int step, arrays on one device) as train.py has
  # it after initialisation or restoring.
  state = steps.replicate(state.replace(step=0))
  state, _ = steps.train(state, _batch())
  _RECORDING.append(True)
  try:
    for _ in range(2):
      state, metrics = steps.train(state, _batch())
    jax.block_until_ready(metrics)
  finally:
    _RECORDING.clear()
  assert not _COMPILE_EVENTS, _COMPILE_EVENTS
  assert int(steps_lib.to_host(state.step)) == 3


@pytest.mark.parametrize('parallelism', ['pmap', 'shard_map'])
def test_refresh_statistics_sum_over_devices(parallelism):
  """vMF's per-class sums: 4 devices == 1 device, padding rows dropped."""
  state, _, _ = _run('vmf', jax.local_devices()[:1])
  objective = objectives.get_objective('vmf')
  hparams = objectives.resolve_hparams(
    objective, default.get_config('vmf').loss
  )
  batch = _batch()
  batch['mask'] = np.arange(_GLOBAL_BATCH) < _GLOBAL_BATCH - 3
  results = []
  for devices in (jax.local_devices()[:1], jax.local_devices()[:4]):
    steps = steps_lib.make_steps(
      objective,
      hparams,
      lambda step: 0.1,
      10,
      parallelism=parallelism,
      devices=devices,
    )
    results.append(
      steps_lib.to_host(steps.refresh_statistics(steps.replicate(state), batch))
    )
  (sums_one, counts_one), (sums_four, counts_four) = results
  np.testing.assert_array_equal(counts_four, counts_one)
  np.testing.assert_allclose(sums_four, sums_one, rtol=1e-5, atol=1e-6)
  expected_counts = np.bincount(batch['label'][batch['mask']], minlength=10)
  np.testing.assert_array_equal(counts_one, expected_counts)


def test_a_sum_of_losses_is_the_weighted_sum_of_its_terms():
  config = default.get_config('circle_pairwise+softmax')
  config.loss.softmax.weight = 0.25
  objective = objectives.get_objective(config.loss.name)
  hparams = objectives.resolve_hparams(objective, config.loss)
  rng = np.random.default_rng(0)
  embeddings = rng.standard_normal((8, 4)).astype(np.float32)
  labels = np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int32)
  logits = rng.standard_normal((8, 5)).astype(np.float32)
  inputs = objectives.LossInputs(
    embeddings,
    labels,
    {'circle_pairwise': {}, 'softmax': {'logits': logits}},
  )
  total, terms = objectives.batch_loss_terms(objective, hparams, inputs)
  circle = objectives.batch_loss(
    objectives.get_objective('circle_pairwise'),
    hparams.circle_pairwise,
    inputs._replace(outputs={}),
  )
  softmax = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  np.testing.assert_allclose(terms['circle_pairwise'], circle, rtol=1e-6)
  np.testing.assert_allclose(terms['softmax'], softmax.mean(), rtol=1e-6)
  np.testing.assert_allclose(total, circle + 0.25 * softmax.mean(), rtol=1e-6)
