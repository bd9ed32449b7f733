"""Tests of the backbones: shapes, parameter counts, cross-device BatchNorm."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models


def _abstract_variables(model, shape):
  return jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=False)
  )


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _random_variables(model, shape, seed=0):
  """Variables with the init's structure, filled from NumPy.

  Compiling the random initialisers of a deep network takes tens of seconds
  on a small CPU; the forward tests do not need them.
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "'var'" in name:
      return jnp.ones(leaf.shape, leaf.dtype)
    if "'mean'" in name:
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    values = rng.normal(size=leaf.shape) / np.sqrt(fan_in)
    return jnp.asarray(values, leaf.dtype)

  return jax.tree_util.tree_map_with_path(
    fill, _abstract_variables(model, shape)
  )


# ---------------------------------------------------------------------------
# Shapes and dtypes.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  'name,shape,embedding_dim',
  [
    ('lenet', (3, 8, 8, 1), 2),  # sklearn digits, 2-D feature plots
    ('lenet', (3, 28, 28, 1), 2),  # MNIST
    ('lenet', (3, 32, 32, 3), 16),  # CIFAR
    ('lenet', (3, 1, 1, 1), 2),  # pooling never shrinks a map to nothing
    ('cifar_resnet20', (3, 32, 32, 3), 2),
    ('cifar_resnet32', (3, 32, 32, 3), 64),
    ('cifar_resnet56', (3, 8, 8, 1), 10),
    ('resnet18', (3, 32, 32, 3), 128),
    ('resnet18', (3, 8, 8, 1), 2),
    ('resnet50', (3, 32, 32, 3), 2),
  ],
)
def test_output_shapes(name, shape, embedding_dim):
  model = models.get_model(name, embedding_dim=embedding_dim)
  variables = _abstract_variables(model, shape)
  for train in (False, True):
    out = jax.eval_shape(
      lambda v, x, train=train: model.apply(
        v, x, train=train, mutable=['batch_stats']
      )[0],
      variables,
      jax.ShapeDtypeStruct(shape, jnp.float32),
    )
    assert out.shape == (shape[0], embedding_dim)
    assert out.dtype == jnp.float32


@pytest.mark.parametrize(
  'name,shape',
  [
    ('lenet', (2, 8, 8, 1)),
    ('cifar_resnet20', (2, 32, 32, 3)),
    ('resnet18', (2, 16, 16, 3)),
    ('resnet50', (2, 8, 8, 3)),  # Tiny input: the suite stays fast.
  ],
)
def test_forward_runs_and_is_finite(name, shape):
  model = models.get_model(name, embedding_dim=2)
  variables = _random_variables(model, shape)
  images = jnp.asarray(np.random.default_rng(1).normal(size=shape))
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  assert out.shape == (shape[0], 2)
  assert np.all(np.isfinite(out))


def test_lenet_real_init_and_two_dimensional_embedding():
  model = models.get_model('lenet', embedding_dim=2)
  images = jnp.asarray(np.random.default_rng(2).normal(size=(4, 8, 8, 1)))
  # The 'rbg' generator compiles in a fraction of threefry's time on CPU.
  variables = jax.jit(lambda k: model.init(k, images, train=False))(
    jax.random.key(0, impl='rbg')
  )
  assert set(variables) == {'params', 'batch_stats'}
  out = jax.jit(lambda v: model.apply(v, images, train=False))(variables)
  assert out.shape == (4, 2)
  assert np.all(np.isfinite(out))
  # PReLU slopes start at 0.25 per channel, as in Caffe.
  slopes = variables['params']['conv1_1_prelu']['negative_slope']
  np.testing.assert_array_equal(slopes, np.full((32,), 0.25))


def test_lenet_without_batch_norm_is_the_paper_network():
  model = models.get_model('lenet', embedding_dim=2, batch_norm=False)
  variables = _abstract_variables(model, (1, 28, 28, 1))
  assert 'batch_stats' not in variables
  # 6 convs (5x5, with bias) + 6 channel-wise PReLUs + Dense(128*4*4 -> 2):
  # Caffe's ceil-mode pooling gives the 4x4 final map from 28x28.
  convs = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
  want = sum(25 * c_in * c_out + c_out + c_out for c_in, c_out in convs)
  want += 128 * 4 * 4 * 2 + 2
  assert _count(variables['params']) == want


