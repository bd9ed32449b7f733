"""A weighted sum of losses (``config.loss.name='a+b'``) trains, logs each
term, and resumes exactly like any run."""

import glob
import json
import os
import struct

import jax
import numpy as np
from tensorboardX.proto import event_pb2

import train
from configs import tiny
from tests import support

_NAME = 'circle_pairwise+softmax'


def _config(data_dir, num_train_steps):
  config = tiny.get_config(_NAME)
  config.input.data_dir = data_dir
  config.num_train_steps = num_train_steps
  config.checkpoint_every_steps = 2
  config.log_every_steps = 1
  # Constant, so that 2 steps are exactly the first half of 4.
  config.optimizer.schedule = 'constant'
  config.loss.softmax.weight = 0.5
  return config


def _tags(workdir):
  (path,) = glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  tags = set()
  with open(path, 'rb') as file:
    while header := file.read(12):
      (length,) = struct.unpack('<Q', header[:8])
      event = event_pb2.Event.FromString(file.read(length))
      file.read(4)
      tags.update(value.tag for value in event.summary.value)
  return tags


def test_a_sum_of_losses_trains_logs_its_terms_and_resumes(
  digits_data_dir, tmp_path
):
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  results = train.train_and_evaluate(_config(digits_data_dir, 4), str(straight))
  train.train_and_evaluate(_config(digits_data_dir, 2), str(resumed))
  train.train_and_evaluate(_config(digits_data_dir, 4), str(resumed))

  step_a, state_a = support.latest_checkpoint(straight)
  step_b, state_b = support.latest_checkpoint(resumed)
  assert step_a == step_b == 4
  jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
  # Each term has its own head: the softmax classifier, none for Circle.
  assert set(state_a['params']['head']) == {'softmax'}
  assert 0.0 <= results['accuracy'] <= 1.0  # Predicted by softmax's head.
  assert {
    'train/loss',
    'train/loss/circle_pairwise',
    'train/loss/softmax',
  } <= _tags(str(straight))
  with open(straight / 'results.json') as file:
    described = json.load(file)['hyperparameters']
  assert described['softmax.weight'] == {'value': 0.5, 'source': 'config'}
  assert described['circle_pairwise.margin']['value'] == 0.4
