"""Test-wide settings: 4 fake CPU devices and float64 for references."""

import os

# Multi-device tests need several devices; XLA reads this flag once, before
# the first backend starts, so it is set before anything imports jax.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
# TensorFlow (pulled in by clu) must not print its start-up banners.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402

# References are computed in float64; the losses under test still run in
# the dtype of their inputs (float32 unless a test says otherwise).
jax.config.update('jax_enable_x64', True)