@pytest.mark.parametrize('name', ['lenet', 'cifar_resnet20', 'resnet18'])
def test_computation_dtype(name):
  model = models.get_model(name, embedding_dim=4, dtype=jnp.bfloat16)
  shape = (2, 16, 16, 3)
  variables = _abstract_variables(model, shape)
  params = jax.tree.leaves(variables['params'])
  assert all(leaf.dtype == jnp.float32 for leaf in params)
  out = jax.eval_shape(
    lambda v: model.apply(v, jnp.zeros(shape), train=False), variables
  )
  assert out.dtype == jnp.bfloat16


# ---------------------------------------------------------------------------
# Parameter counts.
# ---------------------------------------------------------------------------


def test_cifar_resnet20_parameter_count():
  # He et al. 2016, Table 6: 0.27M parameters with the 10-way classifier.
  # With embedding_dim = 10 the final Dense(64 -> 10) is that classifier.
  # Option-A shortcuts add nothing, so the count is, exactly:
  #   conv 3x3x3x16, 6 convs 3x3x16x16, 3x3x16x32 + 5 x 3x3x32x32,
  #   3x3x32x64 + 5 x 3x3x64x64, Dense 64x10 + 10, and the BatchNorm
  #   scales and biases of 19 layers (16x7 + 32x6 + 64x6 channels).
  convs = (
    27 * 16 + 6 * 144 * 16 + 144 * 32 + 5 * 288 * 32 + 288 * 64 + 5 * 576 * 64
  )
  batch_norm = 2 * (16 * 7 + 32 * 6 + 64 * 6)
  want = convs + 64 * 10 + 10 + batch_norm
  assert want == 269_722
  model = models.get_model('cifar_resnet20', embedding_dim=10)
  variables = _abstract_variables(model, (1, 32, 32, 3))
  assert _count(variables['params']) == want
  # Running means and variances of the same 19 layers, not parameters.
  assert _count(variables['batch_stats']) == batch_norm


@pytest.mark.parametrize(
  'name,want_millions', [('cifar_resnet32', 0.46), ('cifar_resnet56', 0.85)]
)
def test_deeper_cifar_resnets_match_the_paper(name, want_millions):
  model = models.get_model(name, embedding_dim=10)
  variables = _abstract_variables(model, (1, 32, 32, 3))
  assert round(_count(variables['params']) / 1e6, 2) == want_millions


@pytest.mark.parametrize(
  'name,want',
  [
    ('resnet18', 11_689_512),
    ('resnet50', 25_557_032),
    ('resnet101', 44_549_160),
  ],
)
def test_imagenet_resnet_parameter_counts(name, want):
  # The usual counts of ResNet-18/50/101 with a 1000-way classifier
  # (weights, biases, BatchNorm scales and offsets): torchvision's model
  # documentation gives these numbers.
  model = models.get_model(name, embedding_dim=1000)
  variables = _abstract_variables(model, (1, 224, 224, 3))
  assert _count(variables['params']) == want


# ---------------------------------------------------------------------------
# BatchNorm statistics across devices.
# ---------------------------------------------------------------------------

# Narrow and shallow versions of each family: the same code paths (stem,
# blocks, shortcuts, every BatchNorm) at a fraction of the compile time.
# float64 computation makes the sharded and whole-batch runs agree tightly.
_SMALL_MODELS = {
  'lenet': lambda **kw: models.LeNetPlusPlus(
    stage_filters=(4, 4, 8), dtype=jnp.float64, **kw
  ),
  'cifar_resnet': lambda **kw: models.CifarResNet(
    depth=8, stage_filters=(4, 8, 8), dtype=jnp.float64, **kw
  ),
  'resnet_bottleneck': lambda **kw: models.ResNet(
    stage_sizes=(1, 1),
    stage_filters=(2, 4),
    bottleneck=True,
    dtype=jnp.float64,
    **kw,
  ),
}


def _train_apply(model, variables, images):
  embeddings, updates = model.apply(
    variables, images, train=True, mutable=['batch_stats']
  )
  return embeddings, updates['batch_stats']


