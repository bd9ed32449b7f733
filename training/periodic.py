"""What the training loop does every so many steps.

`Every` says when a periodic action is due (every N steps and at the last
one); `LossGuard` reads the losses of recent steps and stops at the first
non-finite one; `ReportProgress` writes the progress line and the training
metrics. A hook (``train.train_and_evaluate(..., hooks=...)``) is any
callable ``hook(step, state, steps)``: the loop calls it before the first
step (with the start step and the state the first step gets) and after
every step, which lets tests and benchmarks observe a real run.
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from absl import logging

from training import steps as steps_lib

Hook = Callable[[int, Any, steps_lib.ParallelSteps], None]


@dataclasses.dataclass(frozen=True)
class Every:
  """Due every `period` steps and at `last_step`; never when period <= 0."""

  period: int
  last_step: int

  def __call__(self, step: int) -> bool:
    if self.period <= 0:
      return False
    return step % self.period == 0 or step == self.last_step


class LossGuard:
  """Keeps the losses of recent steps and stops at the first non-finite one.

  Reading a loss makes the host wait for its step, so losses are read in
  batches (at logging and before every checkpoint): a state that went
  through a non-finite step is never saved.
  """

  def __init__(self, last_good_step: int, last_checkpoint: int | None):
    self._pending: list[tuple[int, Any]] = []
    self.last_good_step = last_good_step
    self.last_checkpoint = last_checkpoint

  def add(self, step: int, metrics) -> None:
    self._pending.append((step, metrics['loss']))

  def check(self, through: int | None = None) -> float | None:
    """Reads the pending losses of the steps up to `through` (all: None).

    Returns the newest loss read (None when none is pending); raises
    FloatingPointError at a non-finite one.
    """
    ready = [
      (step, loss)
      for step, loss in self._pending
      if through is None or step <= through
    ]
    if not ready:
      return None
    values = steps_lib.to_host([loss for _, loss in ready])
    for (step, _), value in zip(ready, values, strict=True):
      if not np.isfinite(value):
        where = (
          f'the newest checkpoint (step {self.last_checkpoint}) is intact'
          if self.last_checkpoint is not None
          else 'no checkpoint was written'
        )
        raise FloatingPointError(
          f'Non-finite loss ({value}) at step {step}; stopping. '
          f'Nothing after step {self.last_good_step} was saved and {where}.'
        )
    self.last_good_step = ready[-1][0]
    self._pending = self._pending[len(ready) :]
    return float(values[-1])


class ReportProgress:
  """The progress line (on process 0) and the training metrics.

  ``step 120/660 | loss 0.4521 | 25.3 steps/s | ETA 0m21s``: steps/s over
  the steps since the previous line, evaluations left out (`pause`); the
  first line of a run gives the time its first steps took instead, which
  includes compiling the step.

  Reading a step's values makes the host wait until the device has finished
  it, and a device that finishes the steps queued behind it meanwhile runs
  dry. So a log step is reported at the next one (the last step at once):
  by then its values are ready, and the steps dispatched since keep the
  device busy while they are read.
  """

  def __init__(
    self, num_train_steps: int, writer, guard: LossGuard, *, start_step: int
  ):
    self._num_train_steps = num_train_steps
    self._writer = writer
    self._guard = guard
    self._last_step = start_step
    self._last_time = time.perf_counter()
    self._paused = 0.0
    self._first = True
    self._due: list[tuple[int, Any]] = []

  def pause(self, seconds: float) -> None:
    """Leaves `seconds` (e.g. an evaluation) out of the next rate."""
    self._paused += seconds

  def __call__(self, step: int, metrics) -> None:
    """At a log step: reports the previous one (both at the last step)."""
    self._due.append((step, metrics))
    keep = 0 if step == self._num_train_steps else 1
    while len(self._due) > keep:
      self._report(*self._due.pop(0))

  def flush(self) -> None:
    """Reports the log steps not reported yet (before stopping early)."""
    while self._due:
      self._report(*self._due.pop(0))

  def _report(self, step: int, metrics) -> None:
    loss = self._guard.check(through=step)
    if loss is None:  # A checkpoint read it; the metrics hold it too.
      loss = float(steps_lib.to_host(metrics['loss']))
    now = time.perf_counter()
    elapsed = max(now - self._last_time - self._paused, 1e-9)
    steps_per_second = (step - self._last_step) / elapsed
    line = f'step {step}/{self._num_train_steps} | loss {loss:.4f} | '
    if self._first:
      line += (
        f'{step - self._last_step} steps in {format_seconds(elapsed)} '
        '(compilation included)'
      )
    else:
      eta = (self._num_train_steps - step) / max(steps_per_second, 1e-9)
      line += f'{steps_per_second:.1f} steps/s | ETA {format_seconds(eta)}'
    logging.info('%s', line)
    scalars = {
      f'train/{key}': float(value)
      for key, value in steps_lib.to_host(metrics).items()
    }
    if not self._first:
      scalars['train/steps_per_second'] = steps_per_second
    self._writer.write_scalars(step, scalars)
    self._last_step, self._last_time = step, now
    self._paused, self._first = 0.0, False


def format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s'
