r"""Trains every loss of a comparison config and writes its results table.

  make compare                 # configs/compare/digits.py, < 30 min
  make compare QUICK=1         # smoke test, not a result: 1 seed, 8 epochs
  python -m benchmarks.compare --config=configs/compare/digits.py \
    --workdir=runs/compare --jobs=2

A comparison config (configs/compare/digits.py) lists tasks; each names an
experiment config module, the losses and the metric columns. Every
(task, loss, seed) run is an ordinary `train.train_and_evaluate` in its own
workdir, so a rerun skips finished runs and resumes interrupted ones. The
results go to ``<results_dir>/<name>.md`` with two figures beside it (see
`benchmarks.compare_report`). Before any run starts, each data set the
unfinished runs read is prepared once (`prepare_data`), so that the workers
only read it.

For a catalog data set, prepare the data (`python -m
input_pipeline.prepare`) and pass a comparison config whose tasks name its
experiment configs: configs/compare/mnist.py does so for MNIST; the same
pattern takes configs/cifar10.py or configs/cub200.py.
"""

import concurrent.futures
import dataclasses
import importlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from benchmarks import compare_report
from common import cli
from input_pipeline import preparation
from training import objectives

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  'configs/compare/digits.py',
  'Comparison config; configs/compare/digits.py:quick for the quick mode.',
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  'workdir', 'runs/compare', 'One workdir per run goes under this folder.'
)
_JOBS = flags.DEFINE_integer(
  'jobs',
  1,
  'Runs trained at once, each in its own single-threaded process when > 1 '
  "(make compare uses 2 on a 2-core CPU; the tables' times are then "
  'single-threaded times). Use 1 on a GPU.',
)

# What each run records beside train.py's results.json.
_RUN_RECORD = 'comparison_run.json'


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of the comparison."""

  task: str
  loss: str
  seed: int
  workdir: str


def experiment_config(
  task: ml_collections.ConfigDict, loss: str, seed: int
) -> ml_collections.ConfigDict:
  """The training config of one run: the task's experiment, overridden."""
  module = importlib.import_module(task.experiment)
  config = module.get_config(loss)
  config.update(task.overrides)
  config.seed = seed
  return config


def plan(config: ml_collections.ConfigDict, workdir: str) -> list[Run]:
  """Every run of the comparison, in table order."""
  _validate(config)
  return [
    Run(
      task_name, loss, seed, os.path.join(workdir, task_name, loss, str(seed))
    )
    for task_name, task in config.tasks.items()
    for loss in task.losses
    for seed in config.seeds
  ]


def _validate(config: ml_collections.ConfigDict) -> None:
  # Fail on a misspelt loss or module before hours of training, not at the
  # run that needs it.
  if not config.seeds:
    raise ValueError('config.seeds must list at least one seed, received ()')
  if not config.tasks:
    raise ValueError('config.tasks must hold at least one task, received none')
  known = objectives.names()
  for task_name, task in config.tasks.items():
    try:
      importlib.import_module(task.experiment)
    except ImportError as error:
      raise ValueError(
        f'config.tasks.{task_name}.experiment must name an importable config '
        f'module, received {task.experiment!r} ({error})'
      ) from error
    unknown = [loss for loss in task.losses if loss not in known]
    if unknown:
      raise ValueError(
        f'config.tasks.{task_name}.losses must be names from {known}, '
        f'received unknown {unknown}'
      )
  if config.figure_task and config.figure_task not in config.tasks:
    raise ValueError(
      f'config.figure_task must be one of {list(config.tasks)} or empty, '
      f'received {config.figure_task!r}'
    )


def _train(config_json: str, run: Run) -> dict[str, Any]:
  """Trains one run (in this or a worker process) and records its time."""
  # Imported here so that worker processes pay for the training stack once
  # and the parent's `--help` stays fast.
  import train  # pylint: disable=g-import-not-at-top

  comparison = ml_collections.ConfigDict(json.loads(config_json))
  config = experiment_config(comparison.tasks[run.task], run.loss, run.seed)
  start = time.perf_counter()
  metrics = train.train_and_evaluate(config, run.workdir)
  seconds = time.perf_counter() - start
  record = {
    'task': run.task,
    'loss': run.loss,
    'seed': run.seed,
    'seconds': seconds,
    'metrics': metrics,
    'hparams': _hparams(config),
    'config': config.to_dict(),
  }
  # As a rerun will read it back: JSON types only.
  record = json.loads(json.dumps(record, default=_json_value))
  with open(os.path.join(run.workdir, _RUN_RECORD), 'w') as file:
    json.dump(record, file, indent=2)
  return record


def _json_value(value):
  return list(value) if isinstance(value, tuple) else float(value)


def _hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  objective = objectives.get_objective(config.loss.name)
  return dict(objectives.resolve_hparams(objective, config.loss))


def finished_record(
  run: Run, config: ml_collections.ConfigDict
) -> dict[str, Any] | None:
  """The recorded result of a run that already finished, if any.

  Raises:
    ValueError: the workdir holds a finished run of another experiment
      config (e.g. the comparison config changed since): its numbers must
      not enter this table.
  """
  path = os.path.join(run.workdir, _RUN_RECORD)
  if not os.path.exists(path):
    return None
  with open(path) as file:
    record = json.load(file)
  expected = json.loads(
    json.dumps(
      experiment_config(config.tasks[run.task], run.loss, run.seed).to_dict(),
      default=_json_value,
    )
  )
  recorded_loss = (record.get('config') or {}).get('loss', {})
  if objectives.BUILT_FOR not in recorded_loss:
    # Recorded before config.loss named the loss it was built for; the
    # workdir (task/loss/seed) already says which.
    expected['loss'].pop(objectives.BUILT_FOR, None)
  if record.get('config') != expected:
    raise ValueError(
      f'{run.workdir} holds a finished run of a different experiment '
      'config; use another --workdir or delete that run to retrain it'
    )
  return record


