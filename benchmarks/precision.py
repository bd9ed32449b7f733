r"""bfloat16 against float32 backbones on digits: step time and accuracy.

``config.model.dtype='bfloat16'`` runs the backbone (convolutions, BatchNorm
normalisation, PReLU, the embedding layer) in bfloat16; parameters,
optimiser state, BatchNorm statistics, heads and losses stay float32. For
each loss (``--losses``, default softmax and the default config's
G-softmax), on ``configs/default.py`` (LeNet++ 32-64-128, 2-D embedding,
batch 64):

- **step ms**: the compiled train step (``steps.train``, the executable
  ``train.py`` runs) on 4 batches put on the device once, the float32 and
  bfloat16 steps alternating (`timing.median_seconds_interleaved`, median
  of ``--reps`` rounds of ``--steps_per_rep`` steps each).
- **compile s**: the first call of that step (tracing and compiling).
- **test accuracy**, **recall@1**: ``train.train_and_evaluate`` of the
  whole default training (30 epochs, 660 steps) in each dtype, same seed;
  ``--num_epochs`` shortens it, ``--noaccuracy`` skips it. **run s** is its
  wall time, compilation and evaluation included.

On the CPU, XLA (jax 0.10.2) converts a bfloat16 convolution's operands to
float32, convolves in float32 and rounds the result back: expect no gain
there. GPUs (Ampere and later) and TPUs multiply bfloat16 natively.

Run: ``make bench`` or ``python -m benchmarks.precision [--quick]``
(``--quick``: 2 epochs, 5 rounds). The full run trains the default config
4 times: about 10 minutes on the quiet 2-core CPU, 27 on a busy one.
"""

import contextlib
import os
import sys
import tempfile
import time

import cpuinfo
import jax
import tensorflow_datasets as tfds
from absl import app, flags, logging

import train
from benchmarks import timing
from configs import default as default_config
from training import experiment as experiment_lib

_LOSSES = flags.DEFINE_list(
  'losses', ['softmax', 'g_softmax'], 'Losses to run (registry names).'
)
_DTYPES = ('float32', 'bfloat16')
_QUICK = flags.DEFINE_bool(
  'quick', False, '2 epochs and 5 rounds: a smoke run.'
)
_NUM_EPOCHS = flags.DEFINE_integer(
  'num_epochs', None, "Epochs of the accuracy runs (default: the config's)."
)
_ACCURACY = flags.DEFINE_bool(
  'accuracy', True, 'Also train in each dtype (--noaccuracy: step times only).'
)
_REPS = flags.DEFINE_integer('reps', 15, 'Timed rounds per step.')
_STEPS_PER_REP = flags.DEFINE_integer(
  'steps_per_rep', 10, 'Train steps per timed round.'
)
_DATA_DIR = flags.DEFINE_string(
  'data_dir',
  os.path.join(tempfile.gettempdir(), 'discfeat_precision_tfds'),
  'Where digits are prepared.',
)

# Batches put on the device for the step timing; cycled.
_DEVICE_BATCHES = 4


def _config(loss: str, dtype: str):
  config = default_config.get_config(loss)
  config.model.dtype = dtype
  config.input.data_dir = _DATA_DIR.value
  config.write_plots = False
  config.write_features = False
  if _QUICK.value:
    config.num_epochs = 2
  if _NUM_EPOCHS.value is not None:
    config.num_epochs = _NUM_EPOCHS.value
  return config


def _compiled_step(config):
  """The run's train step, its state and device batches, compiled.

  Built by `training.experiment`, as ``train.train_and_evaluate`` builds
  them.

  Returns:
    ``(step, compile seconds)``: ``step()`` runs ``--steps_per_rep`` steps
    from the initial state, cycling the device batches, and waits for them.
  """
  experiment = experiment_lib.build(config)
  dataset = experiment.dataset
  steps = experiment.make_steps()
  state = steps.replicate(experiment.initial_state())
  # pmap reshapes a batch on one device to its per-device layout.
  devices = jax.local_devices()
  if len(devices) > 1:
    raise ValueError(
      f'Run on one device (found {len(devices)}): the step is timed on '
      'batches put on one device.'
    )
  batches = [
    jax.device_put(dataset.train_batch(step), devices[0])
    for step in range(_DEVICE_BATCHES)
  ]
  start = time.perf_counter()
  jax.block_until_ready(steps.train(state, batches[0]))
  compile_seconds = time.perf_counter() - start

  def run():
    current = state
    for i in range(_STEPS_PER_REP.value):
      current, metrics = steps.train(current, batches[i % len(batches)])
    jax.block_until_ready((current, metrics))

  run()  # Warm-up: the first run of the reshapes and transfers.
  return run, compile_seconds


def _accuracy_run(config) -> tuple[dict, float]:
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    results = train.train_and_evaluate(config, workdir)
    return results, time.perf_counter() - start


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  tfds.disable_progress_bar()
  reps = _REPS.value
  if _QUICK.value and not flags.FLAGS['reps'].present:
    reps = 5
  load_start = os.getloadavg()[0]
  rows = []
  for loss in _LOSSES.value:
    configs = {dtype: _config(loss, dtype) for dtype in _DTYPES}
    # TFDS prints its first preparation of digits to stdout (the table's).
    with contextlib.redirect_stdout(sys.stderr):
      compiled = {dtype: _compiled_step(configs[dtype]) for dtype in _DTYPES}
    seconds = timing.median_seconds_interleaved(
      [compiled[dtype][0] for dtype in _DTYPES], reps
    )
    step_ms = {
      dtype: 1000 * s / _STEPS_PER_REP.value
      for dtype, s in zip(_DTYPES, seconds, strict=True)
    }
    for dtype in _DTYPES:
      trained = ('-',) * 4
      if _ACCURACY.value:
        results, run_seconds = _accuracy_run(configs[dtype])
        trained = (
          str(results['step']),
          f'{results.get("accuracy", float("nan")):.4f}',  # Pair-wise: none.
          f'{results["recall@1"]:.4f}',
          f'{run_seconds:.0f}',
        )
      rows.append(
        (
          loss,
          dtype,
          f'{step_ms[dtype]:.1f}',
          f'{step_ms[dtype] / step_ms["float32"]:.2f}',
          f'{compiled[dtype][1]:.1f}',
          *trained,
        )
      )
      # Progress on stderr: a full run takes minutes per row.
      logging.warning('| %s |', ' | '.join(rows[-1]))
  header = (
    'loss',
    'backbone dtype',
    'step ms',
    'vs float32',
    'compile s',
    'train steps',
    'test accuracy',
    'recall@1',
    'run s',
  )
  config = _config(_LOSSES.value[0], 'float32')
  print(
    f'jax {jax.__version__}, {jax.devices()[0].platform} '
    f'({cpuinfo.get_cpu_info()["brand_raw"]}, {os.cpu_count()} cores), '
    f'{jax.device_count()} device(s); configs/default.py ({config.model.name} '
    f'{tuple(config.model.stage_filters)}, batch {config.input.batch_size}); '
    f'step: median of {reps} rounds of {_STEPS_PER_REP.value} steps, '
    f'dtypes alternating; load average {load_start:.1f} at the start, '
    f'{os.getloadavg()[0]:.1f} at the end\n'
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in rows:
    print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
  app.run(main)
