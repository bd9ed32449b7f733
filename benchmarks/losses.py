r"""Forward+backward time and compiled memory of every loss, against its GEMM.

The losses are the training objectives of the registry
(``training.objectives``): a new objective appears here without editing
this file. Each single-label objective is timed as it trains:
its head (``make_head(num_classes, hparams)``, default hyperparameters) is
initialised on the synthetic embeddings, and
``jax.jit(jax.value_and_grad(f, argnums=(embeddings, head params)))`` is
timed, where ``f`` applies the head and reduces the loss as training does
(``objectives.batch_loss``: objectives that score the global batch get it
as on one device). Each is measured next to its GEMM skeleton
in the same run, the two alternating:

- pair-wise objectives (``sampling == 'class_balanced'``):
  ``value_and_grad(sum(R * (X @ X.T)))`` at the same shape, the matrix
  product any pair-wise loss has to do forwards and backwards;
- all others: optax softmax cross-entropy on the same
  ``[batch, dim] x [dim, classes]`` product.

Multi-label objectives are skipped (their targets are label sets, which
neither skeleton has); the table's caption names them.

Memory is XLA's compiled temporary allocation
(``.lower().compile().memory_analysis().temp_size_in_bytes``).

A second table sweeps the pair-wise objectives from B = 1k to 64k, dense
and with row blocks (their ``block_size`` hyperparameter; an objective
without one runs dense only), so that the growth of time and memory with
the batch is visible: the dense form's memory grows as B², the blocked
form's as B × block_size. A dense case whose compiled memory exceeds
``--max_dense_gib`` is compiled (to report what it would need) but not run.

Run: ``make bench`` or ``python -m benchmarks.losses [--quick]``.
"""

import os
from collections.abc import Callable

import cpuinfo
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import timing
from training import objectives

_QUICK = flags.DEFINE_bool(
  'quick', False, 'Small sizes only (no 64k rows); for a smoke run.'
)
_REPS = flags.DEFINE_integer('reps', 9, 'Timed repetitions per case.')
_BLOCK = flags.DEFINE_integer(
  'block_size',
  1024,
  "Rows per block: the pair-wise objectives' block_size hyperparameter in "
  'the blocked rows.',
)
_SWEEP = flags.DEFINE_list(
  'sweep_batches',
  ['1024', '2048', '4096', '8192', '16384', '32768', '65536'],
  'Batch sizes of the pair-wise sweep (dense and blocked); empty: no sweep.',
)
_MAX_DENSE_GIB = flags.DEFINE_float(
  'max_dense_gib',
  4.0,
  'The tables run a loss only where its compiled temporary memory is '
  'below this; above, they report the memory it would need.',
)
_SWEEP_REPS = flags.DEFINE_integer('sweep_reps', 3, 'Timed runs per sweep row.')

_MIB = 2**20
# The hyperparameter that selects the memory-bounded (blocked) path.
_BLOCK_SIZE = 'block_size'


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


def _single_label(sampling: str) -> list[objectives.Objective]:
  """The registry's single-label objectives of one sampling, by name."""
  return [
    objective
    for objective in objectives.all_objectives()
    if not objective.multilabel and objective.sampling == sampling
  ]


def _hparams(objective: objectives.Objective, block_size: int | None):
  """Default hyperparameters; `block_size` where the objective has one."""
  config = objectives.loss_config(objective.name)
  if _BLOCK_SIZE in objective.hyperparameters:
    config[_BLOCK_SIZE] = block_size
  return objectives.resolve_hparams(objective, config)


def _objective_case(objective, hparams, x, y, num_classes):
  """The objective's ``value_and_grad`` and its arguments.

  Returns:
    ``(fn, args)``: ``fn(embeddings, head params, head state, labels)``
    gives the reduced loss and its gradients w.r.t. the embeddings and the
    head's parameters.
  """
  head = objective.make_head(num_classes, hparams)
  variables = dict(head.init(jax.random.key(0), x))
  params = variables.pop('params', {})
  # Non-gradient head state (vMF's mean directions, zero at init) gets
  # random unit rows, as after a refresh.
  keys = iter(jax.random.split(jax.random.key(1), 64))
  state = jax.tree.map(
    lambda a: _unit_rows(jax.random.normal(next(keys), a.shape, a.dtype)),
    variables,
  )

  def reduced_loss(embeddings, params, state, labels):
    outputs = head.apply({'params': params, **state}, embeddings)
    # On one device the global batch is the local one.
    return objectives.batch_loss(
      objective, hparams, objectives.LossInputs(embeddings, labels, outputs)
    )

  fn = jax.value_and_grad(reduced_loss, argnums=(0, 1))
  return fn, (x, params, state, y)


def _unit_rows(a):
  return a / jnp.linalg.norm(a, axis=-1, keepdims=True)


def _pairwise_skeleton(x, r):
  return jnp.sum(r * (x @ x.T))


