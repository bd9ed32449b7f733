r"""Time and compiled memory of a pair-wise loss against a cross-batch memory.

The memory-specific part of a train step with ``config.memory`` on (Wang et
al. 2020, XBM), on one device: the objective's loss (``objective.loss``
with the batch as its global batch and a full memory of ``M`` rows as
``LossInputs.memory``), its gradient w.r.t. the embeddings, and the
enqueue of the batch into the memory, all under one `jax.jit`. ``M = 0``
is the same step without a memory (the plain batch loss). The backbone is
left out: it costs the same with and without the memory.

Each ``M`` runs dense (``block_size`` None: ``[batch, M]`` matrices) and
in row blocks (the loss's ``block_size`` hyperparameter: ``[block, M]``
matrices). Memory is XLA's compiled temporary allocation
(``.lower().compile().memory_analysis().temp_size_in_bytes``); the memory
itself (``M x D`` float32 plus labels) is state, listed apart.

Run: ``make bench`` or ``python -m benchmarks.memory [--quick]``.
"""

import os

import cpuinfo
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import timing
from training import objectives
from training import steps as steps_lib

_LOSSES = flags.DEFINE_list(
  'losses',
  ['circle_pairwise'],
  'Objectives to measure (those with uses_memory).',
)
_SIZES = flags.DEFINE_list(
  'sizes', ['0', '4096', '16384', '65536'], 'Memory sizes M; 0: no memory.'
)
_BATCH = flags.DEFINE_integer(
  'batch', 256, 'Anchors per device (the global batch on one device).'
)
_DIM = flags.DEFINE_integer('dim', 128, 'Embedding dimension D.')
_BLOCK = flags.DEFINE_integer(
  'block_size', 64, "The blocked rows' block_size hyperparameter."
)
_CLASSES = flags.DEFINE_integer(
  'num_classes',
  512,
  'Classes of the memory rows (each anchor has about M / num_classes '
  'positives there); the batch holds 4 examples of each of batch / 4 '
  'classes.',
)
_REPS = flags.DEFINE_integer('reps', 5, 'Timed repetitions per case.')
_QUICK = flags.DEFINE_bool('quick', False, 'M up to 4096 only; a smoke run.')

_MIB = 2**20


def _step(objective, hparams, with_memory: bool):
  """(embeddings, labels, memory) -> (loss, gradient, new memory)."""

  def step(embeddings, labels, memory):
    def reduced(embeddings):
      rows = jnp.arange(embeddings.shape[0], dtype=jnp.int32)
      inputs = objectives.LossInputs(
        embeddings,
        labels,
        {},
        objectives.GlobalBatch(embeddings, labels, rows),
      )
      if with_memory:
        inputs = inputs._replace(
          memory=steps_lib.memory_inputs(memory, weight=1.0)
        )
      return objectives.batch_loss(objective, hparams, inputs)

    loss, gradient = jax.value_and_grad(reduced)(embeddings)
    if with_memory:
      memory = steps_lib.enqueue(memory, embeddings, labels)
    return loss, gradient, memory

  return step


def _data(batch, dim, size, num_classes):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
  y = jnp.asarray(np.repeat(np.arange(batch // 4), 4), jnp.int32)
  memory = steps_lib.create_memory(size, dim) if size else None
  if size:
    memory = memory.replace(
      embeddings=jnp.asarray(rng.standard_normal((size, dim)), jnp.float32),
      labels=jnp.asarray(rng.integers(0, num_classes, size), jnp.int32),
      filled=jnp.asarray(size, jnp.int32),
    )
  return x, y, memory


def _hparams(objective, block_size):
  config = objectives.loss_config(objective.name)
  config.block_size = block_size
  return objectives.resolve_hparams(objective, config)


def _skeleton(x, reference, r):
  return jnp.sum(r * (x @ reference.T))


def _measure(objective, size, block_size, reps):
  """Seconds of the step and its skeleton, temporary bytes, state bytes."""
  x, y, memory = _data(_BATCH.value, _DIM.value, size, _CLASSES.value)
  step = _step(objective, _hparams(objective, block_size), bool(size))
  compiled = jax.jit(step).lower(x, y, memory).compile()
  analysis = compiled.memory_analysis()
  temp = None if analysis is None else analysis.temp_size_in_bytes
  reference = x if memory is None else jnp.concatenate([x, memory.embeddings])
  r = jnp.asarray(
    np.random.default_rng(1).standard_normal((x.shape[0], len(reference))),
    jnp.float32,
  )
  skeleton = jax.jit(jax.value_and_grad(_skeleton))
  jax.block_until_ready(compiled(x, y, memory))
  jax.block_until_ready(skeleton(x, reference, r))
  seconds, skeleton_seconds = timing.median_seconds_interleaved(
    [
      lambda: jax.block_until_ready(compiled(x, y, memory)),
      lambda: jax.block_until_ready(skeleton(x, reference, r)),
    ],
    reps,
  )
  state_bytes = 0
  if memory is not None:
    state_bytes = memory.embeddings.nbytes + memory.labels.nbytes
  return seconds, skeleton_seconds, temp, state_bytes


def main(argv):
  del argv
  sizes = [int(size) for size in _SIZES.value]
  if _QUICK.value:
    sizes = [size for size in sizes if size <= 4096]
  print(
    f'jax {jax.__version__}, {jax.devices()[0].platform} '
    f'({cpuinfo.get_cpu_info()["brand_raw"]}, {os.cpu_count()} cores); '
    f'batch {_BATCH.value} (4 per class), D={_DIM.value}, memory labels '
    f'from {_CLASSES.value} classes, memory full; loss + gradient w.r.t. '
    f'the embeddings + enqueue under one jit; median of {_REPS.value} '
    'runs, alternating with the GEMM skeleton\n'
  )
  header = (
    'loss',
    'M',
    'block',
    'ms',
    'skeleton ms',
    'ratio',
    'temp MiB',
    'memory state MiB',
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header), flush=True)
  for name in _LOSSES.value:
    objective = objectives.get_objective(name)
    if not objective.uses_memory:
      raise app.UsageError(f'{name} does not use a cross-batch memory')
    for size in sizes:
      for block_size in (None, _BLOCK.value):
        seconds, skeleton, temp, state_bytes = _measure(
          objective, size, block_size, _REPS.value
        )
        cells = (
          name,
          str(size),
          '–' if block_size is None else str(block_size),
          f'{seconds * 1e3:.1f}',
          f'{skeleton * 1e3:.1f}',
          f'{seconds / skeleton:.2f}',
          'n/a' if temp is None else f'{temp / _MIB:.1f}',
          f'{state_bytes / _MIB:.1f}',
        )
        print('| ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
  app.run(main)
