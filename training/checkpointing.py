"""Orbax checkpoints that resume exactly and never overwrite foreign work.

Each checkpoint holds the train state and the config fields that determine
the state's meaning (model, loss, data set...). A run pointed at a workdir
whose checkpoint came from an incompatible config stops before it writes
anything. Only orbax's array storage and JSON are read back: nothing is
unpickled or executed.
"""

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import filelock
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from input_pipeline import locks
from training import steps as steps_lib

# Config fields that change what a checkpoint's arrays mean; everything else
# (step counts, logging, evaluation) may differ between a run and its resume.
_IDENTITY_FIELDS = (
  'model',
  'loss.name',
  'input.name',
  'input.class_disjoint',
  'input.image_size',
  'input.normalization',
  'optimizer.name',
)
# Parts of the fields above that are not identity: where a new run's
# weights came from (a resumed run restores its own; the file may be gone).
_NOT_IDENTITY = {'model': ('init_from',)}
# Values that mean the same as None, the value of checkpoints written
# before the field existed: pixels in [0, 1].
_SAME_AS_NONE = {'input.normalization': ('none',)}


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> Any:
  value = config
  for key in dotted.split('.'):
    value = value.get(key) if hasattr(value, 'get') else None
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
    for key in _NOT_IDENTITY.get(dotted, ()):
      value.pop(key, None)
  if value in _SAME_AS_NONE.get(dotted, ()):
    return None
  return value


def config_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields of `config` a checkpoint must agree with, JSON-ready."""
  return json.loads(
    json.dumps(
      {field: _lookup(config, field) for field in _IDENTITY_FIELDS},
      default=str,
    )
  )


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint of a different experiment."""


class Checkpointer:
  """Saves and restores the train state under ``workdir/checkpoints``.

  Saves are asynchronous (the step loop goes on while orbax writes) and keep
  the newest `max_to_keep`.
  """

  def __init__(
    self,
    workdir: str,
    config: ml_collections.ConfigDict,
    *,
    max_to_keep: int,
  ):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    self._identity = config_identity(config)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=True,
        create=True,
      ),
      item_names=('state', 'config'),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def check_compatible(self) -> None:
    """Raises IncompatibleCheckpointError on a foreign checkpoint."""
    step = self.latest_step()
    if step is None:
      return
    stored = self._manager.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
    )['config']
    differences = [
      f'{field}: checkpoint {stored.get(field)!r}, this run '
      f'{self._identity[field]!r}'
      for field in self._identity
      if stored.get(field) != self._identity[field]
    ]
    if differences:
      raise IncompatibleCheckpointError(
        f'{self.directory} holds a checkpoint (step {step}) of an '
        'incompatible config; refusing to overwrite it. Differences: '
        + '; '.join(differences)
        + '. Use another --workdir, or delete that directory to start '
        'over.'
      )

  def restore(self, abstract_state: Any) -> Any | None:
    """The newest checkpoint restored into `abstract_state`'s structure."""
    step = self.latest_step()
    if step is None:
      return None
    self.check_compatible()
    try:
      restored = self._manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
      )
    except (ValueError, KeyError) as error:
      raise IncompatibleCheckpointError(
        f'{self.directory}: the checkpoint at step {step} does not match '
        f"this run's model state ({error}). Use another --workdir."
      ) from error
    return restored['state']

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save of `state` at `step`.

    Multi-process runs must pass host-global or numpy arrays (orbax refuses
    host-local device arrays there); the state is fetched to the host first.
    """
    host_state = steps_lib.to_host(state)
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(host_state),
        config=ocp.args.JsonSave(self._identity),
      ),
      force=True,
    )

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


class WorkdirInUseError(RuntimeError):
  """Another live run holds the workdir."""


@contextlib.contextmanager
def exclusive_workdir(workdir: str, purpose: str) -> Iterator[None]:
  """Holds the workdir for this run; a second live run is refused at once.

  Each process of a run locks ``workdir/.run-<process index>.lock``: a
  kernel lock, which the operating system drops however the holder ends, so
  a dead run's lock is simply taken over. Beside it a holder record names
  the run for the error a second run gets.

  Raises:
    WorkdirInUseError: the lock is held; the message names the holder (pid,
      host, since when, its command line).
  """
  lock_path = os.path.join(
    os.path.abspath(workdir), f'.run-{jax.process_index()}.lock'
  )
  os.makedirs(workdir, exist_ok=True)
  lock = filelock.FileLock(lock_path)
  try:
    lock.acquire(timeout=0)
  except filelock.Timeout:
    holder = locks.read_holder(lock_path)
    who = holder.describe() if holder else 'a run that left no record'
    raise WorkdirInUseError(
      f'{os.path.abspath(workdir)} is in use by a live run: {who}. Wait for '
      'it to finish, stop it, or use another --workdir.'
    ) from None
  try:
    locks.write_holder(lock_path, locks.Holder.this_process(purpose))
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(lock_path + locks.HOLDER_SUFFIX)
    lock.release()


class PreemptionNotice:
  """Tells the training loop at which step to save and stop on preemption.

  One process: SIGTERM sets a flag, read at the next step. Several
  processes: every process must save the same step, whichever of them got
  the signal (a scheduler may signal one or all). JAX's preemption sync
  service does that: it listens for SIGTERM in every process, propagates a
  notice to all, and `reached_preemption_sync_point(step)` turns True at the
  same step everywhere (one past the largest step any process had reached).
  A Python SIGTERM handler would replace the service's, so none is
  installed then.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    self._collective = jax.process_count() > 1

  def install(self) -> None:
    if self._collective:
      return
    if threading.current_thread() is not threading.main_thread():
      return  # Signal handlers can only be set from the main thread.
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def uninstall(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _handle(self, signum, frame):
    del frame
    logging.warning('Received signal %d: saving and stopping.', signum)
    self._event.set()

  def reached(self, step: int) -> bool:
    """Whether to save `step` and stop; called once at every step."""
    if self._collective:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._event.is_set()
