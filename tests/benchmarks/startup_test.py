"""benchmarks/startup.py's timer, on a command with known delays."""

import sys

from benchmarks import startup


def test_time_command_times_the_first_line_and_the_exit():
  first, end, code, line = startup.time_command(
    [
      sys.executable,
      '-c',
      'import sys, time\n'
      'time.sleep(0.4)\n'
      'print("first", file=sys.stderr, flush=True)\n'
      'time.sleep(0.4)\n'
      'print("second")\n'
      'sys.exit(3)',
    ]
  )
  assert 0.4 <= first < end
  assert end - first >= 0.4
  assert (code, line) == (3, 'first')


def test_a_silent_command_reports_its_exit_as_its_first_line():
  first, end, code, line = startup.time_command([sys.executable, '-c', ''])
  assert (first, code, line) == (end, 0, '')


def test_every_case_runs_train_py_with_a_workdir_or_help():
  for name, argv in startup.cases('/data', '--workdir=/work').items():
    assert argv == ['--help'] or '--workdir=/work' in argv, name
