"""training/optimizers.py: parameter groups with their own learning rates."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import default
from training import optimizers

_PARAMS = {
  'backbone': {
    'conv_init': {'kernel': jnp.ones((3, 3, 1, 2))},
    'embedding': {'kernel': jnp.ones((2, 4)), 'bias': jnp.ones((4,))},
  },
  'head': {'proxies': jnp.ones((5, 4)), 'mu': jnp.zeros((5,))},
}


def _grads(seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32),
    _PARAMS,
  )


def _config(**fields):
  config = default.get_config().optimizer
  config.name = 'sgd'
  config.momentum = 0.0
  config.nesterov = False
  config.weight_decay = 0.0
  for key, value in fields.items():
    config[key] = value
  return config


def test_groups():
  labels = optimizers._labels(_PARAMS)
  assert labels == {
    'backbone': {
      'conv_init': {'kernel': 'backbone'},
      'embedding': {'kernel': 'embedding', 'bias': 'embedding'},
    },
    'head': {'proxies': 'head', 'mu': 'gaussians'},
  }
  # BNNeck's BatchNorm is new, as the embedding layer before it.
  assert optimizers.param_group(('bnneck', 'scale')) == 'embedding'
  # G-softmax's Gaussians, in its head or a composite's term.
  assert optimizers.param_group(('head', 'mu')) == 'gaussians'
  assert optimizers.param_group(('head', 'g_softmax', 'sigma')) == 'gaussians'
  assert optimizers.param_group(('head', 'classifier', 'kernel')) == 'head'


def test_default_config_is_the_plain_optimizer():
  # Same state layout as before the groups existed: old checkpoints load.
  config = default.get_config().optimizer
  schedule = optax.constant_schedule(0.1)
  tx = optimizers.create_optimizer(config, schedule)
  plain = optimizers._base_optimizer(config, schedule)
  assert jax.tree.structure(tx.init(_PARAMS)) == jax.tree.structure(
    plain.init(_PARAMS)
  )
  config.lr_multipliers.head = 2.0
  grouped = optimizers.create_optimizer(config, schedule).init(_PARAMS)
  assert isinstance(grouped, optax.MultiTransformState)


def test_each_group_learns_at_its_multiple():
  config = _config(
    lr_multipliers=ml_collections.ConfigDict(
      {'backbone': 0.5, 'embedding': 10.0, 'head': 100.0, 'gaussians': 3.0}
    )
  )
  tx = optimizers.create_optimizer(config, optax.constant_schedule(0.01))
  grads = _grads()
  updates, _ = tx.update(grads, tx.init(_PARAMS), _PARAMS)
  factors = {
    'backbone': 0.5,
    'embedding': 10.0,
    'head': 100.0,
    'gaussians': 3.0,
  }
  labels = optimizers._labels(_PARAMS)
  jax.tree.map(
    lambda update, grad, label: np.testing.assert_allclose(
      update, -0.01 * factors[label] * grad, rtol=1e-6
    ),
    updates,
    grads,
    labels,
  )


def test_backbone_frozen_for_its_epochs_then_learns():
  config = _config(backbone_frozen_epochs=1.5)
  tx = optimizers.create_optimizer(
    config, optax.constant_schedule(0.01), steps_per_epoch=2
  )
  state = tx.init(_PARAMS)
  for step in range(5):
    grads = _grads(step)
    updates, state = tx.update(grads, state, _PARAMS)
    backbone = updates['backbone']['conv_init']['kernel']
    if step < 3:  # 1.5 epochs of 2 steps.
      np.testing.assert_array_equal(backbone, 0)
    else:
      np.testing.assert_allclose(
        backbone, -0.01 * grads['backbone']['conv_init']['kernel'], rtol=1e-6
      )
    np.testing.assert_allclose(
      updates['head']['proxies'], -0.01 * grads['head']['proxies'], rtol=1e-6
    )


@pytest.mark.parametrize(
  'fields,message',
  [
    (
      {'lr_multipliers': ml_collections.ConfigDict({'proxies': 2.0})},
      'no group proxies; its groups: backbone, embedding, head, gaussians',
    ),
    (
      {'lr_multipliers': ml_collections.ConfigDict({'head': -1.0})},
      'lr_multipliers.head must be a number >= 0, received -1.0',
    ),
    (
      {'backbone_frozen_epochs': -1.0},
      'backbone_frozen_epochs must be a number >= 0, received -1.0',
    ),
  ],
)
def test_bad_groups_are_refused(fields, message):
  config = ml_collections.ConfigDict(_config().to_dict())
  for key, value in fields.items():
    config[key] = value
  with pytest.raises(ValueError, match=message):
    optimizers.create_optimizer(config, optax.constant_schedule(0.1))
