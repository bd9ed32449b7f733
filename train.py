r"""Trains and evaluates discriminative features: the story of one run.

  python train.py --config=configs/default.py --workdir=runs/default

`train_and_evaluate(config, workdir)` is importable (tests, notebooks); the
absl entry at the bottom only parses flags. Rerunning with the same workdir
resumes from the newest checkpoint.
"""

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

import input_pipeline
from common import cli
from training import lifecycle, objectives

if TYPE_CHECKING:
  from training import experiment as experiment_lib
  from training import periodic


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  experiment: 'experiment_lib.Experiment | None' = None,
  hooks: 'Sequence[periodic.Hook]' = (),
) -> dict[str, Any]:
  """Trains the configured model and loss, evaluates, writes the results.

  Args:
    config: an experiment config (see configs/default.py).
    workdir: where checkpoints, TensorBoard events, results.json and plots
      go; a workdir holding a checkpoint is resumed.
    experiment: the run built from `config` (`experiment.build`), if the
      caller built it already (e.g. to observe its data set).
    hooks: callables ``hook(step, state, steps)``, called before the first
      step and after every step (see `training.periodic`).

  Raises:
    lifecycle.WorkdirInUseError: another live run uses `workdir`.

  Returns:
    The final evaluation metrics (also in ``workdir/results.json``), or
    ``{'preempted_at_step': step}`` when stopped by SIGTERM.
  """
  # Loaded here rather than with this file, so that `main` refuses a
  # mistake before paying for them (grain, orbax, the steps: about 0.5 s).
  from training import (  # pylint: disable=g-import-not-at-top
    checkpointing,
    evaluation_loop,
    periodic,
    tensorboard_writer,
  )
  from training import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  # Every setting is checked, and the data opened, before the workdir is
  # touched or anything is compiled.
  lifecycle.check_workdir(workdir)
  run = experiment or experiment_lib.build(config)
  _log_plan(run)
  with lifecycle.exclusive_workdir(workdir, purpose=' '.join(sys.argv)):
    checkpointer = checkpointing.Checkpointer(
      workdir, config, max_to_keep=config.max_checkpoints_to_keep
    )
    state = checkpointer.restore(run.abstract_state())
    if state is None:
      state = run.initial_state()
    start_step, last = int(state.step), run.num_train_steps
    _log_start(start_step, last, checkpointer.directory)
    writer = tensorboard_writer.MetricWriter(
      workdir, write_events=jax.process_index() == 0
    )
    if start_step == 0:
      writer.write_hparams(_flatten(config.to_dict()))
    steps = run.make_steps()
    state = steps.replicate(state)
    if run.refresh_every_steps and start_step == 0:
      state = run.refresh(state, steps)
    evaluate = evaluation_loop.evaluator(run, steps.evaluate)
    log_due = periodic.Every(config.log_every_steps, last)
    checkpoint_due = periodic.Every(config.checkpoint_every_steps, last)
    eval_due = periodic.Every(run.eval_every_steps, last)
    # Refreshes keep their period; the final evaluation sees the last one.
    refresh_due = periodic.Every(run.refresh_every_steps, last_step=0)
    memory_from = config.memory.warmup_steps + 1 if config.memory.size else 0
    guard = periodic.LossGuard(start_step, checkpointer.latest_step())
    progress = periodic.ReportProgress(
      last, writer, guard, start_step=start_step
    )
    batches = run.dataset.train_batches(start_step)
    for hook in hooks:
      hook(start_step, state, steps)
    # On errors too, pending asynchronous saves of good steps complete.
    with (
      lifecycle.PreemptionNotice() as preemption,
      contextlib.closing(checkpointer),
      contextlib.closing(writer),
    ):
      for step in range(start_step + 1, last + 1):
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          state, metrics = steps.train(state, next(batches))
        guard.add(step, metrics)
        for hook in hooks:
          hook(step, state, steps)
        if step == memory_from and step > 1:
          logging.info('Step %d: the cross-batch memory term starts.', step)
        if refresh_due(step):
          state = run.refresh(state, steps)
        if preemption.reached(step):
          progress.flush()
          guard.check()
          checkpointer.save(step, state)
          logging.warning(
            'Stopped by SIGTERM after step %d; saved. Rerun to resume.', step
          )
          return {'preempted_at_step': step}
        if log_due(step):
          progress(step, metrics)
        if checkpoint_due(step):
          guard.check()
          checkpointer.save(step, state)
          guard.last_checkpoint = step
        if eval_due(step) and step < last:  # The last one is the final.
          jax.block_until_ready(state)  # The steps' time is not the eval's.
          start = time.perf_counter()
          writer.write_scalars(step, _scalars(evaluate(state), 'test/'))
          progress.pause(time.perf_counter() - start)
      results = evaluate(state, final=True, workdir=workdir)
      results['step'] = int(state.step)
      writer.write_scalars(results['step'], _scalars(results, 'test/'))
    _write_results(
      os.path.join(workdir, experiment_lib.RESULTS_FILE), run, results
    )
  logging.info('Final evaluation: %s', evaluation_loop.summary(results))
  return results


