"""Tests for `evaluation.reid_metrics` against definitions and torchreid."""

import numpy as np
import pytest

import evaluation

KEYS = ('cmc@1', 'cmc@5', 'cmc@10', 'map', 'minp')


# ---------------------------------------------------------------------------
# References.
# ---------------------------------------------------------------------------


def _distances(queries, gallery, metric):
  queries = np.asarray(queries, np.float64)
  gallery = np.asarray(gallery, np.float64)
  if metric == 'cosine':
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    return 1.0 - queries @ gallery.T
  return np.linalg.norm(queries[:, None] - gallery[None], axis=-1)


def _definition(q, qi, qc, g, gi, gc, ranks, metric):
  """Brute force from the definition, one query and one image at a time."""
  distances = _distances(q, g, metric)
  totals = {f'cmc@{k}': 0.0 for k in ranks}
  totals.update(map=0.0, minp=0.0)
  valid = 0
  for i in range(len(q)):
    left = [
      j
      for j in range(len(g))
      if gi[j] != -1 and not (gi[j] == qi[i] and gc[j] == qc[i])
    ]
    left.sort(key=lambda j, i=i: (distances[i, j], j))
    relevant = [gi[j] == qi[i] for j in left]
    matches = sum(relevant)
    if not matches:
      continue
    valid += 1
    match_ranks = [r + 1 for r, hit in enumerate(relevant) if hit]
    for k in ranks:
      totals[f'cmc@{k}'] += float(match_ranks[0] <= k)
    totals['map'] += (
      sum((n + 1) / rank for n, rank in enumerate(match_ranks)) / matches
    )
    totals['minp'] += matches / match_ranks[-1]
  result = {key: value / valid for key, value in totals.items()}
  result['num_valid_queries'] = valid
  result['num_skipped_queries'] = len(q) - valid
  return result


def _torchreid_semantics(q, qi, qc, g, gi, gc, ranks, metric):
  """torchreid's eval_market1501 loop, re-written, on the data its reader
  keeps (junk gallery images dropped); ties by gallery row."""
  keep = gi != -1
  g, gi, gc = g[keep], gi[keep], gc[keep]
  distmat = _distances(q, g, metric)
  indices = np.argsort(distmat, axis=1, kind='stable')
  matches = (gi[indices] == qi[:, None]).astype(np.int32)
  max_rank = max(ranks)
  all_cmc, all_ap, all_inp = [], [], []
  for i in range(len(q)):
    order = indices[i]
    removed = (gi[order] == qi[i]) & (gc[order] == qc[i])
    raw = matches[i][~removed]
    if not raw.any():
      continue
    cumulative = raw.cumsum()
    last = np.flatnonzero(raw).max()
    all_inp.append(cumulative[last] / (last + 1.0))
    cmc = np.minimum(cumulative, 1)
    # Past the end of a short ranking the first match stays found.
    cmc = np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode='edge')
    all_cmc.append(cmc[:max_rank])
    precision = cumulative / np.arange(1, len(raw) + 1)
    all_ap.append(np.sum(precision * raw) / raw.sum())
  cmc = np.mean(all_cmc, axis=0)
  result = {f'cmc@{k}': cmc[k - 1] for k in ranks}
  result.update(map=np.mean(all_ap), minp=np.mean(all_inp))
  return result


def _random_reid(seed, num_queries=37, num_gallery=120, dim=6, num_ids=9):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_ids + 2, dim))
  # Two query identities are absent from the gallery: skipped queries.
  qi = rng.integers(1, num_ids + 2, num_queries)
  gi = rng.integers(0, num_ids, num_gallery)
  gi[rng.random(num_gallery) < 0.1] = -1  # Junk.
  q = centres[qi] + rng.normal(size=(num_queries, dim))
  g = centres[np.maximum(gi, 0)] + rng.normal(size=(num_gallery, dim))
  qc = rng.integers(0, 3, num_queries)
  gc = rng.integers(0, 3, num_gallery)
  return q, qi, qc, g, gi, gc


# ---------------------------------------------------------------------------
# Random data.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
@pytest.mark.parametrize('chunk_size', [5, 256])
def test_matches_definition_and_torchreid(metric, chunk_size):
  data = _random_reid(0)
  result = evaluation.reid_metrics(
    *data, ranks=(1, 5, 10), metric=metric, chunk_size=chunk_size
  )
  definition = _definition(*data, (1, 5, 10), metric)
  torchreid = _torchreid_semantics(*data, (1, 5, 10), metric)
  for key in KEYS:
    np.testing.assert_allclose(result[key], definition[key], rtol=1e-12)
    np.testing.assert_allclose(result[key], torchreid[key], rtol=1e-12)
  assert result['num_valid_queries'] == definition['num_valid_queries']
  assert result['num_skipped_queries'] == definition['num_skipped_queries']
  assert 0 < result['num_valid_queries'] < 37  # Some queries are skipped.


