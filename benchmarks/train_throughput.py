r"""Examples/s of the real training loop against its jitted step alone.

For each config the script runs ``train.train_and_evaluate`` itself: the
loop exactly as ``train.py`` runs it, ``next(batches)`` from
``dataset.train_batches``, ``steps.train(state, batch)`` on the host batch,
the loss guard with its reads at ``log_every_steps``, progress reports and
metric writes. Evaluation and checkpoints are pushed beyond the run, which
ends (by an exception out of a loop hook) once the last chunk is timed. The
run is observed without changing what it does: its data set's
``train_batches`` timed (the time spent in ``next(batches)``), and a loop
hook (`training.periodic`) that starts and stops the clocks after given
steps, waiting for the device each time.

- **step-only**: the same ``steps.train`` (the same compiled executable) on
  4 batches put on the device once (``jax.device_put``) and cycled, under
  ``jax.transfer_guard_host_to_device('disallow')``: the compute ceiling.
- **loop**: examples/s of the real loop over the timed steps.
- Timed steps are split into chunks (``--*_rounds``), alternating
  step-only, loop, step-only, ..., step-only inside the same run, so a
  machine whose speed drifts affects both alike; the parenthesis gives the
  range of each loop chunk against the step-only chunks around it. Each
  loop chunk starts ``config.input.prefetch`` untimed steps after the
  step-only chunk before it, so that the prefetch buffer, refilled
  meanwhile, is back at its steady level: a pipeline slower than the step
  cannot hide behind it.
- **loop time in next()**: the share of the loop's wall time the host
  spends in ``next(batches)``. With asynchronous dispatch it overlaps the
  device's work on the steps already queued, so it costs throughput only
  when the device runs dry.
- **pipeline alone**: ``dataset.train_batches`` iterated for 3 s with no
  training (its grain threads have the cores to themselves).
- The first ``--warmup`` loop steps (3) are not timed: they include the
  train step's compilation and the first fill of the prefetch buffer.

Configs: ``configs/default.py`` (sklearn digits, LeNet++, batch 64, 100
timed steps in 4 chunks) and ``configs/cifar10.py`` (ResNet-20, pad-crop-flip
augmentation, batch 128, 12 timed steps in 1 chunk). CIFAR-10 cannot be
downloaded here, so a synthetic copy (10,000 + 500 random 32x32x3 images in
10 classes, PNGs about the size of real CIFAR-10 ones, written by TFDS's
own ``cifar10`` builder without TensorFlow) is written once as array_record
into a directory under ``--data_dir`` (default: under the system temp dir;
later runs reuse it) and read through the same catalog path as the real
set. The real data dir (``$TFDS_DATA_DIR``) is never used: a synthetic
"cifar10" there would pass for the real one. Random access makes the read
cost per batch independent of the set's size.

Run: ``make bench`` or ``python -m benchmarks.train_throughput [--quick]``.
1.5 to 3 minutes on the shared 2-core CPU, about half of it compiling;
``--quick`` (20 digits steps, CIFAR batch 32 for 4 steps, 2,000 synthetic
examples) takes under a minute once its data are written.
"""

import contextlib
import dataclasses
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import cpuinfo
import jax
import ml_collections
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from absl import app, flags, logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import train
from configs import cifar10 as cifar10_config
from configs import default as default_config
from input_pipeline import preparation
from input_pipeline.datasets import catalog
from training import experiment as experiment_lib
from training import steps as steps_lib

_QUICK = flags.DEFINE_bool(
  'quick', False, 'Short windows and CIFAR batch 32: a smoke run.'
)
_CONFIGS = flags.DEFINE_list(
  'configs', ['digits', 'cifar10'], 'Which configs to run: digits, cifar10.'
)
_DIGITS_STEPS = flags.DEFINE_integer(
  'digits_steps', 100, 'Timed steps of the digits run (loop and step-only).'
)
_DIGITS_ROUNDS = flags.DEFINE_integer(
  'digits_rounds', 4, 'Loop chunks of the digits run.'
)
_CIFAR_STEPS = flags.DEFINE_integer(
  'cifar_steps', 12, 'Timed steps of the CIFAR run (loop and step-only).'
)
_CIFAR_ROUNDS = flags.DEFINE_integer(
  'cifar_rounds', 1, 'Loop chunks of the CIFAR run.'
)
_CIFAR_BATCH = flags.DEFINE_integer(
  'cifar_batch', 128, 'Global batch of the CIFAR run (configs/cifar10.py).'
)
_CIFAR_EXAMPLES = flags.DEFINE_integer(
  'cifar_examples',
  10_000,
  'Training examples of the synthetic CIFAR-10 (the real one has 50,000).',
)
_WARMUP = flags.DEFINE_integer(
  'warmup',
  3,
  'Untimed loop steps before the first chunk (compilation, first fill '
  'of the prefetch buffer).',
)
_PARALLELISM = flags.DEFINE_enum(
  'parallelism',
  None,
  steps_lib.PARALLELISMS,
  "Override config.parallelism (default: the config's, pmap).",
)
_DATA_DIR = flags.DEFINE_string(
  'data_dir',
  os.path.join(tempfile.gettempdir(), 'discfeat_train_throughput_tfds'),
  'Where digits and the synthetic CIFAR-10 (in a sub-directory) are prepared.',
)

