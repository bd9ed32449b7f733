"""Tests for `models.IResNet` and its arcface_torch weight loader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import models
from models import iresnet_weights


def _init(name='iresnet18', size=16, dim=8):
  """The model and its variables' structure (shapes only: nothing runs)."""
  model = models.get_model(name, embedding_dim=dim)
  variables = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), jnp.zeros((2, size, size, 3)), train=False
    )
  )
  return model, _random_like(variables, 0)


@pytest.mark.parametrize(
  ('name', 'blocks'),
  [('iresnet18', 8), ('iresnet34', 16), ('iresnet50', 24), ('iresnet100', 49)],
)
def test_depths_and_the_112_shapes(name, blocks):
  model = models.get_model(name)
  variables = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 112, 112, 3)), train=False
    )
  )
  params = variables['params']
  assert sum(key.startswith('stage') for key in params) == blocks
  # 112 -> 7 after four stride-2 stages: fc takes 512 x 7 x 7.
  assert params['embedding']['kernel'].shape == (512 * 7 * 7, 512)
  assert 'scale' not in params['features']  # arcface_torch fixes it at 1.
  out = jax.eval_shape(
    lambda v: model.apply(v, jnp.zeros((3, 112, 112, 3)), train=False),
    variables,
  )
  assert out.shape == (3, 512)


def test_train_and_eval_outputs():
  model, variables = _init()
  images = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  out, updates = jax.jit(
    lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])
  )(variables, images)
  assert out.shape == (4, 8) and np.all(np.isfinite(out))
  assert set(updates['batch_stats']) == set(variables['batch_stats'])
  # The feature BatchNorm normalises the batch in training: its mean is
  # the BatchNorm's bias.
  np.testing.assert_allclose(
    np.mean(out, axis=0), variables['params']['features']['bias'], atol=1e-4
  )


def test_torch_names():
  assert iresnet_weights.torch_name('params', ('conv_init', 'kernel')) == (
    'conv1.weight'
  )
  assert (
    iresnet_weights.torch_name(
      'batch_stats', ('stage2_block1', 'shortcut_bn', 'var')
    )
    == 'layer2.0.downsample.1.running_var'
  )
  assert (
    iresnet_weights.torch_name(
      'params', ('stage4_block2', 'prelu', 'negative_slope')
    )
    == 'layer4.1.prelu.weight'
  )
  assert iresnet_weights.torch_name('params', ('bn_final', 'scale')) == (
    'bn2.weight'
  )


def _random_like(tree, seed):
  rng = np.random.default_rng(seed)
  # Positive, so that variances are valid; 0.1 keeps activations finite.
  return jax.tree.map(
    lambda x: (0.1 * rng.random(size=x.shape) + 0.5).astype(np.float32), tree
  )


def test_loader_round_trip(tmp_path):
  model, variables = _init()
  params = _random_like(variables['params'], 1)
  stats = _random_like(variables['batch_stats'], 2)
  path = iresnet_weights.save_iresnet_torch(
    tmp_path / 'r18.safetensors', params, stats
  )
  tensors = safetensors.numpy.load_file(path)
  # torch layouts: OIHW convolutions, [out, in] Linear.
  np.testing.assert_array_equal(
    tensors['conv1.weight'],
    np.transpose(params['conv_init']['kernel'], (3, 2, 0, 1)),
  )
  np.testing.assert_array_equal(
    tensors['fc.weight'], params['embedding']['kernel'].T
  )
  np.testing.assert_array_equal(tensors['features.weight'], 1.0)
  tensors['layer1.0.bn1.num_batches_tracked'] = np.array(3)
  safetensors.numpy.save_file(tensors, path)
  loaded, loaded_stats = iresnet_weights.load_iresnet(
    path, params=variables['params'], batch_stats=variables['batch_stats']
  )
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  jax.tree.map(np.testing.assert_array_equal, loaded_stats, stats)


def test_loader_refusals(tmp_path):
  _, variables = _init()
  path = str(tmp_path / 'w.safetensors')
  state = iresnet_weights.iresnet_torch_state(
    variables['params'], variables['batch_stats']
  )
  del state['layer1.0.conv1.weight']
  state['extra.weight'] = np.zeros(2, np.float32)
  safetensors.numpy.save_file(state, path)
  with pytest.raises(ValueError, match=r'missing \[.layer1.0.conv1.weight'):
    iresnet_weights.load_iresnet(
      path, params=variables['params'], batch_stats=variables['batch_stats']
    )
  _, bigger = _init(size=32)
  state = iresnet_weights.iresnet_torch_state(
    bigger['params'], bigger['batch_stats']
  )
  safetensors.numpy.save_file(state, path)
  with pytest.raises(ValueError, match='fc.weight'):
    iresnet_weights.load_iresnet(
      path, params=variables['params'], batch_stats=variables['batch_stats']
    )
  state['features.weight'][0] = 2.0
  safetensors.numpy.save_file(state, path)
  with pytest.raises(ValueError, match='all ones'):
    iresnet_weights.load_iresnet(
      path, params=bigger['params'], batch_stats=bigger['batch_stats']
    )
