"""A run's life: one live run per workdir, and stopping on preemption.

* `exclusive_workdir`: a second live run on the same workdir is refused at
  once (it would interleave checkpoints); a dead run's lock is taken over.
* `PreemptionNotice`: on SIGTERM every process of the run saves the same
  step and stops; rerunning the command resumes.
"""

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import jax
from absl import logging
from jax.experimental import multihost_utils

from common import locks


class WorkdirInUseError(locks.LockTimeout):
  """Another live run holds the workdir (its lock, not waited for)."""


def check_workdir(workdir: str) -> None:
  """Raises NotADirectoryError when `workdir` exists and is not a folder."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(
      f'--workdir must be a directory (or not exist yet); '
      f'{os.path.abspath(workdir)} is a file'
    )


@contextlib.contextmanager
def exclusive_workdir(workdir: str, purpose: str) -> Iterator[None]:
  """Holds the workdir for this run; a second live run is refused at once.

  Each process of a run locks ``workdir/.run-<process index>.lock``: a
  kernel lock (`common.locks`), which the operating system drops however
  the holder ends, so a dead run's lock is simply taken over. Its holder
  record names the run for the error a second run gets.

  Raises:
    NotADirectoryError: `workdir` exists and is not a directory.
    WorkdirInUseError: the lock is held; the message names the holder (pid,
      host, since when, its command line).
  """
  workdir = os.path.abspath(workdir)
  check_workdir(workdir)
  lock_path = os.path.join(workdir, f'.run-{jax.process_index()}.lock')
  held = contextlib.ExitStack()
  try:
    held.enter_context(
      locks.holding(
        lock_path, purpose=purpose, timeout=0, report_takeover=False
      )
    )
  except locks.LockTimeout:
    holder = locks.read_holder(lock_path)
    who = holder.describe() if holder else 'a run that left no record'
    raise WorkdirInUseError(
      f'{workdir} is in use by a live run: {who}. Wait for it to finish, '
      'stop it, or use another --workdir.'
    ) from None
  with held:
    yield


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

  Used as a context manager: the handler is installed on entry and the
  previous one restored on exit.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    self._collective = jax.process_count() > 1

  def __enter__(self) -> 'PreemptionNotice':
    if self._collective:
      return self
    if threading.current_thread() is not threading.main_thread():
      return self  # Signal handlers can only be set from the main thread.
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
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
