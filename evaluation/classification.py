"""Classification accuracy: top-1 and top-k from class scores, and of
classifiers built on the features (nearest class mean, k nearest
neighbours)."""

from typing import Any

import numpy as np

from common import checks
from evaluation import retrieval

_METRICS = ('cosine', 'euclidean')


def accuracy(logits_or_predictions: Any, labels: Any) -> float:
  """Top-1 accuracy: the fraction of samples whose predicted class is right.

  Args:
    logits_or_predictions: either ``[n, num_classes]`` class scores (logits,
      probabilities or any monotone transform of them; the prediction is the
      argmax over the last axis, the first index on ties), or ``[n]``
      integer predicted class ids.
    labels: ``[n]`` integer class ids.

  Returns:
    The accuracy in ``[0, 1]``, as a Python float.

  Raises:
    ValueError: on wrong ranks, mismatched lengths or empty inputs.
    TypeError: on non-integer `labels` or non-integer ``[n]`` predictions.
  """
  checks.check_rank(labels, 1, 'labels', '[n]')
  checks.check_integer(labels, 'labels')
  rank = np.ndim(logits_or_predictions)
  if rank == 2:
    predictions = np.argmax(np.asarray(logits_or_predictions), axis=-1)
  elif rank == 1:
    # A rank-1 float array is ambiguous (scores of one class? rounded ids?),
    # so only integer ids are accepted there.
    checks.check_integer(logits_or_predictions, 'logits_or_predictions')
    predictions = np.asarray(logits_or_predictions)
  else:
    raise ValueError(
      '`logits_or_predictions` must have rank 2 ([n, num_classes] scores) '
      'or rank 1 ([n] predicted ids), received shape '
      f'{np.shape(logits_or_predictions)}'
    )
  labels = np.asarray(labels)
  checks.check_dim(
    predictions.shape[0],
    labels.shape[0],
    'logits_or_predictions',
    0,
    'length of `labels`',
  )
  if labels.shape[0] == 0:
    raise ValueError('`labels` must hold at least one sample, received 0')
  return float(np.mean(predictions == labels))


def top_k_accuracy(scores: Any, labels: Any, *, k: int = 5) -> float:
  r"""Top-k accuracy: the fraction of samples whose class is among the k best.

  The true class y of a sample with scores s counts when
  :math:`|\{c : s_c > s_y\}| + |\{c < y : s_c = s_y\}| < k`: ties rank
  the lower class index first, as `accuracy`'s argmax does, so ``k=1``
  equals `accuracy`. A k of at least the number of classes gives 1.

  Example:
    >>> top_k_accuracy(np.array([[0.1, 0.5, 0.4]]), np.array([2]), k=2)
    1.0

  Args:
    scores: ``[n, num_classes]`` class scores (logits, probabilities or any
      monotone transform of them).
    labels: ``[n]`` integer class ids.
    k: how many of the best classes count, a positive int.

  Returns:
    The accuracy in ``[0, 1]``, as a Python float.

  Raises:
    ValueError: on wrong ranks, mismatched lengths, empty inputs or a
      non-positive `k`.
    TypeError: on non-integer `labels` or a non-int `k`.
  """
  checks.check_rank(scores, 2, 'scores', '[n, num_classes]')
  checks.check_rank(labels, 1, 'labels', '[n]')
  checks.check_integer(labels, 'labels')
  checks.check_positive_int(k, 'k')
  checks.check_dim(
    np.shape(labels)[0], np.shape(scores)[0], 'labels', 0, 'rows of `scores`'
  )
  checks.check_non_empty(labels, 'labels', 'sample')
  scores = np.asarray(scores)
  labels = np.asarray(labels)
  true_scores = np.take_along_axis(scores, labels[:, None], axis=1)
  lower = np.arange(scores.shape[1])[None, :] < labels[:, None]
  ahead = np.sum(
    (scores > true_scores) | ((scores == true_scores) & lower), axis=1
  )
  return float(np.mean(ahead < k))


