"""Margin-softmax baselines: L-Softmax, SphereFace and sub-centre ArcFace.

The classification-style losses Virtual Softmax and G-softmax compare
against (issue 18): each trains bias-free class vectors beside the backbone
and scores only its own examples (per-example losses, local reference).
The annealed weight lambda of the official L-Softmax and SphereFace code is
a fixed hyperparameter here: an objective sees no step count.
"""

import losses
from models import heads
from training.objectives.interface import (
  Hyperparameter,
  Objective,
  class_weight_cosines,
  class_weights_head,
  logits_scores,
  per_example,
)


def _margin_loss(loss_fn):
  def loss(inputs, hparams):
    return per_example(
      loss_fn(
        inputs.embeddings,
        inputs.outputs['class_weights'],
        inputs.labels,
        margin=hparams.margin,
        lambda_=hparams.lambda_,
      )
    )

  return loss


def _subcenters_head(num_classes, hparams):
  return heads.ClassCentersHead(num_classes, hparams.subcenters)


def _subcenter_cosines(embeddings, outputs, hparams):
  # A class's score is the cosine to its closest sub-centre.
  del hparams
  centers = outputs['class_centers']
  cosines = losses.pairwise_cosine_similarity(
    embeddings, centers.reshape(-1, centers.shape[-1])
  )
  return cosines.reshape(embeddings.shape[0], *centers.shape[:2]).max(axis=2)


def _subcenter_arcface(inputs, hparams):
  return per_example(
    losses.subcenter_arcface_loss(
      inputs.embeddings,
      inputs.outputs['class_centers'],
      inputs.labels,
      scale=hparams.scale,
      margin=hparams.margin,
    )
  )


_SUBCENTER_PAPER = 'paper: Deng et al. 2020 (sub-center ArcFace), experiments'
_MARGIN_DOC = 'm, the integer multiplier of the target angle'

OBJECTIVES = (
  Objective(
    name='large_margin_softmax',
    paper='Liu et al. 2016 (L-Softmax)',
    hyperparameters={
      'margin': Hyperparameter(
        4,
        source='paper: Liu et al. 2016, experiments (m = 1 to 4, the largest '
        "best); also the official code's example (QUADRUPLE)",
        doc=_MARGIN_DOC,
      ),
      'lambda_': Hyperparameter(
        0.0,
        source='official code: L-Softmax README, lambda_min 0, the floor '
        'of its annealing max(lambda_min, base (1 + gamma t)^-power) with '
        'base 1000, gamma 2.5e-5, power 35 (below 0.01 after ~16k '
        'iterations); fixed here',
        doc='lambda, the weight of the plain target logit mixed into the '
        'margin one',
      ),
    },
    make_head=class_weights_head,
    loss=_margin_loss(losses.large_margin_softmax_loss),
    scores=logits_scores,
  ),
  Objective(
    name='sphereface',
    paper='Liu et al. 2017 (SphereFace, A-Softmax)',
    hyperparameters={
      'margin': Hyperparameter(
        4,
        source='paper: Liu et al. 2017 (SphereFace), experiments (m = 4)',
        doc=_MARGIN_DOC,
      ),
      'lambda_': Hyperparameter(
        5.0,
        source='official code: sphereface_model.prototxt, lambda_min 5, '
        'the floor of its annealing max(lambda_min, base (1 + gamma t)^'
        '-power) with base 1000, gamma 0.12, power 1 (reached after ~1.7k '
        'iterations); fixed here',
        doc='lambda, the weight of the plain target logit mixed into the '
        'margin one',
      ),
    },
    make_head=class_weights_head,
    loss=_margin_loss(losses.sphereface_loss),
    scores=class_weight_cosines,
  ),
  Objective(
    name='subcenter_arcface',
    paper='Deng et al. 2020 (sub-center ArcFace)',
    hyperparameters={
      'scale': Hyperparameter(
        64.0,
        source=_SUBCENTER_PAPER,
        doc='s, the logit scale (cosines are multiplied by it)',
      ),
      'margin': Hyperparameter(
        0.5,
        source=_SUBCENTER_PAPER,
        doc='m, added to the target angle (radians)',
      ),
      'subcenters': Hyperparameter(
        3,
        source=_SUBCENTER_PAPER + ' (K = 3)',
        doc='K, the sub-centres per class',
      ),
    },
    make_head=_subcenters_head,
    loss=_subcenter_arcface,
    scores=_subcenter_cosines,
  ),
)
