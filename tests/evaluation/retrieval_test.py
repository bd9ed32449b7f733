"""Tests for `evaluation.retrieval` against hand-computed and O(n^2) values."""

import collections

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import cluster
from sklearn import metrics as sklearn_metrics

import evaluation
from evaluation import retrieval

KNN_KEYS = ('precision@1', 'r_precision', 'map@r', 'mrr', 'map@k')


# ---------------------------------------------------------------------------
# Brute-force reference: full similarity matrix, one query at a time.
# ---------------------------------------------------------------------------


def _reference_metrics(
  queries,
  query_labels,
  references,
  reference_labels,
  ks,
  metric,
  exclude_self,
  knn_k=None,
):
  if knn_k is None:  # PML's default: the largest reference label count.
    knn_k = max(collections.Counter(reference_labels.tolist()).values())
  knn_k = min(knn_k, len(references) - int(exclude_self))
  queries = np.asarray(queries, np.float64)
  references = np.asarray(references, np.float64)
  totals = {f'recall@{k}': 0.0 for k in ks}
  totals.update({key: 0.0 for key in KNN_KEYS})
  included = 0
  for i, query in enumerate(queries):
    candidates = [
      j for j in range(len(references)) if not (exclude_self and i == j)
    ]
    if metric == 'cosine':
      cosines = [
        query
        @ references[j]
        / (np.linalg.norm(query) * np.linalg.norm(references[j]))
        for j in candidates
      ]
      order = np.argsort(-np.array(cosines), kind='stable')
    else:
      distances = [np.linalg.norm(query - references[j]) for j in candidates]
      order = np.argsort(np.array(distances), kind='stable')
    relevant = [
      reference_labels[candidates[o]] == query_labels[i] for o in order
    ]
    r = sum(relevant)
    if r == 0:
      continue  # Lone label: excluded from every kNN metric.
    included += 1
    for k in ks:
      totals[f'recall@{k}'] += float(any(relevant[:k]))
    totals['precision@1'] += float(relevant[0])
    totals['r_precision'] += sum(relevant[:r]) / r
    average_precision = 0.0
    for rank in range(1, r + 1):
      if relevant[rank - 1]:
        average_precision += sum(relevant[:rank]) / rank
    totals['map@r'] += average_precision / r
    within = relevant[:knn_k]
    if any(within):
      totals['mrr'] += 1.0 / (within.index(True) + 1)
      totals['map@k'] += sum(
        sum(within[:rank]) / rank
        for rank in range(1, knn_k + 1)
        if within[rank - 1]
      ) / sum(within)
  return {key: value / included for key, value in totals.items()}


def _knn_only(result):
  return {key: value for key, value in result.items() if key != 'nmi'}


# ---------------------------------------------------------------------------
# Hand-made example.
# ---------------------------------------------------------------------------

# Seven points on a line, x = position, three labels; label 2 has one point,
# so that query is excluded. Neighbour orders (label of each neighbour,
# nearest first; R = number of other points with the query's label):
#   q0 x=0.0 L0 R=2: 1(L0) 2(L1) 3(L0) 4(L1) 6(L1) 5   rel 1 0 1 0 0 0
#   q1 x=1.0 L0 R=2: 0(L0) 2(L1) 3(L0) 4(L1) 6(L1) 5   rel 1 0 1 0 0 0
#   q2 x=2.2 L1 R=2: 1(L0) 3(L0) 0(L0) 4(L1) 6(L1) 5   rel 0 0 0 1 1 0
#   q3 x=4.0 L0 R=2: 4(L1) 2(L1) 6(L1) 1(L0) 0(L0) 5   rel 0 0 0 1 1 0
#   q4 x=5.0 L1 R=2: 3(L0) 6(L1) 2(L1) 1(L0) 0(L0) 5   rel 0 1 1 0 0 0
#   q5 x=20  L2 R=0: excluded
#   q6 x=6.5 L1 R=2: 4(L1) 3(L0) 2(L1) 1(L0) 0(L0) 5   rel 1 0 1 0 0 0
# Per query (q0 q1 q2 q3 q4 q6):
#   R@1        1 1 0 0 0 1   -> 3/6
#   R@2        1 1 0 0 1 1   -> 4/6
#   R@4        1 1 1 1 1 1   -> 1
#   R-prec   1/2 1/2 0 0 1/2 1/2        -> 2/6
#   MAP@R    1/2 1/2 0 0 (1/2)(1/2) 1/2 -> 1.75/6 = 7/24
# k of MRR and MAP@k: 3, the largest label count (labels 0 and 1).
#   MRR      1 1 0 0 1/2 1              -> 3.5/6 = 7/12
#   MAP@k    5/6 5/6 0 0 7/12 5/6       -> (30/12 + 7/12)/6 = 37/72
_POSITIONS = np.array([0.0, 1.0, 2.2, 4.0, 5.0, 20.0, 6.5])
_LABELS = np.array([0, 0, 1, 0, 1, 2, 1])
_EXPECTED = {
  'recall@1': 3 / 6,
  'recall@2': 4 / 6,
  'recall@4': 1.0,
  'precision@1': 3 / 6,
  'r_precision': 2 / 6,
  'map@r': 7 / 24,
  'mrr': 7 / 12,
  'map@k': 37 / 72,
}