@pytest.mark.parametrize('name', sorted(_SMALL_MODELS))
def test_batch_norm_statistics_are_shared_over_the_axis(name):
  # vmap with an axis name runs the same collectives as pmap, on one
  # device: two shards must see the statistics of the whole batch.
  shape = (2, 3, 8, 8, 3)
  local = _SMALL_MODELS[name](embedding_dim=3)
  synced = _SMALL_MODELS[name](embedding_dim=3, bn_axis_name='batch')
  variables = _random_variables(local, shape[1:])
  images = jnp.asarray(np.random.default_rng(3).normal(size=shape))

  sharded_embeddings, sharded_stats = jax.jit(
    jax.vmap(lambda x: _train_apply(synced, variables, x), axis_name='batch')
  )(images)
  whole_embeddings, whole_stats = jax.jit(
    lambda x: _train_apply(local, variables, x)
  )(images.reshape(-1, *shape[2:]))

  np.testing.assert_allclose(
    sharded_embeddings.reshape(-1, 3), whole_embeddings, rtol=1e-10, atol=1e-10
  )
  for shard in range(2):
    jax.tree.map(
      lambda s, w, shard=shard: np.testing.assert_allclose(
        s[shard], w, rtol=1e-10, atol=1e-12
      ),
      sharded_stats,
      whole_stats,
    )
  # ... and the statistics did move away from their initial values.
  moved = jax.tree.map(
    lambda new, old: float(jnp.max(jnp.abs(new - old))),
    whole_stats,
    variables['batch_stats'],
  )
  assert max(jax.tree.leaves(moved)) > 1e-3


def test_batch_norm_under_pmap():
  # With several devices (XLA_FLAGS set by the caller) the shards differ and
  # must agree with the whole-batch statistics; with one device this checks
  # that the pmap + axis_name path runs and updates the statistics.
  num_devices = jax.local_device_count()
  name = 'lenet'
  shape = (num_devices, 2, 8, 8, 1)
  local = _SMALL_MODELS[name](embedding_dim=2)
  synced = _SMALL_MODELS[name](embedding_dim=2, bn_axis_name='batch')
  variables = _random_variables(local, shape[1:])
  images = jnp.asarray(np.random.default_rng(4).normal(size=shape))
  embeddings, stats = jax.pmap(
    lambda v, x: _train_apply(synced, v, x),
    axis_name='batch',
    in_axes=(None, 0),
  )(variables, images)
  whole_embeddings, whole_stats = jax.jit(
    lambda x: _train_apply(local, variables, x)
  )(images.reshape(-1, *shape[2:]))
  np.testing.assert_allclose(
    np.asarray(embeddings).reshape(-1, 2),
    whole_embeddings,
    rtol=1e-10,
    atol=1e-10,
  )
  for device in range(num_devices):
    jax.tree.map(
      lambda s, w, device=device: np.testing.assert_allclose(
        s[device], w, rtol=1e-10, atol=1e-12
      ),
      stats,
      whole_stats,
    )
  mean = stats['conv1_1_bn']['mean'][0]
  assert float(jnp.max(jnp.abs(mean))) > 1e-3


def test_unbound_axis_name_fails_outside_the_mapped_axis():
  model = models.get_model('lenet', embedding_dim=2, bn_axis_name='batch')
  variables = _abstract_variables(model, (2, 8, 8, 1))
  images = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)
  # An unbound axis name fails while tracing, so abstract evaluation finds
  # it without compiling the network op by op. Evaluation uses the running
  # statistics and needs no axis.
  jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  with pytest.raises(NameError, match='batch'):
    jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']),
      variables,
      images,
    )


# ---------------------------------------------------------------------------
# Registry and errors.
# ---------------------------------------------------------------------------


def test_registry_names():
  assert models.MODEL_NAMES == (
    'cifar_resnet20',
    'cifar_resnet32',
    'cifar_resnet56',
    'iresnet100',
    'iresnet18',
    'iresnet34',
    'iresnet50',
    'lenet',
    'resnet101',
    'resnet18',
    'resnet50',
  )


def test_unknown_model_name_lists_valid_names():
  with pytest.raises(ValueError, match='vgg16') as error:
    models.get_model('vgg16', embedding_dim=2)
  for name in models.MODEL_NAMES:
    assert name in str(error.value)


@pytest.mark.parametrize('embedding_dim', [0, -3, 2.5, True])
def test_bad_embedding_dim(embedding_dim):
  model = models.get_model('lenet', embedding_dim=embedding_dim)
  with pytest.raises(ValueError, match='`embedding_dim`'):
    _abstract_variables(model, (1, 8, 8, 1))


def test_bad_cifar_depth():
  model = models.resnet.CifarResNet(embedding_dim=2, depth=21)
  with pytest.raises(ValueError, match='`depth`.*21'):
    _abstract_variables(model, (1, 32, 32, 3))


def test_bad_image_rank():
  model = models.get_model('lenet', embedding_dim=2)
  with pytest.raises(ValueError, match=r'`images`.*\(8, 8, 1\)'):
    _abstract_variables(model, (8, 8, 1))


