"""Test-wide settings: 4 fake CPU devices, float64 for references and one
compilation cache shared by the whole run."""

import os
import shutil
import tempfile

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
# SIGTERM, the same step on several configs): JAX's persistent cache lets
# them compile once. The directory is made by the first pytest process and
# inherited through the environment by xdist workers and the subprocesses
# the tests start, and removed at the end of the run.
_CACHE_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'
_OWN_CACHE = _CACHE_VARIABLE not in os.environ
if _OWN_CACHE:
  os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix='discfeat-jax-cache-')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # noqa: E402

# References are computed in float64; the losses under test still run in
# the dtype of their inputs (float32 unless a test says otherwise).
jax.config.update('jax_enable_x64', True)


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE:
    shutil.rmtree(os.environ[_CACHE_VARIABLE], ignore_errors=True)


# The longest tests (tens of seconds each on 2 cores: they start train.py
# processes or train several runs) go first, in this order; the rest keep
# their order. With `-n 2 --maxschedchunk=1` (make test) pytest-xdist hands
# the tests out one at a time in this order: the long ones are spread over
# the workers at the start, and the end of the run, where one worker may
# wait for the other, is short tests. (Without --maxschedchunk, xdist's
# first chunk, a quarter of a worker's share, would give one worker all of
# them.)
_LONGEST_FIRST = (
  'tests/benchmarks/compare_test.py::test_reduced_comparison_end_to_end',
  'tests/training/multiprocess_preemption_test.py',
  'tests/training/multiprocess_test.py',
  'tests/training/finetune_test.py',
  'tests/training/retrieval_protocol_test.py',
  'tests/training/preemption_test.py',
  'tests/training/train_test.py',
  'tests/training/memory_test.py',
  'tests/inference/embed_test.py',
  'tests/training/steps_test.py',
  'tests/training/bfloat16_test.py',
  'tests/training/cli_test.py',
  'tests/inference/search_test.py',
)


def pytest_collection_modifyitems(config, items):
  del config

  def rank(item):
    for index, prefix in enumerate(_LONGEST_FIRST):
      if item.nodeid.startswith(prefix):
        return index
    return len(_LONGEST_FIRST)

  items.sort(key=rank)  # Stable: each file keeps its own order.
