"""Tiny ImageNet's layout read as an image folder, on a tiny written copy."""

import os

import numpy as np
import pytest
from PIL import Image

import input_pipeline
from input_pipeline.datasets import image_folder
from tests import support

_WNIDS = ('n02124075', 'n01443537', 'n04067472')


def _write_tiny_imagenet(root, *, per_class=3, val_per_class=2, seed=0):
  """Writes Tiny ImageNet's layout: train/<wnid>/images/*.JPEG (one grey),
  train/<wnid>/<wnid>_boxes.txt, val/images/val_*.JPEG with
  val/val_annotations.txt (shuffled lines), an unlabelled test/images/,
  wnids.txt and words.txt.

  Returns:
    ``{relative path: (uint8 pixels, wnid)}`` of the labelled images.
  """
  rng = np.random.default_rng(seed)
  written = {}

  def image(relative, wnid, grey=False):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = rng.integers(0, 256, (8, 8, 3), np.uint8)
    if grey:
      pixels[..., 1] = pixels[..., 2] = pixels[..., 0]
    # PNG bytes under a .JPEG name: the pixels stay exact, PIL reads by
    # content.
    Image.fromarray(pixels[..., 0] if grey else pixels).save(path, 'PNG')
    written[relative] = (pixels, wnid)

  for wnid in _WNIDS:
    for i in range(per_class):
      image(f'train/{wnid}/images/{wnid}_{i}.JPEG', wnid, grey=i == 0)
    with open(os.path.join(root, 'train', wnid, f'{wnid}_boxes.txt'), 'w') as f:
      f.write(f'{wnid}_0.JPEG\t0\t0\t7\t7\n')
  lines = []
  for index in range(val_per_class * len(_WNIDS)):
    wnid = _WNIDS[index % len(_WNIDS)]
    image(f'val/images/val_{index}.JPEG', wnid)
    lines.append(f'val_{index}.JPEG\t{wnid}\t0\t1\t6\t7\n')
  rng.shuffle(lines)
  with open(os.path.join(root, 'val', 'val_annotations.txt'), 'w') as file:
    file.writelines(lines)
  image('test/images/test_0.JPEG', None)
  del written['test/images/test_0.JPEG']
  with open(os.path.join(root, 'wnids.txt'), 'w') as file:
    file.write('\n'.join(_WNIDS) + '\n')
  with open(os.path.join(root, 'words.txt'), 'w') as file:
    file.write(''.join(f'{wnid}\tsomething\n' for wnid in _WNIDS))
  return written


def test_listing(tmp_path):
  written = _write_tiny_imagenet(str(tmp_path))
  listing = image_folder.list_folder(str(tmp_path))
  assert listing.class_names == tuple(sorted(_WNIDS))
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
  annotations.write_text(text.replace(_WNIDS[0], _WNIDS[1]) + '\n')
  assert image_folder.list_folder(str(tmp_path)).fingerprint != before


def test_bad_annotations(tmp_path):
  _write_tiny_imagenet(str(tmp_path))
  annotations = tmp_path / 'val' / 'val_annotations.txt'
  annotations.write_text('val_0.JPEG\tn99999999\t0\t0\t1\t1\n')
  with pytest.raises(ValueError, match='val_annotations.txt:1'):
    image_folder.list_folder(str(tmp_path))
  annotations.write_text('val_77.JPEG\tn01443537\t0\t0\t1\t1\n')
  with pytest.raises(ValueError, match='val_77.JPEG'):
    image_folder.list_folder(str(tmp_path))


def test_through_the_pipeline(tmp_path):
  root = tmp_path / 'tiny-imagenet-200'
  written = _write_tiny_imagenet(str(root))
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
  assert info.num_classes == 3 and info.class_names == tuple(sorted(_WNIDS))
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
