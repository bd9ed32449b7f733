"""Preparation shared by processes: one prepares, the others read its copy.

The processes here are plain Python subprocesses that import the input
pipeline (not training), so that each test takes a few seconds.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from common import locks
from input_pipeline import preparation
from input_pipeline.datasets import catalog, digits
from tests import support

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_TIMEOUT = 120

# Prepares (or waits for) digits_multilabel and an image folder once a start
# file exists, then prints each split's record count and a checksum of its
# serialized records.
_READER = """
import hashlib, json, os, sys, time
from absl import logging
import ml_collections
import numpy as np
from input_pipeline import sources
logging.set_verbosity(logging.INFO)
data_dir, folder, start_file = sys.argv[1:]
print('ready', flush=True)
while not os.path.exists(start_file):
  time.sleep(0.01)
result = {}
for name in ('digits_multilabel', 'image_folder'):
  config = ml_collections.ConfigDict(
    dict(name=name, data_dir=data_dir, image_folder=folder)
  )
  opened = sources.open_set(config)
  for split, reader in opened.raw_sources.items():
    records = reader.read(np.arange(len(reader)))
    digest = hashlib.sha256(b''.join(bytes(r) for r in records)).hexdigest()
    result[f'{name}/{split}'] = [len(reader), digest]
print('result', json.dumps(result), flush=True)
"""

# Prepares digits, killing itself (SIGKILL) half-way through the test split.
_KILLED_PREPARER = """
import os, signal, sys
from input_pipeline import preparation
from input_pipeline.datasets import digits
generate = digits.Digits._generate_examples
def killed_half_way(self, split):
  for index, example in enumerate(generate(self, split)):
    if split == 'test' and index == 150:
      os.kill(os.getpid(), signal.SIGKILL)
    yield example
digits.Digits._generate_examples = killed_half_way
preparation.prepare('digits', sys.argv[1])
"""

# Holds the lock sys.argv[1] until killed.
_HOLDER = """
import sys, time
from common import locks
with locks.holding(sys.argv[1], purpose='holding it for a test', timeout=5):
  print('held', flush=True)
  time.sleep(600)
