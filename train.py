r"""Trains and evaluates discriminative features: the story of one run.

  python train.py --config=configs/default.py --workdir=runs/default

`train_and_evaluate(config, workdir)` is importable (tests, notebooks); the
absl entry at the bottom only parses flags. Rerunning with the same workdir
resumes from the newest checkpoint.
"""

import functools
import importlib.util
import json
import logging as logging_lib
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags, logging
from ml_collections import config_flags

import input_pipeline
import models
from models import heads
from training import (
  checkpointing,
  evaluation_loop,
  objectives,
  optimizers,
  tensorboard_writer,
)
from training import steps as steps_lib


def _steps_per_epoch(dataset) -> int:
  return max(dataset.info.num_train_examples // dataset.global_batch_size, 1)


def _build_model(config, objective, hparams, num_classes):
  attributes = {key: value for key, value in config.model.items()}
  for field in models.CONFIG_ONLY_FIELDS:  # init_from: read by the run.
    attributes.pop(field, None)
  backbone = models.get_model(
    attributes.pop('name'), bn_axis_name=steps_lib.AXIS_NAME, **attributes
  )
  if config.model.get('init_from'):
    if not isinstance(backbone, models.ResNet):
      raise ValueError(
        'config.model.init_from loads torchvision/timm ResNet weights into '
        'resnet18, resnet50 or resnet101; received config.model.name='
        f'{config.model.name!r}'
      )
    if config.input.get('normalization') is None:
      raise ValueError(
        'config.model.init_from is set: config.input.normalization must say '
        "how the weights expect their input, 'imagenet' for ImageNet weights "
        "(torchvision, timm) or 'none' for weights exported from a run of "
        'this project; received None'
      )
  elif config.input.get('normalization') == 'imagenet':
    # The retrieval protocol's configs fine-tune ImageNet weights: without
    # them a run would train from scratch and report incomparable numbers.
    raise ValueError(
      "config.input.normalization='imagenet' scales images for ImageNet "
      'weights, but config.model.init_from is not set: give them with '
      '--config.model.init_from=PATH (a safetensors file; README, '
      '"Pretrained backbones"), or set --config.input.normalization=none to '
      'train from scratch'
    )
  return heads.EmbeddingModel(
    backbone=backbone, head=objective.make_head(num_classes, hparams)
  )


def _validate_hparams(state, objective, hparams, info) -> None:
  """Runs the loss's argument checks abstractly, before any compilation."""
  images = jax.ShapeDtypeStruct((2, *info.image_shape), jnp.float32)
  if objective.multilabel:
    labels = jax.ShapeDtypeStruct((2, info.num_classes), jnp.int32)
  else:
    labels = jax.ShapeDtypeStruct((2,), jnp.int32)

  def loss(images, labels):
    embeddings, outputs = state.apply_fn(
      {
        'params': state.params,
        'batch_stats': state.batch_stats,
        heads.HEAD_STATE: state.head_state,
      },
      images,
      train=False,
    )
    inputs = objectives.LossInputs(embeddings, labels, outputs)
    if objective.reference == 'global_batch':
      # One device's view: the global batch is the local one.
      inputs = inputs._replace(
        global_batch=objectives.GlobalBatch(
          embeddings, labels, jnp.arange(2, dtype=jnp.int32)
        )
      )
    return objective.loss(inputs, hparams)

  jax.eval_shape(loss, images, labels)


class _LossGuard:
  """Keeps the losses of recent steps and stops at the first non-finite one.

  Reading a loss forces the host to wait for its step, so losses are read
  in batches (at logging, checkpointing and the end), and before every
  checkpoint: a state that went through a non-finite step is never saved.
  """

  def __init__(self, last_good_step: int):
    self._pending: list[tuple[int, Any]] = []
    self.last_good_step = last_good_step

  def add(self, step: int, metrics) -> None:
    self._pending.append((step, metrics['loss']))

  def check(self, checkpoint_step: int | None) -> float | None:
    if not self._pending:
      return None
    values = steps_lib.to_host([loss for _, loss in self._pending])
    for (step, _), value in zip(self._pending, values, strict=True):
      if not np.isfinite(value):
        where = (
          f'the newest checkpoint (step {checkpoint_step}) is intact'
          if checkpoint_step is not None
          else 'no checkpoint was written'
        )
        raise FloatingPointError(
          f'Non-finite loss ({value}) at step {step}; stopping. '
          f'Nothing after step {self.last_good_step} was saved and {where}.'
        )
    self.last_good_step = self._pending[-1][0]
    self._pending = []
    return float(values[-1])


def _refresh(state, objective, hparams, dataset, steps, config):
  """The objective's head state recomputed from the whole training split."""
  total = None
  for batch in dataset.eval_batches('train', config.eval_batch_size):
    statistics = steps.refresh_statistics(state, batch)
    total = (
      statistics if total is None else jax.tree.map(jnp.add, total, statistics)
    )
  head_state = objective.refresh.update(
    steps_lib.to_host(state.head_state), steps_lib.to_host(total), hparams
  )
  return steps.replicate(state.replace(head_state=head_state))


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> dict[str, Any]:
  """Trains the configured model and loss, evaluates, writes the results.

  Args:
    config: an experiment config (see configs/default.py).
    workdir: where checkpoints, TensorBoard events, results.json and plots
      go; a workdir holding a checkpoint is resumed.

  Raises:
    checkpointing.WorkdirInUseError: another live run uses `workdir`.

  Returns:
    The final evaluation metrics (also in ``workdir/results.json``), or
    ``{'preempted_at_step': step}`` when stopped by SIGTERM.
  """
  # One run per workdir: a second one would interleave checkpoints.
  with checkpointing.exclusive_workdir(workdir, purpose=' '.join(sys.argv)):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir):
  # Everything that can be wrong with the config is checked before the
  # first compilation.
  objective = objectives.get_objective(config.loss.name)
  hparams = objectives.resolve_hparams(objective, config.loss)
  dataset = input_pipeline.create_dataset(config.input, seed=config.seed)
  info = dataset.info
  if info.multilabel != objective.multilabel:
    raise ValueError(
      f'config.loss.name={config.loss.name!r} is a '
      f'{"multi" if objective.multilabel else "single"}-label loss but '
      f'config.input.name={config.input.name!r} is '
      f'{"multi" if info.multilabel else "single"}-label'
    )
  steps_per_epoch = _steps_per_epoch(dataset)
  num_train_steps = config.num_train_steps or (
    config.num_epochs * steps_per_epoch
  )
  eval_every = config.eval_every_steps or steps_per_epoch
  refresh_every = 0
  if objective.refresh is not None:
    refresh_every = objective.refresh.period(hparams, steps_per_epoch)
  hparams_described = objectives.describe_hparams(objective, hparams)
  for key, described in hparams_described.items():
    logging.info(
      'loss %s: %s = %r (%s)',
      objective.name,
      key,
      described['value'],
      described['source'],
    )

  model = _build_model(config, objective, hparams, info.num_classes)
  learning_rate_fn = optimizers.create_learning_rate_fn(
    config.optimizer, num_train_steps
  )
  tx = optimizers.create_optimizer(
    config.optimizer, learning_rate_fn, steps_per_epoch=steps_per_epoch
  )
  rng = jax.random.key(config.seed)
  state = steps_lib.create_train_state(
    rng, model, info.image_shape, tx, memory_size=config.memory.size
  )
  _validate_hparams(state, objective, hparams, info)

  os.makedirs(workdir, exist_ok=True)
  checkpointer = checkpointing.Checkpointer(
    workdir, config, max_to_keep=config.max_checkpoints_to_keep
  )
  restored = checkpointer.restore(state)
  if restored is not None:
    state = restored
    logging.info(
      'Resuming from the checkpoint at step %d in %s.',
      int(state.step),
      checkpointer.directory,
    )
  elif config.model.get('init_from'):
    # A new run (a resumed one restores its own weights): the backbone from
    # the file, the embedding and head freshly initialised.
    state = models.pretrained.load_backbone(state, config.model.init_from)
    logging.info(
      'Backbone initialised from %s (config.model.init_from).',
      config.model.init_from,
    )
  start_step = int(state.step)

  writer = tensorboard_writer.create_default_writer(
    workdir, just_logging=jax.process_index() > 0, asynchronous=True
  )
  if start_step == 0:
    writer.write_hparams(
      {k: str(v) for k, v in _flatten(config.to_dict()).items()}
    )
  steps = steps_lib.make_steps(
    objective,
    hparams,
    learning_rate_fn,
    info.num_classes,
    parallelism=config.parallelism,
    memory=config.memory,
  )
  state = steps.replicate(state)
  evaluate = functools.partial(
    evaluation_loop.evaluate,
    eval_step=steps.evaluate,
    dataset=dataset,
    objective=objective,
    hparams=hparams,
    config=config,
  )
  refresh = functools.partial(
    _refresh,
    objective=objective,
    hparams=hparams,
    dataset=dataset,
    steps=steps,
    config=config,
  )
  if refresh_every and start_step == 0:
    state = refresh(state)

  report_progress = tensorboard_writer.periodic_actions.ReportProgress(
    num_train_steps=num_train_steps, writer=writer
  )
  preemption = checkpointing.PreemptionNotice()
  preemption.install()
  guard = _LossGuard(last_good_step=start_step)
  batches = dataset.train_batches(start_step)
  last_checkpoint = checkpointer.latest_step()
  last_log_time, last_log_step = time.perf_counter(), start_step
  metrics = {}
  try:
    for step in range(start_step + 1, num_train_steps + 1):
      batch = next(batches)
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        state, metrics = steps.train(state, batch)
      guard.add(step, metrics)
      report_progress(step)
      if refresh_every and step % refresh_every == 0:
        state = refresh(state)
      is_last = step == num_train_steps
      if preemption.reached(step):
        guard.check(last_checkpoint)
        checkpointer.save(step, state)
        logging.warning(
          'Stopped by SIGTERM after step %d; checkpoint saved in %s. '
          'Rerun the same command to resume.',
          step,
          checkpointer.directory,
        )
        return {'preempted_at_step': step}
      if step % config.log_every_steps == 0 or is_last:
        loss = guard.check(last_checkpoint)
        now = time.perf_counter()
        steps_per_second = (step - last_log_step) / (now - last_log_time)
        last_log_time, last_log_step = now, step
        eta = (num_train_steps - step) / max(steps_per_second, 1e-9)
        logging.info(
          'step %d/%d | loss %.4f | %.1f steps/s | ETA %s',
          step,
          num_train_steps,
          loss,
          steps_per_second,
          _format_seconds(eta),
        )
        writer.write_scalars(
          step,
          {
            f'train/{k}': float(v)
            for k, v in steps_lib.to_host(metrics).items()
          },
        )
      if step % config.checkpoint_every_steps == 0 or is_last:
        guard.check(last_checkpoint)
        checkpointer.save(step, state)
        last_checkpoint = step
      if step % eval_every == 0 or is_last:
        with report_progress.timed('eval'):
          results = evaluate(state)
        writer.write_scalars(step, _scalars(results, prefix='test/'))
  finally:
    # Also on errors: pending asynchronous saves of good steps complete.
    preemption.uninstall()
    writer.flush()
    checkpointer.close()

  results = evaluate(state, final=True, workdir=workdir)
  results['step'] = int(state.step)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'results.json'), 'w') as file:
      json.dump(
        {
          'metrics': results,
          'config': config.to_dict(),
          'hyperparameters': hparams_described,
        },
        file,
        indent=2,
        default=str,
      )
  logging.info('Final evaluation: %s', evaluation_loop.summary(results))
  return results