def test_hand_example_euclidean():
  embeddings = np.stack([_POSITIONS, np.full(7, 3.0)], axis=1)
  result = evaluation.retrieval_metrics(
    embeddings, _LABELS, ks=(1, 2, 4), metric='euclidean', with_nmi=False
  )
  assert result == pytest.approx(_EXPECTED)


def test_hand_example_cosine_ignores_norms():
  # The same order as angles (0.1 rad per unit, all below pi), with radii
  # that differ wildly: cosine similarity ranks by angle alone.
  angles = 0.1 * _POSITIONS
  radii = np.array([1.0, 30.0, 0.2, 5.0, 2.0, 0.7, 11.0])
  embeddings = radii[:, None] * np.stack(
    [np.cos(angles), np.sin(angles)], axis=1
  )
  result = evaluation.retrieval_metrics(
    embeddings, _LABELS, ks=(1, 2, 4), metric='cosine', with_nmi=False
  )
  assert result == pytest.approx(_EXPECTED)


def test_self_match_is_excluded_by_index_not_by_distance():
  # Rows 0 and 1 coincide but carry different labels; rows 2 and 3 coincide
  # and share a label; row 4 is nearest to rows 2 and 3 (distance 0.22, vs
  # 1.2 to rows 0 and 1). Included queries (row 1 is alone in label 1):
  #   q0 -> row 1 (distance 0, wrong label)  q2 -> row 3 (right)
  #   q3 -> row 2 (right)                    q4 -> row 2 or 3 (wrong)
  # so precision@1 = 2/4. Dropping "the nearest point" instead of the row
  # itself would count q0's self-duplicate as right.
  embeddings = np.array(
    [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.2, 0.9]]
  )
  labels = np.array([0, 1, 2, 2, 0])
  result = evaluation.retrieval_metrics(
    embeddings, labels, ks=(1,), metric='euclidean', with_nmi=False
  )
  assert result['precision@1'] == pytest.approx(2 / 4)
  expected = _reference_metrics(
    embeddings, labels, embeddings, labels, (1,), 'euclidean', True
  )
  assert result == pytest.approx(expected)


# ---------------------------------------------------------------------------
# Random data against the O(n^2) reference.
# ---------------------------------------------------------------------------


def _random_set(seed, n=70, dim=5, num_classes=6):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, size=n)
  labels[-1] = 99  # A lone label.
  centres = rng.normal(size=(100, dim))
  embeddings = centres[labels] * 0.8 + rng.normal(size=(n, dim))
  return embeddings, labels


@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
def test_matches_brute_force_with_self_exclusion(metric):
  embeddings, labels = _random_set(0)
  ks = (1, 2, 4, 8, 16)
  result = evaluation.retrieval_metrics(
    embeddings, labels, ks=ks, metric=metric, with_nmi=False
  )
  expected = _reference_metrics(
    embeddings, labels, embeddings, labels, ks, metric, True
  )
  assert result == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
def test_matches_brute_force_with_separate_references(metric):
  queries, query_labels = _random_set(1, n=40)
  references, reference_labels = _random_set(2, n=90)
  query_labels[0] = 55  # No reference has this label: excluded.
  ks = (1, 3, 10)
  result = evaluation.retrieval_metrics(
    queries,
    query_labels,
    ks=ks,
    metric=metric,
    reference_embeddings=references,
    reference_labels=reference_labels,
    with_nmi=False,
  )
  expected = _reference_metrics(
    queries, query_labels, references, reference_labels, ks, metric, False
  )
  assert result == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
