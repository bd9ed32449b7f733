"""Metrics and plots of learned features; no knowledge of training or models.

Every function takes NumPy or JAX arrays and returns Python floats, NumPy
arrays or file paths:

* Classification: `accuracy` (top-1), `top_k_accuracy`, and the accuracy
  of classifiers on the features: `nearest_class_mean_accuracy`,
  `knn_accuracy`.
* Feature geometry: `intra_class_compactness`, `inter_class_separability`,
  `separability_ratio`, `feature_geometry` (all scalars at once),
  `class_means`; G-softmax's Gaussian measures `gaussian_compactness`,
  `gaussian_separability`, `gaussian_kl`.
* Retrieval: `retrieval_metrics` (Recall@K, precision@1, R-precision, MAP@R,
  MRR, MAP@k, NMI, AMI, optionally averaged per class, with
  pytorch-metric-learning's AccuracyCalculator semantics) and `kmeans_nmi`.
* Re-identification: `reid_metrics` (CMC@K, mAP, mINP; Market-1501
  protocol, torchreid's conventions).
* Multi-label: `multilabel_metrics` (mAP, CP, CR, CF1, OP, OR, OF1) and
  `average_precision_per_label`.
* Face verification: `verification_metrics` (10-fold pair accuracy, TAR at
  FAR, AUC, EER, insightface's semantics), `verification_roc` and
  `plot_roc_curves`.
* Plots (PNG): `plot_features`, `plot_class_geometry`, `plot_feature_grid`,
  `write_split_retrieval` (queries of a split and their neighbours).

The names are loaded on first use: importing `evaluation` costs nothing
until a metric is needed (scikit-learn and matplotlib take about a second
to import, which every command line would otherwise pay before its first
line of output).
"""

import importlib

_MODULES = {
  'Compactness': 'evaluation.geometry',
  'Separability': 'evaluation.geometry',
  'accuracy': 'evaluation.classification',
  'average_precision_per_label': 'evaluation.multilabel',
  'class_means': 'evaluation.geometry',
  'feature_geometry': 'evaluation.geometry',
  'gaussian_compactness': 'evaluation.geometry',
  'gaussian_kl': 'evaluation.geometry',
  'gaussian_separability': 'evaluation.geometry',
  'inter_class_separability': 'evaluation.geometry',
  'intra_class_compactness': 'evaluation.geometry',
  'kmeans_nmi': 'evaluation.retrieval',
  'knn_accuracy': 'evaluation.classification',
  'multilabel_metrics': 'evaluation.multilabel',
  'nearest_class_mean_accuracy': 'evaluation.classification',
  'plot_class_geometry': 'evaluation.plots',
  'plot_feature_grid': 'evaluation.plots',
  'plot_features': 'evaluation.plots',
  'plot_roc_curves': 'evaluation.verification',
  'reid_metrics': 'evaluation.reid',
  'retrieval_metrics': 'evaluation.retrieval',
  'separability_ratio': 'evaluation.geometry',
  'top_k_accuracy': 'evaluation.classification',
  'verification_metrics': 'evaluation.verification',
  'verification_roc': 'evaluation.verification',
  'write_split_retrieval': 'evaluation.pictures',
}

__all__ = tuple(_MODULES)


def __getattr__(name):
  if name not in _MODULES:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(_MODULES[name]), name)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
