"""End-to-end runs of train_and_evaluate on the tiny digits config: resume,
refusals, parallelisms. Every loss is run by every_loss_test.py."""

import os

import jax
import numpy as np
import pytest

import train
from configs import tiny
from tests import support
from training import checkpointing


@pytest.fixture
def data_dir(digits_data_dir):
  return digits_data_dir  # Other sets (digits_multilabel) go in too.


def _config(data_dir, loss=None, **overrides):
  config = tiny.get_config(loss)
  config.input.data_dir = data_dir
  return support.override(config, **overrides)


def _params(workdir):
  step, state = support.latest_checkpoint(workdir)
  return step, state['params']


def test_resume_is_exact(data_dir, tmp_path):
  """K steps, stop, resume to 2K == 2K uninterrupted (parameters)."""
  straight = tmp_path / 'straight'
  resumed = tmp_path / 'resumed'
  config = _config(
    data_dir,
    num_train_steps=8,
    checkpoint_every_steps=4,
    **{'optimizer.schedule': 'constant'},
  )
  train.train_and_evaluate(config, str(straight))
  # A constant schedule, so that the 4-step run is exactly the first half
  # of the 8-step one (a decaying schedule depends on the run's length).
  half = _config(
    data_dir,
    num_train_steps=4,
    checkpoint_every_steps=4,
    **{'optimizer.schedule': 'constant'},
  )
  train.train_and_evaluate(half, str(resumed))
  train.train_and_evaluate(config, str(resumed))
  step_a, params_a = _params(str(straight))
  step_b, params_b = _params(str(resumed))
  assert step_a == step_b == 8
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


def test_incompatible_checkpoint_is_not_overwritten(data_dir, tmp_path):
  train.train_and_evaluate(_config(data_dir), str(tmp_path))
  step, params = _params(str(tmp_path))
  other = _config(data_dir, 'softmax')
  with pytest.raises(
    checkpointing.IncompatibleCheckpointError, match='loss.name'
  ):
    train.train_and_evaluate(other, str(tmp_path))
  step_after, params_after = _params(str(tmp_path))
  assert step_after == step
  jax.tree.map(np.testing.assert_array_equal, params, params_after)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(data_dir, tmp_path):
  config = _config(
    data_dir,
    'softmax',
    **{
      'optimizer.name': 'sgd',
      'optimizer.learning_rate': 1e30,
      'num_train_steps': 6,
      'checkpoint_every_steps': 1,
      'log_every_steps': 1,
    },
  )
  with pytest.raises(FloatingPointError, match=r'at step \d+') as error:
    train.train_and_evaluate(config, str(tmp_path))
  bad_step = int(str(error.value).split('at step ')[1].split(';')[0])
  step, params = _params(str(tmp_path))
  assert step == bad_step - 1
  for leaf in jax.tree.leaves(params):
    assert np.all(np.isfinite(leaf))


def test_unknown_loss_lists_valid_names(data_dir, tmp_path):
  config = _config(data_dir, **{'loss.name': 'nope'})
  with pytest.raises(ValueError, match='valid names: .*circle_pairwise'):
    train.train_and_evaluate(config, str(tmp_path))


def test_invalid_hyperparameter_rejected_before_training(data_dir, tmp_path):
  config = _config(data_dir, 'circle_class', **{'loss.gamma': -1.0})
  with pytest.raises(ValueError, match='gamma'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_hyperparameter_of_another_loss_is_refused(data_dir, tmp_path):
  # As after --config.loss.name=cosface on a G-softmax config: the section
  # holds G-softmax's hyperparameters, which CosFace does not have.
  config = _config(data_dir, 'g_softmax', **{'loss.name': 'cosface'})
  with pytest.raises(
    ValueError,
    match=r'gaussian_scale, mu_init, sigma_init, which the loss .cosface. '
    r'does not have; its hyperparameters: scale, margin',
  ):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_unknown_backbone_attribute_lists_valid_ones(data_dir, tmp_path):
  config = _config(data_dir)
  config.model.depth = 3
  with pytest.raises(
    ValueError, match=r'no attribute depth.*attributes: batch_norm, '
  ):
    train.train_and_evaluate(config, str(tmp_path))


def test_missing_catalog_data_fails_fast(tmp_path):
  config = _config(str(tmp_path), **{'input.name': 'mnist'})
  with pytest.raises(FileNotFoundError, match='input_pipeline.prepare'):
    train.train_and_evaluate(config, str(tmp_path / 'work'))


def test_shard_map_training_equals_pmap(data_dir, tmp_path):
  """config.parallelism='shard_map' reaches the pmap run's parameters."""
  train.train_and_evaluate(
    _config(data_dir, 'circle_pairwise'), str(tmp_path / 'pmap')
  )
  train.train_and_evaluate(
    _config(data_dir, 'circle_pairwise', parallelism='shard_map'),
    str(tmp_path / 'shard_map'),
  )
  _, pmap_params = _params(str(tmp_path / 'pmap'))
  _, shard_params = _params(str(tmp_path / 'shard_map'))
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    shard_params,
    pmap_params,
  )