def test_chunked_equals_unchunked(metric):
  embeddings, labels = _random_set(3, n=53)
  kwargs = dict(ks=(1, 5), metric=metric, with_nmi=False)
  whole = evaluation.retrieval_metrics(
    embeddings, labels, chunk_size=1024, **kwargs
  )
  for chunk_size in (1, 7, 52):
    chunked = evaluation.retrieval_metrics(
      embeddings, labels, chunk_size=chunk_size, **kwargs
    )
    assert chunked == pytest.approx(whole, rel=1e-12, abs=1e-12)


def test_k_larger_than_the_reference_set_is_capped():
  embeddings, labels = _random_set(4, n=12)
  result = evaluation.retrieval_metrics(
    embeddings, labels, ks=(1, 100), with_nmi=False
  )
  # Every included query has some correct reference among all 11 others.
  assert result['recall@100'] == 1.0
  expected = _reference_metrics(
    embeddings, labels, embeddings, labels, (1, 100), 'cosine', True
  )
  assert result == pytest.approx(expected, rel=1e-12)


def test_float32_jax_input_and_large_label_values():
  embeddings, labels = _random_set(5)
  big_labels = labels.astype(np.int64) * 10**12
  result = evaluation.retrieval_metrics(
    jnp.asarray(embeddings, jnp.float32),
    jnp.asarray(big_labels),
    with_nmi=False,
  )
  expected = _reference_metrics(
    embeddings, labels, embeddings, labels, (1, 2, 4, 8), 'cosine', True
  )
  assert result == pytest.approx(expected, abs=1e-6)


def test_every_label_alone_gives_nan():
  result = evaluation.retrieval_metrics(
    np.eye(3), np.array([0, 1, 2]), with_nmi=False
  )
  assert all(np.isnan(value) for value in result.values())


# ---------------------------------------------------------------------------
# NMI.
# ---------------------------------------------------------------------------


def test_nmi_is_one_for_perfect_clusters():
  rng = np.random.default_rng(6)
  labels = np.repeat(np.array([3, 8, 11]), 20)
  centres = {3: [10.0, 0.0, 0.0], 8: [0.0, 10.0, 0.0], 11: [0.0, 0.0, 10.0]}
  embeddings = np.array([centres[label] for label in labels])
  embeddings += 0.01 * rng.normal(size=embeddings.shape)
  for metric in ('cosine', 'euclidean'):
    assert evaluation.kmeans_nmi(
      embeddings, labels, metric=metric
    ) == pytest.approx(1.0)
    result = evaluation.retrieval_metrics(embeddings, labels, metric=metric)
    assert result['nmi'] == pytest.approx(1.0)


@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
def test_nmi_equals_sklearn_on_the_same_kmeans(metric):
  embeddings, labels = _random_set(7)
  x = embeddings
  if metric == 'cosine':
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
  assignment = cluster.KMeans(
    n_clusters=len(np.unique(labels)),
    n_init=retrieval.KMEANS_N_INIT,
    random_state=3,
  ).fit_predict(x)
  expected = sklearn_metrics.normalized_mutual_info_score(labels, assignment)
  result = evaluation.retrieval_metrics(
    embeddings, labels, metric=metric, seed=3
  )
  assert result['nmi'] == pytest.approx(expected, rel=1e-9)


def test_default_keys():
  embeddings, labels = _random_set(8, n=30)
  result = evaluation.retrieval_metrics(embeddings, labels)
  assert set(result) == {
    'recall@1',
    'recall@2',
    'recall@4',
    'recall@8',
    'precision@1',
    'r_precision',
    'map@r',
    'mrr',
    'map@k',
    'nmi',
    'ami',
  }
  assert all(isinstance(value, float) for value in result.values())


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------

_X = np.zeros((4, 3))
_Y = np.array([0, 0, 1, 1])


