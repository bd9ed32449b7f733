"""models.pretrained: torchvision/timm safetensors files <-> ResNet variables.

Files are written with NumPy (safetensors.numpy) for tiny ResNets; the
agreement with torch itself is benchmarks/pretrained_parity.py's job.
"""

import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import models
from models import pretrained

_BN = ('weight', 'bias', 'running_mean', 'running_var')


def _model(stage_sizes=(1, 2), bottleneck=False, embedding_dim=3):
  return models.ResNet(
    embedding_dim=embedding_dim,
    stage_sizes=stage_sizes,
    stage_filters=(2, 4)[: len(stage_sizes)],
    bottleneck=bottleneck,
  )


def _variables(model, seed, channels=3):
  """Random variables with the init's structure (no initialiser compiled)."""
  rng = np.random.default_rng(seed)
  abstract = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 9, 9, channels)), train=False
    )
  )

  def fill(path, leaf):
    values = rng.normal(size=leaf.shape)
    if jax.tree_util.keystr(path).endswith("['var']"):
      values = 0.5 + np.abs(values)
    return jnp.asarray(values, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _torch_names(stage_sizes, bottleneck, downsample_blocks):
  names = ['conv1.weight', *(f'bn1.{leaf}' for leaf in _BN)]
  convs = 3 if bottleneck else 2
  for stage, size in enumerate(stage_sizes, start=1):
    for block in range(size):
      prefix = f'layer{stage}.{block}'
      for i in range(1, convs + 1):
        names.append(f'{prefix}.conv{i}.weight')
        names.extend(f'{prefix}.bn{i}.{leaf}' for leaf in _BN)
      if (stage, block) in downsample_blocks:
        names.append(f'{prefix}.downsample.0.weight')
        names.extend(f'{prefix}.downsample.1.{leaf}' for leaf in _BN)
  return set(names)


@pytest.mark.parametrize(
  'bottleneck,downsample_blocks',
  [
    # Basic blocks: the stem's 2 channels go on into stage 1 unchanged.
    (False, {(2, 0)}),
    # Bottlenecks expand 4x: stage 1's first block projects too.
    (True, {(1, 0), (2, 0)}),
  ],
)
def test_torchvision_names_and_layouts(bottleneck, downsample_blocks):
  model = _model(bottleneck=bottleneck)
  variables = _variables(model, seed=0)
  params, stats = variables['params'], variables['batch_stats']
  state = pretrained.torchvision_state(params, stats)
  assert set(state) == _torch_names((1, 2), bottleneck, downsample_blocks) | {
    'fc.weight',
    'fc.bias',
  }
  # torch's OIHW is our HWIO transposed; BatchNorm's four vectors map one to
  # one; fc is the embedding's [C, E] kernel transposed.
  kernel = np.asarray(params['stage2_block1']['conv1']['kernel'])
  np.testing.assert_array_equal(
    state['layer2.0.conv1.weight'], kernel.transpose(3, 2, 0, 1)
  )
  assert state['layer2.0.conv1.weight'].shape == (
    (4, 8, 1, 1) if bottleneck else (4, 2, 3, 3)
  )
  np.testing.assert_array_equal(
    state['layer2.0.downsample.0.weight'][:, :, 0, 0],
    np.asarray(params['stage2_block1']['shortcut_conv']['kernel'])[0, 0].T,
  )
  for leaf, collection, name in (
    ('weight', params, 'scale'),
    ('bias', params, 'bias'),
    ('running_mean', stats, 'mean'),
    ('running_var', stats, 'var'),
  ):
    np.testing.assert_array_equal(
      state[f'layer2.1.bn2.{leaf}'],
      collection['stage2_block2']['bn2'][name],
    )
  np.testing.assert_array_equal(
    state['fc.weight'], np.asarray(params['embedding']['kernel']).T
  )
  assert set(
    pretrained.torchvision_state(params, stats, include_embedding=False)
  ) == set(state) - {'fc.weight', 'fc.bias'}


def test_loads_a_numpy_written_file_in_torch_layout(tmp_path):
  # A file as torchvision writes it: OIHW kernels, the classifier and the
  # int64 num_batches_tracked counters (both skipped).
  model = _model()
  variables = _variables(model, seed=0)
  rng = np.random.default_rng(1)
  tensors = {}
  for name, value in pretrained.torchvision_state(
    variables['params'], variables['batch_stats'], include_embedding=False
  ).items():
    tensors[name] = rng.normal(size=value.shape).astype(np.float32)
    if name.endswith('running_var'):
      tensors[name] = np.abs(tensors[name])
      tensors[name.replace('running_var', 'num_batches_tracked')] = np.array(
        7, np.int64
      )
  tensors['fc.weight'] = np.ones((1000, 4), np.float32)
  tensors['fc.bias'] = np.zeros(1000, np.float32)
  path = tmp_path / 'resnet.safetensors'
  safetensors.numpy.save_file(tensors, str(path))

  params, stats = pretrained.load_resnet(
    path, params=variables['params'], batch_stats=variables['batch_stats']
  )
  np.testing.assert_array_equal(
    params['conv_init']['kernel'],
    tensors['conv1.weight'].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    params['stage2_block1']['shortcut_conv']['kernel'],
    tensors['layer2.0.downsample.0.weight'].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    params['stage1_block1']['bn2']['scale'], tensors['layer1.0.bn2.weight']
  )
  np.testing.assert_array_equal(
    stats['bn_init']['mean'], tensors['bn1.running_mean']
  )
  np.testing.assert_array_equal(
    stats['stage2_block2']['bn1']['var'], tensors['layer2.1.bn1.running_var']
  )
  # The embedding stays as given: the classifier is no embedding.
  np.testing.assert_array_equal(
    params['embedding']['kernel'], variables['params']['embedding']['kernel']
  )
  assert params['conv_init']['kernel'].dtype == jnp.float32


@pytest.mark.parametrize('bottleneck', [False, True])
def test_export_import_round_trip(bottleneck, tmp_path):
  model = _model(bottleneck=bottleneck)
  source = _variables(model, seed=0)
  fresh = _variables(model, seed=1)
  path = tmp_path / 'ours.safetensors'
  pretrained.save_resnet_torchvision(
    path, source['params'], source['batch_stats']
  )
  params, stats = pretrained.load_resnet(
    path, params=fresh['params'], batch_stats=fresh['batch_stats']
  )

  def backbone(tree):
    return {k: v for k, v in tree.items() if k != 'embedding'}

  jax.tree.map(
    np.testing.assert_array_equal, backbone(params), backbone(source['params'])
  )
  jax.tree.map(np.testing.assert_array_equal, stats, source['batch_stats'])
  # The embedding is the fresh one, and the arguments are untouched.
  jax.tree.map(
    np.testing.assert_array_equal,
    params['embedding'],
    fresh['params']['embedding'],
  )
  assert not np.array_equal(
    fresh['params']['conv_init']['kernel'],
    source['params']['conv_init']['kernel'],
  )
  images = jnp.asarray(np.random.default_rng(2).normal(size=(2, 9, 9, 3)))

  # One compilation (eager, every layer would compile on its own).
  @jax.jit
  def pooled(variables):
    return model.apply(variables, images, train=False, return_pooled=True)

  np.testing.assert_array_equal(
    pooled({'params': params, 'batch_stats': stats}), pooled(source)
  )
  assert pooled(source).shape == (2, 16 if bottleneck else 4)


def test_prefix_common_to_every_tensor_is_stripped(tmp_path):
  # DataParallel's 'module.' prefix.
  model = _model()
  source = _variables(model, seed=0)
  state = pretrained.torchvision_state(source['params'], source['batch_stats'])
  path = str(tmp_path / 'wrapped.safetensors')
  safetensors.numpy.save_file(
    {f'module.{name}': value for name, value in state.items()}, path
  )
  params, _ = pretrained.load_resnet(
    path, params=source['params'], batch_stats=source['batch_stats']
  )
  np.testing.assert_array_equal(
    params['conv_init']['kernel'], source['params']['conv_init']['kernel']
  )


# ---------------------------------------------------------------------------
# Errors: each names what is wrong.
# ---------------------------------------------------------------------------


def _write(tmp_path, tensors, name='file.safetensors'):
  path = str(tmp_path / name)
  safetensors.numpy.save_file(tensors, path)
  return path


def _state(model, seed=0, **kwargs):
  variables = _variables(model, seed, **kwargs)
  return pretrained.torchvision_state(
    variables['params'], variables['batch_stats']
  )


def _load(path, model=None, channels=3):
  variables = _variables(model or _model(), seed=5, channels=channels)
  return pretrained.load_resnet(
    path, params=variables['params'], batch_stats=variables['batch_stats']
  )


def test_missing_tensor_is_named(tmp_path):
  state = _state(_model())
  del state['layer2.1.bn2.running_var']
  with pytest.raises(
    ValueError, match=r'missing tensors: layer2\.1\.bn2\.running_var'
  ):
    _load(_write(tmp_path, state))


def test_unexpected_tensor_is_named(tmp_path):
  state = _state(_model())
  state['layer2.1.conv3.weight'] = np.zeros((4, 4, 1, 1), np.float32)
  with pytest.raises(
    ValueError, match=r'unexpected tensors: layer2\.1\.conv3\.weight'
  ):
    _load(_write(tmp_path, state))


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path):
  state = _state(_model())
  state['layer1.0.conv2.weight'] = np.zeros((2, 2, 1, 1), np.float32)
  with pytest.raises(
    ValueError,
    match=r'layer1\.0\.conv2\.weight: expected \(2, 2, 3, 3\) \(the '
    r"model's stage1_block1/conv2/kernel\), received \(2, 2, 1, 1\)",
  ):
    _load(_write(tmp_path, state))


