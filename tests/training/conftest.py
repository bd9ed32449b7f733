"""Training tests run a few steps: compile fast rather than run fast."""

import jax
import pytest


@pytest.fixture(autouse=True)
def _fast_compilation():
  # A handful of steps never repays XLA's full optimisation pipeline (as in
  # flax's examples/imagenet/train_test.py).
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
