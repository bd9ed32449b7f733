r"""Convolutions on maps smaller than the kernel: lax against shifted windows.

For each layer shape of LeNet++ on the 8x8 digits (and ResNet-18's 3x3
convolutions on a 2x2 map), the forward and forward+backward time of
`lax.conv_general_dilated` against `models.convolution.shifted_windows_conv`
(one matrix multiplication of the stacked shifted windows, custom VJP),
alternating (`timing.median_seconds_interleaved`). Then LeNet++'s whole
forward+backward with BatchNorm in training mode, with every convolution
through lax, and through `models.convolution.conv_general_dilated` (the
matrix form where the map is below the kernel: what the backbones run).

The "rule" column says which form `conv_general_dilated` picks.

Run: ``python -m benchmarks.small_map_conv`` (about a minute on 2 cores).
"""

import functools
import os

import cpuinfo
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

import models
from benchmarks import timing
from models import convolution

_REPS = flags.DEFINE_integer('reps', 20, 'Timed rounds per case.')

# (batch, map side, in channels, out channels, kernel): LeNet++ 32-64-128 on
# 8x8 digits (stages at 8x8, 4x4, 2x2), ResNet-18's last stages on 32x32.
_LAYERS = (
  (64, 8, 32, 32, 5),
  (64, 4, 32, 64, 5),
  (64, 4, 64, 64, 5),
  (64, 2, 64, 128, 5),
  (64, 2, 128, 128, 5),
  (64, 2, 256, 256, 3),
  (64, 1, 512, 512, 3),
)


def _lax_conv(x, w):
  pad = w.shape[0] // 2
  return lax.conv_general_dilated(
    x,
    w,
    (1, 1),
    ((pad, pad), (pad, pad)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )


def _shifted_conv(x, w):
  pad = w.shape[0] // 2
  return convolution.shifted_windows_conv(x, w, ((pad, pad), (pad, pad)))


def _timed(functions, args, reps):
  compiled = []
  for function in functions:
    forward = jax.jit(function)
    both = jax.jit(
      jax.grad(
        lambda *a, f=function: jnp.sum(f(*a) ** 2),
        argnums=tuple(range(len(args))),
      )
    )
    for fn in (forward, both):
      jax.block_until_ready(fn(*args))
      compiled.append(functools.partial(fn, *args))
  runs = [lambda fn=fn: jax.block_until_ready(fn()) for fn in compiled]
  return [1000 * s for s in timing.median_seconds_interleaved(runs, reps)]


def main(argv):
  del argv
  rows = []
  for batch, side, channels, features, kernel in _LAYERS:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((batch, side, side, channels)), jnp.float32)
    w = jnp.asarray(
      rng.random((kernel, kernel, channels, features)), jnp.float32
    )
    lax_fwd, lax_both, ours_fwd, ours_both = _timed(
      (_lax_conv, _shifted_conv), (x, w), _REPS.value
    )
    rule = 'shifted' if side < kernel else 'lax'
    rows.append(
      f'| {batch}x{side}x{side}x{channels} | {kernel}x{kernel}x{channels}x'
      f'{features} | {lax_fwd:.2f} | {ours_fwd:.2f} | {lax_both:.2f} | '
      f'{ours_both:.2f} | {lax_both / ours_both:.1f}x | {rule} |'
    )

  # The whole LeNet++ forward+backward, lax everywhere against the rule.
  images = jnp.asarray(
    np.random.default_rng(0).random((64, 8, 8, 1)), jnp.float32
  )
  step_ms = []
  model = models.get_model('lenet', embedding_dim=2)
  variables = jax.jit(functools.partial(model.init, train=False))(
    jax.random.key(0), images
  )

  def loss(params):
    out, _ = model.apply(
      {**variables, 'params': params},
      images,
      train=True,
      mutable=['batch_stats'],
    )
    return jnp.sum(out**2)

  rule = convolution.conv_general_dilated
  # LeNet++ reads models.convolution.conv_general_dilated when traced.
  for conv_fn in (lax.conv_general_dilated, rule):
    convolution.conv_general_dilated = conv_fn
    grad = jax.jit(jax.grad(loss))
    jax.block_until_ready(grad(variables['params']))
    step_ms.append(functools.partial(grad, variables['params']))
  convolution.conv_general_dilated = rule
  runs = [lambda fn=fn: jax.block_until_ready(fn()) for fn in step_ms]
  lax_step, rule_step = (
    1000 * s for s in timing.median_seconds_interleaved(runs, _REPS.value)
  )

  cpu = cpuinfo.get_cpu_info().get('brand_raw', '?')
  print(
    f'jax {jax.__version__}, {jax.default_backend()} ({cpu}, '
    f'{os.cpu_count()} cores); median of {_REPS.value} interleaved rounds; '
    f'load average {os.getloadavg()[0]:.1f} at the end\n'
  )
  print(
    '| input | kernel | lax fwd ms | shifted fwd ms | lax fwd+bwd ms | '
    'shifted fwd+bwd ms | fwd+bwd gain | rule picks |'
  )
  print('|---|---|---|---|---|---|---|---|')
  print('\n'.join(rows))
  print(
    f'\nLeNet++ on 64 8x8 digits, forward+backward (BatchNorm in training): '
    f'lax everywhere {lax_step:.1f} ms, models.convolution '
    f'{rule_step:.1f} ms ({lax_step / rule_step:.1f}x)'
  )


if __name__ == '__main__':
  app.run(main)
