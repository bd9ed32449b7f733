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
* Plots (PNG): `plot_features`, `plot_class_geometry`, `plot_feature_grid`.
"""

from evaluation.classification import (
  accuracy,
  knn_accuracy,
  nearest_class_mean_accuracy,
  top_k_accuracy,
)
from evaluation.geometry import (
  Compactness,
  Separability,
  class_means,
  feature_geometry,
  gaussian_compactness,
  gaussian_kl,
  gaussian_separability,
  inter_class_separability,
  intra_class_compactness,
  separability_ratio,
)
from evaluation.multilabel import (
  average_precision_per_label,
  multilabel_metrics,
)
from evaluation.plots import (
  plot_class_geometry,
  plot_feature_grid,
  plot_features,
)
from evaluation.reid import reid_metrics
from evaluation.retrieval import kmeans_nmi, retrieval_metrics
from evaluation.verification import (
  plot_roc_curves,
  verification_metrics,
  verification_roc,
)

__all__ = [
  'Compactness',
  'Separability',
  'accuracy',
  'average_precision_per_label',
  'class_means',
  'feature_geometry',
  'gaussian_compactness',
  'gaussian_kl',
  'gaussian_separability',
  'inter_class_separability',
  'intra_class_compactness',
  'kmeans_nmi',
  'knn_accuracy',
  'multilabel_metrics',
  'nearest_class_mean_accuracy',
  'plot_class_geometry',
  'plot_feature_grid',
  'plot_features',
  'plot_roc_curves',
  'reid_metrics',
  'retrieval_metrics',
  'separability_ratio',
  'top_k_accuracy',
  'verification_metrics',
  'verification_roc',
]
