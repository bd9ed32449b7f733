"""Training tests run a few steps: compile fast rather than run fast."""

import jax
import pytest

from input_pipeline import preparation


@pytest.fixture(autouse=True)
def _fast_compilation():
  # A handful of steps never repays XLA's full optimisation pipeline (as in
  # flax's examples/imagenet/train_test.py).
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


@pytest.fixture(scope='session')
def digits_data_dir(tmp_path_factory):
  """A TFDS data dir with digits prepared once per test process.

  For the tests that only read digits (every train.py they start finds it
  prepared); a test that prepares another set into it leaves digits as is.
  """
  data_dir = str(tmp_path_factory.mktemp('tfds_digits'))
  preparation.prepare('digits', data_dir)
  return data_dir
