"""Face verification: pair accuracy over folds, TAR at FAR, ROC, AUC, EER.

The protocol of LFW and of the verification sets insightface ships
(CFP-FP, AgeDB-30, CALFW, CPLFW): each pair of images is scored by the
cosine similarity of their (flip-fused, L2-normalised) embeddings and
predicted "same identity" when the similarity exceeds a threshold. The
pairs are cut into 10 contiguous, unshuffled folds; for each fold the
threshold is chosen on the other 9 and the accuracy measured on it, and
the mean and standard deviation over the folds are reported, as
insightface's ``calculate_roc`` does (``recognition/arcface_torch/eval/
verification.py``).

insightface scores pairs by the squared Euclidean distance of unit
embeddings, ``d² = ‖a − b‖² = 2 − 2·cos(a, b)``, and predicts "same" when
``d² < t``. That is ``cos > 1 − t/2``: its distance grid
``np.arange(0, 4, 0.01)`` is the cosine grid ``1 − t/2``, from 1 down to
-0.995, in that (descending) order, and both ties-break to the first grid
entry with the best accuracy. The accuracies here equal insightface's on
the same grid.
"""

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import figure as mpl_figure
from sklearn import metrics as sklearn_metrics

from common import checks
from evaluation import plots

DEFAULT_FAR_TARGETS = (1e-3, 1e-4)


def far_key(far: float) -> str:
  """The result key of TAR at FAR `far`, e.g. ``'tar@far=1e-3'``."""
  return 'tar@far=' + np.format_float_scientific(
    float(far), trim='-', exp_digits=1
  )