_SYNTHETIC_TEST_EXAMPLES = 500
# Batches put on the device for step-only; cycled so the step sees several.
_DEVICE_BATCHES = 4
_PIPELINE_ALONE_SECONDS = 3.0


@dataclasses.dataclass(frozen=True)
class _Case:
  """One row of the table.

  Attributes:
    name: the config's name in the table.
    config: the experiment config, ready to run.
    steps: timed loop steps; step-only runs as many.
    rounds: loop chunks, each between two step-only chunks.
  """

  name: str
  config: ml_collections.ConfigDict
  steps: int
  rounds: int


@dataclasses.dataclass
class _Measurement:
  """What the observers record during one run.

  Attributes:
    dataset: the run's `input_pipeline.Dataset`.
    next_seconds: time the loop spent in ``next(batches)`` so far.
    loop_chunks: ``(steps, seconds, seconds in next())`` per loop chunk.
    step_only_chunks: ``(steps, seconds)`` per step-only chunk.
    device_batches: the batches step-only reuses.
  """

  dataset: Any = None
  next_seconds: float = 0.0
  loop_chunks: list[tuple[int, float, float]] = dataclasses.field(
    default_factory=list
  )
  step_only_chunks: list[tuple[int, float]] = dataclasses.field(
    default_factory=list
  )
  device_batches: list[Any] | None = None


class _WindowMeasured(Exception):
  """Ends the run once the last chunk has been timed."""


def _schedule(
  warmup: int, settle: int, steps: int, rounds: int
) -> dict[int, list[tuple[str, int]]]:
  """What to do after which loop step: ``{call: [(action, size), ...]}``.

  Step-only chunks alternate with loop chunks, starting and ending with
  step-only. Before each loop chunk `settle` untimed loop steps let the
  prefetch buffer, refilled while step-only ran, drain back to its steady
  level, so a pipeline slower than the step cannot hide behind it.

  Raises:
    ValueError: for fewer than one round or fewer steps than step-only
      chunks (rounds + 1).
  """
  if rounds < 1 or steps < rounds + 1:
    raise ValueError(
      f'The timed steps must be at least rounds + 1 with rounds >= 1, '
      f'received steps={steps}, rounds={rounds}'
    )
  step_only_sizes = [len(c) for c in np.array_split(range(steps), rounds + 1)]
  loop_sizes = [len(c) for c in np.array_split(range(steps), rounds)]
  events: dict[int, list[tuple[str, int]]] = {}
  call = warmup
  for step_only_size, loop_size in zip(
    step_only_sizes[:-1], loop_sizes, strict=True
  ):
    events.setdefault(call, []).append(('step_only', step_only_size))
    call += settle
    events.setdefault(call, []).append(('loop_start', loop_size))
    call += loop_size
    events.setdefault(call, []).append(('loop_stop', loop_size))
  events[call] += [('step_only', step_only_sizes[-1]), ('done', 0)]
  return events


def _timed_next(
  batches: Iterator[Any], measurement: _Measurement
) -> Iterator[Any]:
  """`batches`, adding the time each ``next`` takes to the measurement."""
  while True:
    start = time.perf_counter()
    batch = next(batches)
    measurement.next_seconds += time.perf_counter() - start
    yield batch


def _device_batches(dataset, count: int) -> list[Any]:
  """`count` training batches put once on this process's devices."""
  devices = jax.local_devices()
  if len(devices) == 1:
    # pmap reshapes a single-device batch without recompiling the step.
    where = devices[0]
  else:
    mesh = jax.sharding.Mesh(np.asarray(devices), (steps_lib.AXIS_NAME,))
    where = NamedSharding(mesh, P(steps_lib.AXIS_NAME))
  return [
    jax.device_put(dataset.train_batch(step), where) for step in range(count)
  ]


