"""Tests for `evaluation.accuracy`."""

import jax.numpy as jnp
import numpy as np
import pytest

import evaluation


def test_accuracy_from_logits_hand_example():
  logits = np.array([[2.0, 1.0, 0.0], [0.1, 0.3, 0.2], [0.0, 0.0, 5.0]])
  labels = np.array([0, 2, 2])
  # Argmaxes are 0, 1, 2: the first and last are right.
  assert evaluation.accuracy(logits, labels) == pytest.approx(2 / 3)


def test_accuracy_from_predictions_and_jax_arrays():
  predictions = jnp.array([1, 1, 0, 3])
  labels = jnp.array([1, 0, 0, 3])
  assert evaluation.accuracy(predictions, labels) == pytest.approx(0.75)


def test_accuracy_matches_numpy_loop_on_random_scores():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(50, 7)).astype(np.float32)
  labels = rng.integers(0, 7, size=50)
  expected = sum(
    int(np.argmax(row) == label)
    for row, label in zip(logits, labels, strict=True)
  ) / len(labels)
  assert evaluation.accuracy(logits, labels) == pytest.approx(expected)


@pytest.mark.parametrize(
  ('scores', 'labels', 'error', 'name'),
  [
    (np.zeros((3, 2)), np.zeros(4, int), ValueError, 'logits_or_pred'),
    (np.zeros((3, 2, 2)), np.zeros(3, int), ValueError, 'logits_or_pred'),
    (np.zeros((3, 2)), np.zeros((3, 1), int), ValueError, 'labels'),
    (np.zeros(3), np.zeros(3, int), TypeError, 'logits_or_pred'),
    (np.zeros((3, 2)), np.zeros(3), TypeError, 'labels'),
    (np.zeros((0, 2)), np.zeros(0, int), ValueError, 'labels'),
  ],
)
def test_accuracy_rejects_bad_input(scores, labels, error, name):
  with pytest.raises(error, match=name):
    evaluation.accuracy(scores, labels)
