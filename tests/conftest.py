"""Test-wide settings: 4 fake CPU devices, float64 for references and one
compilation cache shared by the whole run and kept for the next one; the
fixtures of training runs shared by several test packages; the order in
which the tests are handed out.

Helpers that tests import are in tests/support.py, not here.
"""

import os
import shutil

# Multi-device tests need several devices; XLA reads its flags once, before
# the first backend starts, so they are set before anything imports jax.
# Most of the suite's time is XLA compiling hundreds of small programs that
# then run once on tiny inputs; XLA:CPU's older fusion emitters compile them
# in about half the time of the MLIR-based ones (same HLO, same fusions).
os.environ.setdefault(
  'XLA_FLAGS',
  '--xla_force_host_platform_device_count=4 '
  '--xla_cpu_use_fusion_emitters=false',
)
# For the same reason most of XLA's optimisations are off
# (jax_disable_most_optimizations, as flax's examples/imagenet/train_test.py
# sets for its few-step training runs): another ~20% of the compile time,
# which would pay off only on large inputs. Both settings are inherited by
# the processes the tests start unless they set their own;
# JAX_DISABLE_MOST_OPTIMIZATIONS=0 turns the optimisations back on, and an
# XLA_FLAGS of one's own replaces both flags.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
# TensorFlow (pulled in by clu) must not print its start-up banners.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Many tests compile the same programs (a resumed run, the rerun after a
# SIGTERM, the same step on several configs), and every run of the suite
# compiles the same programs as the last one: JAX's persistent cache lets
# each compile once. It is kept between runs in .jax_cache/tests (ignored
# by git; `make clean` removes it), inherited through the environment by
# xdist workers and the subprocesses the tests start. JAX keys an entry by
# the program, the compile options and its own version, so a changed
# program compiles anew; a first run (a fresh clone, CI) compiles
# everything. An explicit JAX_COMPILATION_CACHE_DIR is used instead.
_CACHE_DIR = os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR',
  os.path.join(
    os.path.dirname(os.path.dirname(__file__)), '.jax_cache', 'tests'
  ),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
# The suite writes about 50 MiB; programs that changed leave stale entries
# behind. JAX's own size bound (jax_compilation_cache_max_size) keeps an
# access-time file per entry and made the suite about twice as slow, so
# the main process empties the cache once it outgrows 1 GiB instead.
_CACHE_LIMIT_BYTES = 2**30
if 'PYTEST_XDIST_WORKER' not in os.environ and os.path.isdir(_CACHE_DIR):
  with os.scandir(_CACHE_DIR) as entries:
    if sum(e.stat().st_size for e in entries) > _CACHE_LIMIT_BYTES:
      shutil.rmtree(_CACHE_DIR, ignore_errors=True)

import jax  # noqa: E402

# References are computed in float64; the losses under test still run in
# the dtype of their inputs (float32 unless a test says otherwise).
jax.config.update('jax_enable_x64', True)

import pytest  # noqa: E402

from inference import model as model_lib  # noqa: E402
from input_pipeline import preparation  # noqa: E402
from tests import support  # noqa: E402

# Fixtures of training runs. A test that uses one of them trains (or
# starts training processes): `pytest_collection_modifyitems` hands such
# tests out early.


@pytest.fixture(scope='session')
def digits_data_dir(tmp_path_factory):
  """A TFDS data dir with digits prepared once per test process.

  For the tests that train on digits (every train.py they start finds it
  prepared); a test that prepares another set into it leaves digits as is.
  """
  data_dir = str(tmp_path_factory.mktemp('tfds_digits'))
  preparation.prepare('digits', data_dir)
  return data_dir


@pytest.fixture
def first_train_states():
  """A loop hook collecting each run's first train state (in support)."""
  return support.FirstTrainStates()


@pytest.fixture(scope='session')
def trained(tmp_path_factory):
  """``(workdir, image folder root)`` of a finished 2-step run.

  The tiny model trained on an image folder of `support.CLASSES`
  (`support.train_on_image_folder`), once per test process.
  """
  root = str(tmp_path_factory.mktemp('images'))
  workdir = str(tmp_path_factory.mktemp('workdir'))
  support.train_on_image_folder(
    root, str(tmp_path_factory.mktemp('tfds')), workdir
  )
  return workdir, root


@pytest.fixture(scope='session')
def model(trained):
  """The trained run's model, restored."""
  workdir, _ = trained
  return model_lib.load(workdir)


# The order in which the tests are handed out. Most of the suite is short
# tests; the long ones (tens of seconds each on 2 cores) start train.py
# processes or train whole runs. With `-n 2 --maxschedchunk=1` (make test)
# pytest-xdist hands the tests out one at a time in collection order, so
# the long ones go first: they are spread over the workers at the start,
# and the end of the run, where one worker may wait for the other, is
# short tests. (Without --maxschedchunk, xdist's first chunk, a quarter of
# a worker's share, would give one worker all of them.) The order follows
# from the layout and the fixtures, not from a list of names, longest kind
# first:
#   0. tests/end_to_end/: the command lines and whole runs;
#   1. tests that use a fixture of a training run above (they train, or
#      read a trained run);
#   2. tests/training/: unit tests that compile whole train steps (up to
#      about 15 s each);
#   3. the rest (mostly well under a second each).
# Each kind keeps the collection order.
_TESTS = os.path.dirname(os.path.abspath(__file__))
_END_TO_END = os.path.join(_TESTS, 'end_to_end')
_TRAINING = os.path.join(_TESTS, 'training')
_TRAINING_FIXTURES = frozenset({'digits_data_dir', 'trained'})


def _kind(item):
  if item.path.is_relative_to(_END_TO_END):
    return 0
  # `fixturenames` includes the fixtures used through other fixtures.
  if _TRAINING_FIXTURES & set(getattr(item, 'fixturenames', ())):
    return 1
  if item.path.is_relative_to(_TRAINING):
    return 2
  return 3


def pytest_collection_modifyitems(config, items):
  del config
  items.sort(key=_kind)  # Stable: each kind keeps the collection order.