def _log_plan(run: 'experiment_lib.Experiment') -> None:
  described = run.described_hparams()
  logging.info(
    'Training %s(%s) on %s: %d steps (%d per epoch), global batch %d.',
    run.objective.name,
    ', '.join(f'{key}={d["value"]!r}' for key, d in described.items()),
    run.dataset.info.name,
    run.num_train_steps,
    run.steps_per_epoch,
    run.dataset.global_batch_size,
  )
  for key, value in described.items():  # Also in results.json.
    logging.debug('loss %s: %s = %r (%s)', key, value['value'], value['source'])


def _log_start(start_step: int, num_train_steps: int, directory: str) -> None:
  if start_step >= num_train_steps:
    logging.info(
      'The run in %s finished (step %d of %d): evaluating it only.',
      directory,
      start_step,
      num_train_steps,
    )
  elif start_step:
    logging.info(
      'Resuming from the checkpoint at step %d in %s.', start_step, directory
    )


def _write_results(path, run, results) -> None:
  if jax.process_index() != 0:
    return
  with open(path, 'w') as file:
    json.dump(
      {
        'metrics': results,
        'config': run.config.to_dict(),
        'hyperparameters': run.described_hparams(),
      },
      file,
      indent=2,
      default=str,
    )


def _scalars(results: dict[str, Any], prefix: str) -> dict[str, float]:
  return {
    prefix + key: float(value)
    for key, value in results.items()
    if isinstance(value, (int, float, np.floating))
  }


def _flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, str]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = str(value)
  return flat


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line of `python train.py`.

  Defined on demand rather than at import, so that other programs (the
  loss comparison, notebooks) can import `train_and_evaluate` next to
  flags of their own with the same names.
  """
  config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file.', lock_config=True
  )
  flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, logs, results and plots.'
  )
  cli.define_traceback_flag()
  flags.DEFINE_string(
    'coordinator_address',
    None,
    'host:port of process 0, to join a multi-process run (several GPU hosts, '
    'or several processes on one machine). Leave unset on TPU pods and under '
    'SLURM with --distributed, where JAX finds its peers itself.',
  )
  flags.DEFINE_integer(
    'num_processes', None, 'Number of processes of a multi-process run.'
  )
  flags.DEFINE_integer(
    'process_id', None, "This process's index in a multi-process run."
  )
  flags.DEFINE_bool(
    'distributed',
    False,
    'Join a multi-process run with the cluster settings JAX detects (TPU pod '
    'slices, SLURM); implied by --coordinator_address.',
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  # Before the accelerator starts (seconds on a GPU) and the training
  # modules load: a mistake is reported at once, by every process.
  cli.report_user_errors(
    lambda: _check_before_training(FLAGS.config, FLAGS.workdir),
    traceback=FLAGS.traceback,
  )
  if FLAGS.coordinator_address or FLAGS.distributed:
    # Before anything touches a device: the backend starts with the global
    # device list.
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
    )
  if jax.process_index() > 0:
    # Process 0 reports progress and results; the others only problems.
    logging.set_verbosity(logging.WARNING)
  logging.debug(
    'JAX process %d/%d, local devices: %s',
    jax.process_index(),
    jax.process_count(),
    jax.local_devices(),
  )
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tfds.disable_progress_bar()
  cli.report_user_errors(
    lambda: train_and_evaluate(FLAGS.config, FLAGS.workdir),
    traceback=FLAGS.traceback,
  )


def _check_before_training(config: ml_collections.ConfigDict, workdir: str):
  """The mistakes refused before the modules only training needs load.

  A bad loss or hyperparameter, a missing data set or a workdir that is a
  file; `experiment.build` checks everything else (and these again) before
  anything compiles.
  """
  lifecycle.check_workdir(workdir)
  objectives.resolve_hparams(
    objectives.get_objective(config.loss.name), config.loss
  )
  input_pipeline.check_input(config.input)


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=cli.parse_flags)
