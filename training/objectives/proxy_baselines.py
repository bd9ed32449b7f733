"""Proxy baselines: ProxyNCA and SoftTriple.

The proxy-based losses Circle loss and the vMF paper compare against
(issue 18). Each scores an example against every class's learned proxies
and nothing else of the batch, so it is per example and sees only its
device's shard (local reference), unlike Proxy-Anchor.
"""

import jax

import losses
from models import heads
from training.objectives.interface import (
  Hyperparameter,
  Objective,
  class_weight_cosines,
  class_weights_head,
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


def _soft_triple(inputs, hparams):
  return per_example(
    losses.soft_triple_loss(
      inputs.embeddings,
      inputs.outputs['class_centers'],
      inputs.labels,
      la=hparams.la,
      gamma=hparams.gamma,
      margin=hparams.margin,
      tau=hparams.tau,
    )
  )


def _soft_triple_similarities(embeddings, outputs, hparams):
  # The relaxed class similarity S_c of the loss (Eq. 7 of the paper).
  centers = outputs['class_centers']
  cosines = losses.pairwise_cosine_similarity(
    embeddings, centers.reshape(-1, centers.shape[-1])
  ).reshape(embeddings.shape[0], *centers.shape[:2])
  weights = jax.nn.softmax(cosines / hparams.gamma, axis=2)
  return (weights * cosines).sum(axis=2)


_SOFT_TRIPLE = 'paper: Qian et al. 2019, implementation details'

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
    make_head=class_weights_head,
    loss=_proxy_nca,
    scores=class_weight_cosines,
  ),
  Objective(
    name='soft_triple',
    paper='Qian et al. 2019',
    hyperparameters={
      'la': Hyperparameter(
        20.0,
        source=_SOFT_TRIPLE + ' (lambda = 20)',
        doc='lambda, the scale of the class similarities',
      ),
      'gamma': Hyperparameter(
        0.1,
        source=_SOFT_TRIPLE + ' (gamma = 0.1)',
        doc="gamma, the temperature of the softmax over a class's centres",
      ),
      'margin': Hyperparameter(
        0.01,
        source=_SOFT_TRIPLE + ' (delta = 0.01)',
        doc='delta, subtracted from the target similarity',
      ),
      'tau': Hyperparameter(
        0.2,
        source=_SOFT_TRIPLE + ' (tau = 0.2)',
        doc='tau, the weight of the regulariser merging close centres',
      ),
      'centers_per_class': Hyperparameter(
        10,
        source=_SOFT_TRIPLE + ' (K = 10)',
        doc='K, the centres per class',
      ),
    },
    make_head=lambda num_classes, hparams: heads.ClassCentersHead(
      num_classes, hparams.centers_per_class
    ),
    loss=_soft_triple,
    scores=_soft_triple_similarities,
  ),
)