def test_other_depth_is_described(tmp_path):
  state = _state(_model(stage_sizes=(1, 3)))
  with pytest.raises(ValueError, match='unexpected tensors') as error:
    _load(_write(tmp_path, state))
  assert 'stage sizes (1, 3) with basic blocks' in str(error.value)
  assert 'the model of stage sizes (1, 2)' in str(error.value)


def test_rgb_weights_for_grey_images_point_to_the_normalization(tmp_path):
  state = _state(_model())
  with pytest.raises(ValueError, match=r'conv1\.weight: expected') as error:
    _load(_write(tmp_path, state), channels=1)
  assert "normalization='imagenet'" in str(error.value)


def test_unknown_naming_says_which_was_expected(tmp_path):
  path = _write(
    tmp_path,
    {'features.0.weight': np.zeros((2, 3, 3, 3), np.float32)},
  )
  with pytest.raises(ValueError, match='unknown tensor naming') as error:
    _load(path)
  message = str(error.value)
  assert "torchvision's ResNet names" in message
  assert 'timm' in message
  assert 'features.0.weight' in message


def test_deep_stem_is_refused(tmp_path):
  state = _state(_model())
  state['conv1.0.weight'] = state.pop('conv1.weight')
  with pytest.raises(ValueError, match='deep stem'):
    _load(_write(tmp_path, state))


