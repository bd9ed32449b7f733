r"""Class-disjoint retrieval on digits: train on 0-4, retrieve among 5-9.

The class-disjoint protocol of the deep-metric-learning papers (Circle's
fine-grained setting among them) in miniature; reports Recall@K, MAP@R
(Musgrave et al. 2020) and NMI on the unseen classes.

  python train.py --config=configs/digits_retrieval.py:circle_pairwise \
    --workdir=runs/digits_retrieval_circle
"""

import ml_collections

from configs import common, default


def get_config(
  loss: str | None = 'circle_pairwise',
) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.input.class_disjoint = True
  # Pair-wise losses: 4 of the 5 training digits x 16 per batch of 64.
  config.input.samples_per_class = 16
  config.model.embedding_dim = 32
  return common.set_loss(config, loss)
