"""Verification sets as evaluation tasks: embedding, flip fusion, keys."""

import io
import pickle

import ml_collections
import numpy as np
import pytest
from PIL import Image

from training import evaluation_loop, verification


def _png(colour, size=16):
  image = np.zeros((size, size, 3), np.uint8)
  image[:, : size // 2] = colour  # Left half coloured: flips differ.
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def _write_bin(path, num_pairs=10):
  rng = np.random.default_rng(0)
  images, flags = [], []
  for i in range(num_pairs):
    first = tuple(int(c) for c in rng.integers(0, 256, 3))
    same = i % 2 == 0
    second = first if same else tuple(255 - c for c in first)
    images += [_png(first), _png(second)]
    flags.append(same)
  with open(path, 'wb') as file:
    pickle.dump((images, flags), file)


def _pixels_step(state, batch):
  del state
  images = batch['image']
  return {'embeddings': images.reshape(len(images), -1) + 1e-3}


def _config(entries, flip=True):
  config = ml_collections.ConfigDict()
  config.verification = entries
  config.verification_flip = flip
  config.eval_batch_size = 4
  config.input = ml_collections.ConfigDict({'normalization': None})
  config.loss = ml_collections.ConfigDict({'name': 'softmax'})
  return config


@pytest.mark.parametrize('flip', [False, True])
def test_identical_pairs_verify(tmp_path, flip):
  path = tmp_path / 'tiny_lfw.bin'
  _write_bin(path)
  results = verification.evaluate(
    None,
    _config((str(path),), flip=flip),
    eval_step=_pixels_step,
    collect=evaluation_loop.collect,
    image_shape=(8, 8, 3),
    roc_path=str(tmp_path / 'roc.png'),
  )
  # Separable pairs; a one-pair fold may still fall outside the threshold
  # its 9 other pairs choose.
  assert results['verify/tiny_lfw/auc'] == 1.0
  assert results['verify/tiny_lfw/eer'] == 0.0
  assert results['verify/tiny_lfw/accuracy'] >= 0.9
  assert {key.split('/')[-1] for key in results} == {
    'accuracy',
    'accuracy_std',
    'threshold',
    'tar@far=1e-3',
    'tar@far=1e-4',
    'auc',
    'eer',
  }
  assert (tmp_path / 'roc.png').stat().st_size > 0


def test_flip_fusion_sums_both_embeddings(tmp_path):
  images = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), np.uint8)
  fused = verification.embed(
    None,
    images,
    eval_step=_pixels_step,
    collect=evaluation_loop.collect,
    image_shape=(8, 8, 3),
    normalization=None,
    batch_size=2,
    flip=True,
  )
  inputs = images.astype(np.float64) / 255 + 1e-3
  expected = (inputs + inputs[:, :, ::-1]).reshape(3, -1)
  expected /= np.linalg.norm(expected, axis=1, keepdims=True)
  np.testing.assert_allclose(fused, expected, atol=1e-6)


def test_no_sets_no_results():
  config = _config(())
  assert (
    verification.evaluate(
      None, config, eval_step=None, collect=None, image_shape=(8, 8, 3)
    )
    == {}
  )
  del config.verification  # Configs from before the field.
  assert verification.entries(config) == ()
