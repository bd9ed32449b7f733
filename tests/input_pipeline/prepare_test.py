"""The `python -m input_pipeline.prepare` command line (offline sets only)."""

import os
import subprocess
import sys

import pytest

from input_pipeline import preparation

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _run(*args, timeout=120):
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
    [sys.executable, '-m', 'input_pipeline.prepare', *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    cwd=_ROOT,
    env=env,
    check=False,
  )


def test_cli_prepares_digits(tmp_path):
  result = _run('--dataset=digits', f'--data_dir={tmp_path}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'digits is prepared in' in result.stdout
  assert os.path.isfile(tmp_path / 'digits' / '1.0.0' / 'dataset_info.json')


def test_cli_rejects_unknown_names(tmp_path):
  result = _run('--dataset=imagenet', f'--data_dir={tmp_path}')
  assert result.returncode != 0
  assert 'digits' in result.stderr and 'coco' in result.stderr


def test_prepare_image_folder_needs_the_folder(tmp_path):
  with pytest.raises(ValueError, match='needs the folder'):
    preparation.prepare('image_folder', str(tmp_path))
  with pytest.raises(ValueError, match='not a TFDS catalog set'):
    preparation.download_and_prepare_catalog('digits', str(tmp_path))
