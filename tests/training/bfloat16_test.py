"""Mixed precision end to end: ``config.model.dtype='bfloat16'``.

Every loss of the registry trains a few steps on digits with the backbone
in bfloat16, and the run keeps float32 where it must: the loss is finite at
every step, so are the evaluation metrics, and parameters, optimiser state
and BatchNorm statistics are float32 in the checkpoint. The train step's
program (traced, not compiled) has the backbone's convolutions and Dense
layer in bfloat16, forwards and backwards, and the head's and loss's matrix
products in float32.
"""

import functools
import glob
import os
import struct

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
import threadpoolctl
from tensorboardX.proto import event_pb2

import train
from configs import tiny
from tests import support
from training import evaluation_loop, objectives
from training import experiment as experiment_lib
from training import steps as steps_lib

_NUM_STEPS = 3
_LOSSES = [
  pytest.param(o.name, o.multilabel, id=o.name)
  for o in objectives.all_objectives()
]


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


@pytest.fixture
def data_dir(digits_data_dir):
  return digits_data_dir  # Other sets (digits_multilabel) go in too.


def _config(data_dir, loss_name, multilabel):
  config = tiny.get_config(loss_name)
  config.model.dtype = 'bfloat16'
  # One stage of LeNet++ has every kind of layer (convolutions, BatchNorm,
  # PReLU, pooling, the Dense embedding) and compiles in half the time of
  # tiny.py's two: 15 losses, 15 train steps to compile.
  config.model.stage_filters = (8,)
  config.input.data_dir = data_dir
  if multilabel:
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


def _eqns(jaxpr):
  """Every equation of `jaxpr` and of the jaxprs nested in it."""
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _eqns(sub)


def _abstract_step(config, loss_name):
  """The train step, its abstract state and batch, as train.py builds them.

  Returns:
    ``(step, state, batch)``: `steps.train_step` with the objective bound,
    and ``ShapeDtypeStruct`` trees of the state and of one device's batch.
  """
  del loss_name  # config.loss names it.
  experiment = experiment_lib.build(config)
  objective, info = experiment.objective, experiment.dataset.info
  state = experiment.abstract_state()
  size = config.input.batch_size
  label_shape = (size, info.num_classes) if objective.multilabel else (size,)
  batch = {
    'image': jax.ShapeDtypeStruct((size, *info.image_shape), jnp.float32),
    'label': jax.ShapeDtypeStruct(label_shape, jnp.int32),
  }
  step = functools.partial(
    steps_lib.train_step,
    objective=objective,
    hparams=experiment.hparams,
    learning_rate_fn=experiment.learning_rate_fn,
  )
  return step, state, batch


@pytest.mark.parametrize(('loss_name', 'multilabel'), _LOSSES)
def test_every_loss_trains_in_bfloat16(
  loss_name, multilabel, data_dir, tmp_path
):
  config = _config(data_dir, loss_name, multilabel)
  results = train.train_and_evaluate(config, str(tmp_path))
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


@pytest.mark.parametrize('loss_name', ['softmax', 'proxy_anchor'])
def test_backbone_runs_in_bfloat16_in_the_train_step(loss_name, data_dir):
  # The backbone is the same for every loss; two heads: a classifier
  # (Dense) and class weights (a parameter multiplied in the loss).
  step, state, batch = _abstract_step(
    _config(data_dir, loss_name, False), loss_name
  )
  # The model: bfloat16 activations, cast to float32 before the head.
  (embeddings, outputs), intermediates = jax.eval_shape(
    functools.partial(
      state.apply_fn,
      train=False,  # Training's BatchNorm needs the batch axis.
      mutable=['intermediates'],
      capture_intermediates=True,
    ),
    {'params': state.params, 'batch_stats': state.batch_stats},
    batch['image'],
  )
  # Every layer's output (convolutions, BatchNorm, PReLU, the embedding).
  activations = intermediates['intermediates']['backbone']
  assert len(jax.tree.leaves(activations)) > 5
  assert {str(x.dtype) for x in jax.tree.leaves(activations)} == {'bfloat16'}
  assert embeddings.dtype == jnp.float32
  assert {str(x.dtype) for x in jax.tree.leaves(outputs)} == {'float32'}
  # The train step: which dtypes its convolutions and matrix products
  # take, forwards and backwards (traced with one device's batch axis).
  jaxpr = jax.make_jaxpr(step, axis_env=[(steps_lib.AXIS_NAME, 1)])(
    state, batch
  )
  ops = {
    (eqn.primitive.name, tuple(str(v.aval.dtype) for v in eqn.invars))
    for eqn in _eqns(jaxpr.jaxpr)
    if eqn.primitive.name in ('conv_general_dilated', 'dot_general')
  }
  convolutions = {
    dtypes for name, dtypes in ops if name == 'conv_general_dilated'
  }
  assert convolutions == {('bfloat16', 'bfloat16')}, ops
  # The embedding layer (and its gradients) in bfloat16, the head's and
  # loss's matrix products in float32: nothing in between.
  dots = {dtypes for name, dtypes in ops if name == 'dot_general'}
  assert dots == {('bfloat16', 'bfloat16'), ('float32', 'float32')}, ops
