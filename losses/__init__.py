"""Discriminative deep-feature losses and pairwise kernels, as pure functions.

Every loss takes arrays first and keyword-only hyperparameters, returns
per-example values (the caller reduces), and is jit-, vmap- and
grad-compatible. The exception is `proxy_anchor_loss`, whose log-sum-exps
run over the whole batch: it returns the batch's loss, a scalar. README.md
has the table of the public API.
"""

from losses import checks
from losses._center import center_loss
from losses._circle import circle_loss_class_level, circle_loss_pairwise
from losses._distance_matrix import distance_matrix_loss
from losses._g_softmax import (
  g_softmax_cross_entropy,
  g_softmax_logits,
  g_softmax_multilabel_cross_entropy,
  g_softmax_multilabel_probabilities,
)
from losses._large_margin import large_margin_softmax_loss, sphereface_loss
from losses._margin_softmax import (
  arcface_loss,
  cosface_loss,
  normalized_softmax_cross_entropy,
)
from losses._miners import (
  mine_multi_similarity_pairs,
  mine_pairs_by_margin,
  mine_triplets,
)
from losses._pair_based import (
  angular_loss,
  contrastive_loss,
  lifted_structure_loss,
  multi_similarity_loss,
  n_pairs_loss,
  ntxent_loss,
  supcon_loss,
  triplet_margin_loss,
)
from losses._pairwise import (
  ReferenceSet,
  l2_normalize,
  map_row_blocks,
  pairwise_cosine_similarity,
  pairwise_distance,
  pairwise_squared_distance,
  valid_pairwise_anchors,
)
from losses._proxy_anchor import proxy_anchor_loss
from losses._proxy_baselines import proxy_nca_loss, soft_triple_loss
from losses._subcenter_arcface import subcenter_arcface_loss
from losses._triplet import batch_hard_triplet_loss
from losses._virtual_softmax import virtual_softmax_cross_entropy
from losses._vmf import (
  vmf_cross_entropy,
  vmf_direction_sums,
  vmf_mean_directions,
  vmf_mean_directions_from_sums,
)

__all__ = [
  'ReferenceSet',
  'angular_loss',
  'arcface_loss',
  'batch_hard_triplet_loss',
  'center_loss',
  'checks',
  'circle_loss_class_level',
  'circle_loss_pairwise',
  'contrastive_loss',
  'cosface_loss',
  'distance_matrix_loss',
  'g_softmax_cross_entropy',
  'g_softmax_logits',
  'g_softmax_multilabel_cross_entropy',
  'g_softmax_multilabel_probabilities',
  'l2_normalize',
  'large_margin_softmax_loss',
  'lifted_structure_loss',
  'map_row_blocks',
  'mine_multi_similarity_pairs',
  'mine_pairs_by_margin',
  'mine_triplets',
  'multi_similarity_loss',
  'n_pairs_loss',
  'normalized_softmax_cross_entropy',
  'ntxent_loss',
  'pairwise_cosine_similarity',
  'pairwise_distance',
  'pairwise_squared_distance',
  'proxy_anchor_loss',
  'proxy_nca_loss',
  'soft_triple_loss',
  'sphereface_loss',
  'subcenter_arcface_loss',
  'supcon_loss',
  'triplet_margin_loss',
  'valid_pairwise_anchors',
  'virtual_softmax_cross_entropy',
  'vmf_cross_entropy',
  'vmf_direction_sums',
  'vmf_mean_directions',
  'vmf_mean_directions_from_sums',
]
