"""Proxy-Anchor (Kim, Kim, Cho, Kwak, CVPR 2020): learned proxies as anchors.

The loss is one scalar of the whole batch (a log-sum-exp over the batch per
proxy), not a sum over examples: every device scores the all-gathered
global batch and weighs the scalar so that N devices give the one-device
loss and gradients exactly.
"""

import losses
from training.objectives.interface import (
  Hyperparameter,
  Objective,
  batch_level,
  class_weight_cosines,
  class_weights_head,
)

_PAPER = 'paper: Kim et al. 2020, implementation details'


def _loss(inputs, hparams):
  batch = inputs.global_batch
  return batch_level(
    losses.proxy_anchor_loss(
      batch.embeddings,
      inputs.outputs['class_weights'],
      batch.labels,
      margin=hparams.margin,
      alpha=hparams.alpha,
    )
  )


OBJECTIVES = (
  Objective(
    name='proxy_anchor',
    paper='Kim et al. 2020',
    hyperparameters={
      'margin': Hyperparameter(
        0.1, source=_PAPER, doc='delta, the margin on the cosine'
      ),
      'alpha': Hyperparameter(32.0, source=_PAPER, doc='alpha, the scale'),
    },
    make_head=class_weights_head,
    loss=_loss,
    scores=class_weight_cosines,
    reference='global_batch',
  ),
)
