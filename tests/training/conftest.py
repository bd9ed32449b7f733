"""Fixtures and helpers of the training tests.

They run a few steps each, compiled fast rather than run fast: tests/
conftest.py turns most of XLA's optimisations off for the whole suite (as
flax's examples/imagenet/train_test.py does for its training tests).
"""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import models
from input_pipeline import preparation
from models import pretrained


@pytest.fixture(scope='session')
def digits_data_dir(tmp_path_factory):
  """A TFDS data dir with digits prepared once per test process.

  For the tests that only read digits (every train.py they start finds it
  prepared); a test that prepares another set into it leaves digits as is.
  """
  data_dir = str(tmp_path_factory.mktemp('tfds_digits'))
  preparation.prepare('digits', data_dir)
  return data_dir


class FirstTrainStates(list):
  """A loop hook (`train.train_and_evaluate(..., hooks=[it])`): appends,
  per run, the state its first train step receives."""

  def __init__(self):
    super().__init__()
    self._runs = []

  def __call__(self, step, state, steps):
    del step
    if not any(run is steps for run in self._runs):  # A new run's steps.
      self._runs.append(steps)
      self.append(jax.device_get(state))


@pytest.fixture
def first_train_states():
  return FirstTrainStates()


def last_checkpointed_state(workdir):
  """The state of the newest checkpoint in `workdir`, as saved."""
  manager = ocp.CheckpointManager(workdir / 'checkpoints')
  restored = manager.restore(
    manager.latest_step(),
    args=ocp.args.Composite(state=ocp.args.StandardRestore()),
  )
  manager.close()
  return restored['state']


def without_embedding(params):
  """A backbone's params without the embedding layer (never pretrained)."""
  return {k: v for k, v in params.items() if k != 'embedding'}


def write_random_resnet18(path, stage_filters, image_size, *, seed):
  """Writes a random ResNet-18 in torchvision's naming, as weights to load.

  It stands for ImageNet weights: random parameters and non-trivial running
  statistics (initial ones would be all 0 and 1).

  Returns:
    ``(params, batch_stats)`` that were written.
  """
  model = models.get_model(
    'resnet18', embedding_dim=8, stage_filters=stage_filters
  )
  variables = model.init(
    jax.random.key(seed),
    np.zeros((1, image_size, image_size, 3), np.float32),
    train=False,
  )
  rng = np.random.default_rng(seed)
  batch_stats = jax.tree.map(
    lambda s: np.abs(s + 0.3 * rng.standard_normal(s.shape)).astype(np.float32),
    variables['batch_stats'],
  )
  pretrained.save_resnet_torchvision(path, variables['params'], batch_stats)
  return variables['params'], batch_stats


def override(config, **dotted):
  """Sets ``config[a][b][c] = value`` for each ``'a.b.c'=value``."""
  for path, value in dotted.items():
    section, _, field = path.rpartition('.')
    target = config
    for key in filter(None, section.split('.')):
      target = target[key]
    target[field] = value
  return config