def knn_accuracy(
  train_embeddings: Any,
  train_labels: Any,
  test_embeddings: Any,
  test_labels: Any,
  *,
  k: int = 1,
  metric: str = 'cosine',
  chunk_size: int = 1024,
) -> float:
  """Accuracy of the k-nearest-neighbour vote of the training features.

  Each test sample takes the class most frequent among its k nearest
  training samples (`retrieval.top_k_neighbours`: exact, chunked over the
  test samples, memory ``O(chunk_size * n_train)``). A tie between classes
  goes to the tied class whose nearest member ranks first (so ``k=1`` is
  the nearest neighbour's class); tied distances rank the lower training
  row first. This is the "arbitrary classifier on the learned features"
  the LDMAT and vMF papers evaluate.

  Example:
    >>> train = np.array([[0.0], [1.0], [1.1]])
    >>> knn_accuracy(train, np.array([0, 1, 1]), np.array([[0.2]]),
    ...              np.array([1]), k=3, metric='euclidean')
    1.0

  Args:
    train_embeddings: ``[m, dim]`` floating features of the labelled
      training samples.
    train_labels: ``[m]`` their integer class ids.
    test_embeddings: ``[n, dim]`` floating features to classify.
    test_labels: ``[n]`` their true integer class ids.
    k: neighbours that vote, a positive int at most m.
    metric: ``'cosine'`` or ``'euclidean'``.
    chunk_size: test samples per distance block.

  Returns:
    The accuracy in ``[0, 1]``, as a Python float.

  Raises:
    ValueError: on wrong ranks or lengths, empty inputs, dims that differ,
      an unknown `metric`, or `k` outside [1, m].
    TypeError: on non-floating features, non-integer labels or a non-int
      `k` / `chunk_size`.
  """
  for embeddings, labels, side in (
    (train_embeddings, train_labels, 'train'),
    (test_embeddings, test_labels, 'test'),
  ):
    checks.check_embeddings_and_labels(
      embeddings,
      labels,
      embeddings_name=f'{side}_embeddings',
      labels_name=f'{side}_labels',
    )
    checks.check_non_empty(embeddings, f'{side}_embeddings')
  checks.check_choice(metric, 'metric', _METRICS)
  _, indices = retrieval.top_k_neighbours(
    test_embeddings,
    train_embeddings,
    k=k,
    metric=metric,
    chunk_size=chunk_size,
  )
  votes = np.asarray(train_labels)[indices]  # [n, k], nearest first
  predictions = np.empty(len(votes), votes.dtype)
  for start in range(0, len(votes), chunk_size):
    chunk = votes[start : start + chunk_size]
    # Per neighbour: how many of the k share its class ([chunk, k, k]
    # compared); the first neighbour of the largest count wins, which is
    # the tie rule above.
    counts = np.sum(chunk[:, :, None] == chunk[:, None, :], axis=2)
    winner = np.argmax(counts, axis=1)
    predictions[start : start + chunk_size] = chunk[
      np.arange(len(chunk)), winner
    ]
  return float(np.mean(predictions == np.asarray(test_labels)))


def nearest_class_mean_accuracy(
  reference_embeddings: Any,
  reference_labels: Any,
  embeddings: Any,
  labels: Any,
) -> float:
  """Accuracy of the nearest class-mean direction classifier.

  For losses that train no classifier (pair-wise Circle, LDMAT, triplet) the
  features are still classified: each class is represented by the mean
  direction of its L2-normalised reference (training) features, and a sample
  is assigned the class of highest cosine.

  Args:
    reference_embeddings: ``[m, dim]`` features of the labelled references.
    reference_labels: ``[m]`` their integer class ids.
    embeddings: ``[n, dim]`` features to classify.
    labels: ``[n]`` their true class ids.

  Returns:
    The accuracy in ``[0, 1]``.
  """
  from evaluation import geometry  # pylint: disable=g-import-not-at-top

  reference = np.asarray(reference_embeddings, np.float64)
  reference /= np.maximum(
    np.linalg.norm(reference, axis=1, keepdims=True), 1e-12
  )
  classes, means, _ = geometry.class_means(reference, reference_labels)
  x = np.asarray(embeddings, np.float64)
  checks.check_rank(x, 2, 'embeddings', '[n, dim]')
  x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  predictions = classes[np.argmax(x @ means.T, axis=1)]
  return accuracy(predictions.astype(np.int64), np.asarray(labels))
