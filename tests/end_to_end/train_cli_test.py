"""train.py's command line: its errors, and one live run per workdir."""

import os
import subprocess
import sys

import pytest

import train
from configs import tiny
from tests import support
from training import lifecycle, objectives

_ENV = dict(
  os.environ,
  JAX_PLATFORMS='cpu',
  XLA_FLAGS='--xla_cpu_use_fusion_emitters=false',
)


# train.py run as `python train.py`, which then prints (to stdout) which
# of the modules only training needs it had imported when it ended: a
# mistake is to be reported before them (about 0.5 s of imports).
_TRAINING_ONLY = ('grain', 'orbax.checkpoint', 'training.steps')
_TRAIN_PY = f"""
import runpy, sys
sys.argv = ['train.py', *sys.argv[1:]]
try:
  runpy.run_path('train.py', run_name='__main__')
finally:
  print(sorted(name for name in sys.modules if name in {_TRAINING_ONLY}))
"""


def _error_lines(*argv, workdir):
  """(exit code, stderr's lines but absl's log lines, training modules
  imported)."""
  result = subprocess.run(
    [sys.executable, '-c', _TRAIN_PY, *argv, f'--workdir={workdir}'],
    capture_output=True,
    text=True,
    env=_ENV,
    cwd=support.ROOT,
    timeout=240,
  )
  # absl's log lines start with their level letter and a date (I1201 ...).
  lines = [
    line
    for line in result.stderr.splitlines()
    if line.strip() and not (line[:1] in 'IWE' and line[1:5].isdigit())
  ]
  return result.returncode, lines, result.stdout.strip()


@pytest.mark.parametrize(
  'argv,expected',
  [
    # A bad name in the config argument (while the flags are parsed).
    (
      ('--config=configs/default.py:nope',),
      "train.py: ValueError: Unknown loss name 'nope' (config.loss.name); "
      f'valid names: {", ".join(objectives.names())} (--helpfull',
    ),
    # A data set that is not prepared (while the run starts).
    (
      ('--config=configs/mnist.py', '--config.input.data_dir={tmp}'),
      "train.py: DataNotPreparedError: Data set 'mnist'",
    ),
  ],
  ids=['unknown_loss', 'data_not_prepared'],
)
def test_bad_input_is_one_line_and_non_zero(argv, expected, tmp_path):
  argv = [arg.format(tmp=tmp_path / 'tfds') for arg in argv]
  returncode, lines, training_modules = _error_lines(
    *argv, workdir=tmp_path / 'work'
  )
  assert returncode != 0
  assert len(lines) == 1, lines
  assert lines[0].startswith(expected), lines
  assert '--traceback shows where' in lines[0]
  assert training_modules == '[]'
  assert not (tmp_path / 'work').exists()


# The same error as objectives_test's
# test_renaming_the_loss_is_refused_as_the_command_line_builds_it, as the
# user sees it.
_RENAMED_SECTION_LINE = (
  "train.py: ValueError: config.loss was built for the loss 'cosface', not "
  "for 'arcface' (config.loss.name): changing config.loss.name alone keeps "
  "cosface's section (scale=64.0, margin=0.35; arcface's defaults: "
  'scale=64.0, margin=0.5). Pick the loss with the config argument (e.g. '
  '--config=configs/digits.py:arcface) so that config.loss holds exactly its '
  'hyperparameters. (--traceback shows where)'
)


def test_train_py_refuses_the_renamed_loss_in_one_line(tmp_path):
  returncode, lines, _ = _error_lines(
    '--config=configs/digits.py:cosface',
    '--config.loss.name=arcface',
    workdir=tmp_path / 'work',
  )
  assert returncode != 0
  assert lines == [_RENAMED_SECTION_LINE]
  assert not os.path.exists(tmp_path / 'work' / 'checkpoints')


def test_a_wrong_type_override_is_one_line_with_its_value(tmp_path):
  returncode, lines, _ = _error_lines(
    '--config=configs/default.py',
    '--config.num_epochs=abc',
    workdir=tmp_path / 'work',
  )
  assert returncode != 0
  assert lines == [
    'train.py: flag --config.num_epochs=abc: invalid literal for int() with '
    "base 10: 'abc' (--helpfull lists the flags; --traceback shows where)"
  ]


def test_a_missing_config_file_is_named_and_nothing_is_created(tmp_path):
  returncode, lines, _ = _error_lines(
    '--config=configs/nope.py', workdir=tmp_path / 'work'
  )
  assert returncode != 0
  assert lines == [
    "train.py: --config: the config file 'configs/nope.py' does not exist"
  ]
  assert not (tmp_path / 'work').exists()


def test_a_workdir_that_is_a_file_is_refused_before_any_data(tmp_path):
  workdir = tmp_path / 'file'
  workdir.write_text('')
  config = tiny.get_config()
  config.input.data_dir = str(tmp_path / 'tfds')
  with pytest.raises(NotADirectoryError) as error:
    train.train_and_evaluate(config, str(workdir))
  assert str(error.value) == (
    f'--workdir must be a directory (or not exist yet); {workdir} is a file'
  )
  assert not (tmp_path / 'tfds').exists()


def test_traceback_flag_shows_the_traceback(tmp_path):
  returncode, lines, _ = _error_lines(
    '--config=configs/default.py:nope', '--traceback', workdir=tmp_path
  )
  assert returncode != 0
  assert 'Traceback (most recent call last):' in lines


_HOLD = """
import sys, time
from training import lifecycle
with lifecycle.exclusive_workdir(sys.argv[1], purpose='the first run'):
  print('held', flush=True)
  time.sleep(600)
"""


def test_second_run_on_a_live_workdir_is_refused(tmp_path):
  workdir = tmp_path / 'work'
  first = subprocess.Popen(
    [sys.executable, '-c', _HOLD, str(workdir)],
    stdout=subprocess.PIPE,
    text=True,
    env=_ENV,
    cwd=support.ROOT,
  )
  try:
    assert first.stdout.readline().strip() == 'held'
    config = tiny.get_config()
    config.input.data_dir = str(tmp_path / 'tfds')
    with pytest.raises(
      lifecycle.WorkdirInUseError,
      match=rf'in use by a live run: pid {first.pid} on host .*\(running\).*'
      'the first run',
    ):
      train.train_and_evaluate(config, str(workdir))
    assert not os.path.exists(workdir / 'checkpoints')
  finally:
    first.kill()
    first.wait()
  # The holder died without releasing: its lock is taken over at once, and
  # released again on exit.
  for purpose in ('second run', 'third run'):
    with lifecycle.exclusive_workdir(str(workdir), purpose=purpose):
      pass
