"""Every loss of the registry trains end to end, with the backbone in
bfloat16 (``config.model.dtype='bfloat16'``), and evaluates.

One run per loss checks both what a run of that loss produces and that
mixed precision keeps float32 where it must: the loss is finite at every
step, so is every evaluation metric; the metrics a loss's kind implies are
there and in range; results.json names the loss and the source of each
hyperparameter; parameters, optimiser state and BatchNorm statistics are
float32 in the checkpoint. (tests/training/bfloat16_test.py checks the
train step's program: which operations run in bfloat16.)
"""

import glob
import json
import os
import struct

import jax
import numpy as np
import pytest
import threadpoolctl
from tensorboardX.proto import event_pb2

import train
from configs import tiny
from tests import support
from training import evaluation_loop, objectives
from training import steps as steps_lib

_NUM_STEPS = 3
_LOSSES = [o.name for o in objectives.all_objectives()]


@pytest.fixture(autouse=True)
def _float32_default():
  # Without x64, as training runs: tests/conftest.py turns it on for the
  # float64 references, and head variables created without an explicit
  # dtype (G-softmax's mu and sigma, vMF's mean directions) would then be
  # float64, which no real run has.
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', False)
  yield
  jax.config.update('jax_enable_x64', previous)


@pytest.fixture(autouse=True)
def _fast_evaluation(monkeypatch):
  # tests/conftest.py compiles without most optimisations, which pays for
  # the init and the train step (compiled once, run 3 times) but not for
  # evaluation: its forward passes over 2,156 images (the test split twice,
  # the train split once) run several times faster compiled with
  # optimisations, for about the same compile time. K-means (NMI) on one
  # thread: on 359 points, OpenMP threads only cost, the more so on a busy
  # machine.
  evaluate = evaluation_loop.evaluate

  def fast(*args, **kwargs):
    previous = jax.config.read('jax_disable_most_optimizations')
    jax.config.update('jax_disable_most_optimizations', False)
    try:
      with threadpoolctl.threadpool_limits(1):
        return evaluate(*args, **kwargs)
    finally:
      jax.config.update('jax_disable_most_optimizations', previous)

  monkeypatch.setattr(evaluation_loop, 'evaluate', fast)


def _config(data_dir, objective):
  config = tiny.get_config(objective.name)
  config.model.dtype = 'bfloat16'
  config.input.data_dir = data_dir
  if objective.multilabel:
    config.input.name = 'digits_multilabel'
  config.num_train_steps = _NUM_STEPS
  config.log_every_steps = 1
  config.checkpoint_every_steps = _NUM_STEPS
  config.eval_every_steps = _NUM_STEPS
  config.write_features = False
  return config


def _train_losses(workdir):
  """{step: train/loss} from the run's TensorBoard event file."""
  (path,) = glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  losses = {}
  with open(path, 'rb') as file:
    while header := file.read(12):  # length (8 bytes) and its crc (4).
      (length,) = struct.unpack('<Q', header[:8])
      event = event_pb2.Event.FromString(file.read(length))
      file.read(4)  # The data's crc.
      for value in event.summary.value:
        if value.tag == 'train/loss':
          content = value.tensor.tensor_content
          losses[event.step] = float(np.frombuffer(content, '<f4')[0])
  return losses


def _float_dtypes(tree):
  dtypes = {np.asarray(leaf).dtype for leaf in jax.tree.leaves(tree)}
  # Not np.floating: bfloat16 (ml_dtypes) is not a subtype of it.
  return {str(d) for d in dtypes if not np.issubdtype(d, np.integer)}


@pytest.mark.parametrize('loss_name', _LOSSES)
def test_every_loss_trains_in_bfloat16_and_evaluates(
  loss_name, digits_data_dir, tmp_path
):
  objective = objectives.get_objective(loss_name)
  results = train.train_and_evaluate(
    _config(digits_data_dir, objective), str(tmp_path)
  )
  assert results['step'] == _NUM_STEPS

  losses = _train_losses(str(tmp_path))
  assert sorted(losses) == list(range(1, _NUM_STEPS + 1))
  assert all(np.isfinite(value) for value in losses.values()), losses
  metrics = {
    key: value
    for key, value in results.items()
    if isinstance(value, (int, float, np.floating))
  }
  assert metrics.keys() > {'step'}
  for key, value in metrics.items():
    assert np.isfinite(value), (key, value)

  step, state = support.latest_checkpoint(str(tmp_path))
  assert step == _NUM_STEPS
  # Every floating-point array of the state (Adam's step count is int32).
  for part in ('params', 'opt_state', 'batch_stats', 'head_state'):
    assert _float_dtypes(state[part]) <= {'float32'}, (part, state[part])
  assert _float_dtypes(state['params']) == {'float32'}

  if objective.multilabel:
    for key in ('map', 'cp', 'cr', 'cf1', 'op', 'or', 'of1'):
      assert 0.0 <= results[key] <= 1.0, (key, results[key])
  else:
    for key in ('compactness', 'separability', 'recall@1', 'map@r', 'nmi'):
      assert key in results, key
    assert 0.0 <= results['nearest_class_mean_accuracy'] <= 1.0
    if objective.scores is None:
      assert 'accuracy' not in results
    else:
      assert 0.0 <= results['accuracy'] <= 1.0
  if objective.extra_metrics is not None:
    head = steps_lib.to_host(state['params']['head'])
    for key, value in objective.extra_metrics(head, None).items():
      assert results[key] == pytest.approx(value), key
  with open(tmp_path / 'results.json') as file:
    written = json.load(file)
  assert written['config']['loss']['name'] == loss_name
  assert set(written['hyperparameters']) == set(objective.hyperparameters)
  for key, described in written['hyperparameters'].items():
    assert described['source'] == objective.hyperparameters[key].source