def _scalars(results: dict[str, Any], prefix: str) -> dict[str, float]:
  return {
    prefix + key: float(value)
    for key, value in results.items()
    if isinstance(value, (int, float, np.floating))
  }


def _flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s'


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
  flags.DEFINE_bool(
    'traceback',
    False,
    'On a bad config, name, value or path, show the traceback as well as '
    'the one-line error.',
  )
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


class QuietLibraries(logging_lib.Filter):
  """Drops the INFO chatter of orbax, tfds and grain (every save, restore
  and file read); their warnings and errors still show."""

  _NOISY = ('/orbax/', '/tensorflow_datasets/', '/grain/', '/array_record/')

  def filter(self, record: logging_lib.LogRecord) -> bool:
    if record.levelno >= logging_lib.WARNING:
      return True
    return not any(part in record.pathname for part in self._NOISY)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(QuietLibraries())
  tfds.disable_progress_bar()
  if FLAGS.coordinator_address or FLAGS.distributed:
    # Before anything touches a device: the backend starts with the global
    # device list.
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
    )
  logging.info(
    'JAX process %d/%d, local devices: %s',
    jax.process_index(),
    jax.process_count(),
    jax.local_devices(),
  )
  report_user_errors(
    lambda: train_and_evaluate(FLAGS.config, FLAGS.workdir),
    traceback=FLAGS.traceback,
  )


