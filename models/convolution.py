"""Convolution for the backbones: `lax.conv_general_dilated`, but fast on
feature maps smaller than the kernel.

XLA:CPU convolves a map smaller than its kernel (LeNet++'s 5x5 kernels on
the 4x4 and 2x2 maps of 8x8 digits, a ResNet's 3x3 kernels on 2x2 and 1x1
maps) 5-10x slower than the same products as one matrix multiplication:
measured on 2 cores, a batch of 64 4x4x64 maps through a 5x5x64x64 kernel
took 27 ms forward and 56 ms forward+backward, against 2.6 and 6.7 ms as
below (benchmarks/README.md, "Small-map convolutions"). On maps at least
the kernel's size the library convolution is as fast or faster and is used.

The fast form, for stride 1, no dilation, one feature group, channels last
and explicit padding: pad the input, stack the k_h * k_w shifted windows
along the channels (``[batch, H', W', k_h * k_w * C]``) and multiply by the
kernel reshaped to ``[k_h * k_w * C, O]``. It is the same sum of products,
in another order, on every backend (so several devices and one agree);
the kernel keeps its ``[k_h, k_w, C, O]`` layout, so parameters and
checkpoints do not depend on which form ran.

  nn.Conv(features, (5, 5), padding=2,
          conv_general_dilated=convolution.conv_general_dilated)
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

# lax's dimension numbers of NHWC inputs, HWIO kernels and NHWC outputs,
# what flax's nn.Conv passes for channels-last inputs.
_CHANNELS_LAST = lax.ConvDimensionNumbers(
  lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)
)


def _is_unit(values) -> bool:
  return values is None or all(v == 1 for v in values)


def _matmul_applies(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation,
  rhs_dilation,
  dimension_numbers,
  feature_group_count,
) -> bool:
  if lhs.ndim != 4 or feature_group_count != 1:
    return False
  if not (
    _is_unit(window_strides)
    and _is_unit(lhs_dilation)
    and _is_unit(rhs_dilation)
  ):
    return False
  if isinstance(padding, str) or dimension_numbers != _CHANNELS_LAST:
    return False
  kernel_h, kernel_w = rhs.shape[:2]
  height, width = lhs.shape[1:3]
  (top, bottom), (left, right) = padding
  if not (
    0 <= min(top, bottom) <= max(top, bottom) < kernel_h
    and 0 <= min(left, right) <= max(left, right) < kernel_w
  ):
    return False
  return height < kernel_h or width < kernel_w


def _windows(lhs, padding, kernel_h, kernel_w):
  """``[batch, H', W', k_h * k_w * C]``: the padded input's shifted windows."""
  padded = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
  out_h = padded.shape[1] - kernel_h + 1
  out_w = padded.shape[2] - kernel_w + 1
  return jnp.concatenate(
    [
      padded[:, i : i + out_h, j : j + out_w, :]
      for i in range(kernel_h)
      for j in range(kernel_w)
    ],
    axis=-1,
  )


def _matmul(windows, kernel, precision):
  return lax.dot_general(
    windows, kernel, (((3,), (0,)), ((), ())), precision=precision
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def shifted_windows_conv(
  lhs: jax.Array,
  rhs: jax.Array,
  padding: tuple[tuple[int, int], tuple[int, int]],
  precision=None,
) -> jax.Array:
  """Stride-1 convolution as one matrix multiplication of shifted windows.

  Its derivatives are matrix multiplications too (a custom VJP): the
  kernel's is windows^T @ cotangent, the input's the same convolution of
  the cotangent with the kernel flipped and its channels swapped, padded
  by ``k - 1 - pad``. (Left to autodiff, the input's derivative sums k_h *
  k_w padded slices, which XLA:CPU fuses badly with the layers before.)

  Args:
    lhs: ``[batch, H, W, C]`` inputs.
    rhs: ``[k_h, k_w, C, O]`` kernel.
    padding: ``((top, bottom), (left, right))`` zero padding, each
      between 0 and the kernel's size - 1.
    precision: as `lax.dot_general`'s.

  Returns:
    ``[batch, H + top + bottom - k_h + 1, W + left + right - k_w + 1, O]``,
    what `lax.conv_general_dilated` returns for the same arguments.
  """
  return _forward(lhs, rhs, padding, precision)[0]


def _forward(lhs, rhs, padding, precision):
  kernel_h, kernel_w, channels, features = rhs.shape
  windows = _windows(lhs, padding, kernel_h, kernel_w)
  kernel = rhs.reshape(kernel_h * kernel_w * channels, features)
  return _matmul(windows, kernel, precision), (windows, rhs)


def _backward(padding, precision, residuals, cotangent):
  windows, rhs = residuals
  kernel_h, kernel_w = rhs.shape[:2]
  kernel_grad = lax.dot_general(
    windows, cotangent, (((0, 1, 2), (0, 1, 2)), ((), ())), precision=precision
  ).reshape(rhs.shape)
  flipped = jnp.flip(rhs, (0, 1)).transpose(0, 1, 3, 2)
  (top, bottom), (left, right) = padding
  transposed_padding = (
    (kernel_h - 1 - top, kernel_h - 1 - bottom),
    (kernel_w - 1 - left, kernel_w - 1 - right),
  )
  lhs_grad = _matmul(
    _windows(cotangent, transposed_padding, kernel_h, kernel_w),
    flipped.reshape(-1, flipped.shape[-1]),
    precision,
  )
  return lhs_grad, kernel_grad


shifted_windows_conv.defvjp(_forward, _backward)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
) -> jax.Array:
  """`lax.conv_general_dilated`, by shifted windows on maps below the kernel.

  Same arguments and result as `lax.conv_general_dilated`. The matrix form
  (`shifted_windows_conv`) runs when the input's height or width is below
  the kernel's, for stride 1, no dilation, one group, channels-last
  dimension numbers and explicit padding; everything else goes to lax.
  """
  if (
    batch_group_count == 1
    and preferred_element_type is None
    and _matmul_applies(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
    )
  ):
    return shifted_windows_conv(
      lhs, rhs, tuple(tuple(p) for p in padding), precision
    )
  return lax.conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
