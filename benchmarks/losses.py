r"""Forward+backward time and compiled memory of every loss, against its GEMM.

Each loss is timed as ``jax.jit(jax.value_and_grad(mean loss))`` with respect
to every floating input, next to its GEMM skeleton measured in the same run:

- pairwise losses: ``value_and_grad(sum(R * (X @ X.T)))`` at the same shape,
  the matrix product any pairwise loss has to do forwards and backwards;
- classification losses: optax softmax cross-entropy on the same
  ``[batch, dim] x [dim, classes]`` product.

Memory is XLA's compiled temporary allocation
(``.lower().compile().memory_analysis().temp_size_in_bytes``), so the 64k
skeleton row reports what the dense form would need without running it.

Run: ``make bench`` or ``python -m benchmarks.losses [--quick]``.
"""

import functools
import os
import statistics
import time
from collections.abc import Callable

import cpuinfo
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import losses

_QUICK = flags.DEFINE_bool(
  'quick', False, 'Small sizes only (no 64k rows); for a smoke run.'
)
_REPS = flags.DEFINE_integer('reps', 9, 'Timed repetitions per case.')
_HUGE_BATCH = flags.DEFINE_integer(
  'huge_batch', 65536, 'Batch of the memory-bounded (blocked) rows.'
)
_BLOCK = flags.DEFINE_integer('block_size', 1024, 'Rows per block.')

_MIB = 2**20


def _compile(fn: Callable, *args):
  compiled = jax.jit(fn).lower(*args).compile()
  memory = compiled.memory_analysis()
  temp = None if memory is None else memory.temp_size_in_bytes
  return compiled, temp


def _time(compiled, *args, reps: int) -> float:
  jax.block_until_ready(compiled(*args))  # warm-up
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _time_interleaved(loss, loss_args, skeleton, skeleton_args, reps: int):
  """Median times of a loss and its skeleton, run alternately.

  Alternating makes the ratio robust to the machine's speed drifting
  during the run (frequency scaling, other load); each median is over
  `reps` runs.
  """
  jax.block_until_ready(loss(*loss_args))
  jax.block_until_ready(skeleton(*skeleton_args))
  loss_times, skeleton_times = [], []
  for _ in range(reps):
    for compiled, args, times in (
      (loss, loss_args, loss_times),
      (skeleton, skeleton_args, skeleton_times),
    ):
      start = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times.append(time.perf_counter() - start)
  return statistics.median(loss_times), statistics.median(skeleton_times)


def _grad_all(loss_fn: Callable, argnums: tuple[int, ...]) -> Callable:
  return jax.value_and_grad(
    lambda *args: jnp.mean(loss_fn(*args)), argnums=argnums
  )


def _pairwise_cases(block_size):
  return {
    'circle_loss_pairwise': functools.partial(
      losses.circle_loss_pairwise,
      margin=0.25,
      gamma=256.0,
      block_size=block_size,
    ),
    'distance_matrix_loss': functools.partial(
      losses.distance_matrix_loss, block_size=block_size
    ),
    'batch_hard_triplet_loss': functools.partial(
      losses.batch_hard_triplet_loss, margin=0.2, block_size=block_size
    ),
  }


def _classification_cases(num_classes):
  mu = jnp.zeros((num_classes,))
  sigma = jnp.ones((num_classes,))
  return {
    'g_softmax_cross_entropy': lambda x, w, y: losses.g_softmax_cross_entropy(
      x @ w.T, y, mu=mu, sigma=sigma, scale=0.1
    ),
    'virtual_softmax_cross_entropy': losses.virtual_softmax_cross_entropy,
    'normalized_softmax_cross_entropy': functools.partial(
      losses.normalized_softmax_cross_entropy, scale=16.0
    ),
    'cosface_loss': functools.partial(
      losses.cosface_loss, scale=64.0, margin=0.35
    ),
    'arcface_loss': functools.partial(
      losses.arcface_loss, scale=64.0, margin=0.5
    ),
    'circle_loss_class_level': functools.partial(
      losses.circle_loss_class_level, margin=0.25, gamma=256.0
    ),
    'vmf_cross_entropy': lambda x, w, y: losses.vmf_cross_entropy(
      x, w, y, kappa=16.0
    ),
    'center_loss (+ softmax CE)': lambda x, w, y: (
      optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y)
      + 0.01 * losses.center_loss(x, w, y)
    ),
  }