def test_prefix_next_to_other_tensors_is_refused(tmp_path):
  state = {f'backbone.{k}': v for k, v in _state(_model()).items()}
  state['head.weight'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r"prefix 'backbone\.'.*head\.weight"):
    _load(_write(tmp_path, state))


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='`path`.*no such file'):
    _load(str(tmp_path / 'absent.safetensors'))


def test_not_a_safetensors_file(tmp_path):
  path = tmp_path / 'resnet.pth'
  path.write_bytes(b'PK\x03\x04 a zip archive, as torch.save writes')
  with pytest.raises(ValueError, match='not a safetensors file'):
    _load(str(path))


def test_bfloat16_tensors_are_refused_by_name(tmp_path):
  # NumPy has no bfloat16: safetensors.numpy cannot read such a file.
  header = json.dumps(
    {'conv1.weight': {'dtype': 'BF16', 'shape': [2], 'data_offsets': [0, 4]}}
  ).encode()
  header += b' ' * (-len(header) % 8)
  path = tmp_path / 'bf16.safetensors'
  path.write_bytes(struct.pack('<Q', len(header)) + header + bytes(4))
  with pytest.raises(ValueError, match=r'conv1\.weight \(BF16\)'):
    _load(str(path))


def test_variables_of_another_backbone_are_refused(tmp_path):
  path = _write(tmp_path, _state(_model()))
  lenet = models.get_model('lenet', embedding_dim=2)
  variables = jax.eval_shape(
    lambda: lenet.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  )
  with pytest.raises(ValueError, match='variables of models.ResNet'):
    pretrained.load_resnet(
      path, params=variables['params'], batch_stats=variables['batch_stats']
    )
