"""search: exact top-k against a float64 brute force, faiss, reports.

The command line (search.py): tests/end_to_end/search_cli_test.py.
"""

import csv
import json

import numpy as np
import pytest

from evaluation import retrieval
from inference import embeddings_file, search, search_report


def _brute_force(queries, gallery, k, exclude_self=False):
  """float64 cosine top-k by NumPy: (scores, indices)."""
  q = np.asarray(queries, np.float64)
  g = np.asarray(gallery, np.float64)
  q = q / np.linalg.norm(q, axis=1, keepdims=True)
  g = g / np.linalg.norm(g, axis=1, keepdims=True)
  similarity = q @ g.T
  if exclude_self:
    np.fill_diagonal(similarity, -np.inf)
  indices = np.argsort(-similarity, axis=1, kind='stable')[:, :k]
  return np.take_along_axis(similarity, indices, axis=1), indices


def _data(seed, n, m, dim=16, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return (
    rng.normal(size=(n, dim)).astype(dtype),
    rng.normal(size=(m, dim)).astype(dtype),
  )


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('chunk_size', [7, 1024])
def test_exact_search_is_the_brute_force(dtype, chunk_size):
  queries, gallery = _data(0, n=50, m=300, dtype=dtype)
  found = search.search(queries, gallery, k=10, chunk_size=chunk_size)
  scores, indices = _brute_force(queries, gallery, 10)
  np.testing.assert_array_equal(found.indices, indices)
  tolerance = 1e-12 if dtype == np.float64 else 1e-6
  np.testing.assert_allclose(found.scores, scores, rtol=0, atol=tolerance)


def test_exact_search_among_the_queries_excludes_each_self():
  queries, _ = _data(1, n=40, m=0)
  found = search.search(queries, None, k=5, chunk_size=16)
  scores, indices = _brute_force(queries, queries, 5, exclude_self=True)
  np.testing.assert_array_equal(found.indices, indices)
  np.testing.assert_allclose(found.scores, scores, atol=1e-6)


def test_euclidean_scores_are_negated_squared_distances():
  queries, gallery = _data(2, n=9, m=30, dtype=np.float64)
  scores, indices = retrieval.top_k_neighbours(
    queries, gallery, k=4, metric='euclidean', chunk_size=4
  )
  distances = np.sum((queries[:, None] - gallery[None]) ** 2, axis=-1)
  expected = np.argsort(distances, axis=1)[:, :4]
  np.testing.assert_array_equal(indices, expected)
  np.testing.assert_allclose(
    scores, -np.take_along_axis(distances, expected, axis=1), rtol=1e-12
  )


def test_search_argument_errors():
  queries, gallery = _data(3, n=4, m=5)
  with pytest.raises(ValueError, match='at most the 5 references'):
    search.search(queries, gallery, k=6)
  with pytest.raises(ValueError, match='index must be one of'):
    search.search(queries, gallery, k=2, index='annoy')
  with pytest.raises(ValueError, match='dim of `queries`'):
    search.search(queries, gallery[:, :3], k=2)


def test_faiss_flat_index_is_exact_and_hnsw_close():
  pytest.importorskip('faiss')
  queries, gallery = _data(4, n=30, m=500)
  exact = search.search(queries, gallery, k=10)
  flat = search.search(
    queries, gallery, k=10, index='faiss', faiss_factory='Flat'
  )
  np.testing.assert_array_equal(flat.indices, exact.indices)
  np.testing.assert_allclose(flat.scores, exact.scores, atol=1e-5)
  hnsw = search.search(
    queries, gallery, k=10, index='faiss', faiss_parameters='efSearch=64'
  )
  overlap = np.mean(
    [
      len(set(a) & set(b)) / 10
      for a, b in zip(hnsw.indices, exact.indices, strict=True)
    ]
  )
  assert overlap > 0.9
  among = search.search(queries, None, k=3, index='faiss', faiss_factory='Flat')
  np.testing.assert_array_equal(
    among.indices, search.search(queries, None, k=3).indices
  )


def _file(embeddings, labels=None, names=None, paths=None):
  return embeddings_file.Embeddings(
    embeddings=embeddings,
    workdir='w',
    step=1,
    labels=labels,
    class_names=names,
    paths=paths,
  )


def test_correct_compares_class_names_and_reports(tmp_path):
  queries = _file(
    np.eye(2, dtype=np.float32), np.array([0, 1]), ('7', '9'), ('q0', 'q1')
  )
  gallery = _file(
    np.array([[1, 0.1], [0.1, 1], [1, 0]], np.float32),
    np.array([1, 0, 1]),
    ('9', '7'),
  )
  found = search.search(queries.embeddings, gallery.embeddings, k=2)
  correct = search.correct(queries, gallery, found)
  # q0 ('7') finds rows 2 ('7'), 0 ('7'); q1 ('9') finds rows 1 ('9'), 0.
  np.testing.assert_array_equal(found.indices, [[2, 0], [1, 0]])
  np.testing.assert_array_equal(correct, [[True, True], [True, False]])
  assert search.correct(queries, _file(gallery.embeddings), found) is None
  results = search_report.records(queries, gallery, found, correct)
  assert results[1]['neighbours'][1] == {
    'rank': 2,
    'gallery': 'row 0',
    'gallery_row': 0,
    'score': pytest.approx(float(found.scores[1, 1])),
    'label': '7',
    'correct': False,
  }
  json_path = search_report.write(tmp_path / 'r.json', results, {'k': 2})
  with open(json_path) as file:
    assert json.load(file) == {'k': 2, 'results': results}
  csv_path = search_report.write(tmp_path / 'r.csv', results, {'k': 2})
  with open(csv_path) as file:
    rows = list(csv.DictReader(file))
  assert len(rows) == 4
  assert rows[3]['query'] == 'q1' and rows[3]['correct'] == 'False'
  text = search_report.text(results, max_queries=1)
  assert 'q0 [7]' in text and 'WRONG' not in text and '1 more' in text
  with pytest.raises(ValueError, match='.json or .csv'):
    search_report.write(tmp_path / 'r.txt', results, {})
