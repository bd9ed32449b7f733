"""Tiny ImageNet's layout read as an image folder, on a tiny written copy."""

import os

import numpy as np
import pytest

import input_pipeline
from input_pipeline.datasets import image_folder
from tests import support


def test_listing(tmp_path):
  written = support.write_tiny_imagenet(str(tmp_path))
  listing = image_folder.list_folder(str(tmp_path))
  assert listing.class_names == tuple(sorted(support.TINY_IMAGENET_WNIDS))
  for split, count in (('train', 9), ('test', 6)):
    files = listing.files[split]
    assert len(files) == count
    for path, label in files:
      relative = os.path.relpath(path, str(tmp_path))
      assert listing.class_names[label] == written[relative][1]
    # Sorted by class, then name.
    labels = [label for _, label in files]
    assert labels == sorted(labels)
  assert os.path.basename(listing.files['test'][0][0]) == 'val_1.JPEG'
  # The labels are part of the fingerprint.
  annotations = tmp_path / 'val' / 'val_annotations.txt'
  before = listing.fingerprint
  text = annotations.read_text()
  annotations.write_text(
    text.replace(support.TINY_IMAGENET_WNIDS[0], support.TINY_IMAGENET_WNIDS[1])
    + '\n'
  )
  assert image_folder.list_folder(str(tmp_path)).fingerprint != before


def test_bad_annotations(tmp_path):
  support.write_tiny_imagenet(str(tmp_path))
  annotations = tmp_path / 'val' / 'val_annotations.txt'
  annotations.write_text('val_0.JPEG\tn99999999\t0\t0\t1\t1\n')
  with pytest.raises(ValueError, match='val_annotations.txt:1'):
    image_folder.list_folder(str(tmp_path))
  annotations.write_text('val_77.JPEG\tn01443537\t0\t0\t1\t1\n')
  with pytest.raises(ValueError, match='val_77.JPEG'):
    image_folder.list_folder(str(tmp_path))


def test_through_the_pipeline(tmp_path):
  root = tmp_path / 'tiny-imagenet-200'
  written = support.write_tiny_imagenet(str(root))
  config = support.make_input_config(
    name='image_folder',
    image_folder=str(root),
    data_dir=str(tmp_path / 'tfds'),
    batch_size=3,
  )
  dataset = input_pipeline.create_dataset(
    config, seed=0, process_index=0, process_count=1
  )
  info = dataset.info
  assert info.num_classes == 3 and info.class_names == tuple(
    sorted(support.TINY_IMAGENET_WNIDS)
  )
  # Grey and colour JPEGs: stored as RGB.
  assert info.image_shape == (8, 8, 3)
  assert (info.num_train_examples, info.num_test_examples) == (9, 6)
  (batch,) = dataset.eval_batches('test', 8, with_index=True)
  listing = image_folder.list_folder(str(root))
  for row in np.flatnonzero(batch['mask']):
    path, label = listing.files['test'][batch['index'][row]]
    pixels, wnid = written[os.path.relpath(path, str(root))]
    assert (
      info.class_names[batch['label'][row]] == wnid == (info.class_names[label])
    )
    np.testing.assert_array_equal(batch['image'][row], pixels / np.float32(255))