# What a bad config, name, value, path or workdir raises: said in one line
# (the traceback with --traceback). Anything else is a bug and keeps its
# traceback.
USER_ERRORS = (
  ValueError,  # Includes checkpointing.IncompatibleCheckpointError.
  TypeError,
  OSError,  # Missing or unreadable files and folders.
  FloatingPointError,  # A non-finite loss.
  checkpointing.WorkdirInUseError,
)


def _one_line(error: BaseException) -> str:
  message = ' '.join(str(error).split()) or repr(error)
  program = os.path.basename(sys.argv[0])
  return (
    f'{program}: {type(error).__name__}: {message} (--traceback shows where)'
  )


def report_user_errors(
  run: Any, *, traceback: bool, errors: tuple[type, ...] = USER_ERRORS
) -> Any:
  """Calls `run`; an error of `errors` exits with one line (see above).

  Shared by the command lines (train.py, embed.py, search.py).
  """
  try:
    return run()
  except errors as error:
    if traceback:
      raise
    raise SystemExit(_one_line(error)) from None


def _load_config_file(argv: list[str]):
  """The config named by ``--config=PATH[:ARG]``, without overrides."""
  for arg in argv:
    if arg.startswith('--config='):
      path, _, config_arg = arg[len('--config=') :].partition(':')
      spec = importlib.util.spec_from_file_location('_config_file', path)
      module = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(module)
      if config_arg:
        return module.get_config(config_arg)
      return module.get_config()
  return None


