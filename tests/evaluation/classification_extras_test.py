"""Tests for `evaluation.top_k_accuracy` and `evaluation.knn_accuracy`."""

import collections

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

import evaluation


def _reference_top_k(scores, labels, k):
  hits = 0
  for row, label in zip(scores, labels, strict=True):
    order = sorted(range(len(row)), key=lambda c, row=row: (-row[c], c))
    hits += label in order[:k]
  return hits / len(labels)


@pytest.mark.parametrize('k', [1, 3, 5, 9])
def test_top_k_matches_loop_and_sklearn(k):
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(80, 9))
  labels = rng.integers(0, 9, 80)
  result = evaluation.top_k_accuracy(scores, labels, k=k)
  assert result == pytest.approx(_reference_top_k(scores, labels, k))
  if k < 9:  # scikit-learn warns at k >= the number of classes.
    # No ties in continuous scores: scikit-learn agrees.
    assert result == pytest.approx(
      sklearn_metrics.top_k_accuracy_score(labels, scores, k=k, labels=range(9))
    )
  else:
    assert result == 1.0
  if k == 1:
    assert result == evaluation.accuracy(scores, labels)


def test_top_k_ties_rank_the_lower_class_first():
  scores = np.array([[1.0, 1.0, 1.0, 0.0]] * 3)
  labels = np.array([0, 1, 2])
  # With k=2 classes 0 and 1 are taken; class 2 ties but comes third.
  assert evaluation.top_k_accuracy(scores, labels, k=2) == pytest.approx(2 / 3)
  rounded = np.round(np.random.default_rng(1).random((60, 6)), 1)
  labels = np.random.default_rng(2).integers(0, 6, 60)
  assert evaluation.top_k_accuracy(rounded, labels, k=3) == pytest.approx(
    _reference_top_k(rounded, labels, 3)
  )


def _reference_knn(train, train_labels, test, test_labels, k, metric):
  train = np.asarray(train, np.float64)
  test = np.asarray(test, np.float64)
  correct = 0
  for x, label in zip(test, test_labels, strict=True):
    if metric == 'cosine':
      distances = [
        -(x @ t) / (np.linalg.norm(x) * np.linalg.norm(t)) for t in train
      ]
    else:
      distances = [np.linalg.norm(x - t) for t in train]
    nearest = sorted(range(len(train)), key=lambda j: (distances[j], j))[:k]
    votes = collections.Counter(train_labels[j] for j in nearest)
    best = max(votes.values())
    # Tie: the tied class whose member comes first.
    prediction = next(
      train_labels[j] for j in nearest if votes[train_labels[j]] == best
    )
    correct += prediction == label
  return correct / len(test_labels)


@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
@pytest.mark.parametrize('k', [1, 4, 7])
def test_knn_matches_loop(metric, k):
  rng = np.random.default_rng(3)
  centres = rng.normal(size=(5, 3))
  train_labels = rng.integers(0, 5, 60)
  test_labels = rng.integers(0, 5, 25)
  train = centres[train_labels] + rng.normal(size=(60, 3))
  test = centres[test_labels] + rng.normal(size=(25, 3))
  result = evaluation.knn_accuracy(
    train, train_labels, test, test_labels, k=k, metric=metric, chunk_size=7
  )
  assert result == pytest.approx(
    _reference_knn(train, train_labels, test, test_labels, k, metric)
  )


def test_knn_tie_goes_to_the_nearest_tied_class():
  train = np.array([[1.0], [2.0], [3.0], [4.0]])
  train_labels = np.array([5, 7, 7, 5])
  # From 0: neighbours 5, 7, 7, 5: two votes each, class 5 ranks first.
  test = np.array([[0.0]])
  assert (
    evaluation.knn_accuracy(
      train, train_labels, test, np.array([5]), k=4, metric='euclidean'
    )
    == 1.0
  )
  # k=3: class 7 has two votes of three.
  assert (
    evaluation.knn_accuracy(
      train, train_labels, test, np.array([7]), k=3, metric='euclidean'
    )
    == 1.0
  )


def test_bad_arguments():
  x = np.ones((3, 2))
  y = np.array([0, 1, 2])
  with pytest.raises(ValueError, match='`k`'):
    evaluation.knn_accuracy(x, y, x, y, k=4)
  with pytest.raises(ValueError, match='`metric`'):
    evaluation.knn_accuracy(x, y, x, y, metric='l1')
  with pytest.raises(TypeError, match='`test_labels`'):
    evaluation.knn_accuracy(x, y, x, y.astype(float))
  with pytest.raises(ValueError, match='`k`'):
    evaluation.top_k_accuracy(x, y[:3], k=0)
  with pytest.raises(ValueError, match='`labels`'):
    evaluation.top_k_accuracy(x, y[:2])
