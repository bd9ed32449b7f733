"""Mixed precision: ``config.model.dtype='bfloat16'``.

The train step's program (traced, not compiled) has the backbone's
convolutions and Dense layer in bfloat16, forwards and backwards, and the
head's and loss's matrix products in float32. Every loss trains end to end
in bfloat16 in tests/end_to_end/every_loss_test.py.
"""

import functools

import jax
import jax.extend
import jax.numpy as jnp
import pytest

from configs import tiny
from training import experiment as experiment_lib
from training import steps as steps_lib

_NUM_STEPS = 3


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


@pytest.fixture
def data_dir(digits_data_dir):
  return digits_data_dir  # Other sets (digits_multilabel) go in too.


def _config(data_dir, loss_name, multilabel):
  config = tiny.get_config(loss_name)
  config.model.dtype = 'bfloat16'
  config.input.data_dir = data_dir
  if multilabel:
    config.input.name = 'digits_multilabel'
  config.num_train_steps = _NUM_STEPS
  config.log_every_steps = 1
  config.checkpoint_every_steps = _NUM_STEPS
  config.eval_every_steps = _NUM_STEPS
  config.write_features = False
  return config


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
