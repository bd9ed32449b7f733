"""File locks that name their holder.

``holding(lock_path, ...)`` takes an exclusive `filelock.FileLock` on
``lock_path`` and, while holding it, keeps a holder record in
``lock_path + '.holder'``: the holder's pid, host, start time and what it
does. Waiters read that record to say whom they wait for, and to name the
holder when they give up after ``timeout`` seconds (`LockTimeout`; a
timeout of 0 gives up at once). Users: the one-time preparation of a data
set (`input_pipeline.preparation`) and the one live run per workdir
(`training.lifecycle`).

Staleness: the lock is the kernel's ``flock`` on the lock file, which the
operating system drops however its holder ends (SIGKILL, a crash, a lost
NFS client after its lease), so a dead holder's lock is taken over at once;
the holder record it leaves behind is only reported (``previous_holder``).
Where the file system has no ``flock``, filelock falls back to a marker
file holding pid and host, taken over when its pid is dead on this host; a
marker of another host is then waited on until the timeout, whose error
names it so that it can be deleted by hand.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import time
from collections.abc import Iterator

import filelock
from absl import logging

# How often a waiter tries the lock, and says whom it waits for.
_POLL_SECONDS = 0.1
_REPORT_EVERY_SECONDS = 60.0
HOLDER_SUFFIX = '.holder'


class LockTimeout(TimeoutError):
  """The lock stayed held by another process beyond the timeout."""


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds (or held) a lock.

  Attributes:
    pid: the holder's process id.
    host: the holder's host name.
    since: when it took the lock (seconds since the epoch).
    purpose: what it does while holding the lock.
  """

  pid: int
  host: str
  since: float
  purpose: str

  @classmethod
  def this_process(cls, purpose: str) -> 'Holder':
    return cls(os.getpid(), socket.gethostname(), time.time(), purpose)

  def is_alive(self) -> bool | None:
    """Whether the holder still runs; None when it runs on another host."""
    if self.host != socket.gethostname():
      return None
    try:
      os.kill(self.pid, 0)
    except ProcessLookupError:
      return False
    except PermissionError:  # Alive, owned by another user.
      return True
    return True

  def describe(self) -> str:
    alive = self.is_alive()
    state = {True: 'running', False: 'no longer running', None: 'not probed'}
    since = datetime.datetime.fromtimestamp(self.since).isoformat(
      sep=' ', timespec='seconds'
    )
    return (
      f'pid {self.pid} on host {self.host} ({state[alive]}), holding it '
      f'since {since} ({time.time() - self.since:.0f} s) for: {self.purpose}'
    )


def read_holder(lock_path: str) -> Holder | None:
  """The holder record beside `lock_path`, or None (absent or unreadable)."""
  try:
    with open(lock_path + HOLDER_SUFFIX) as file:
      fields = json.load(file)
    return Holder(
      pid=int(fields['pid']),
      host=str(fields['host']),
      since=float(fields['since']),
      purpose=str(fields['purpose']),
    )
  except (OSError, ValueError, KeyError, TypeError):
    return None


def write_holder(lock_path: str, holder: Holder) -> None:
  """Records `holder` beside `lock_path` (while holding the lock)."""
  # Written aside and renamed, so that readers see a whole record or none.
  path = lock_path + HOLDER_SUFFIX
  partial = f'{path}.{holder.host}.{holder.pid}.tmp'
  with open(partial, 'w') as file:
    json.dump(dataclasses.asdict(holder), file)
  os.replace(partial, path)


@dataclasses.dataclass(frozen=True)
class Held:
  """A lock this process holds.

  Attributes:
    path: the lock file.
    previous_holder: the record a holder left when it ended without
      releasing the lock (killed half-way), or None after a clean release.
  """

  path: str
  previous_holder: Holder | None


def _timeout_error(lock_path: str, waited: float, advice: str) -> LockTimeout:
  holder = read_holder(lock_path)
  who = holder.describe() if holder else 'a holder that left no record'
  return LockTimeout(
    f'Gave up after {waited:.0f} s waiting for the lock {lock_path}, held by '
    f'{who}. If that process is stuck, end it; if it is gone (e.g. its host '
    f'crashed on a file system without flock), delete {lock_path} and '
    f'{lock_path + HOLDER_SUFFIX}. {advice}'.rstrip()
  )


@contextlib.contextmanager
def holding(
  lock_path: str,
  *,
  purpose: str,
  timeout: float,
  timeout_advice: str = '',
  report_takeover: bool = True,
) -> Iterator[Held]:
  """Holds the exclusive lock `lock_path`, recording this process as holder.

  Args:
    lock_path: the lock file (created, with its directory, if missing).
    purpose: what the holder does, for the record others read.
    timeout: seconds to wait for another holder before giving up; 0: give
      up at once if the lock is held.
    timeout_advice: a sentence the timeout error ends with (e.g. how to
      wait longer).
    report_takeover: log a warning when a dead holder's record is found.

  Yields:
    The held lock.

  Raises:
    LockTimeout: the lock stayed held for `timeout` seconds; the message
      names the lock, its holder (pid, host, since when, what for) and
      whether that holder still runs.
  """
  os.makedirs(os.path.dirname(lock_path) or '.', exist_ok=True)
  lock = filelock.FileLock(lock_path)
  _acquire(lock, lock_path, timeout, timeout_advice)
  try:
    previous = read_holder(lock_path)
    if previous is not None and report_takeover:
      logging.warning(
        'Took over the lock %s from %s, which ended without releasing it; '
        'its partial output is discarded.',
        lock_path,
        previous.describe(),
      )
    write_holder(lock_path, Holder.this_process(purpose))
    yield Held(path=lock_path, previous_holder=previous)
  finally:
    # Also after an error: this process did end its work and releases the
    # lock; only a killed holder leaves its record behind.
    with contextlib.suppress(FileNotFoundError):
      os.remove(lock_path + HOLDER_SUFFIX)
    lock.release()


def _acquire(
  lock: filelock.FileLock, lock_path: str, timeout: float, advice: str
) -> None:
  """Acquires `lock`, logging whom it waits for, at most `timeout` s."""
  start = time.monotonic()
  try:
    lock.acquire(timeout=0)
    return
  except filelock.Timeout:
    pass
  while True:
    waited = time.monotonic() - start
    if waited >= timeout:
      raise _timeout_error(lock_path, waited, advice)
    holder = read_holder(lock_path)
    logging.info(
      'Waiting for the lock %s (%.0f s so far), held by %s.',
      lock_path,
      waited,
      holder.describe() if holder else 'a holder that left no record yet',
    )
    try:
      lock.acquire(
        timeout=min(timeout - waited, _REPORT_EVERY_SECONDS),
        poll_interval=_POLL_SECONDS,
      )
      return
    except filelock.Timeout:
      pass
