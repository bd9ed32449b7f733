"""insightface's IResNet: the face-recognition ResNets of ArcFace.

Deng, Guo, Xue, Zafeiriou. ArcFace: Additive Angular Margin Loss for Deep
Face Recognition. CVPR 2019 (§3.2 and the "improved residual unit" of its
Fig. 7); the layers of ``recognition/arcface_torch/backbones/iresnet.py``
in insightface's repository, whose trained weights load into this module
(models/iresnet_weights.py).

For 112x112 aligned faces:

- stem: a 3x3/1 convolution with 64 filters, BatchNorm, PReLU (no pool);
- four stages of 64, 128, 256, 512 filters, each starting with stride 2
  (112 -> 56 -> 28 -> 14 -> 7), of `IBasicBlock`: BN -> conv3x3 -> BN ->
  PReLU -> conv3x3 (the stage's stride) -> BN, plus the input, projected by
  a 1x1 convolution and BN where the shape changes;
- the feature head: BN, flatten (channel-major, as torch's NCHW flatten),
  a Dense layer to `embedding_dim` (512) and a BatchNorm without scale
  (arcface_torch fixes its weight at 1).

Blocks per stage: (2, 2, 2, 2) iresnet18, (3, 4, 6, 3) iresnet34,
(3, 4, 14, 3) iresnet50, (3, 13, 30, 3) iresnet100.

Convolutions are 'same'-padded by 1 on every side (torch's ``padding=1``),
bias-free; BatchNorm has epsilon 1e-5 and running statistics decaying by
0.9 (torch's defaults); PReLU has one slope per channel, starting at 0.25
(torch's default). arcface_torch's dropout before the Dense layer is 0 in
its configs and is left out. Convolution kernels start from N(0, 0.1), as
arcface_torch initialises them. benchmarks/iresnet_parity.py measures the
agreement with a PyTorch IResNet.
"""

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from models import _common, convolution
from models.lenet import PReLU

# arcface_torch: nn.init.normal_(conv.weight, 0, 0.1).
_CONV_INIT = nn.initializers.normal(0.1)
STAGE_FILTERS = (64, 128, 256, 512)


class IBasicBlock(nn.Module):
  """BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, plus the shortcut.

  Attributes:
    filters: output channels.
    strides: stride of the second convolution (and of the shortcut).
    conv: convolution constructor.
    norm: BatchNorm constructor.
    dtype: computation dtype.
  """

  filters: int
  strides: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.norm(name='bn1')(x)
    y = self.conv(self.filters, (3, 3), 1, name='conv1')(y)
    y = self.norm(name='bn2')(y)
    y = PReLU(dtype=self.dtype, name='prelu')(y)
    y = self.conv(self.filters, (3, 3), self.strides, name='conv2')(y)
    y = self.norm(name='bn3')(y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.filters:
      shortcut = self.conv(
        self.filters, (1, 1), self.strides, name='shortcut_conv'
      )(x)
      shortcut = self.norm(name='shortcut_bn')(shortcut)
    return y + shortcut


class IResNet(nn.Module):
  """insightface's IResNet, ending in its 512-d feature head.

  Attributes:
    embedding_dim: size of the features (arcface_torch: 512).
    stage_sizes: blocks per stage, e.g. (3, 4, 14, 3) for iresnet50.
    bn_axis_name: axis name over which BatchNorm averages batch statistics
      in training (pmap's axis name for cross-device BatchNorm), or None.
    bn_momentum: decay of the running statistics (0.9 is torch's
      ``momentum=0.1``).
    dtype: computation dtype (parameters stay float32).
  """

  embedding_dim: int = 512
  stage_sizes: Sequence[int] = (3, 4, 14, 3)
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: ArrayLike, *, train: bool) -> jax.Array:
    """Embeds a batch of faces.

    Args:
      images: ``[batch, height, width, 3]``, 112x112 for arcface_torch's
        weights (the Dense layer's input size follows the image size).
      train: use and update batch statistics (True) or the running ones.

    Returns:
      ``[batch, embedding_dim]`` features in `dtype`.
    """
    _common.check_embedding_dim(self.embedding_dim)
    _common.check_images(images)
    norm = functools.partial(
      nn.BatchNorm,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=1e-5,
      axis_name=self.bn_axis_name,
      dtype=self.dtype,
    )

    def conv(filters, kernel_size, strides, name):
      pad = [((k - 1) // 2, (k - 1) // 2) for k in kernel_size]
      return nn.Conv(
        filters,
        kernel_size,
        strides=strides,
        padding=pad,
        use_bias=False,
        kernel_init=_CONV_INIT,
        conv_general_dilated=convolution.conv_general_dilated,
        dtype=self.dtype,
        name=name,
      )

    x = jnp.asarray(images, self.dtype)
    x = conv(STAGE_FILTERS[0], (3, 3), 1, name='conv_init')(x)
    x = norm(name='bn_init')(x)
    x = PReLU(dtype=self.dtype, name='prelu_init')(x)
    for stage, (num_blocks, filters) in enumerate(
      zip(self.stage_sizes, STAGE_FILTERS, strict=True)
    ):
      for block in range(num_blocks):
        x = IBasicBlock(
          filters,
          2 if block == 0 else 1,
          conv,
          norm,
          dtype=self.dtype,
          name=f'stage{stage + 1}_block{block + 1}',
        )(x)
    x = norm(name='bn_final')(x)
    # Channel-major, as torch flattens NCHW: its fc weight loads unpermuted.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    x = nn.Dense(self.embedding_dim, dtype=self.dtype, name='embedding')(x)
    return norm(use_scale=False, name='features')(x)


STAGE_SIZES = {
  'iresnet18': (2, 2, 2, 2),
  'iresnet34': (3, 4, 6, 3),
  'iresnet50': (3, 4, 14, 3),
  'iresnet100': (3, 13, 30, 3),
}