"""


def _python(script, *args, **kwargs):
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen(
    [sys.executable, '-c', textwrap.dedent(script), *map(str, args)],
    cwd=_ROOT,
    env=env,
    text=True,
    **kwargs,
  )


def _holding_process(lock_path):
  process = _python(_HOLDER, lock_path, stdout=subprocess.PIPE)
  assert process.stdout.readline().strip() == 'held'
  return process


def _digits_dir(data_dir):
  return os.path.join(data_dir, 'digits', str(digits.Digits.VERSION))


def test_processes_started_at_once_read_the_same_complete_data(tmp_path):
  data_dir, folder = tmp_path / 'tfds', tmp_path / 'images'
  support.write_image_folder(str(folder))
  start_file = tmp_path / 'start'
  processes = [
    _python(
      _READER,
      data_dir,
      folder,
      start_file,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )
    for _ in range(4)
  ]
  try:
    # All have imported the pipeline; then they race for the empty dir.
    for process in processes:
      assert process.stdout.readline().strip() == 'ready'
    start_file.touch()
    outputs = [process.communicate(timeout=_TIMEOUT) for process in processes]
  finally:
    for process in processes:
      process.kill()
  for process, (_, stderr) in zip(processes, outputs, strict=True):
    assert process.returncode == 0, stderr[-3000:]
  # TFDS prints its progress to stdout too.
  results = [json.loads(stdout.split('result ')[-1]) for stdout, _ in outputs]
  assert all(result == results[0] for result in results)
  counts = {key: count for key, (count, _) in results[0].items()}
  assert counts == {
    'digits_multilabel/train': 1438,
    'digits_multilabel/test': 359,
    'image_folder/train': 6,
    'image_folder/test': 6,
  }
  # One process prepared each set; the others waited and read its copy.
  logs = ''.join(stderr for _, stderr in outputs)
  assert logs.count('Preparing digits_multilabel in') == 1
  assert logs.count('Preparing image folder') == 1
  assert not list(data_dir.glob('*.holder'))


def test_preparer_killed_half_way_is_followed_by_a_clean_preparation(
  tmp_path, caplog
):
  data_dir = str(tmp_path)
  killed = _python(_KILLED_PREPARER, data_dir, stderr=subprocess.PIPE)
  _, stderr = killed.communicate(timeout=_TIMEOUT)
  assert killed.returncode == -signal.SIGKILL, stderr[-3000:]
  version_dir = _digits_dir(data_dir)
  # It left a partial copy and its holder record, but nothing complete.
  assert not preparation.is_prepared(version_dir)
  assert list((tmp_path / 'digits').glob('incomplete.*'))
  lock_path = preparation.lock_path(version_dir, data_dir)
  assert locks.read_holder(lock_path).pid == killed.pid

  start = time.monotonic()
  builder = preparation.embedded_builder('digits', data_dir, timeout=10)
  assert time.monotonic() - start < 10
  assert f'pid {killed.pid}' in caplog.text
  assert 'ended without releasing it' in caplog.text
  assert not list((tmp_path / 'digits').glob('incomplete.*'))
  assert locks.read_holder(lock_path) is None
  for split in ('train', 'test'):
    source = builder.as_data_source(split)
    labels = [source[i]['label'] for i in range(len(source))]
    np.testing.assert_array_equal(labels, digits.load_split(split)[1])


def test_stale_lock_of_a_dead_holder_is_taken_over(tmp_path):
  lock_path = str(tmp_path / '.digits.lock')
  holder = _holding_process(lock_path)
  holder.kill()
  holder.wait(timeout=_TIMEOUT)

  start = time.monotonic()
  with locks.holding(lock_path, purpose='test', timeout=10) as held:
    assert time.monotonic() - start < 5
    previous = held.previous_holder
    assert (previous.pid, previous.host) == (holder.pid, socket.gethostname())
    assert previous.purpose == 'holding it for a test'
    assert previous.is_alive() is False
    assert locks.read_holder(lock_path).pid == os.getpid()
  assert locks.read_holder(lock_path) is None


def test_lock_held_too_long_by_a_live_process_names_it(tmp_path, monkeypatch):
  data_dir = str(tmp_path)
  lock_path = preparation.lock_path(_digits_dir(data_dir), data_dir)
  assert lock_path == os.path.join(data_dir, '.digits.lock')
  holder = _holding_process(lock_path)
  monkeypatch.setenv(preparation.TIMEOUT_ENV, '0.5')
  try:
    with pytest.raises(locks.LockTimeout) as error:
      preparation.prepare('digits', data_dir)
  finally:
    holder.kill()
    holder.wait(timeout=_TIMEOUT)
  message = str(error.value)
  assert f'waiting for the lock {lock_path}' in message
  assert f'pid {holder.pid} on host {socket.gethostname()} (running)' in message
  assert 'holding it for a test' in message
  assert preparation.TIMEOUT_ENV in message
  assert not os.path.exists(_digits_dir(data_dir))


def test_lock_timeout_setting(monkeypatch):
  monkeypatch.delenv(preparation.TIMEOUT_ENV, raising=False)
  assert preparation.lock_timeout('embedded') == 600
  monkeypatch.setenv(preparation.TIMEOUT_ENV, '2.5')
  assert preparation.lock_timeout('catalog') == 2.5
  for bad in ('soon', '0', '-1'):
    monkeypatch.setenv(preparation.TIMEOUT_ENV, bad)
    with pytest.raises(ValueError, match='positive number of seconds'):
      preparation.lock_timeout('embedded')


def test_catalog_download_is_prepared_once_under_its_lock(
  tmp_path, monkeypatch
):
  data_dir = str(tmp_path)
  version_dir, _ = catalog.version_dir('mnist', data_dir)
  # A download killed half-way left this.
  leftover = os.path.join(os.path.dirname(version_dir), 'incomplete.AB12CD_x')
  leftover = leftover.replace('_x', '_' + os.path.basename(version_dir))
  os.makedirs(leftover)
  downloads = []

  class FakeBuilder:
    def download_and_prepare(self, file_format):
      assert not os.path.exists(leftover)
      holder = locks.read_holder(preparation.lock_path(version_dir, data_dir))
      assert holder.pid == os.getpid()
      assert holder.purpose == 'downloading and preparing mnist'
      downloads.append(file_format)
      os.makedirs(version_dir)
      with open(os.path.join(version_dir, 'dataset_info.json'), 'w') as file:
        json.dump({'fileFormat': file_format}, file)

  monkeypatch.setattr(
    preparation.tfds, 'builder', lambda *args, **kwargs: FakeBuilder()
  )
  for _ in range(2):
    assert (
      preparation.download_and_prepare_catalog('mnist', data_dir) == version_dir
    )
  assert downloads == ['array_record']
  assert os.path.exists(os.path.join(data_dir, '.mnist.lock'))


@pytest.mark.parametrize('process_index', [0, 1])
def test_process_0_prepares_before_the_others(monkeypatch, process_index):
  events = []
  multihost_utils = types.SimpleNamespace(
    sync_global_devices=lambda name: events.append(('barrier', name))
  )
  experimental = types.SimpleNamespace(multihost_utils=multihost_utils)
  jax = types.SimpleNamespace(
    process_count=lambda: 2,
    process_index=lambda: process_index,
    experimental=experimental,
  )
  monkeypatch.setitem(sys.modules, 'jax', jax)
  monkeypatch.setitem(sys.modules, 'jax.experimental', experimental)
  monkeypatch.setitem(
    sys.modules, 'jax.experimental.multihost_utils', multihost_utils
  )
  barrier = ('barrier', 'input_pipeline: digits prepared by process 0')

  def prepare():
    events.append('prepare')
    return 'dir'

  assert preparation.process_0_first(prepare, 'digits') == 'dir'
  expected = (
    ['prepare', barrier] if process_index == 0 else [barrier, 'prepare']
  )
  assert events == expected

  # A failure of process 0 still releases the others, who then try.
  def fail():
    events.append('fail')
    raise ValueError('bad folder')

  events.clear()
  with pytest.raises(ValueError, match='bad folder'):
    preparation.process_0_first(fail, 'digits')
  assert events == (
    ['fail', barrier] if process_index == 0 else [barrier, 'fail']
  )