def _validated(similarities: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
  checks.check_rank(similarities, 1, 'similarities', '[num_pairs]')
  checks.check_floating(similarities, 'similarities')
  checks.check_rank(same, 1, 'same', '[num_pairs]')
  checks.check_same_shape(similarities, same, 'similarities', 'same')
  checks.check_non_empty(similarities, 'similarities', 'pair')
  same = np.asarray(same)
  if same.dtype != np.bool_:
    if not np.issubdtype(same.dtype, np.integer):
      raise TypeError(
        f'`same` must be a bool (or 0/1 int) array, received dtype {same.dtype}'
      )
    if not np.all((same == 0) | (same == 1)):
      bad = same[(same != 0) & (same != 1)][0]
      raise ValueError(f'`same` must hold only 0 and 1, received {bad}')
    same = same.astype(bool)
  if same.all() or not same.any():
    raise ValueError(
      '`same` must hold both same-identity and different-identity pairs, '
      f'received {int(same.sum())} same of {same.size}'
    )
  # float64: the midpoints of float32 similarities are then exact.
  similarities = np.asarray(similarities, dtype=np.float64)
  if not np.all(np.isfinite(similarities)):
    index = int(np.flatnonzero(~np.isfinite(similarities))[0])
    raise ValueError(
      f'`similarities` must be finite, received {similarities[index]} at '
      f'index {index}'
    )
  return similarities, same


def _exact_thresholds(similarities: np.ndarray) -> np.ndarray:
  """Every threshold that splits the similarities differently, ascending:
  the midpoints of the distinct values, and one value beyond each end
  (every pair "same", every pair "different")."""
  values = np.unique(similarities)
  return np.concatenate(
    [[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]]
  )


def _above(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
  """How many of `sorted_values` are > each threshold."""
  return len(sorted_values) - np.searchsorted(
    sorted_values, thresholds, side='right'
  )


def _counts(similarities, same, thresholds):
  """(true accepts, true rejects) at each threshold: O((n + T) log n)."""
  accepted_same = _above(np.sort(similarities[same]), thresholds)
  accepted_different = _above(np.sort(similarities[~same]), thresholds)
  return accepted_same, np.sum(~same) - accepted_different


def verification_roc(
  similarities: Any, same: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The ROC of pair verification over every distinct threshold.

  A pair is accepted ("same") when its similarity is > the threshold. The
  thresholds are those of `verification_metrics` with ``thresholds=None``,
  descending, so the curve runs from (0, 0) to (1, 1).

  Args:
    similarities: ``[num_pairs]`` floating scores, higher = more alike.
    same: ``[num_pairs]`` bools (or 0/1 ints), True for same-identity pairs.

  Returns:
    ``(far, tar, thresholds)``, each ``[num_distinct + 1]`` float64: the
    false accept rate (accepted different pairs / different pairs), the
    true accept rate (accepted same pairs / same pairs) and the threshold.

  Raises:
    ValueError, TypeError: as `verification_metrics`.
  """
  similarities, same = _validated(similarities, same)
  thresholds = _exact_thresholds(similarities)[::-1]
  true_accepts, true_rejects = _counts(similarities, same, thresholds)
  num_same, num_different = np.sum(same), np.sum(~same)
  far = (num_different - true_rejects) / num_different
  return far, true_accepts / num_same, thresholds


def _equal_error_rate(far: np.ndarray, tar: np.ndarray) -> float:
  """Where FAR = FRR = 1 − TAR, linearly interpolated along the ROC."""
  gap = far - (1.0 - tar)  # Rises from -1 (nothing accepted) to 1.
  i = int(np.argmax(gap >= 0))
  if gap[i] == 0 or i == 0:
    return float(far[i])
  weight = -gap[i - 1] / (gap[i] - gap[i - 1])
  return float(far[i - 1] + weight * (far[i] - far[i - 1]))


def _check_grid(thresholds: Any) -> np.ndarray:
  checks.check_rank(thresholds, 1, 'thresholds', '[num_thresholds]')
  checks.check_floating(thresholds, 'thresholds')
  checks.check_non_empty(thresholds, 'thresholds', 'threshold')
  return np.asarray(thresholds, dtype=np.float64)


def verification_metrics(
  similarities: Any,
  same: Any,
  *,
  num_folds: int = 10,
  thresholds: Any = None,
  far_targets: Any = DEFAULT_FAR_TARGETS,
) -> dict[str, float]:
  r"""Face verification accuracy over folds, TAR at FAR, AUC and EER.

  A pair is predicted "same" when its similarity is > the threshold t.
  The pairs are split into `num_folds` contiguous folds in their order
  (sizes as ``np.array_split``, i.e. scikit-learn's unshuffled ``KFold``);
  for each fold k the threshold :math:`t_k` maximising the accuracy on the
  other folds is chosen (ties: the first in `thresholds`' order, the
  smallest for the exact search), and the accuracy
  :math:`a_k = (TA_k + TR_k) / n_k` (true accepts and true rejects of the
  fold's :math:`n_k` pairs at :math:`t_k`) is measured on fold k. With
  ``num_folds=1`` the threshold is chosen and measured on all pairs.

  * ``accuracy``, ``accuracy_std``: mean and population standard deviation
    (ddof 0, as insightface) of :math:`a_k`.
  * ``threshold``: the mean of the :math:`t_k`.
  * ``tar@far=<far>`` (keys by `far_key`, e.g. ``tar@far=1e-3``): on all
    pairs, the true accept rate at the smallest exact threshold whose false
    accept rate is ≤ `far` (the largest TAR of any operating point with
    FAR ≤ target, not interpolated). insightface's ``calculate_val`` instead
    interpolates a threshold on 9 folds and averages over folds. When
    `far` is below 1 / (number of different pairs), that is the TAR with no
    false accept at all.
  * ``auc``: the area under the ROC (scikit-learn's ``roc_auc_score``;
    tied similarities count half).
  * ``eer``: the equal error rate, where FAR = 1 − TAR on the ROC of all
    pairs, linearly interpolated between its two neighbouring points.

  Only the accuracy and threshold use `thresholds`; TAR, AUC and EER are
  read from the exact ROC (`verification_roc`). For insightface's
  squared-distance grid ``t`` on unit embeddings, pass ``1 - t / 2`` (see
  the module docstring).

  Example::

    cos = np.sum(a * b, axis=1)   # unit embeddings of the pairs' images
    verification_metrics(cos, issame)['accuracy']

  Args:
    similarities: ``[num_pairs]`` floating scores (cosine similarities),
      higher = more alike.
    same: ``[num_pairs]`` bools (or 0/1 ints): True for same-identity pairs.
    num_folds: folds of the threshold cross-validation, 1..num_pairs.
    thresholds: None, every threshold that changes a prediction (the
      midpoints of the distinct similarities and one beyond each end: the
      exact optimum); or a ``[T]`` floating grid, used as given.
    far_targets: false accept rates at which to report the TAR.

  Returns:
    A dict of Python floats, accuracies and rates as fractions in [0, 1].

  Raises:
    ValueError: on wrong ranks or shapes, no pair, only one kind of pair,
      non-finite similarities, flags other than 0/1, or `num_folds` /
      `far_targets` out of range.
    TypeError: on non-floating similarities or thresholds, or a `same` that
      is neither bool nor integer.

  Source: the LFW protocol (Huang et al., 2007, "Labeled Faces in the
  Wild", 10-fold View 2) as insightface implements it.
  """
  similarities, same = _validated(similarities, same)
  num_pairs = len(similarities)
  checks.check_positive_int(num_folds, 'num_folds')
  if num_folds > num_pairs:
    raise ValueError(
      f'`num_folds` must be at most the number of pairs ({num_pairs}), '
      f'received {num_folds}'
    )
  far_targets = tuple(far_targets)
  for far in far_targets:
    checks.check_in_range(far, 'far_targets', 0.0, 1.0, low_inclusive=False)
  grid = (
    _exact_thresholds(similarities)
    if thresholds is None
    else _check_grid(thresholds)
  )

  # Counts at every threshold of all pairs, minus those of a fold, are the
  # counts of the other folds: one sort per fold, no loop over thresholds.
  all_accepts, all_rejects = _counts(similarities, same, grid)
  accuracies, chosen = [], []
  for fold in np.array_split(np.arange(num_pairs), num_folds):
    fold_accepts, fold_rejects = _counts(similarities[fold], same[fold], grid)
    if num_folds == 1:
      train_correct = fold_accepts + fold_rejects
    else:
      train_correct = (all_accepts - fold_accepts) + (
        all_rejects - fold_rejects
      )
    best = int(np.argmax(train_correct))
    accuracies.append((fold_accepts[best] + fold_rejects[best]) / len(fold))
    chosen.append(grid[best])

  far, tar, _ = verification_roc(similarities, same)
  results = {
    'accuracy': float(np.mean(accuracies)),
    'accuracy_std': float(np.std(accuracies)),
    'threshold': float(np.mean(chosen)),
  }
  for target in far_targets:
    # FAR falls with the threshold; the curve starts at FAR 0.
    results[far_key(target)] = float(np.max(tar[far <= target]))
  results['auc'] = float(sklearn_metrics.roc_auc_score(same, similarities))
  results['eer'] = _equal_error_rate(far, tar)
  return results


def plot_roc_curves(
  curves: Mapping[str, tuple[Any, Any]],
  path: str | os.PathLike,
  *,
  title: str = 'verification ROC',
) -> str:
  """ROC curves of several verification sets in one PNG.

  The false accept rate is drawn on a log axis (the operating points that
  matter are at FAR 1e-3 and below); a curve's points at FAR 0 are left
  out there, so each starts at its smallest non-zero FAR.

  Args:
    curves: set name -> ``(far, tar)`` arrays (`verification_roc`).
    path: the PNG file to write (parent folders are created).
    title: the figure title.

  Returns:
    `path`, as a string.

  Raises:
    ValueError: when `curves` is empty or a curve's arrays differ in shape.
  """
  if not curves:
    raise ValueError('`curves` must hold at least one ROC curve, received 0')
  fig = mpl_figure.Figure(figsize=(5.0, 4.0))
  axes = fig.add_subplot()
  for name, (far, tar) in curves.items():
    checks.check_same_shape(far, tar, f'far of {name}', f'tar of {name}')
    far, tar = np.asarray(far, np.float64), np.asarray(tar, np.float64)
    positive = far > 0
    auc = np.trapezoid(tar, far)
    axes.plot(far[positive], tar[positive], label=f'{name} (AUC {auc:.4f})')
  axes.set_xscale('log')
  axes.set_xlabel('false accept rate')
  axes.set_ylabel('true accept rate')
  axes.set_ylim(0.0, 1.01)
  axes.grid(True, which='both', alpha=0.3)
  axes.legend(fontsize=8, loc='lower right')
  axes.set_title(title)
  return plots._save(fig, path)  # pylint: disable=protected-access
