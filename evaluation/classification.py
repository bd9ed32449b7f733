"""Classification accuracy from class scores or predicted class ids."""

from typing import Any

import numpy as np

from common import checks


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