def test_model_config_has_init_from_but_the_backbone_does_not():
  config = models.model_config('resnet50')
  assert config.init_from is None
  config.init_from = '/weights/resnet50.safetensors'  # A str placeholder.
  assert 'init_from' in models.attribute_names('resnet50')
  with pytest.raises(ValueError, match='no attribute init_from'):
    models.get_model('resnet50', embedding_dim=2, init_from='x')


def test_pooled_features_are_the_embedding_input():
  model = models.ResNet(
    embedding_dim=3, stage_sizes=(1, 1), stage_filters=(2, 4)
  )
  variables = _random_variables(model, (2, 9, 9, 3))
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 3)))
  pooled, embeddings = jax.jit(
    lambda v, x: (
      model.apply(v, x, train=False, return_pooled=True),
      model.apply(v, x, train=False),
    )
  )(variables, images)
  assert pooled.shape == (2, 4)
  dense = variables['params']['embedding']
  np.testing.assert_allclose(
    embeddings, pooled @ dense['kernel'] + dense['bias'], rtol=1e-5, atol=1e-6
  )


def test_last_stride_one_keeps_the_parameters_and_doubles_the_last_stage():
  # The re-id baselines' "last stride 1": the same variables (ImageNet
  # weights load either way), a last stage of twice the resolution.
  images = jnp.zeros((1, 64, 32, 3))
  shapes = {}
  for last_stride in (2, 1):
    model = models.get_model(
      'resnet18',
      embedding_dim=4,
      stage_filters=(2, 4, 4, 8),
      last_stride=last_stride,
    )
    variables = _abstract_variables(model, images.shape)
    shapes[last_stride] = jax.tree.map(lambda leaf: leaf.shape, variables)
    _, state = jax.eval_shape(
      lambda v, m=model: m.apply(
        v,
        images,
        train=False,
        capture_intermediates=True,
        mutable=['intermediates'],
      ),
      variables,
    )
    last = state['intermediates']['stage4_block2']['__call__'][0]
    assert last.shape == {2: (1, 2, 1, 8), 1: (1, 4, 2, 8)}[last_stride]
  assert shapes[1] == shapes[2]
  with pytest.raises(ValueError, match='last_stride'):
    models.get_model('resnet18', embedding_dim=4, last_stride=3).init(
      jax.random.PRNGKey(0), images, train=False
    )


@pytest.mark.parametrize('name', ['cifar_resnet20', 'resnet18'])
def test_frozen_batch_norm(name):
  # Variables as nn.BatchNorm's; in training the running statistics are
  # used and kept, and scale and bias get no gradient (Proxy-Anchor's
  # bn_freeze), while the convolutions still learn.
  kwargs = {'embedding_dim': 4}
  if name == 'resnet18':
    kwargs['stage_filters'] = (4, 8, 8, 8)
  frozen = models.get_model(name, freeze_batch_norm=True, **kwargs)
  plain = models.get_model(name, **kwargs)
  images = jnp.asarray(
    np.random.default_rng(0).random((3, 16, 16, 3)), jnp.float32
  )
  variables = jax.jit(functools.partial(plain.init, train=False))(
    jax.random.key(0), images
  )
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape,
    jax.eval_shape(
      functools.partial(frozen.init, train=False), jax.random.key(0), images
    ),
  )
  # Non-trivial running statistics, as after pretraining.
  rng = np.random.default_rng(1)
  variables = {
    'params': jax.tree.map(
      lambda p: p + 0.1 * rng.standard_normal(p.shape), variables['params']
    ),
    'batch_stats': jax.tree.map(
      lambda s: np.abs(s + 0.5 * rng.standard_normal(s.shape)),
      variables['batch_stats'],
    ),
  }

  def train_loss(params):
    out, updates = frozen.apply(
      {'params': params, 'batch_stats': variables['batch_stats']},
      images,
      train=True,
      mutable=['batch_stats'],
    )
    return jnp.sum(out**2), (out, updates)

  grads, (out, updates) = jax.jit(jax.grad(train_loss, has_aux=True))(
    variables['params']
  )
  np.testing.assert_allclose(
    out,
    jax.jit(functools.partial(plain.apply, train=False))(variables, images),
    rtol=1e-5,
    atol=1e-5,
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    updates['batch_stats'],
    variables['batch_stats'],
  )
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  batch_norm = [g for path, g in flat if 'bn' in jax.tree_util.keystr(path)]
  others = [g for path, g in flat if 'bn' not in jax.tree_util.keystr(path)]
  assert batch_norm and all(np.all(g == 0) for g in batch_norm)
  assert max(float(np.abs(g).max()) for g in others) > 0
