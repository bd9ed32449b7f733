"""Tests for `evaluation.multilabel` against scikit-learn and NumPy loops."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

import evaluation


def _reference_counts(scores, targets, threshold):
  """Per-label correct / predicted / ground-truth positives, by loops."""
  num_samples, num_labels = targets.shape
  correct = np.zeros(num_labels)
  predicted = np.zeros(num_labels)
  positive = np.zeros(num_labels)
  for i in range(num_samples):
    for label in range(num_labels):
      is_predicted = scores[i, label] >= threshold
      is_positive = targets[i, label] == 1
      correct[label] += is_predicted and is_positive
      predicted[label] += is_predicted
      positive[label] += is_positive
  return correct, predicted, positive


def _ratio(numerator, denominator):
  return numerator / denominator if denominator else 0.0


def _f1(precision, recall):
  return _ratio(2 * precision * recall, precision + recall)


def _reference_metrics(scores, targets, threshold):
  correct, predicted, positive = _reference_counts(scores, targets, threshold)
  num_labels = targets.shape[1]
  cp = np.mean(
    [_ratio(correct[label], predicted[label]) for label in range(num_labels)]
  )
  cr = np.mean(
    [_ratio(correct[label], positive[label]) for label in range(num_labels)]
  )
  op = _ratio(correct.sum(), predicted.sum())
  overall_recall = _ratio(correct.sum(), positive.sum())
  aps = [
    sklearn_metrics.average_precision_score(targets[:, label], scores[:, label])
    for label in range(num_labels)
    if targets[:, label].any()
  ]
  return {
    'map': np.mean(aps),
    'cp': cp,
    'cr': cr,
    'cf1': _f1(cp, cr),
    'op': op,
    'or': overall_recall,
    'of1': _f1(op, overall_recall),
  }


def test_hand_example():
  scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
  targets = np.array([[1, 0], [0, 1], [1, 1]])
  # Predicted (>= 0.5): [[1, 0], [1, 1], [0, 0]].
  # Label 0: 1 correct of 2 predicted, 2 positives -> P 1/2, R 1/2.
  # Label 1: 1 correct of 1 predicted, 2 positives -> P 1, R 1/2.
  # CP 3/4, CR 1/2, CF1 = 2(3/8)/(5/4) = 3/5.
  # Overall: 2 correct, 3 predicted, 4 positives -> OP 2/3, OR 1/2,
  # OF1 = (2/3)/(7/6) = 4/7.
  # AP label 0: ranks 0.9 (+), 0.6 (-), 0.1 (+) -> (1 + 2/3)/2 = 5/6.
  # AP label 1: ranks 0.7 (+), 0.4 (+), 0.2 (-) -> 1. mAP = 11/12.
  result = evaluation.multilabel_metrics(scores, targets)
  assert result == pytest.approx(
    {
      'map': 11 / 12,
      'cp': 3 / 4,
      'cr': 1 / 2,
      'cf1': 3 / 5,
      'op': 2 / 3,
      'or': 1 / 2,
      'of1': 4 / 7,
    }
  )


def test_matches_references_on_random_data():
  rng = np.random.default_rng(0)
  scores = rng.random((60, 8))
  targets = (rng.random((60, 8)) < 0.3).astype(np.int32)
  targets[:, 2] = 0  # No positive: skipped by mAP, recall counted as 0.
  scores[:, 5] = 0.1  # Never predicted: precision counted as 0.
  for threshold in (0.5, 0.3):
    result = evaluation.multilabel_metrics(scores, targets, threshold=threshold)
    assert result == pytest.approx(
      _reference_metrics(scores, targets, threshold), rel=1e-12
    )
  predictions = scores >= 0.5
  result = evaluation.multilabel_metrics(scores, targets)
  assert result['cp'] == pytest.approx(
    sklearn_metrics.precision_score(
      targets, predictions, average='macro', zero_division=0
    )
  )
  assert result['or'] == pytest.approx(
    sklearn_metrics.recall_score(
      targets, predictions, average='micro', zero_division=0
    )
  )


def test_average_precision_per_label_matches_sklearn():
  rng = np.random.default_rng(1)
  scores = jnp.asarray(rng.normal(size=(40, 5)), jnp.float32)
  targets = (rng.random((40, 5)) < 0.4).astype(bool)
  targets[:, 0] = False
  result = evaluation.average_precision_per_label(scores, targets)
  assert np.isnan(result[0])
  for label in range(1, 5):
    assert result[label] == pytest.approx(
      sklearn_metrics.average_precision_score(
        targets[:, label], np.asarray(scores)[:, label]
      )
    )


def test_threshold_is_inclusive_and_no_positive_anywhere_gives_nan_map():
  result = evaluation.multilabel_metrics(
    np.array([[0.5, 0.2]]), np.array([[0, 0]])
  )
  assert np.isnan(result['map'])
  # The 0.5 score is a (wrong) prediction: OP = 0/1, not 0/0.
  assert result['op'] == 0.0


@pytest.mark.parametrize(
  ('scores', 'targets', 'error', 'name'),
  [
    (np.zeros((3, 2)), np.zeros((3, 3)), ValueError, 'targets'),
    (np.zeros(3), np.zeros(3), ValueError, 'scores'),
    (np.zeros((3, 2)), np.zeros((3, 2, 1)), ValueError, 'targets'),
    (np.zeros((3, 2)), np.full((3, 2), 2), ValueError, 'targets'),
    (np.zeros((3, 2), int), np.zeros((3, 2)), TypeError, 'scores'),
    (np.zeros((0, 2)), np.zeros((0, 2)), ValueError, 'targets'),
  ],
)
def test_rejects_bad_input(scores, targets, error, name):
  with pytest.raises(error, match=name):
    evaluation.multilabel_metrics(scores, targets)


# ---------------------------------------------------------------------------
# Top-k (ML-GCN's overall_topk).
# ---------------------------------------------------------------------------


def _reference_top_k(scores, targets, threshold, k):
  """ML-GCN's rule by loops: among the k best (lower index on ties) and at
  or above the threshold; then the thresholded metrics on 1 / 0 scores."""
  predicted = np.zeros(scores.shape)
  for i in range(len(scores)):
    order = sorted(
      range(scores.shape[1]), key=lambda j, i=i: (-scores[i, j], j)
    )
    for j in order[:k]:
      predicted[i, j] = float(scores[i, j] >= threshold)
  result = _reference_metrics(predicted, targets, 0.5)
  result['map'] = _reference_metrics(scores, targets, threshold)['map']
  return result


@pytest.mark.parametrize('threshold, k', [(0.5, 3), (0.2, 1), (0.0, 8)])
def test_top_k_matches_reference_on_random_data(threshold, k):
  rng = np.random.default_rng(2)
  # Rounded scores: ties inside an example's top k happen.
  scores = np.round(rng.random((50, 8)), 1)
  targets = (rng.random((50, 8)) < 0.3).astype(np.int32)
  result = evaluation.multilabel_metrics(
    scores, targets, threshold=threshold, top_k=k
  )
  reference = _reference_top_k(scores, targets, threshold, k)
  assert set(result) == {'map'} | {
    f'{name}@{k}' for name in ('cp', 'cr', 'cf1', 'op', 'or', 'of1')
  }
  for name, value in reference.items():
    key = name if name == 'map' else f'{name}@{k}'
    np.testing.assert_allclose(result[key], value, rtol=1e-12, err_msg=key)


def test_top_k_hand_example_and_ties():
  # Example 0: top 2 = labels 0, 1 (0.9, 0.8); label 2 (0.6) is cut.
  # Example 1: labels 1 and 2 tie at 0.7 behind label 3; the tie goes to
  # label 1, so label 2 (a positive) is not predicted.
  scores = np.array([[0.9, 0.8, 0.6, 0.1], [0.1, 0.7, 0.7, 0.8]])
  targets = np.array([[1, 0, 1, 0], [0, 0, 1, 1]])
  result = evaluation.multilabel_metrics(scores, targets, top_k=2)
  # Correct: (0, 0) and (1, 3); predicted 4; positive 4.
  assert result['op@2'] == 0.5
  assert result['or@2'] == 0.5
  # Per label correct / predicted: 1/1, 0/2, 0/0, 1/1; positives 1, 0, 2, 1.
  assert result['cp@2'] == pytest.approx((1 + 0 + 0 + 1) / 4)
  assert result['cr@2'] == pytest.approx((1 + 0 + 0 + 1) / 4)


def test_top_k_none_and_large_k_keep_the_thresholded_values():
  rng = np.random.default_rng(3)
  scores = rng.random((30, 5))
  targets = (rng.random((30, 5)) < 0.4).astype(np.int32)
  plain = evaluation.multilabel_metrics(scores, targets)
  large = evaluation.multilabel_metrics(scores, targets, top_k=5)
  assert plain == pytest.approx(_reference_metrics_dict(scores, targets))
  assert {key.removesuffix('@5'): value for key, value in large.items()} == (
    plain
  )


def _reference_metrics_dict(scores, targets):
  return {
    key: float(value)
    for key, value in _reference_metrics(scores, targets, 0.5).items()
  }


@pytest.mark.parametrize(
  'top_k, error', [(0, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_rejects_bad_top_k(top_k, error):
  with pytest.raises(error, match='`top_k`'):
    evaluation.multilabel_metrics(
      np.ones((2, 3)), np.ones((2, 3), np.int32), top_k=top_k
    )
