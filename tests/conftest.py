"""Test-wide settings: float64 available for NumPy-exact references."""

import jax

# References are computed in float64; the losses under test still run in
# the dtype of their inputs (float32 unless a test says otherwise).
jax.config.update('jax_enable_x64', True)
