"""embed: folders and splits through the evaluation step, and the file.

The command line (embed.py): tests/end_to_end/embed_cli_test.py.
"""

import dataclasses
import os

import numpy as np
import pytest
from PIL import Image

from evaluation import plots
from inference import embed, embeddings_file, images
from input_pipeline import augment
from tests import support


def test_split_embeddings_are_the_evaluations(trained, model):
  workdir, _ = trained
  expected, expected_labels = support.evaluation_features(workdir)
  result = embed.embed_split(model, 'test', batch_size=4, progress=False)
  np.testing.assert_allclose(result.embeddings, expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(result.labels, expected_labels)
  # Class-disjoint: the test split's classes c, d, re-based to 0, 1.
  assert result.class_names == ('c', 'd')
  np.testing.assert_array_equal(result.indices, np.arange(len(expected)))
  assert (result.dataset, result.split) == ('image_folder', 'test')
  assert result.step == 2 and result.workdir == model.workdir


def test_folder_embeddings_are_the_evaluations(trained, model):
  workdir, root = trained
  expected, _ = support.evaluation_features(workdir)
  result = embed.embed_folder(
    model, os.path.join(root, 'test'), batch_size=4, progress=False
  )
  assert result.class_names == support.CLASSES
  per_class = support.TEST_PER_CLASS
  np.testing.assert_array_equal(
    result.labels, np.repeat(np.arange(len(support.CLASSES)), per_class)
  )
  assert result.paths == tuple(
    os.path.join(root, 'test', name, f'{i}.png')
    for name in support.CLASSES
    for i in range(per_class)
  )
  # The evaluation saw the files of c and d, in this order.
  unseen = np.isin(np.asarray(result.label_names()), ['c', 'd'])
  np.testing.assert_allclose(
    result.embeddings[unseen], expected, rtol=1e-6, atol=1e-6
  )


def test_unlabelled_folder_and_file_round_trip(trained, model, tmp_path):
  _, root = trained
  flat = str(tmp_path / 'flat')
  paths = support.write_images(flat, 5, seed=3, classes=None)
  result = embed.embed_folder(model, flat, progress=False)
  assert result.labels is None and result.class_names is None
  assert result.paths == tuple(sorted(paths))
  np.testing.assert_allclose(
    result.embeddings,
    embed.embed_files(model, sorted(paths), batch_size=4, progress=False),
    rtol=1e-6,
    atol=1e-6,
  )
  path = embeddings_file.save(tmp_path / 'flat.npz', result)
  loaded = embeddings_file.load(path)
  np.testing.assert_array_equal(loaded.embeddings, result.embeddings)
  assert loaded.paths == result.paths and loaded.labels is None
  assert (loaded.workdir, loaded.step) == (result.workdir, result.step)
  assert loaded.folder == result.folder


def test_files_are_transformed_as_the_data_set(model, tmp_path):
  # A larger RGB file: converted to grey and resized to the model's 8x8.
  path = str(tmp_path / 'big.jpg')
  Image.fromarray(np.full((20, 30, 3), 255, np.uint8)).save(path)
  batch = model.transform.load([path])
  assert batch.shape == (1, 8, 8, 1)
  np.testing.assert_allclose(batch, 1.0)


def test_files_are_normalised_as_the_data_set(model, tmp_path):
  # A model with ImageNet normalization sees a grey file repeated to RGB,
  # each channel shifted and scaled.
  path = str(tmp_path / 'white.png')
  Image.fromarray(np.full((8, 8), 255, np.uint8)).save(path)
  transform = dataclasses.replace(
    model.transform, image_shape=(8, 8, 3), normalization='imagenet'
  )
  batch = transform.load([path])
  assert batch.shape == (1, 8, 8, 3)
  expected = (1.0 - np.asarray(augment.IMAGENET_MEAN)) / np.asarray(
    augment.IMAGENET_STD
  )
  np.testing.assert_allclose(batch[0, 3, 4], expected, rtol=1e-6)


def test_folder_errors(tmp_path):
  with pytest.raises(ValueError, match='not a directory'):
    images.list_folder(str(tmp_path / 'missing'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='holds no'):
    images.list_folder(str(tmp_path / 'empty'))
  mixed = tmp_path / 'mixed'
  support.write_images(str(mixed), 1, seed=0, classes=('x',))
  support.write_images(str(mixed), 1, seed=0, classes=None)
  with pytest.raises(ValueError, match='both image files and folders'):
    images.list_folder(str(mixed))


def test_training_writes_the_retrieval_picture(trained):
  workdir, _ = trained
  with Image.open(os.path.join(workdir, 'retrieval.png')) as picture:
    size = picture.size
  # 2 unseen classes: 2 queries, each with its 5 other test images.
  assert size == (
    6 * plots.RETRIEVAL_CELL_WIDTH,
    2 * plots.RETRIEVAL_CELL_HEIGHT + plots.RETRIEVAL_TITLE_HEIGHT,
  )


def test_camera_ids_round_trip_and_are_optional(tmp_path):
  # A re-id split's file keeps camera ids; a file without them (every
  # file written before they existed) loads with cameras None.
  vectors = np.eye(3, dtype=np.float32)
  with_cameras = embeddings_file.Embeddings(
    embeddings=vectors,
    workdir='run',
    step=3,
    labels=np.array([1, 3, 0]),
    indices=np.arange(3),
    dataset='reid_folder',
    split='gallery',
    cameras=np.array([0, 1, 5]),
  )
  loaded = embeddings_file.load(
    embeddings_file.save(tmp_path / 'gallery.npz', with_cameras)
  )
  np.testing.assert_array_equal(loaded.cameras, [0, 1, 5])
  assert loaded.cameras.dtype == np.int64 and loaded.split == 'gallery'
  without = dataclasses.replace(with_cameras, cameras=None)
  path = embeddings_file.save(tmp_path / 'plain.npz', without)
  with np.load(path) as data:
    assert 'cameras' not in data.files
  assert embeddings_file.load(path).cameras is None
  with pytest.raises(ValueError, match='cameras must hold one entry'):
    dataclasses.replace(with_cameras, cameras=np.array([0]))