def _step_only(train_fn: Callable, state, measurement, num_steps: int):
  """Times `num_steps` calls of the step on device-resident batches."""
  if measurement.device_batches is None:
    measurement.device_batches = _device_batches(
      measurement.dataset, _DEVICE_BATCHES
    )
    # Untimed: compiles the reshape that turns a device batch into the
    # per-device layout.
    jax.block_until_ready(train_fn(state, measurement.device_batches[0]))
  batches = measurement.device_batches
  with jax.transfer_guard_host_to_device('disallow'):
    start = time.perf_counter()
    for i in range(num_steps):
      state, metrics = train_fn(state, batches[i % len(batches)])
    jax.block_until_ready((state, metrics))
  measurement.step_only_chunks.append((num_steps, time.perf_counter() - start))


def _observer(measurement: _Measurement, events) -> Callable[..., None]:
  """A loop hook (`training.periodic`) that runs the schedule's actions."""
  loop_start = next_start = 0.0

  def hook(step, state, steps):
    nonlocal loop_start, next_start
    actions = events.get(step, ()) if step else ()
    if actions:
      jax.block_until_ready(state)
    for action, size in actions:
      if action == 'step_only':
        # Its updates are dropped: the loop goes on from its own state.
        _step_only(steps.train, state, measurement, size)
      elif action == 'loop_start':
        loop_start = time.perf_counter()
        next_start = measurement.next_seconds
      elif action == 'loop_stop':
        measurement.loop_chunks.append(
          (
            size,
            time.perf_counter() - loop_start,
            measurement.next_seconds - next_start,
          )
        )
      else:
        raise _WindowMeasured

  return hook


def _observed_experiment(config, measurement: _Measurement):
  """The run, its training batches timed (`_timed_next`)."""
  experiment = experiment_lib.build(config)
  dataset = experiment.dataset
  measurement.dataset = dataset
  train_batches = dataset.train_batches
  dataset.train_batches = lambda start_step=0: _timed_next(
    train_batches(start_step), measurement
  )
  return experiment


def _pipeline_alone(dataset) -> float:
  """Batches/s of the training iterator with nothing else running."""
  batches = dataset.train_batches(10_000)
  next(batches)  # Starts grain's threads.
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < _PIPELINE_ALONE_SECONDS:
    next(batches)
    count += 1
  return count / (time.perf_counter() - start)


def _run(case: _Case, warmup: int) -> dict[str, Any]:
  """Runs train_and_evaluate on `case` until its last chunk is timed.

  Returns:
    ``step_only`` and ``loop`` examples/s, ``per_round`` (each loop chunk's
    rate over its neighbouring step-only chunks' rate), ``next_share`` (of
    the loop's time) and ``pipeline`` (examples/s of the pipeline alone).
  """
  measurement = _Measurement()
  settle = int(case.config.input.prefetch)
  events = _schedule(warmup, settle, case.steps, case.rounds)
  experiment = _observed_experiment(case.config, measurement)
  with tempfile.TemporaryDirectory() as workdir:
    try:
      train.train_and_evaluate(
        case.config,
        workdir,
        experiment=experiment,
        hooks=[_observer(measurement, events)],
      )
    except _WindowMeasured:
      pass
    else:
      raise RuntimeError(
        f'{case.name}: the run ended before step {max(events)}; lower the '
        'number of timed steps'
      )
  batch = case.config.input.batch_size
  loop = np.asarray(measurement.loop_chunks)
  step_only = np.asarray(measurement.step_only_chunks)
  # Each loop chunk against the two step-only chunks around it.
  around = step_only[:-1] + step_only[1:]
  per_round = (loop[:, 0] / loop[:, 1]) / (around[:, 0] / around[:, 1])
  return {
    'step_only': batch * step_only[:, 0].sum() / step_only[:, 1].sum(),
    'loop': batch * loop[:, 0].sum() / loop[:, 1].sum(),
    'per_round': per_round,
    'next_share': loop[:, 2].sum() / loop[:, 1].sum(),
    'pipeline': batch * _pipeline_alone(measurement.dataset),
  }


def _png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  PIL.Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def _synthetic_cifar10_examples(split: str, count: int):
  """``(key, example)`` of random CIFAR-10-shaped images, PNG-encoded."""
  rng = np.random.default_rng(0 if split == 'train' else 1)
  for index in range(count):
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.int16)
    image = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)
    image = image + rng.integers(-20, 21, image.shape, dtype=np.int16)
    yield (
      index,
      {
        'id': f'{split}_{index:05d}',
        'image': _png(np.clip(image, 0, 255).astype(np.uint8)),
        'label': int(rng.integers(10)),
      },
    )


