"""Tests for the verification-set readers: insightface's .bin, LFW pairs."""

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from input_pipeline import verification


def _encoded(colour, size=(12, 10), image_format='PNG'):
  buffer = io.BytesIO()
  Image.new('RGB', size, colour).save(buffer, format=image_format)
  return buffer.getvalue()


def _write_bin(path, num_pairs=3, protocol=pickle.HIGHEST_PROTOCOL):
  images = [_encoded((20 * i, 0, 255 - 20 * i)) for i in range(2 * num_pairs)]
  flags = [i % 2 == 0 for i in range(num_pairs)]
  with open(path, 'wb') as file:
    pickle.dump((images, flags), file, protocol=protocol)
  return flags


@pytest.mark.parametrize('protocol', [0, 2, pickle.HIGHEST_PROTOCOL])
def test_bin_is_decoded_in_pair_order(tmp_path, protocol):
  path = tmp_path / 'lfw.bin'
  flags = _write_bin(path, protocol=protocol)
  images, same = input_pipeline.read_verification_bin(str(path))
  assert images.shape == (6, 10, 12, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images[:, 0, 0, 0], 20 * np.arange(6))
  np.testing.assert_array_equal(same, flags)
  assert same.dtype == bool


def test_jpeg_bin_and_the_set_name(tmp_path):
  path = tmp_path / 'cfp_fp.bin'
  with open(path, 'wb') as file:
    pickle.dump(([_encoded((0, 0, 0), image_format='JPEG')] * 2, [True]), file)
  result = verification.read_set(str(path))
  assert result.name == 'cfp_fp'
  assert result.images.shape == (2, 10, 12, 3)


class _Exploit:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_a_pickled_global_is_refused_without_running(tmp_path):
  marker = tmp_path / 'ran'
  path = tmp_path / 'evil.bin'
  path.write_bytes(pickle.dumps(([_Exploit(marker)], [True])))
  with pytest.raises(ValueError, match='refused the global') as info:
    input_pipeline.read_verification_bin(str(path))
  assert not marker.exists()
  assert '\n' not in str(info.value)


def test_codecs_encode_is_refused_for_other_codecs(tmp_path):
  path = tmp_path / 'codec.bin'
  # _codecs.encode('x', 'zlib'): a global this reader allows only for latin1.
  path.write_bytes(b'c_codecs\nencode\n(Vx\nVzlib\ntR.')
  with pytest.raises(ValueError, match='zlib'):
    input_pipeline.read_verification_bin(str(path))


def test_truncated_and_foreign_files_are_refused(tmp_path):
  path = tmp_path / 'lfw.bin'
  _write_bin(path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match='truncated'):
    input_pipeline.read_verification_bin(str(path))
  path.write_bytes(b'\x89PNG not a pickle at all')
  with pytest.raises(ValueError, match='lfw.bin'):
    input_pipeline.read_verification_bin(str(path))
  path.write_bytes(pickle.dumps({'a': 1}))
  with pytest.raises(ValueError, match='expected a pickled'):
    input_pipeline.read_verification_bin(str(path))
  path.write_bytes(pickle.dumps(([b'x'] * 3, [True])))
  with pytest.raises(ValueError, match='2 images per flag'):
    input_pipeline.read_verification_bin(str(path))
  path.write_bytes(pickle.dumps(([b'x'] * 2, [True])))
  with pytest.raises(ValueError, match='image 0'):
    input_pipeline.read_verification_bin(str(path))
  with pytest.raises(FileNotFoundError):
    input_pipeline.read_verification_bin(str(tmp_path / 'missing.bin'))


def _lfw(tmp_path, header='1\t2'):
  root = tmp_path / 'lfw'
  for name, count in (('Ann_A', 2), ('Bob_B', 1), ('Cy_C', 2)):
    (root / name).mkdir(parents=True)
    for i in range(1, count + 1):
      shade = 10 * i + 100 * len(name)
      Image.new('RGB', (8, 8), (shade % 256, 0, 0)).save(
        root / name / f'{name}_{i:04d}.jpg'
      )
  lines = [header, 'Ann_A\t1\t2', 'Cy_C 1 2', 'Ann_A\t1\tBob_B\t1']
  lines.append('Bob_B\t1\tCy_C\t2')
  (root / 'pairs.txt').write_text('\n'.join(lines) + '\n')
  return root


def test_lfw_pairs(tmp_path):
  root = _lfw(tmp_path)
  images, same = input_pipeline.read_lfw_pairs(str(root / 'pairs.txt'))
  assert images.shape == (8, 8, 8, 3)
  np.testing.assert_array_equal(same, [True, True, False, False])
  result = verification.read_set(
    {'path': str(root / 'pairs.txt'), 'kind': 'lfw_pairs'}
  )
  assert result.name == 'lfw'


def test_lfw_pairs_errors(tmp_path):
  root = _lfw(tmp_path, header='1\t3')
  with pytest.raises(ValueError, match='promises 6 pairs'):
    input_pipeline.read_lfw_pairs(str(root / 'pairs.txt'))
  (root / 'pairs.txt').write_text('1\nAnn_A\t1\t9\nAnn_A\t1\tBob_B\t1\n')
  with pytest.raises(FileNotFoundError, match='Ann_A_0009.jpg'):
    input_pipeline.read_lfw_pairs(str(root / 'pairs.txt'))
  (root / 'pairs.txt').write_text('1\nAnn_A\t1\nAnn_A\t1\tBob_B\t1\n')
  with pytest.raises(ValueError, match='pairs.txt:2'):
    input_pipeline.read_lfw_pairs(str(root / 'pairs.txt'))
