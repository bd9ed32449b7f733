r"""Forward+backward time and compiled memory of every loss, against its GEMM.

Each loss is timed as ``jax.jit(jax.value_and_grad(mean loss))`` with respect
to every floating input, next to its GEMM skeleton measured in the same run:

- pairwise losses: ``value_and_grad(sum(R * (X @ X.T)))`` at the same shape,
  the matrix product any pairwise loss has to do forwards and backwards;
- classification losses: optax softmax cross-entropy on the same
  ``[batch, dim] x [dim, classes]`` product.

Memory is XLA's compiled temporary allocation
(``.lower().compile().memory_analysis().temp_size_in_bytes``).

A second table sweeps the pair-wise losses from B = 1k to 64k, dense and
with row blocks (``block_size``), so that the growth of time and memory
with the batch is visible: the dense form's memory grows as B², the
blocked form's as B × block_size. A dense case whose compiled memory
exceeds ``--max_dense_gib`` is compiled (to report what it would need) but
not run.

Run: ``make bench`` or ``python -m benchmarks.losses [--quick]``.
"""

import functools
import os
from collections.abc import Callable

import cpuinfo
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import losses
from benchmarks import timing

_QUICK = flags.DEFINE_bool(
  'quick', False, 'Small sizes only (no 64k rows); for a smoke run.'
)
_REPS = flags.DEFINE_integer('reps', 9, 'Timed repetitions per case.')
_BLOCK = flags.DEFINE_integer('block_size', 1024, 'Rows per block.')
_SWEEP = flags.DEFINE_list(
  'sweep_batches',
  ['1024', '2048', '4096', '8192', '16384', '32768', '65536'],
  'Batch sizes of the pair-wise sweep (dense and blocked); empty: no sweep.',
)
_MAX_DENSE_GIB = flags.DEFINE_float(
  'max_dense_gib',
  4.0,
  'The sweep runs the dense form only where its compiled temporary memory '
  'is below this; above, it reports the memory it would need.',
)
_SWEEP_REPS = flags.DEFINE_integer('sweep_reps', 3, 'Timed runs per sweep row.')

_MIB = 2**20


def _compile(fn: Callable, *args):
  compiled = jax.jit(fn).lower(*args).compile()
  memory = compiled.memory_analysis()
  temp = None if memory is None else memory.temp_size_in_bytes
  return compiled, temp


def _time(compiled, *args, reps: int) -> float:
  if reps > 1:  # A single run is a long one: its warm-up costs as much.
    jax.block_until_ready(compiled(*args))
  (seconds,) = timing.median_seconds_interleaved(
    [lambda: jax.block_until_ready(compiled(*args))], reps
  )
  return seconds


def _time_interleaved(loss, loss_args, skeleton, skeleton_args, reps: int):
  """Median times of a loss and its skeleton, run alternately."""
  jax.block_until_ready(loss(*loss_args))
  jax.block_until_ready(skeleton(*skeleton_args))
  return timing.median_seconds_interleaved(
    [
      lambda: jax.block_until_ready(loss(*loss_args)),
      lambda: jax.block_until_ready(skeleton(*skeleton_args)),
    ],
    reps,
  )


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


def _benchmark_pairwise(batch, dim, block_size, reps, rows):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
  num_classes = max(batch // 8, 2)
  y = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  r = jnp.asarray(rng.standard_normal((batch, batch)), jnp.float32)
  skeleton = jax.value_and_grad(_pairwise_skeleton)
  skeleton_compiled, skeleton_temp = _compile(skeleton, x, r)
  for name, loss_fn in _pairwise_cases(block_size).items():
    compiled, temp = _compile(_grad_all(loss_fn, (0,)), x, y)
    seconds, skeleton_seconds = _time_interleaved(
      compiled, (x, y), skeleton_compiled, (x, r), reps
    )
    rows.append(
      (
        name,
        f'B={batch} D={dim}' + (f' block={block_size}' if block_size else ''),
        _format(seconds * 1e3),
        _format(skeleton_seconds * 1e3),
        _format(seconds / skeleton_seconds, 2),
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


def _sweep_pairwise(batches, dim, block_size, reps, max_dense_bytes):
  """Time and temporary memory of each pair-wise loss, dense and blocked.

  Returns:
    Markdown rows: loss, batch, then time (ms) and temporary memory (MiB)
    of the dense and of the blocked form.
  """
  rows = []
  for batch in batches:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
    num_classes = max(batch // 8, 2)
    y = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
    dense_cases = _pairwise_cases(None)
    blocked_cases = _pairwise_cases(block_size)
    for name in dense_cases:
      cells = [name, str(batch)]
      for loss_fn in (dense_cases[name], blocked_cases[name]):
        compiled, temp = _compile(_grad_all(loss_fn, (0,)), x, y)
        if (
          temp is not None
          and temp > max_dense_bytes
          and loss_fn is (dense_cases[name])
        ):
          cells += ['not run', _format(temp / _MIB, 0)]
          continue
        seconds = _time(compiled, x, y, reps=reps)
        cells += [
          _format(seconds * 1e3),
          _format(None if temp is None else temp / _MIB, 0),
        ]
        del compiled
      rows.append(tuple(cells))
      print('| ' + ' | '.join(cells) + ' |', flush=True)
  return rows


def _print_table(header, rows):
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in rows:
    print('| ' + ' | '.join(row) + ' |')


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
    'alternating with its skeleton\n'
  )
  _print_table(header, rows)

  batches = [int(b) for b in _SWEEP.value]
  if _QUICK.value:
    batches = [b for b in batches if b <= 2048]
  if not batches:
    return
  print(
    f'\nPair-wise sweep, D=128, blocks of {_BLOCK.value} rows; median of '
    f'{_SWEEP_REPS.value} runs (1 above B=16384); dense form run only '
    f'below {_MAX_DENSE_GIB.value} GiB of temporary memory\n',
    flush=True,
  )
  sweep_header = (
    'loss',
    'B',
    'dense ms',
    'dense temp MiB',
    'blocked ms',
    'blocked temp MiB',
  )
  print('| ' + ' | '.join(sweep_header) + ' |')
  print('|' + '---|' * len(sweep_header), flush=True)
  small = [b for b in batches if b <= 16384]
  large = [b for b in batches if b > 16384]
  max_dense_bytes = _MAX_DENSE_GIB.value * 2**30
  _sweep_pairwise(small, 128, _BLOCK.value, _SWEEP_REPS.value, max_dense_bytes)
  _sweep_pairwise(large, 128, _BLOCK.value, 1, max_dense_bytes)


if __name__ == '__main__':
  app.run(main)
