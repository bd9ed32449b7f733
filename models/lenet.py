"""LeNet++: the small CNN of the centre-loss paper, for 2-D feature plots.

Wen, Zhang, Li, Qiao. A Discriminative Feature Learning Approach for Deep
Face Recognition. ECCV 2016. Their MNIST network ("LeNet++") stacks three
stages of two 5x5 convolutions (32-32, 64-64, 128-128 filters, stride 1,
padding 2) with PReLU activations, each stage followed by a 2x2 max pool of
stride 2, then a fully connected layer to a 2-D embedding.

Differences from that network, all deliberate:

- BatchNorm after every convolution (before the PReLU), switchable with
  ``batch_norm=False`` for the paper's network. It makes the small network
  train robustly at the learning rates the other backbones use, and gives the
  training loop the same ``batch_stats`` plumbing for every model.
- Max pooling uses ``'SAME'`` padding: the output size is ``ceil(n / 2)``,
  which is what Caffe's ceil-mode pooling in the paper's network gives
  (28 -> 14 -> 7 -> 4) and never shrinks a map to nothing: an 8x8 sklearn
  digit goes 8 -> 4 -> 2 -> 1 and a 1x1 map stays 1x1.
- The embedding is linear (no activation after it).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from models import _common, convolution

# He et al. (2015)'s initialisation, derived for (P)ReLU networks.
_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


class PReLU(nn.Module):
  """Parametric ReLU with one learned slope per channel (He et al. 2015).

  Attributes:
    negative_slope_init: initial slope of the negative part (0.25 in the
      PReLU paper and in Caffe, which the centre-loss paper used).
    dtype: computation dtype.
  """

  negative_slope_init: float = 0.25
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    slope = self.param(
      'negative_slope',
      nn.initializers.constant(self.negative_slope_init),
      (inputs.shape[-1],),
      jnp.float32,
    )
    inputs = inputs.astype(self.dtype)
    return jnp.where(inputs >= 0, inputs, slope.astype(self.dtype) * inputs)


class LeNetPlusPlus(nn.Module):
  """LeNet++ backbone: ``images [batch, H, W, C] -> [batch, embedding_dim]``.

  Attributes:
    embedding_dim: size of the embedding (2 for the classic feature plots).
    stage_filters: filters of each stage's two 5x5 convolutions.
    batch_norm: BatchNorm after each convolution (False: the paper's net).
    bn_axis_name: axis name over which BatchNorm averages batch statistics
      in training (pmap's axis name for cross-device BatchNorm), or None.
    bn_momentum: decay of the running statistics.
    dtype: computation dtype (parameters stay float32).
  """

  embedding_dim: int
  stage_filters: tuple[int, ...] = (32, 64, 128)
  batch_norm: bool = True
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: ArrayLike, *, train: bool) -> jax.Array:
    """Embeds a batch of images.

    Args:
      images: ``[batch, height, width, channels]`` images, any size >= 1x1.
      train: use and update batch statistics (True) or the running ones.

    Returns:
      ``[batch, embedding_dim]`` embeddings in `dtype`.
    """
    _common.check_embedding_dim(self.embedding_dim)
    _common.check_images(images)
    x = jnp.asarray(images, self.dtype)
    for stage, filters in enumerate(self.stage_filters, start=1):
      for layer in (1, 2):
        name = f'conv{stage}_{layer}'
        x = nn.Conv(
          filters,
          (5, 5),
          padding=2,
          use_bias=not self.batch_norm,
          kernel_init=_CONV_INIT,
          conv_general_dilated=convolution.conv_general_dilated,
          dtype=self.dtype,
          name=name,
        )(x)
        if self.batch_norm:
          x = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=1e-5,
            axis_name=self.bn_axis_name,
            dtype=self.dtype,
            name=f'{name}_bn',
          )(x)
        x = PReLU(dtype=self.dtype, name=f'{name}_prelu')(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.embedding_dim, dtype=self.dtype, name='embedding')(x)
