"""The loop's periodic actions: when each is due and what the reports read."""

import numpy as np
import pytest

from training import periodic


class _Writer:
  def __init__(self):
    self.scalars = {}

  def write_scalars(self, step, scalars):
    self.scalars[step] = scalars


def _metrics(loss):
  return {'loss': np.float32(loss), 'accuracy': np.float32(loss / 10)}


def test_every_is_due_at_multiples_and_the_last_step():
  due = periodic.Every(4, last_step=10)
  assert [step for step in range(1, 11) if due(step)] == [4, 8, 10]
  assert not any(periodic.Every(0, last_step=10)(s) for s in range(1, 11))


def test_a_log_step_is_reported_at_the_next_one_and_the_last_at_once():
  writer, guard = _Writer(), periodic.LossGuard(0, None)
  progress = periodic.ReportProgress(9, writer, guard, start_step=0)
  reported_after = {}
  for step in range(1, 10):
    guard.add(step, _metrics(step))
    if step % 3 == 0:
      progress(step, _metrics(step))
    reported_after[step] = sorted(writer.scalars)
  # Step 3 waits for step 6; step 6 for step 9, which is the last.
  assert reported_after[3] == []
  assert reported_after[6] == [3]
  assert reported_after[9] == [3, 6, 9]
  assert writer.scalars[6]['train/loss'] == 6.0
  assert writer.scalars[6]['train/accuracy'] == pytest.approx(0.6)
  # The first report includes compilation: no rate.
  assert 'train/steps_per_second' not in writer.scalars[3]
  assert writer.scalars[9]['train/steps_per_second'] > 0
  # Every loss was read, up to the last step.
  assert guard.last_good_step == 9
  assert guard.check() is None


def test_flush_reports_what_is_due_before_stopping_early():
  writer, guard = _Writer(), periodic.LossGuard(0, None)
  progress = periodic.ReportProgress(100, writer, guard, start_step=0)
  for step in (1, 2):
    guard.add(step, _metrics(step))
  progress(2, _metrics(2))
  assert writer.scalars == {}
  progress.flush()
  assert sorted(writer.scalars) == [2]


def test_the_guard_reads_up_to_a_step_and_keeps_the_rest():
  guard = periodic.LossGuard(0, None)
  for step in (1, 2, 3):
    guard.add(step, _metrics(step))
  assert guard.check(through=2) == 2.0
  assert guard.last_good_step == 2
  assert guard.check() == 3.0
  assert guard.check() is None


def test_the_guard_stops_at_the_first_non_finite_loss_with_what_was_saved():
  guard = periodic.LossGuard(0, last_checkpoint=1)
  for step, loss in ((1, 1.0), (2, np.nan), (3, np.inf)):
    guard.add(step, _metrics(loss))
  with pytest.raises(FloatingPointError) as error:
    guard.check()
  assert str(error.value) == (
    'Non-finite loss (nan) at step 2; stopping. Nothing after step 0 was '
    'saved and the newest checkpoint (step 1) is intact.'
  )


def test_a_report_after_a_checkpoint_read_the_loss_takes_it_from_metrics():
  writer, guard = _Writer(), periodic.LossGuard(0, None)
  progress = periodic.ReportProgress(10, writer, guard, start_step=0)
  guard.add(1, _metrics(1.5))
  progress(1, _metrics(1.5))
  guard.add(2, _metrics(2.5))
  guard.check()  # A checkpoint at step 2 reads every pending loss.
  progress(2, _metrics(2.5))
  assert writer.scalars[1]['train/loss'] == 1.5