def _write_synthetic_cifar10(data_dir: str, num_train: int) -> None:
  """Writes random CIFAR-10-shaped data as TFDS ``cifar10`` (array_record).

  Images are 8x8 random colour blocks upsampled to 32x32 plus pixel noise,
  so that their PNGs are about as large as real CIFAR-10 ones (~2.7 KB).
  TFDS's own ``cifar10`` builder writes them (its features, its version
  dir), with its download replaced by these examples; the images are given
  as PNG bytes encoded with PIL, since TFDS encodes arrays with TensorFlow,
  which the default install leaves out. Nothing is written when `data_dir`
  already holds it.
  """
  version_dir, _ = catalog.version_dir('cifar10', data_dir)
  if os.path.isfile(os.path.join(version_dir, 'dataset_info.json')):
    return

  class SyntheticCifar10(tfds.builder_cls('cifar10'), skip_registration=True):
    name = 'cifar10'

    def _split_generators(self, dl_manager):
      del dl_manager  # Nothing to download.
      return {
        'train': _synthetic_cifar10_examples('train', num_train),
        'test': _synthetic_cifar10_examples('test', _SYNTHETIC_TEST_EXAMPLES),
      }

  logging.warning(
    'Writing a synthetic CIFAR-10 (%d + %d examples) to %s, once.',
    num_train,
    _SYNTHETIC_TEST_EXAMPLES,
    version_dir,
  )
  builder = SyntheticCifar10(
    data_dir=data_dir, file_format=preparation.FILE_FORMAT
  )
  builder.download_and_prepare(file_format=preparation.FILE_FORMAT)


def _prepared(config, data_dir: str) -> ml_collections.ConfigDict:
  """`config` set up for timing: no evaluation, checkpoint or plot."""
  config.input.data_dir = data_dir
  if _PARALLELISM.value:
    config.parallelism = _PARALLELISM.value
  never = 10**9
  config.eval_every_steps = never
  config.checkpoint_every_steps = never
  config.write_plots = False
  return config


def _cases(quick: bool) -> list[_Case]:
  """The configs to run, their data prepared."""
  data_dir = os.path.abspath(_DATA_DIR.value)
  cases = []
  # TFDS prints its progress to stdout, which carries the table.
  with contextlib.redirect_stdout(sys.stderr):
    for name in _CONFIGS.value:
      if name == 'digits':
        preparation.prepare('digits', data_dir)
        cases.append(
          _Case(
            'digits (configs/default.py)',
            _prepared(default_config.get_config(), data_dir),
            steps=20 if quick else _DIGITS_STEPS.value,
            rounds=1 if quick else _DIGITS_ROUNDS.value,
          )
        )
      elif name == 'cifar10':
        num_train = 2000 if quick else _CIFAR_EXAMPLES.value
        # One data dir per size: catalog sets live at DATA_DIR/cifar10/.
        cifar_dir = os.path.join(data_dir, f'synthetic_cifar10_{num_train}')
        _write_synthetic_cifar10(cifar_dir, num_train)
        config = _prepared(cifar10_config.get_config(), cifar_dir)
        config.input.batch_size = 32 if quick else _CIFAR_BATCH.value
        cases.append(
          _Case(
            'synthetic CIFAR-10 (configs/cifar10.py)',
            config,
            steps=4 if quick else _CIFAR_STEPS.value,
            rounds=1 if quick else _CIFAR_ROUNDS.value,
          )
        )
      else:
        raise ValueError(
          f"--configs takes 'digits' and 'cifar10', received {name!r}"
        )
  return cases


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  tfds.disable_progress_bar()
  load = os.getloadavg()[0]
  cases = _cases(_QUICK.value)
  rows = []
  for case in cases:
    result = _run(case, _WARMUP.value)
    ratio = f'{100 * result["loop"] / result["step_only"]:.1f}'
    if case.rounds > 1:
      per_round = 100 * result['per_round']
      ratio += f' ({per_round.min():.0f}-{per_round.max():.0f})'
    rows.append(
      (
        case.name,
        case.config.model.name,
        str(case.config.input.batch_size),
        f'{case.steps} in {case.rounds}',
        f'{result["step_only"]:.0f}',
        f'{result["loop"]:.0f}',
        ratio,
        f'{100 * result["next_share"]:.1f}',
        f'{result["pipeline"]:.0f}',
      )
    )
  header = (
    'config',
    'model',
    'batch',
    'timed steps in chunks',
    'step-only ex/s',
    'loop ex/s',
    'loop/step % (chunks)',
    'loop time in next() %',
    'pipeline alone ex/s',
  )
  parallelism = {case.config.parallelism for case in cases}
  print(
    f'jax {jax.__version__}, {jax.devices()[0].platform} '
    f'({cpuinfo.get_cpu_info()["brand_raw"]}, {os.cpu_count()} cores), '
    f'{jax.device_count()} device(s), {"/".join(sorted(parallelism))}; '
    f'{_WARMUP.value} warm-up steps; load average {load:.1f} at the start\n'
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in rows:
    print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
  app.run(main)