def unknown_override_message(argv: list[str]) -> str | None:
  """Names the ``--config.a.b`` override whose field does not exist, with
  the fields that do (config_flags says only ``AttributeError: 'b'``)."""
  config = _load_config_file(argv)
  if config is None:
    return None
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.') :].partition('=')[0].split('.')
    node = config
    for depth, key in enumerate(path):
      if not hasattr(node, 'keys') or key not in node:
        parent = '.'.join(['config', *path[:depth]])
        valid = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else ''
        return (
          f'{arg.partition("=")[0]}: {parent} has no field {key!r}; its '
          f'fields: {valid}'
        )
      node = node[key]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; every error in one line (see `USER_ERRORS`)."""
  try:
    return FLAGS(argv)
  except flags.Error as error:
    if '--traceback' in argv:
      raise
    # config_flags puts the traceback of a config that fails to load into
    # the message; its last line is the error itself.
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1].strip('"\'') if lines else repr(error)
    raise SystemExit(
      f'train.py: {last} (--helpfull lists the flags; --traceback shows where)'
    ) from None
  except (AttributeError, KeyError):
    # config_flags says only "'gamma'" for a missing override field.
    message = unknown_override_message(argv)
    if message is None or '--traceback' in argv:
      raise
    raise SystemExit(f'train.py: {message}') from None
  except USER_ERRORS as error:
    # E.g. a config file that does not exist or does not load.
    if '--traceback' in argv:
      raise
    raise SystemExit(_one_line(error)) from None


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=parse_flags)
