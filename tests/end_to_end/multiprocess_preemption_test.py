"""A SIGTERM to one process of a 2-process run: both save the same step.

2 processes x 2 devices on localhost; process 1 alone gets the signal, as
when a scheduler preempts one host. Both must stop at the same step (JAX's
preemption sync), and resuming from it must reach the parameters of an
uninterrupted 1-process x 4-device run.
"""

import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from tests import support

_TRAIN = os.path.join(support.ROOT, 'train.py')
_TINY = os.path.join(support.ROOT, 'configs', 'tiny.py')
_TIMEOUT = 300


def _command(workdir, data_dir, num_steps, *extra):
  return [
    sys.executable,
    _TRAIN,
    f'--config={_TINY}:softmax',
    f'--workdir={workdir}',
    f'--config.input.data_dir={data_dir}',
    f'--config.num_train_steps={num_steps}',
    # The programs must not depend on the run's length, so that the two
    # legs and the straight run train the same function.
    '--config.optimizer.schedule=constant',
    '--config.optimizer.name=sgd',
    # Small enough to stay finite for hundreds of steps: with a warm
    # compilation cache the processes run hundreds of steps a second, and
    # the stop comes some steps after the signal (SGD at 0.1 reaches a
    # non-finite loss at step 25).
    '--config.optimizer.learning_rate=0.02',
    '--config.log_every_steps=1',
    '--config.checkpoint_every_steps=100000',
    '--config.eval_every_steps=100000',
    *extra,
  ]


def _env(num_devices):
  return dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    # One CPU device per process as several; the suite's faster-compiling
    # fusion emitters (tests/conftest.py).
    XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices} '
    '--xla_cpu_use_fusion_emitters=false',
    JAX_DISABLE_MOST_OPTIMIZATIONS='1',
  )


def _start(workdir, data_dir, num_steps, port, log_dir):
  processes, logs = [], []
  for index in range(2):
    log = open(os.path.join(log_dir, f'process_{index}.log'), 'w+')  # noqa: SIM115
    logs.append(log)
    processes.append(
      subprocess.Popen(
        _command(
          workdir,
          data_dir,
          num_steps,
          f'--coordinator_address=localhost:{port}',
          '--num_processes=2',
          f'--process_id={index}',
        ),
        env=_env(2),
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
      )
    )
  return processes, logs


def _read(log):
  log.flush()
  with open(log.name) as file:
    return file.read()


def _finish(processes, logs):
  try:
    for process in processes:
      process.wait(timeout=_TIMEOUT)
  finally:
    for process in processes:
      process.kill()
  texts = [_read(log) for log in logs]
  for log in logs:
    log.close()
  for process, text in zip(processes, texts, strict=True):
    assert process.returncode == 0, text[-3000:]
  return texts


def _params(workdir):
  _, state = support.latest_checkpoint(workdir)
  return state['params']


def test_sigterm_to_one_process_stops_all_at_one_step(
  tmp_path, digits_data_dir
):
  data_dir = digits_data_dir  # Prepared once, before the processes start.
  workdir = tmp_path / 'multi'

  processes, logs = _start(
    workdir, data_dir, 100000, support.free_port(), tmp_path
  )
  deadline = time.monotonic() + _TIMEOUT
  while not re.search(r'step 3/100000', _read(logs[0])):
    assert time.monotonic() < deadline, _read(logs[0])[-3000:]
    assert all(p.poll() is None for p in processes), _read(logs[0])[-3000:]
    time.sleep(0.2)
  processes[1].send_signal(signal.SIGTERM)
  texts = _finish(processes, logs)
  stopped = [
    re.findall(r'Stopped by SIGTERM after step (\d+)', text) for text in texts
  ]
  assert all(len(found) == 1 for found in stopped), stopped
  stop_step = int(stopped[0][0])
  assert stop_step >= 3 and stopped[1][0] == stopped[0][0], stopped

  # Resume both processes to two steps past the saved one.
  resume_dir = tmp_path / 'resume'
  resume_dir.mkdir()
  processes, logs = _start(
    workdir, data_dir, stop_step + 2, support.free_port(), resume_dir
  )
  texts = _finish(processes, logs)
  # Process 0 reports it; the other logs only problems.
  assert f'Resuming from the checkpoint at step {stop_step}' in texts[0]
  assert 'Resuming' not in texts[1]

  straight = subprocess.run(
    _command(tmp_path / 'straight', data_dir, stop_step + 2),
    env=_env(4),
    capture_output=True,
    text=True,
    timeout=_TIMEOUT,
  )
  assert straight.returncode == 0, straight.stderr[-3000:]

  # Equal up to float32 round-off of differently ordered sums; one step
  # more or less moves every parameter array by 4e-3 to 0.27 (relative).
  def assert_close(resumed, single):
    error = np.linalg.norm(resumed - single) / np.linalg.norm(single)
    assert error < 1e-4, error

  jax.tree.map(
    assert_close, _params(str(workdir)), _params(str(tmp_path / 'straight'))
  )
