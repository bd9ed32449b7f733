"""Residual networks ending in an embedding: CIFAR and ImageNet variants.

He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.

- `CifarResNet` (§4.2 of the paper): a 3x3 convolution with 16 filters, then
  three stages of ``n`` basic blocks with 16, 32 and 64 filters (depth
  ``6n + 2``: 20, 32, 56, ...), the second and third stage starting with
  stride 2. Shortcuts are the paper's option A for CIFAR: identity, and where
  the shape changes a stride-2 subsampling padded with zero channels, so
  shortcuts add no parameters. With a 10-way output ResNet-20 has 0.27M
  parameters, as in the paper's Table 6.
- `ResNet` (§3.3 and Table 1): the ImageNet networks. A 7x7/2 convolution
  with 64 filters and a 3x3/2 max pool, then four stages (64, 128, 256, 512
  filters) of basic blocks (ResNet-18/34) or bottleneck blocks with 4x
  expansion (ResNet-50/101/152), projection shortcuts (option B) where the
  shape changes. The bottleneck puts its stride on the 3x3 convolution (the
  "v1.5" placement of torchvision and Flax's ImageNet example, same
  parameter count as the paper's).

`ResNet` computes what torchvision's and timm's ResNets compute, so that
their ImageNet weights load into it (models/pretrained.py): symmetric
padding everywhere (3 for the 7x7/2 stem, 1 for every 3x3 convolution,
stride 2 included, none for the 1x1/2 projection; Flax's 'SAME' would pad a
stride-2 layer on even sizes on the bottom/right only), a 3x3/2 max pool
padded by 1 with -inf, BatchNorm with epsilon 1e-5 and running statistics
decaying by 0.9 (torch's ``eps=1e-5, momentum=0.1``). One difference
remains in training: torch updates the running variance with the unbiased
batch variance (n / (n - 1) times Flax's); evaluation is unaffected.
benchmarks/pretrained_parity.py measures the agreement.

Both end in global average pooling and a Dense layer to `embedding_dim`
instead of the paper's classifier; the classifier, if a loss needs one, is a
head on top (models/heads.py). BatchNorm follows every convolution, with the
statistics averaged over `bn_axis_name` in training. Convolutions use He et
al. (2015)'s initialisation, as the paper; BatchNorm scales start at 1.
"""

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from models import _common, convolution

# He et al. (2015)'s initialisation, which the ResNet paper uses.
_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')

ModuleDef = Callable[..., nn.Module]