def test_float32_inputs():
  q, qi, qc, g, gi, gc = _random_reid(1)
  result = evaluation.reid_metrics(
    q.astype(np.float32), qi, qc, g.astype(np.float32), gi, gc
  )
  definition = _definition(q, qi, qc, g, gi, gc, (1, 5, 10), 'euclidean')
  for key in KEYS:
    np.testing.assert_allclose(result[key], definition[key], atol=1e-3)


# ---------------------------------------------------------------------------
# Hand-made cases.
# ---------------------------------------------------------------------------


def _line(positions):
  return np.asarray(positions, np.float64)[:, None]


def test_only_same_camera_match_is_skipped():
  # Query 0 (id 1, camera 0) has its only match in camera 0: skipped.
  # Query 1 (id 2, camera 0): gallery order 3(id 2) nearest, a match.
  result = evaluation.reid_metrics(
    _line([0.0, 10.0]),
    np.array([1, 2]),
    np.array([0, 0]),
    _line([0.1, 5.0, 9.0, 10.2]),
    np.array([1, 3, 4, 2]),
    np.array([0, 1, 1, 1]),
    ranks=(1,),
  )
  assert result == {
    'cmc@1': 1.0,
    'map': 1.0,
    'minp': 1.0,
    'num_valid_queries': 1,
    'num_skipped_queries': 1,
  }


def test_hand_computed_ranking_with_junk_and_distractor():
  # Query at 0, id 1, camera 0. Gallery by distance: 0.5 (id 1, cam 0:
  # removed), 1 (junk: removed), 2 (id 0 distractor), 3 (id 1, cam 1),
  # 4 (id 5), 5 (id 1, cam 2). Ranking left: distractor, match, id 5,
  # match: AP = (1/2 + 2/4) / 2, INP = 2 / 4, first match at rank 2.
  result = evaluation.reid_metrics(
    _line([0.0]),
    np.array([1]),
    np.array([0]),
    _line([5.0, 0.5, 1.0, 2.0, 3.0, 4.0]),
    np.array([1, 1, -1, 0, 1, 5]),
    np.array([2, 0, 1, 1, 1, 1]),
    ranks=(1, 2, 50),
  )
  assert result['cmc@1'] == 0.0
  assert result['cmc@2'] == 1.0
  assert result['cmc@50'] == 1.0
  assert result['map'] == pytest.approx(0.5)
  assert result['minp'] == pytest.approx(0.5)


def test_ties_go_to_the_lower_gallery_row():
  # Both gallery images at the same distance: the non-match (row 0) first.
  result = evaluation.reid_metrics(
    _line([0.0]),
    np.array([1]),
    np.array([0]),
    _line([1.0, 1.0]),
    np.array([2, 1]),
    np.array([1, 1]),
    ranks=(1,),
  )
  assert result['cmc@1'] == 0.0
  assert result['map'] == pytest.approx(0.5)
  assert result['minp'] == pytest.approx(0.5)


def test_no_valid_query_gives_nan():
  result = evaluation.reid_metrics(
    _line([0.0]),
    np.array([-1]),
    np.array([0]),
    _line([1.0]),
    np.array([-1]),
    np.array([1]),
  )
  assert np.isnan(result['map']) and np.isnan(result['cmc@1'])
  assert result['num_valid_queries'] == 0
  assert result['num_skipped_queries'] == 1


@pytest.mark.parametrize(
  'kwargs, error, message',
  [
    ({'ranks': ()}, ValueError, '`ranks`'),
    ({'ranks': 1}, TypeError, '`ranks`'),
    ({'ranks': (0,)}, ValueError, '`ranks`'),
    ({'metric': 'manhattan'}, ValueError, '`metric`'),
    ({'chunk_size': 0}, ValueError, '`chunk_size`'),
  ],
)
def test_bad_options(kwargs, error, message):
  with pytest.raises(error, match=message):
    evaluation.reid_metrics(*_random_reid(0, 3, 4), **kwargs)


def test_bad_arrays():
  q, qi, qc, g, gi, gc = _random_reid(0, 3, 4)
  with pytest.raises(ValueError, match='`query_cameras`'):
    evaluation.reid_metrics(q, qi, qc[:2], g, gi, gc)
  with pytest.raises(TypeError, match='`gallery_cameras`'):
    evaluation.reid_metrics(q, qi, qc, g, gi, gc.astype(float))
  with pytest.raises(ValueError, match='`gallery_embeddings`'):
    evaluation.reid_metrics(q, qi, qc, g[:, :2], gi, gc)
