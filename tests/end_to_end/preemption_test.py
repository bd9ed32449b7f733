"""SIGTERM saves a checkpoint and exits cleanly; rerunning resumes."""

import os
import re
import signal
import subprocess
import sys
import time

from tests import support

_TRAIN = os.path.join(support.ROOT, 'train.py')
_TINY = os.path.join(support.ROOT, 'configs', 'tiny.py')


def _command(workdir, data_dir, num_steps):
  return [
    sys.executable,
    _TRAIN,
    f'--config={_TINY}',
    f'--workdir={workdir}',
    f'--config.input.data_dir={data_dir}',
    f'--config.num_train_steps={num_steps}',
    '--config.log_every_steps=1',
    '--config.checkpoint_every_steps=100000',
    '--config.eval_every_steps=100000',
    # A schedule that does not depend on the run's length keeps the two
    # runs' programs identical, so the rerun finds them in the test-wide
    # compilation cache.
    '--config.optimizer.schedule=constant',
  ]


def test_sigterm_saves_and_resume_continues(tmp_path, digits_data_dir):
  workdir, data_dir = tmp_path / 'work', digits_data_dir
  env = dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    # One device, and the fast-compiling fusion emitters of
    # tests/conftest.py.
    XLA_FLAGS='--xla_cpu_use_fusion_emitters=false',
    JAX_DISABLE_MOST_OPTIMIZATIONS='1',
  )
  process = subprocess.Popen(
    _command(workdir, data_dir, 100000),
    stderr=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    text=True,
    env=env,
    cwd=support.ROOT,
  )
  output = []
  deadline = time.monotonic() + 240
  try:
    for line in process.stderr:
      output.append(line)
      if re.search(r'step 3/100000', line):
        process.send_signal(signal.SIGTERM)
        break
      assert time.monotonic() < deadline, ''.join(output[-20:])
    _, rest = process.communicate(timeout=120)
  finally:
    process.kill()
  output.append(rest)
  log = ''.join(output)
  assert process.returncode == 0, log[-3000:]
  stopped = re.search(r'Stopped by SIGTERM after step (\d+)', log)
  assert stopped, log[-3000:]
  stop_step = int(stopped.group(1))
  assert stop_step >= 3
  resumed = subprocess.run(
    _command(workdir, data_dir, stop_step + 2),
    capture_output=True,
    text=True,
    env=env,
    cwd=support.ROOT,
    timeout=240,
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Resuming from the checkpoint at step {stop_step}' in resumed.stderr
  assert f'step {stop_step + 2}/{stop_step + 2}' in resumed.stderr