class BasicBlock(nn.Module):
  """Two 3x3 convolutions and a shortcut: ``relu(F(x) + shortcut(x))``.

  Attributes:
    filters: output channels.
    strides: stride of the first convolution (and of the shortcut).
    conv: convolution constructor (a partial of `nn.Conv`).
    norm: BatchNorm constructor (a partial of `nn.BatchNorm`).
    zero_pad_shortcut: option A (subsample and pad with zero channels)
      instead of option B (1x1 projection + BatchNorm) where shapes change.
  """

  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  zero_pad_shortcut: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv(self.filters, (3, 3), self.strides, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), 1, name='conv2')(y)
    y = self.norm(name='bn2')(y)
    return nn.relu(y + self._shortcut(x))

  def _shortcut(self, x: jax.Array) -> jax.Array:
    if self.strides == 1 and x.shape[-1] == self.filters:
      return x
    if self.zero_pad_shortcut:
      x = x[:, :: self.strides, :: self.strides, :]
      extra = self.filters - x.shape[-1]
      return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra)))
    x = self.conv(self.filters, (1, 1), self.strides, name='shortcut_conv')(x)
    return self.norm(name='shortcut_bn')(x)


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3, 1x1 expand (4x) and a projection shortcut.

  Attributes:
    filters: channels of the 3x3 convolution; the block outputs 4x as many.
    strides: stride of the 3x3 convolution (and of the shortcut).
    conv: convolution constructor (a partial of `nn.Conv`).
    norm: BatchNorm constructor (a partial of `nn.BatchNorm`).
  """

  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_filters = 4 * self.filters
    y = self.conv(self.filters, (1, 1), 1, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), self.strides, name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(out_filters, (1, 1), 1, name='conv3')(y)
    y = self.norm(name='bn3')(y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != out_filters:
      shortcut = self.conv(
        out_filters, (1, 1), self.strides, name='shortcut_conv'
      )(x)
      shortcut = self.norm(name='shortcut_bn')(shortcut)
    return nn.relu(y + shortcut)


class FrozenBatchNorm(nn.Module):
  """BatchNorm with fixed statistics and affine parameters.

  The variables of `nn.BatchNorm` (params ``scale``, ``bias``; batch_stats
  ``mean``, ``var``, initialised alike), so pretrained weights and
  checkpoints load into either, but in training too it normalises with the
  running statistics, updates none, and passes no gradient to ``scale``
  and ``bias``. The remaining `nn.BatchNorm` arguments are accepted and
  have no effect.
  """

  epsilon: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  use_running_average: bool | None = None
  momentum: float = 0.9
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = (x.shape[-1],)
    mean = self.variable('batch_stats', 'mean', jnp.zeros, features)
    var = self.variable('batch_stats', 'var', jnp.ones, features)
    scale = self.param('scale', nn.initializers.ones, features, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    multiplier = jax.lax.stop_gradient(
      scale * jax.lax.rsqrt(var.value + self.epsilon)
    )
    offset = jax.lax.stop_gradient(bias - mean.value * multiplier)
    x = jnp.asarray(x, self.dtype)
    return x * multiplier.astype(self.dtype) + offset.astype(self.dtype)


def _layers(module: nn.Module, train: bool) -> tuple[ModuleDef, ModuleDef]:
  """The conv and BatchNorm constructors every block of `module` shares."""

  def conv(filters, kernel_size, strides, name):
    # Symmetric padding as in the paper's Torch code (TF's 'SAME' pads a
    # stride-2 3x3 convolution on one side only): the kernel centres then
    # sit on the rows the option-A shortcut keeps.
    pad = [((k - 1) // 2, (k - 1) // 2) for k in kernel_size]
    return nn.Conv(
      filters,
      kernel_size,
      strides=strides,
      padding=pad,
      use_bias=False,
      kernel_init=_CONV_INIT,
      conv_general_dilated=convolution.conv_general_dilated,
      dtype=module.dtype,
      name=name,
    )

  # Frozen as the Proxy-Anchor code's bn_freeze (eval mode, scale and bias
  # without gradient), for fine-tuning on small batches of few classes.
  batch_norm = FrozenBatchNorm if module.freeze_batch_norm else nn.BatchNorm
  norm = functools.partial(
    batch_norm,
    use_running_average=not train,
    momentum=module.bn_momentum,
    epsilon=1e-5,
    axis_name=module.bn_axis_name,
    dtype=module.dtype,
  )
  return conv, norm


def _pool(x: jax.Array) -> jax.Array:
  return jnp.mean(x, axis=(1, 2))  # Global average pooling.


def _embed(module: nn.Module, x: jax.Array) -> jax.Array:
  return nn.Dense(module.embedding_dim, dtype=module.dtype, name='embedding')(
    _pool(x)
  )


class CifarResNet(nn.Module):
  """He et al.'s CIFAR ResNet (depth 6n + 2) producing an embedding.

  Attributes:
    embedding_dim: size of the embedding (the final Dense layer).
    depth: 20, 32, 44, 56, 110, ...: 6n + 2 for n blocks per stage.
    stage_filters: filters of the three stages.
    bn_axis_name: axis name over which BatchNorm averages batch statistics
      in training (pmap's axis name for cross-device BatchNorm), or None.
    bn_momentum: decay of the running statistics.
    freeze_batch_norm: BatchNorm uses its running statistics in training
      too and its scale and bias get no gradient (fine-tuning).
    dtype: computation dtype (parameters stay float32).
  """

  embedding_dim: int
  depth: int = 20
  stage_filters: tuple[int, int, int] = (16, 32, 64)
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  freeze_batch_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: ArrayLike, *, train: bool) -> jax.Array:
    """Embeds a batch of images.

    Args:
      images: ``[batch, height, width, channels]``, e.g. 32x32x3.
      train: use and update batch statistics (True) or the running ones.

    Returns:
      ``[batch, embedding_dim]`` embeddings in `dtype`.
    """
    _common.check_embedding_dim(self.embedding_dim)
    _common.check_images(images)
    if (
      not isinstance(self.depth, int) or self.depth < 8 or (self.depth - 2) % 6
    ):
      raise ValueError(
        f'`depth` must be 6n + 2 with n >= 1 (20, 32, 56, ...), received '
        f'{self.depth!r}'
      )
    blocks_per_stage = (self.depth - 2) // 6
    conv, norm = _layers(self, train)
    x = jnp.asarray(images, self.dtype)
    x = conv(self.stage_filters[0], (3, 3), 1, name='conv_init')(x)
    x = nn.relu(norm(name='bn_init')(x))
    for stage, filters in enumerate(self.stage_filters):
      for block in range(blocks_per_stage):
        x = BasicBlock(
          filters,
          strides=2 if stage > 0 and block == 0 else 1,
          conv=conv,
          norm=norm,
          zero_pad_shortcut=True,
          name=f'stage{stage + 1}_block{block + 1}',
        )(x)
    return _embed(self, x)


class ResNet(nn.Module):
  """He et al.'s ImageNet ResNet producing an embedding.

  Attributes:
    embedding_dim: size of the embedding (the final Dense layer).
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18 and
      (3, 4, 6, 3) for ResNet-50.
    bottleneck: bottleneck blocks (ResNet-50 and deeper) or basic blocks.
    stage_filters: filters of each stage (of the 3x3 convolutions).
    bn_axis_name: axis name over which BatchNorm averages batch statistics
      in training (pmap's axis name for cross-device BatchNorm), or None.
    bn_momentum: decay of the running statistics (0.9 is torch's
      ``momentum=0.1``).
    freeze_batch_norm: BatchNorm uses its running statistics in training
      too and its scale and bias get no gradient: the Proxy-Anchor
      official code's ``bn_freeze``, for fine-tuning pretrained weights on
      small batches of few classes.
    last_stride: stride of the last stage's first block: 2 (the paper), or
      1 to keep twice the resolution in the last stage (the re-id
      baselines' "last stride 1", Luo et al. 2019; same parameters, so
      ImageNet weights load either way).
    dtype: computation dtype (parameters stay float32).
  """

  embedding_dim: int
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  bottleneck: bool = False
  stage_filters: Sequence[int] = (64, 128, 256, 512)
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  freeze_batch_norm: bool = False
  last_stride: int = 2
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self, images: ArrayLike, *, train: bool, return_pooled: bool = False
  ) -> jax.Array:
    """Embeds a batch of images.

    Args:
      images: ``[batch, height, width, channels]``, e.g. 224x224x3; any
        size >= 1x1 works (stride-2 layers give ceil(n / 2)); at 32x32 the
        last stage is 1x1.
      train: use and update batch statistics (True) or the running ones.
      return_pooled: return the globally average-pooled features of the
        last stage instead of the embedding: ``[batch, C]`` with C the last
        stage's output channels (512 for ResNet-18, 2048 for ResNet-50),
        what torchvision's and timm's ResNets feed their classifier ``fc``.
        The embedding layer is not used (nor created at init).

    Returns:
      ``[batch, embedding_dim]`` embeddings in `dtype`, or the pooled
      features with `return_pooled`.
    """
    _common.check_embedding_dim(self.embedding_dim)
    _common.check_images(images)
    if self.last_stride not in (1, 2):
      raise ValueError(
        f'`last_stride` must be 1 or 2, received {self.last_stride!r}'
      )
    conv, norm = _layers(self, train)
    x = jnp.asarray(images, self.dtype)
    x = nn.Conv(
      self.stage_filters[0],
      (7, 7),
      strides=2,
      padding=((3, 3), (3, 3)),
      use_bias=False,
      kernel_init=_CONV_INIT,
      conv_general_dilated=convolution.conv_general_dilated,
      dtype=self.dtype,
      name='conv_init',
    )(x)
    x = nn.relu(norm(name='bn_init')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (num_blocks, filters) in enumerate(
      zip(self.stage_sizes, self.stage_filters, strict=True)
    ):
      last = stage == len(self.stage_sizes) - 1
      for block in range(num_blocks):
        strides = 1
        if stage > 0 and block == 0:
          strides = self.last_stride if last else 2
        name = f'stage{stage + 1}_block{block + 1}'
        if self.bottleneck:
          x = BottleneckBlock(filters, strides, conv, norm, name=name)(x)
        else:
          x = BasicBlock(filters, strides, conv, norm, name=name)(x)
    if return_pooled:
      return _pool(x)
    return _embed(self, x)
