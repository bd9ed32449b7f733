"""Proxy baselines: ProxyNCA.

The proxy-based losses Circle loss and the vMF paper compare against
(issue 18). Each scores an example against every class's learned proxies
and nothing else of the batch, so it is per example and sees only its
device's shard (local reference), unlike Proxy-Anchor.
"""

import losses
from models import heads
from training.objectives.interface import (
  Hyperparameter,
  Objective,
  per_example,
)


def _proxy_nca(inputs, hparams):
  return per_example(
    losses.proxy_nca_loss(
      inputs.embeddings,
      inputs.outputs['class_weights'],
      inputs.labels,
      softmax_scale=hparams.softmax_scale,
      exclude_positive=hparams.exclude_positive,
    )
  )


def _proxy_cosines(embeddings, outputs, hparams):
  # The closest unit proxy is the one of largest cosine.
  del hparams
  return losses.pairwise_cosine_similarity(embeddings, outputs['class_weights'])


OBJECTIVES = (
  Objective(
    name='proxy_nca',
    paper='Movshovitz-Attias et al. 2017',
    hyperparameters={
      'softmax_scale': Hyperparameter(
        1.0,
        source="third-party code: pytorch-metric-learning's ProxyNCALoss "
        'default (the paper has no scale)',
        doc='s, multiplying the negated squared distances',
      ),
      'exclude_positive': Hyperparameter(
        False,
        source="third-party code: pytorch-metric-learning's ProxyNCALoss "
        "(the positive in the denominator); True is the paper's Eq.",
        doc='leave the positive proxy out of the softmax denominator',
      ),
    },
    make_head=lambda num_classes, hparams: heads.ClassWeightsHead(num_classes),
    loss=_proxy_nca,
    scores=_proxy_cosines,
  ),
)
