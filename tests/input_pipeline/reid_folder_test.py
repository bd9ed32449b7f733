"""Tests for `input_pipeline.datasets.reid_folder` on tiny written layouts."""

import os

import pytest

from input_pipeline.datasets import reid_folder


def _touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as file:
    file.write(b'')


def test_parse_market_name():
  assert reid_folder.parse_market_name('0002_c1s1_000451_03.jpg') == (2, 0)
  assert reid_folder.parse_market_name('-1_c3s1_000401_03.jpg') == (-1, 2)
  # DukeMTMC-reID's names.
  assert reid_folder.parse_market_name('0005_c2_f0046182.jpg') == (5, 1)
  with pytest.raises(ValueError, match='<identity>_c<camera>'):
    reid_folder.parse_market_name('Thumbs.jpg')


def test_market1501_layout(tmp_path):
  names = {
    'bounding_box_train': [
      '0007_c2s1_000001_01.jpg',
      '0002_c1s1_000451_03.jpg',
      '0002_c3s1_000551_01.jpg',
      '-1_c1s1_000001_00.jpg',
    ],
    'query': ['0001_c1s1_001051_00.jpg'],
    'bounding_box_test': [
      '0001_c2s1_000301_01.jpg',
      '0000_c1s1_000151_01.jpg',
      '-1_c1s1_000401_03.jpg',
      'readme.txt',
    ],
  }
  for folder, files in names.items():
    for name in files:
      _touch(tmp_path / folder / name)
  listing = reid_folder.list_market1501(str(tmp_path))
  # Junk dropped everywhere; training identities 2, 7 become classes 0, 1.
  assert [(i.identity, i.camera) for i in listing['train']] == [
    (0, 0),
    (0, 2),
    (1, 1),
  ]
  assert [(i.identity, i.camera) for i in listing['query']] == [(1, 0)]
  # The distractor (identity 0) stays in the gallery.
  assert [(i.identity, i.camera) for i in listing['gallery']] == [
    (0, 0),
    (1, 1),
  ]
  assert listing['gallery'][0].path == str(
    tmp_path / 'bounding_box_test' / '0000_c1s1_000151_01.jpg'
  )


def test_market1501_missing_folder(tmp_path):
  (tmp_path / 'query').mkdir()
  with pytest.raises(ValueError, match='missing: bounding_box_train'):
    reid_folder.list_market1501(str(tmp_path))


def test_msmt17_lists(tmp_path):
  lists = {
    'list_train.txt': '0003/0003_010_05_0303morning_0015_0.jpg 3\n'
    '0001/0001_004_01_0303morning_0016_1.jpg 1\n',
    'list_val.txt': '0002/0002_000_02_0303morning_0017_0.jpg 2\n',
    'list_query.txt': '0000/0000_000_01_0303noon_0015_0.jpg 0\n',
    'list_gallery.txt': '0000/0000_001_15_0303noon_0016_0.jpg 0\n\n',
  }
  for name, text in lists.items():
    (tmp_path / name).write_text(text)
  (tmp_path / 'train').mkdir()
  (tmp_path / 'test').mkdir()
  listing = reid_folder.list_msmt17(str(tmp_path))
  assert [(i.identity, i.camera) for i in listing['train']] == [(1, 4), (0, 0)]
  assert [(i.identity, i.camera) for i in listing['query']] == [(0, 0)]
  assert [(i.identity, i.camera) for i in listing['gallery']] == [(0, 14)]
  assert listing['query'][0].path == str(
    tmp_path / 'test' / '0000' / '0000_000_01_0303noon_0015_0.jpg'
  )
  (tmp_path / 'list_query.txt').write_text('just-a-path.jpg\n')
  with pytest.raises(ValueError, match='list_query.txt:1'):
    reid_folder.list_msmt17(str(tmp_path))
