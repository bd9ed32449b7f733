"""Multi-label classification metrics: mAP and per-class / overall P, R, F1.

The set of metrics is the one of the SRN evaluation code (Zhu et al., CVPR
2017) that G-softmax reports on MS COCO and NUS-WIDE: mAP, CP, CR, CF1, OP,
OR, OF1, at a threshold and for each example's top-3 labels. Average
precision comes from scikit-learn.
"""

from typing import Any

import numpy as np
from sklearn import metrics as sklearn_metrics

from common import checks


def _validated(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
  checks.check_rank(scores, 2, 'scores', '[n, num_labels]')
  checks.check_floating(scores, 'scores')
  checks.check_rank(targets, 2, 'targets', '[n, num_labels]')
  checks.check_same_shape(scores, targets, 'scores', 'targets')
  if np.shape(targets)[0] == 0:
    raise ValueError('`targets` must hold at least one sample, received 0')
  targets = np.asarray(targets)
  if not np.all((targets == 0) | (targets == 1)):
    bad = targets[(targets != 0) & (targets != 1)][0]
    raise ValueError(f'`targets` must hold only 0 and 1, received {bad}')
  scores = np.asarray(scores)
  return scores.astype(np.promote_types(scores.dtype, np.float32)), (
    targets.astype(bool)
  )


def average_precision_per_label(scores: Any, targets: Any) -> np.ndarray:
  """Average precision of every label, NaN for labels with no positive.

  AP is scikit-learn's ``average_precision_score`` (the precision averaged
  at each positive's rank, without interpolation). A label with no positive
  target has no defined AP and gets NaN.

  Args:
    scores: ``[n, num_labels]`` floating scores (higher = more likely).
    targets: ``[n, num_labels]`` ground truth in {0, 1}.

  Returns:
    ``[num_labels]`` float64 APs in ``[0, 1]``, NaN where undefined.

  Raises:
    ValueError: on wrong ranks or shapes, empty inputs or targets other
      than 0/1.
    TypeError: on non-floating `scores`.
  """
  scores, targets = _validated(scores, targets)
  result = np.full(targets.shape[1], np.nan)
  for label in np.flatnonzero(targets.any(axis=0)):
    result[label] = sklearn_metrics.average_precision_score(
      targets[:, label], scores[:, label]
    )
  return result


def _harmonic_mean(precision: float, recall: float) -> float:
  if precision + recall == 0:
    return 0.0
  return 2.0 * precision * recall / (precision + recall)


def multilabel_metrics(
  scores: Any,
  targets: Any,
  *,
  threshold: float = 0.5,
  top_k: int | None = None,
) -> dict[str, float]:
  r"""mAP and per-class / overall precision, recall and F1.

  A label is predicted when its score is >= `threshold` (0.5 on
  probabilities, as the G-softmax multi-label code does) and, with
  `top_k`, it is also among the example's `top_k` highest scores: the
  top-3 convention of ML-GCN's ``AveragePrecisionMeter.overall_topk``
  (Chen et al., CVPR 2019), whose threshold is 0 on logits, 0.5 on
  probabilities. Ties among the scores go to the lower label index
  (ML-GCN's ``torch.topk`` leaves them unspecified); a `top_k` of at least
  the number of labels changes nothing. With, for label
  l, :math:`N^c_l` correctly predicted positives, :math:`N^p_l` predicted
  positives and :math:`N^g_l` ground-truth positives, and L labels:

  * ``map``: mean of `average_precision_per_label` over the labels with at
    least one positive target; labels with none are skipped (NaN when no
    label has a positive).
  * ``cp`` = :math:`\frac{1}{L}\sum_l N^c_l / N^p_l`,
    ``cr`` = :math:`\frac{1}{L}\sum_l N^c_l / N^g_l`, over all L labels, a
    0/0 ratio (label never predicted, or without positives) counting as 0
    (scikit-learn's ``zero_division=0``);
    ``cf1`` = 2 CP CR / (CP + CR), the harmonic mean of the averages as in
    the SRN code, not the mean of per-class F1s.
  * ``op`` = :math:`\sum_l N^c_l / \sum_l N^p_l`,
    ``or`` = :math:`\sum_l N^c_l / \sum_l N^g_l`,
    ``of1`` = 2 OP OR / (OP + OR) (0/0 counts as 0).

  Args:
    scores: ``[n, num_labels]`` floating scores, probabilities for the
      default threshold.
    targets: ``[n, num_labels]`` ground truth in {0, 1} (ints, bools or
      floats).
    threshold: scores >= threshold are predicted positives.
    top_k: None, or a positive int: only each example's `top_k` highest
      scores may be predicted positives.

  Returns:
    ``{'map', 'cp', 'cr', 'cf1', 'op', 'or', 'of1'}`` as Python floats in
    ``[0, 1]`` (fractions, not percentages); with `top_k` = k, the six
    thresholded names become ``'cp@k'`` ... ``'of1@k'`` (``'map'`` does not
    depend on k and keeps its name).

  Example:
    >>> scores = np.array([[0.9, 0.8, 0.6, 0.1]])
    >>> multilabel_metrics(scores, np.array([[1, 0, 1, 0]]), top_k=2)['op@2']
    0.5

  Raises:
    ValueError: on wrong ranks or shapes, empty inputs, targets other
      than 0/1 or a non-positive `top_k`.
    TypeError: on non-floating `scores` or a non-int `top_k`.
  """
  scores, targets = _validated(scores, targets)
  checks.check_optional_positive_int(top_k, 'top_k')
  threshold = float(threshold)
  ap = average_precision_per_label(scores, targets)
  predicted = scores >= threshold
  if top_k is not None and top_k < scores.shape[1]:
    # Stable sort of the negated scores: ties go to the lower label index.
    best = np.argsort(-scores, axis=1, kind='stable')[:, :top_k]
    among_best = np.zeros_like(predicted)
    np.put_along_axis(among_best, best, True, axis=1)
    predicted &= among_best
  correct = np.sum(predicted & targets, axis=0)
  num_predicted = np.sum(predicted, axis=0)
  num_positive = np.sum(targets, axis=0)
  per_class_precision = correct / np.maximum(num_predicted, 1)
  per_class_recall = correct / np.maximum(num_positive, 1)
  cp = float(np.mean(per_class_precision))
  cr = float(np.mean(per_class_recall))
  op = float(correct.sum() / max(num_predicted.sum(), 1))
  overall_recall = float(correct.sum() / max(num_positive.sum(), 1))
  suffix = '' if top_k is None else f'@{top_k}'
  return {
    'map': float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else np.nan,
    f'cp{suffix}': cp,
    f'cr{suffix}': cr,
    f'cf1{suffix}': _harmonic_mean(cp, cr),
    f'op{suffix}': op,
    f'or{suffix}': overall_recall,
    f'of1{suffix}': _harmonic_mean(op, overall_recall),
  }
