"""Test-wide settings: 4 fake CPU devices, float64 for references and one
compilation cache shared by the whole run."""

import os
import shutil
import tempfile

# Multi-device tests need several devices; XLA reads this flag once, before
# the first backend starts, so it is set before anything imports jax.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
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