@pytest.mark.parametrize(
  ('kwargs', 'error', 'name'),
  [
    (dict(embeddings=_X, labels=_Y[:3]), ValueError, 'labels'),
    (dict(embeddings=_X[0], labels=_Y), ValueError, 'embeddings'),
    (dict(embeddings=_X, labels=_Y[:, None]), ValueError, 'labels'),
    (dict(embeddings=_X, labels=_Y.astype(float)), TypeError, 'labels'),
    (dict(embeddings=_X, labels=_Y, ks=(1, 0)), ValueError, 'ks'),
    (dict(embeddings=_X, labels=_Y, ks=(-2,)), ValueError, 'ks'),
    (dict(embeddings=_X, labels=_Y, ks=()), ValueError, 'ks'),
    (dict(embeddings=_X, labels=_Y, ks=3), TypeError, 'ks'),
    (dict(embeddings=_X, labels=_Y, chunk_size=0), ValueError, 'chunk'),
    (dict(embeddings=_X, labels=_Y, metric='l1'), ValueError, 'metric'),
    (
      dict(embeddings=_X, labels=_Y, reference_embeddings=_X),
      ValueError,
      'reference_labels',
    ),
    (
      dict(
        embeddings=_X,
        labels=_Y,
        reference_embeddings=np.zeros((4, 2)),
        reference_labels=_Y,
      ),
      ValueError,
      'reference_embeddings',
    ),
    (
      dict(
        embeddings=_X,
        labels=_Y,
        reference_embeddings=_X,
        reference_labels=_Y[:2],
      ),
      ValueError,
      'reference_labels',
    ),
    (dict(embeddings=_X[:1], labels=_Y[:1]), ValueError, 'embeddings'),
  ],
)
def test_rejects_bad_input(kwargs, error, name):
  embeddings = kwargs.pop('embeddings')
  labels = kwargs.pop('labels')
  with pytest.raises(error, match=name):
    evaluation.retrieval_metrics(embeddings, labels, with_nmi=False, **kwargs)


# ---------------------------------------------------------------------------
# MRR and MAP@k's k, per-class averages, AMI (PML's AccuracyCalculator).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('knn_k', [1, 5, 500])
def test_explicit_knn_k_matches_brute_force(knn_k):
  embeddings, labels = _random_set(9, n=40)
  result = evaluation.retrieval_metrics(
    embeddings, labels, knn_k=knn_k, with_nmi=False
  )
  expected = _reference_metrics(
    embeddings, labels, embeddings, labels, (1, 2, 4, 8), 'cosine', True, knn_k
  )
  assert result == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_average_per_class_is_the_mean_of_label_means():
  queries, query_labels = _random_set(10, n=50)
  references, reference_labels = _random_set(11, n=80)
  query_labels[:3] = 77  # A label no reference has: excluded.
  kwargs = dict(
    ks=(1, 4),
    metric='euclidean',
    reference_embeddings=references,
    reference_labels=reference_labels,
    with_nmi=False,
  )
  result = evaluation.retrieval_metrics(
    queries, query_labels, average_per_class=True, **kwargs
  )
  knn_k = max(collections.Counter(reference_labels.tolist()).values())
  per_label = [
    _reference_metrics(
      queries[query_labels == label],
      query_labels[query_labels == label],
      references,
      reference_labels,
      (1, 4),
      'euclidean',
      False,
      knn_k,
    )
    for label in np.unique(query_labels)
    if label in reference_labels
  ]
  expected = {key: np.mean([m[key] for m in per_label]) for key in result}
  assert result == pytest.approx(expected, rel=1e-12)
  # Unequal label sizes: the plain average differs.
  plain = evaluation.retrieval_metrics(queries, query_labels, **kwargs)
  assert plain['map@r'] != pytest.approx(result['map@r'])


def test_ami_equals_sklearn_on_the_same_kmeans():
  embeddings, labels = _random_set(12)
  x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  assignment = cluster.KMeans(
    n_clusters=len(np.unique(labels)),
    n_init=retrieval.KMEANS_N_INIT,
    random_state=0,
  ).fit_predict(x)
  result = evaluation.retrieval_metrics(embeddings, labels)
  assert result['ami'] == pytest.approx(
    sklearn_metrics.adjusted_mutual_info_score(labels, assignment), rel=1e-9
  )
  assert result['nmi'] == pytest.approx(
    sklearn_metrics.normalized_mutual_info_score(labels, assignment), rel=1e-9
  )


@pytest.mark.parametrize(
  'kwargs, error',
  [
    ({'knn_k': 0}, ValueError),
    ({'knn_k': 2.0}, TypeError),
    ({'average_per_class': 1}, TypeError),
  ],
)
def test_bad_knn_options(kwargs, error):
  embeddings, labels = _random_set(13, n=10)
  with pytest.raises(error, match=next(iter(kwargs))):
    evaluation.retrieval_metrics(embeddings, labels, with_nmi=False, **kwargs)
