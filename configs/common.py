"""Pieces shared by the experiment configs (big_vision's configs/common.py).

Every data-set config takes the loss as its argument:

  python train.py --config=configs/cifar10.py:circle_pairwise --workdir=...
"""

import ml_collections

# Losses that score pairs within the (global) batch and need several
# examples per class in it.
PAIRWISE_LOSSES = ('circle_pairwise', 'ldmat', 'triplet')


def set_loss(
  config: ml_collections.ConfigDict, name: str | None
) -> ml_collections.ConfigDict:
  """Selects the loss; pairwise losses get the class-balanced sampler."""
  if name:
    config.loss.name = name
  if config.loss.name in PAIRWISE_LOSSES:
    config.input.sampler = 'class_balanced'
  return config