def _worker_environment() -> None:
  # One thread per run: with --jobs runs sharing the cores, extra threads
  # per run only contend.
  flags_now = os.environ.get('XLA_FLAGS', '')
  os.environ['XLA_FLAGS'] = (
    f'{flags_now} --xla_cpu_multi_thread_eigen=false '
    'intra_op_parallelism_threads=1'
  ).strip()


def run_all(
  config: ml_collections.ConfigDict, workdir: str, *, jobs: int = 1
) -> list[dict[str, Any]]:
  """Trains every unfinished run; returns every run's record in plan order."""
  if jobs < 1:
    raise ValueError(f'jobs must be >= 1, received {jobs}')
  runs = plan(config, workdir)
  records: dict[Run, dict[str, Any]] = {}
  pending = []
  for run in runs:
    record = finished_record(run, config)
    if record is None:
      pending.append(run)
    else:
      records[run] = record
  logging.info(
    '%d runs: %d finished before, %d to train.',
    len(runs),
    len(records),
    len(pending),
  )
  prepare_data(config, pending)
  config_json = config.to_json()
  for run, record in _train_pending(config_json, pending, jobs):
    records[run] = record
    if 'error' in record:
      logging.error(
        '[%d/%d] %s %s seed %d FAILED: %s',
        len(records),
        len(runs),
        run.task,
        run.loss,
        run.seed,
        record['error'],
      )
      continue
    logging.info(
      '[%d/%d] %s %s seed %d: %.0f s | %s',
      len(records),
      len(runs),
      run.task,
      run.loss,
      run.seed,
      record['seconds'],
      compare_report.headline(record['metrics']),
    )
  return [records[run] for run in runs]


def prepare_data(
  config: ml_collections.ConfigDict, runs: list[Run]
) -> list[str]:
  """Prepares each data set that `runs` read, once, in this process.

  The workers then find it prepared. (Were they to meet an unprepared set,
  the preparation lock would still let only one of them prepare it.) A
  catalog set is downloaded only if its input config asks to.

  Returns:
    The prepared version directories, one per data set.

  Raises:
    input_pipeline.DataNotPreparedError: a catalog set is missing, before
      any run starts (the message gives the command that prepares it).
    ValueError: for a bad image folder.
  """
  prepared = {}
  for run in runs:
    config_input = experiment_config(
      config.tasks[run.task], run.loss, run.seed
    ).input
    key = tuple(
      config_input.get(field)
      for field in (
        'name',
        'data_dir',
        'image_folder',
        'image_size',
        'download',
      )
    )
    if key not in prepared:
      prepared[key] = preparation.prepare_input(config_input)
      logging.info('Data set %s: prepared in %s.', key[0], prepared[key])
  return list(prepared.values())


def _failed(run: Run, error: Exception) -> dict[str, Any]:
  # One loss failing (a non-finite loss, a config it cannot take) must not
  # cost the other runs; the table shows the failure and a rerun retries.
  return {
    'task': run.task,
    'loss': run.loss,
    'seed': run.seed,
    'error': f'{type(error).__name__}: {error}',
  }


def _train_pending(
  config_json: str, pending: list[Run], jobs: int
) -> Iterator[tuple[Run, dict[str, Any]]]:
  if jobs == 1 or len(pending) <= 1:
    for run in pending:
      try:
        yield run, _train(config_json, run)
      except Exception as error:  # pylint: disable=broad-exception-caught
        yield run, _failed(run, error)
    return
  _worker_environment()
  # 'spawn': a fresh interpreter per worker; forking a process that has
  # started JAX's threads is unsafe.
  context = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
    futures = {pool.submit(_train, config_json, run): run for run in pending}
    for future in concurrent.futures.as_completed(futures):
      run = futures[future]
      try:
        yield run, future.result()
      except Exception as error:  # pylint: disable=broad-exception-caught
        yield run, _failed(run, error)


def use_compilation_cache(directory: str) -> None:
  """JAX's persistent compilation cache, for this process and its workers.

  The seeds of one (task, loss) compile identical programs; with the cache
  only the first seed pays for compilation (seconds per program on CPU).
  """
  settings = {
    'jax_compilation_cache_dir': directory,
    'jax_persistent_cache_min_compile_time_secs': 0,
    'jax_persistent_cache_min_entry_size_bytes': 0,
  }
  for name, value in settings.items():
    os.environ[name.upper()] = str(value)  # Read by spawned workers.
    jax.config.update(name, value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  use_compilation_cache(os.path.join(_WORKDIR.value, 'compilation_cache'))
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  config = _CONFIG.value
  start = time.perf_counter()
  records = run_all(config, _WORKDIR.value, jobs=_JOBS.value)
  paths = compare_report.write(
    config, records, workdir=_WORKDIR.value, jobs=_JOBS.value
  )
  logging.info(
    'Comparison done in %.1f min; wrote %s',
    (time.perf_counter() - start) / 60,
    ', '.join(paths),
  )


if __name__ == '__main__':
  app.run(main)
