"""Fixtures for the input pipeline tests: prepared data in temporary dirs.

Their helpers (configs, image folders, catalog records) are in
tests/support.py.
"""

import pytest

from input_pipeline import preparation


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  """A data dir with digits and digits_multilabel prepared (once)."""
  data_dir = str(tmp_path_factory.mktemp('tfds_digits'))
  preparation.prepare('digits', data_dir)
  preparation.prepare('digits_multilabel', data_dir)
  return data_dir
