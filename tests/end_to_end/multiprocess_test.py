"""2 processes x 2 devices on localhost == 1 process x 4 devices.

Each process runs under a timeout: a peer that never starts makes
jax.distributed abort the process (SIGABRT; initialize does not raise),
never hang the suite.
"""

import os
import subprocess
import sys

import jax
import numpy as np

import train
from configs import tiny
from tests import support

_TRAIN = os.path.join(support.ROOT, 'train.py')
_TINY = os.path.join(support.ROOT, 'configs', 'tiny.py')
_TIMEOUT = 300


def _command(workdir, data_dir, *extra):
  return [
    sys.executable,
    _TRAIN,
    f'--config={_TINY}:circle_pairwise',
    f'--workdir={workdir}',
    f'--config.input.data_dir={data_dir}',
    # Plain SGD keeps round-off differences round-off sized; Adam's
    # normalised update would blow those of near-zero gradients up to a
    # full step.
    '--config.optimizer.name=sgd',
    '--config.optimizer.learning_rate=0.1',
    *extra,
  ]


def _env(num_devices):
  return dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    # The fast-compiling fusion emitters of tests/conftest.py.
    XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices} '
    '--xla_cpu_use_fusion_emitters=false',
    JAX_DISABLE_MOST_OPTIMIZATIONS='1',
  )


def _params(workdir):
  _, state = support.latest_checkpoint(workdir)
  return state['params']


def test_two_processes_equal_one_process(tmp_path, digits_data_dir):
  data_dir = digits_data_dir
  # The 1-process x 4-device reference runs in this test process, which has
  # 4 devices and compiles without most optimisations (tests/conftest.py)
  # like the processes below; float64 is off,
  # as in train.py.
  config = tiny.get_config('circle_pairwise')
  config.input.data_dir = data_dir
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.1
  assert jax.local_device_count() == 4
  with jax.enable_x64(False):
    train.train_and_evaluate(config, str(tmp_path / 'single'))

  port = support.free_port()
  workdir = tmp_path / 'multi'
  processes = [
    subprocess.Popen(
      _command(
        workdir,
        data_dir,
        f'--coordinator_address=localhost:{port}',
        '--num_processes=2',
        f'--process_id={index}',
      ),
      env=_env(2),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )
    for index in range(2)
  ]
  logs = []
  try:
    for process in processes:
      _, stderr = process.communicate(timeout=_TIMEOUT)
      logs.append(stderr)
  finally:
    for process in processes:
      process.kill()
  for process, log in zip(processes, logs, strict=True):
    assert process.returncode == 0, log[-3000:]
  # Only process 0 reports progress and results, and writes them; the
  # other logs only problems.
  for line in (' | loss ', 'Final evaluation'):
    assert line in logs[0] and line not in logs[1], line
  assert os.path.exists(workdir / 'results.json')

  # Equal up to float32 round-off of differently ordered sums (Circle's
  # gamma amplifies it); a missing cross-process term is off by O(0.1).
  def assert_close(multi, single):
    error = np.linalg.norm(multi - single) / np.linalg.norm(single)
    assert error < 1e-4, error

  jax.tree.map(
    assert_close, _params(str(workdir)), _params(str(tmp_path / 'single'))
  )