def _classification_skeleton(x, w, y):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y))


def _format(value, digits=1):
  return 'n/a' if value is None else f'{value:.{digits}f}'


def _mib(num_bytes, digits=1):
  return _format(None if num_bytes is None else num_bytes / _MIB, digits)


def _pairwise_data(batch, dim):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
  num_classes = max(batch // 8, 2)
  y = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  return x, y, num_classes


def _benchmark_pairwise(batch, dim, block_size, reps, rows):
  """Rows of the pair-wise objectives (those with `block_size` if given)."""
  x, y, num_classes = _pairwise_data(batch, dim)
  r = jnp.asarray(
    np.random.default_rng(1).standard_normal((batch, batch)), jnp.float32
  )
  skeleton = jax.value_and_grad(_pairwise_skeleton)
  skeleton_compiled, skeleton_temp = _compile(skeleton, x, r)
  shape = f'B={batch} D={dim}' + (f' block={block_size}' if block_size else '')
  for objective in _single_label('class_balanced'):
    if block_size and _BLOCK_SIZE not in objective.hyperparameters:
      continue
    hparams = _hparams(objective, block_size)
    fn, args = _objective_case(objective, hparams, x, y, num_classes)
    compiled, temp = _compile(fn, *args)
    if temp is not None and temp > _MAX_DENSE_GIB.value * 2**30:
      # E.g. every triplet of the batch at once, [B, B, B]: reported, not
      # run.
      rows.append(
        (objective.name, shape, '–', '–', '–', _mib(temp), _mib(skeleton_temp))
      )
      continue
    seconds, skeleton_seconds = _time_interleaved(
      compiled, args, skeleton_compiled, (x, r), reps
    )
    rows.append(
      (
        objective.name,
        shape,
        _format(seconds * 1e3),
        _format(skeleton_seconds * 1e3),
        _format(seconds / skeleton_seconds, 2),
        _mib(temp),
        _mib(skeleton_temp),
      )
    )


def _benchmark_classification(batch, dim, num_classes, reps, rows):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((num_classes, dim)) * 0.05, jnp.float32)
  y = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  skeleton = jax.value_and_grad(_classification_skeleton, argnums=(0, 1))
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
      _mib(skeleton_temp),
      _mib(skeleton_temp),
    )
  )
  for objective in _single_label('random'):
    hparams = _hparams(objective, None)
    fn, args = _objective_case(objective, hparams, x, y, num_classes)
    compiled, temp = _compile(fn, *args)
    seconds, skeleton_seconds = _time_interleaved(
      compiled, args, skeleton_compiled, (x, w, y), reps
    )
    rows.append(
      (
        objective.name,
        shape,
        _format(seconds * 1e3),
        _format(skeleton_seconds * 1e3),
        _format(seconds / skeleton_seconds, 2),
        _mib(temp),
        _mib(skeleton_temp),
      )
    )


def _sweep_pairwise(batches, dim, block_size, reps, max_dense_bytes):
  """Time and temporary memory of each pair-wise objective, dense and blocked.

  Objectives without a ``block_size`` hyperparameter run dense only.

  Returns:
    Markdown rows: objective, batch, then time (ms) and temporary memory
    (MiB) of the dense and of the blocked form.
  """
  rows = []
  for batch in batches:
    x, y, num_classes = _pairwise_data(batch, dim)
    for objective in _single_label('class_balanced'):
      cells = [objective.name, str(batch)]
      forms = [None]
      if _BLOCK_SIZE in objective.hyperparameters:
        forms.append(block_size)
      for form in forms:
        hparams = _hparams(objective, form)
        fn, args = _objective_case(objective, hparams, x, y, num_classes)
        compiled, temp = _compile(fn, *args)
        if form is None and temp is not None and temp > max_dense_bytes:
          cells += ['not run', _mib(temp, 0)]
          continue
        seconds = _time(compiled, *args, reps=reps)
        cells += [_format(seconds * 1e3), _mib(temp, 0)]
        del compiled
      if len(forms) == 1:
        cells += ['–', '–']  # No blocked form.
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
  skipped = [o.name for o in objectives.all_objectives() if o.multilabel]
  print(
    f'jax {jax.__version__}, {jax.devices()[0].platform} '
    f'({cpuinfo.get_cpu_info()["brand_raw"]}, '
    f'{os.cpu_count()} cores), '
    f'{jax.device_count()} device(s); median of {reps} runs, each loss '
    'alternating with its skeleton; every single-label objective of '
    'training.objectives, default hyperparameters, gradients w.r.t. the '
    'embeddings and the head parameters'
    + (
      f'; multi-label objectives skipped: {", ".join(skipped)}'
      if skipped
      else ''
    )
    + '\n'
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
    f'below {_MAX_DENSE_GIB.value} GiB of temporary memory; objectives '
    'without a block_size hyperparameter run dense only (–)\n',
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
