"""Tests for `evaluation.verification` against float64 loops written from
the definitions and against insightface's fold semantics."""

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

import evaluation
from evaluation import verification


def _pairs(num_pairs, seed=0, separation=1.0):
  rng = np.random.default_rng(seed)
  same = rng.random(num_pairs) < 0.5
  similarities = rng.normal(size=num_pairs) * 0.3 + separation * 0.3 * same
  return similarities.astype(np.float32), same


def _accuracy(similarities, same, threshold):
  return np.mean((similarities > threshold) == same)


def _reference(similarities, same, num_folds, grid):
  """Brute force: every threshold of `grid` on every fold, in order."""
  similarities = similarities.astype(np.float64)
  n = len(same)
  # The first n % num_folds folds hold one pair more (scikit-learn's KFold).
  sizes = [n // num_folds + (k < n % num_folds) for k in range(num_folds)]
  starts = np.cumsum([0, *sizes])
  accuracies, chosen = [], []
  for k in range(num_folds):
    test = np.zeros(n, bool)
    test[starts[k] : starts[k + 1]] = True
    train = ~test if num_folds > 1 else test
    best, best_accuracy = None, -1.0
    for threshold in grid:
      accuracy = _accuracy(similarities[train], same[train], threshold)
      if accuracy > best_accuracy:
        best, best_accuracy = threshold, accuracy
    accuracies.append(_accuracy(similarities[test], same[test], best))
    chosen.append(best)
  return np.mean(accuracies), np.std(accuracies), np.mean(chosen)


def _exact_grid(similarities):
  values = np.unique(similarities.astype(np.float64))
  return [values[0] - 1, *((values[:-1] + values[1:]) / 2), values[-1] + 1]


def _reference_tar(similarities, same, far_target):
  """Largest TAR over all thresholds of the exact grid with FAR <= target."""
  best = 0.0
  for threshold in _exact_grid(similarities):
    accepted = similarities > threshold
    far = np.mean(accepted[~same])
    if far <= far_target:
      best = max(best, np.mean(accepted[same]))
  return best


@pytest.mark.parametrize('num_folds', [1, 3, 10])
def test_exact_search_matches_brute_force(num_folds):
  similarities, same = _pairs(203, seed=num_folds)
  results = evaluation.verification_metrics(
    similarities, same, num_folds=num_folds
  )
  accuracy, std, threshold = _reference(
    similarities, same, num_folds, _exact_grid(similarities)
  )
  assert results['accuracy'] == pytest.approx(accuracy, abs=1e-12)
  assert results['accuracy_std'] == pytest.approx(std, abs=1e-12)
  assert results['threshold'] == pytest.approx(threshold, abs=1e-12)
  for far in (1e-3, 1e-4):
    assert results[verification.far_key(far)] == pytest.approx(
      _reference_tar(similarities, same, far)
    )
  assert results['auc'] == pytest.approx(
    sklearn_metrics.roc_auc_score(same, similarities)
  )


def test_given_grid_is_used_as_is():
  similarities, same = _pairs(150, seed=3)
  grid = np.linspace(0.9, -0.9, 7)
  results = evaluation.verification_metrics(similarities, same, thresholds=grid)
  accuracy, std, threshold = _reference(similarities, same, 10, grid)
  assert results['accuracy'] == pytest.approx(accuracy, abs=1e-12)
  assert results['accuracy_std'] == pytest.approx(std, abs=1e-12)
  assert results['threshold'] == pytest.approx(threshold, abs=1e-12)


def _insightface_semantics(dist, issame, grid, num_folds):
  """insightface's calculate_roc, restated: squared distances, predicted
  same when d < t, first best threshold, contiguous KFold."""
  folds = np.array_split(np.arange(len(dist)), num_folds)
  accuracy = []
  for fold in folds:
    train = np.setdiff1d(np.arange(len(dist)), fold)
    train_accuracy = [np.mean((dist[train] < t) == issame[train]) for t in grid]
    t = grid[int(np.argmax(train_accuracy))]
    accuracy.append(np.mean((dist[fold] < t) == issame[fold]))
  return np.mean(accuracy), np.std(accuracy)


def test_equals_insightface_on_its_grid():
  rng = np.random.default_rng(7)
  num_pairs = 300
  issame = rng.random(num_pairs) < 0.5
  a = rng.normal(size=(num_pairs, 8))
  b = a * issame[:, None] * 1.5 + rng.normal(size=(num_pairs, 8))
  a /= np.linalg.norm(a, axis=1, keepdims=True)
  b /= np.linalg.norm(b, axis=1, keepdims=True)
  dist = np.sum((a - b) ** 2, axis=1)
  cos = np.sum(a * b, axis=1)
  grid = np.arange(0, 4, 0.01)
  accuracy, std = _insightface_semantics(dist, issame, grid, 10)
  results = evaluation.verification_metrics(
    cos, issame, thresholds=1 - grid / 2
  )
  assert results['accuracy'] == pytest.approx(accuracy, abs=1e-12)
  assert results['accuracy_std'] == pytest.approx(std, abs=1e-12)
  assert 0.6 < results['accuracy'] < 1.0


def test_perfectly_separated_pairs():
  similarities = np.array([0.9, 0.4, 0.6, 0.1, 0.8, 0.4, 0.6, 0.2])
  same = np.array([True, False, True, False] * 2)
  results = evaluation.verification_metrics(similarities, same, num_folds=2)
  assert results['accuracy'] == 1.0
  assert results['accuracy_std'] == 0.0
  assert results['auc'] == 1.0
  assert results['eer'] == 0.0
  assert results['tar@far=1e-3'] == 1.0
  assert results['tar@far=1e-4'] == 1.0
  # In each fold's other fold 0.4 is the highest different pair and 0.6 the
  # lowest same pair: the one midpoint between them, 0.5, is chosen.
  assert results['threshold'] == pytest.approx(0.5)


def test_hand_made_rates():
  # Same pairs 0.9, 0.6, 0.3; different 0.8, 0.2, 0.1, 0.0.
  similarities = np.array([0.9, 0.8, 0.6, 0.3, 0.2, 0.1, 0.0])
  same = np.array([1, 0, 1, 1, 0, 0, 0])
  results = evaluation.verification_metrics(
    similarities, same, num_folds=1, far_targets=(0.25, 0.5)
  )
  # At t in (0.2, 0.3): TA 3, TR 3, accuracy 6/7, the best.
  assert results['accuracy'] == pytest.approx(6 / 7)
  assert results['threshold'] == pytest.approx(0.25)
  # FAR <= 1/4 allows the one false accept at 0.8: TAR 3/3 at t = 0.25.
  assert results['tar@far=2.5e-1'] == pytest.approx(1.0)
  # AUC: of 12 (same, different) pairs, one is ordered wrongly (0.6 < 0.8)
  # and another (0.3 < 0.8): 10/12.
  assert results['auc'] == pytest.approx(10 / 12)
  # At t in (0.3, 0.6) FAR 1/4 < FRR 1/3; at t in (0.2, 0.3) FAR 1/4 >
  # FRR 0: the segment between them, at FAR 1/4, crosses FAR = FRR.
  assert results['eer'] == pytest.approx(0.25)


def test_far_key():
  assert verification.far_key(1e-3) == 'tar@far=1e-3'
  assert verification.far_key(1e-6) == 'tar@far=1e-6'


def test_roc_runs_from_origin_to_one():
  similarities, same = _pairs(50)
  far, tar, thresholds = evaluation.verification_roc(similarities, same)
  assert (far[0], tar[0]) == (0.0, 0.0)
  assert (far[-1], tar[-1]) == (1.0, 1.0)
  assert np.all(np.diff(thresholds) < 0)
  assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
  assert np.trapezoid(tar, far) == pytest.approx(
    sklearn_metrics.roc_auc_score(same, similarities)
  )


def test_exact_threshold_is_optimal_over_any_grid():
  similarities, same = _pairs(120, seed=5, separation=2.0)
  exact = evaluation.verification_metrics(similarities, same, num_folds=1)
  grid = evaluation.verification_metrics(
    similarities, same, num_folds=1, thresholds=np.linspace(-1, 1, 201)
  )
  assert exact['accuracy'] >= grid['accuracy']


@pytest.mark.parametrize(
  ('kwargs', 'error', 'message'),
  [
    (dict(similarities=np.zeros((2, 2))), ValueError, 'rank 1'),
    (dict(similarities=np.arange(4)), TypeError, 'floating'),
    (dict(same=np.array([True, False, True])), ValueError, 'same shape'),
    (dict(same=np.array([True] * 4)), ValueError, 'both'),
    (dict(same=np.array([0, 1, 2, 0])), ValueError, 'only 0 and 1'),
    (dict(same=np.array([0.0, 1.0, 1.0, 0.0])), TypeError, 'bool'),
    (dict(similarities=np.array([0, np.nan, 0, 1.0])), ValueError, 'finite'),
    (dict(num_folds=5), ValueError, 'at most the number of pairs'),
    (dict(num_folds=0), ValueError, '>= 1'),
    (dict(far_targets=(0.0,)), ValueError, 'far_targets'),
    (dict(thresholds=np.zeros(0)), ValueError, 'at least one'),
  ],
)
def test_bad_input_is_refused_in_one_line(kwargs, error, message):
  arguments = dict(
    similarities=np.array([0.1, 0.2, 0.3, 0.4]),
    same=np.array([True, False, True, False]),
    num_folds=2,
  )
  arguments.update(kwargs)
  similarities = arguments.pop('similarities')
  same = arguments.pop('same')
  with pytest.raises(error, match=message) as info:
    evaluation.verification_metrics(similarities, same, **arguments)
  assert '\n' not in str(info.value)
