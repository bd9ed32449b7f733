"""The JPEG-folder benchmark's folder and CPU clock (not its timings)."""

import os

import numpy as np
from PIL import Image

from benchmarks import jpeg_pipeline


def test_folder_is_textured_jpegs_written_once(tmp_path):
  root = str(tmp_path / 'images')
  train, test, mean_bytes = jpeg_pipeline.write_folder(
    root, classes=2, per_class=3, quality=90
  )
  assert (train, test) == (6, 2)
  paths = sorted(
    os.path.join(directory, name)
    for directory, _, names in os.walk(root)
    for name in names
    if name.endswith('.jpg')
  )
  assert len(paths) == 8
  assert {os.path.basename(os.path.dirname(p)) for p in paths} == {
    'class_00',
    'class_01',
  }
  for path in paths:
    with Image.open(path) as image:
      assert image.format == 'JPEG' and image.mode == 'RGB'
      assert image.size in jpeg_pipeline._SHAPES  # pylint: disable=protected-access
      pixels = np.asarray(image, np.float32)
    # Texture, not flat colour: neighbouring pixels differ.
    assert np.abs(np.diff(pixels, axis=1)).mean() > 5
  # About ImageNet's file size at quality 90 (measured 98 KiB on average).
  assert 60_000 < mean_bytes < 160_000
  stamps = [os.stat(p).st_mtime_ns for p in paths]
  assert jpeg_pipeline.write_folder(root, 2, 3, 90)[:2] == (6, 2)
  assert [os.stat(p).st_mtime_ns for p in paths] == stamps


def test_cpu_seconds_counts_this_process_and_skips_missing_pids():
  before = jpeg_pipeline._cpu_seconds((os.getpid(),))  # pylint: disable=protected-access
  np.linalg.eigvalsh(np.random.default_rng(0).random((400, 400)))
  after = jpeg_pipeline._cpu_seconds((os.getpid(), 2**22 + 7))  # pylint: disable=protected-access
  assert after > before