def _pairwise_skeleton(x, r):
  return jnp.sum(r * (x @ x.T))


def _classification_skeleton(x, w, y):
  return optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y)


def _format(value, digits=1):
  return 'n/a' if value is None else f'{value:.{digits}f}'


def _benchmark_pairwise(batch, dim, block_size, reps, rows, run_skeleton=True):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
  num_classes = max(batch // 8, 2)
  y = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  r = jax.ShapeDtypeStruct((batch, batch), jnp.float32)
  skeleton = jax.value_and_grad(_pairwise_skeleton)
  skeleton_compiled, skeleton_temp = _compile(skeleton, x, r)
  if run_skeleton:
    r = jnp.asarray(rng.standard_normal((batch, batch)), jnp.float32)
  for name, loss_fn in _pairwise_cases(block_size).items():
    fn = _grad_all(loss_fn, (0,))
    compiled, temp = _compile(fn, x, y)
    if run_skeleton:
      seconds, skeleton_seconds = _time_interleaved(
        compiled, (x, y), skeleton_compiled, (x, r), reps
      )
      ratio = seconds / skeleton_seconds
    else:
      seconds = _time(compiled, x, y, reps=reps)
      skeleton_seconds = ratio = None
    rows.append(
      (
        name,
        f'B={batch} D={dim}' + (f' block={block_size}' if block_size else ''),
        _format(seconds * 1e3),
        _format(None if skeleton_seconds is None else skeleton_seconds * 1e3),
        _format(ratio, 2),
        _format(temp / _MIB if temp is not None else None),
        _format(skeleton_temp / _MIB if skeleton_temp is not None else None),
      )
    )


def _benchmark_classification(batch, dim, num_classes, reps, rows):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((num_classes, dim)) * 0.05, jnp.float32)
  y = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  skeleton = _grad_all(_classification_skeleton, (0, 1))
  skeleton_compiled, skeleton_temp = _compile(skeleton, x, w, y)
  shape = f'B={batch} D={dim} C={num_classes}'
  skeleton_seconds = _time(skeleton_compiled, x, w, y, reps=reps)
  rows.append(
    (
      'softmax CE (optax) = skeleton',
      shape,
      _format(skeleton_seconds * 1e3),
      _format(skeleton_seconds * 1e3),
      '1.00',
      _format(skeleton_temp / _MIB),
      _format(skeleton_temp / _MIB),
    )
  )
  for name, loss_fn in _classification_cases(num_classes).items():
    fn = _grad_all(loss_fn, (0, 1))
    compiled, temp = _compile(fn, x, w, y)
    seconds, skeleton_seconds = _time_interleaved(
      compiled, (x, w, y), skeleton_compiled, (x, w, y), reps
    )
    rows.append(
      (
        name,
        shape,
        _format(seconds * 1e3),
        _format(skeleton_seconds * 1e3),
        _format(seconds / skeleton_seconds, 2),
        _format(temp / _MIB if temp is not None else None),
        _format(skeleton_temp / _MIB),
      )
    )


def main(argv):
  del argv
  reps = _REPS.value
  rows = []
  pairwise_batches = (256, 1024) if _QUICK.value else (1024, 4096)
  for batch in pairwise_batches:
    _benchmark_pairwise(batch, 128, None, reps, rows)
  if _QUICK.value:
    _benchmark_classification(512, 128, 100, reps, rows)
  else:
    _benchmark_pairwise(4096, 128, _BLOCK.value, reps, rows)
    _benchmark_classification(4096, 512, 1000, reps, rows)
    _benchmark_pairwise(
      _HUGE_BATCH.value,
      128,
      _BLOCK.value,
      1,
      rows,
      run_skeleton=False,
    )
  header = (
    'loss',
    'shape',
    'fwd+bwd ms',
    'skeleton ms',
    'ratio',
    'temp MiB',
    'skeleton temp MiB',
  )
  print(
    f'jax {jax.__version__}, {jax.devices()[0].platform} '
    f'({cpuinfo.get_cpu_info()["brand_raw"]}, '
    f'{os.cpu_count()} cores), '
    f'{jax.device_count()} device(s); median of {reps} runs, each loss '
    'alternating with its skeleton (1 run for the 64k rows)\n'
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in rows:
    print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
  app.run(main)
