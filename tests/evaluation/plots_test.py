"""Tests for `evaluation.plots`: valid PNG files, PCA path, bad input."""

import numpy as np
import pytest
from matplotlib import image as mpl_image

import evaluation

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _assert_png(path):
  with open(path, 'rb') as file:
    data = file.read()
  assert len(data) > 1000
  assert data.startswith(_PNG_SIGNATURE)
  pixels = mpl_image.imread(path)
  assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
  # Something was drawn: the image is not a single flat colour.
  assert np.ptp(pixels[..., :3]) > 0


def _blobs(seed, dim, num_classes=10, per_class=30):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_classes), per_class)
  centres = 4.0 * rng.normal(size=(num_classes, dim))
  return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def test_plot_features_two_dimensional(tmp_path):
  embeddings, labels = _blobs(0, dim=2)
  path = tmp_path / 'features.png'
  returned = evaluation.plot_features(
    embeddings.astype(np.float32), labels, path, title='softmax, 2-D'
  )
  assert returned == str(path)
  _assert_png(path)


def test_plot_features_projects_high_dimensional_features(tmp_path):
  embeddings, labels = _blobs(1, dim=16)
  path = tmp_path / 'nested' / 'pca.png'
  evaluation.plot_features(
    embeddings,
    labels,
    path,
    title='G-softmax, 16-D',
    class_names=[f'class {i}' for i in range(10)],
  )
  _assert_png(path)


def test_plot_class_geometry(tmp_path):
  embeddings, labels = _blobs(2, dim=8)
  compactness = evaluation.intra_class_compactness(embeddings, labels)
  separability = evaluation.inter_class_separability(embeddings, labels)
  path = evaluation.plot_class_geometry(
    compactness.per_class,
    separability.per_class,
    tmp_path / 'geometry.png',
    title='per-class geometry',
  )
  _assert_png(path)


def test_plot_feature_grid(tmp_path):
  panels = [
    (name, *_blobs(seed, dim))
    for seed, (name, dim) in enumerate(
      [('softmax', 2), ('G-softmax', 5), ('Circle', 3), ('vMF', 2)]
    )
  ]
  path = evaluation.plot_feature_grid(
    panels, tmp_path / 'grid.png', title='MNIST features'
  )
  _assert_png(path)


def test_many_classes_without_legend(tmp_path):
  embeddings, labels = _blobs(3, dim=3, num_classes=30, per_class=5)
  _assert_png(
    evaluation.plot_features(
      embeddings, labels, tmp_path / 'many.png', title='30 classes'
    )
  )


@pytest.mark.parametrize(
  ('embeddings', 'labels', 'kwargs', 'error', 'name'),
  [
    (np.zeros((4, 1)), np.zeros(4, int), {}, ValueError, 'embeddings'),
    (np.zeros((4, 2)), np.zeros(3, int), {}, ValueError, 'labels'),
    (np.zeros(4), np.zeros(4, int), {}, ValueError, 'embeddings'),
    (
      np.zeros((4, 2)),
      np.arange(4),
      {'class_names': ['a', 'b']},
      ValueError,
      'class_names',
    ),
  ],
)
def test_plot_features_rejects_bad_input(
  tmp_path, embeddings, labels, kwargs, error, name
):
  with pytest.raises(error, match=name):
    evaluation.plot_features(
      embeddings, labels, tmp_path / 'x.png', title='x', **kwargs
    )


def test_plot_class_geometry_and_grid_reject_bad_input(tmp_path):
  with pytest.raises(ValueError, match='per_class_separability'):
    evaluation.plot_class_geometry(
      np.ones(3), np.ones(4), tmp_path / 'x.png', title='x'
    )
  with pytest.raises(ValueError, match='class_names'):
    evaluation.plot_class_geometry(
      np.ones(3),
      np.ones(3),
      tmp_path / 'x.png',
      title='x',
      class_names=['a'],
    )
  with pytest.raises(ValueError, match='panels'):
    evaluation.plot_feature_grid([], tmp_path / 'x.png')
  with pytest.raises(ValueError, match='panels'):
    evaluation.plot_feature_grid([('a', np.zeros((3, 2)))], tmp_path / 'x.png')


def test_plot_retrieval_writes_a_png_of_the_grid_size(tmp_path):
  rng = np.random.default_rng(0)
  num_queries, k = 3, 4
  path = evaluation.plots.plot_retrieval(
    rng.random((num_queries, 8, 8, 1)),
    rng.random((num_queries, k, 12, 10, 3)),
    tmp_path / 'retrieval.png',
    scores=rng.random((num_queries, k)),
    correct=rng.random((num_queries, k)) > 0.5,
    query_captions=['a', 'b', 'c'],
    neighbour_captions=[['a'] * k] * num_queries,
    title='retrieval',
  )
  _assert_png(path)
  pixels = mpl_image.imread(path)
  assert pixels.shape[:2] == (
    num_queries * evaluation.plots.RETRIEVAL_CELL_HEIGHT
    + evaluation.plots.RETRIEVAL_TITLE_HEIGHT,
    (k + 1) * evaluation.plots.RETRIEVAL_CELL_WIDTH,
  )
  # Without labels, scores or title: grey frames, no title band.
  untitled = evaluation.plots.plot_retrieval(
    rng.random((1, 8, 8, 3)), rng.random((1, 2, 8, 8, 3)), tmp_path / 'u.png'
  )
  assert mpl_image.imread(untitled).shape[:2] == (
    evaluation.plots.RETRIEVAL_CELL_HEIGHT,
    3 * evaluation.plots.RETRIEVAL_CELL_WIDTH,
  )


def test_plot_retrieval_checks_its_arguments(tmp_path):
  queries = np.zeros((2, 8, 8, 1))
  neighbours = np.zeros((2, 3, 8, 8, 1))
  with pytest.raises(ValueError, match='channels'):
    evaluation.plots.plot_retrieval(
      np.zeros((2, 8, 8, 2)), neighbours, tmp_path / 'x.png'
    )
  with pytest.raises(ValueError, match=r'`scores` must have shape \(2, 3\)'):
    evaluation.plots.plot_retrieval(
      queries, neighbours, tmp_path / 'x.png', scores=np.zeros((2, 2))
    )
  with pytest.raises(ValueError, match='`query_captions` must hold 2'):
    evaluation.plots.plot_retrieval(
      queries, neighbours, tmp_path / 'x.png', query_captions=['a']
    )
