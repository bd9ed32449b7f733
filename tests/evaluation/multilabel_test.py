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
