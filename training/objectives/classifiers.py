"""Losses on a classifier over the embedding: softmax and its margin kin.

Softmax, Virtual Softmax, NormFace, CosFace, ArcFace, class-level Circle
and the centre loss: each trains per-class vectors (a linear layer or
bias-free class weights) beside the backbone and predicts by their scores.
"""

import optax

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


def _logits_head(num_classes, hparams):
  del hparams
  return heads.LogitsHead(num_classes)


def _softmax(inputs, hparams):
  del hparams
  return per_example(
    optax.softmax_cross_entropy_with_integer_labels(
      inputs.outputs['logits'], inputs.labels
    )
  )


def _virtual_softmax(inputs, hparams):
  del hparams
  return per_example(
    losses.virtual_softmax_cross_entropy(
      inputs.embeddings, inputs.outputs['class_weights'], inputs.labels
    )
  )


def _class_weights_loss(loss_fn):
  """A loss of (embeddings, class weights, labels, **hyperparameters)."""

  def loss(inputs, hparams):
    return per_example(
      loss_fn(
        inputs.embeddings,
        inputs.outputs['class_weights'],
        inputs.labels,
        **hparams,
      )
    )

  return loss


def _center(inputs, hparams):
  softmax = optax.softmax_cross_entropy_with_integer_labels(
    inputs.outputs['logits'], inputs.labels
  )
  center = losses.center_loss(
    inputs.embeddings, inputs.outputs['centers'], inputs.labels
  )
  return per_example(softmax + hparams.center_weight * center)


_CIRCLE_FACE = (
  "third-party code: pytorch-metric-learning's CircleLoss docs, for the "
  "paper's face recognition setting"
)
_SCALE_DOC = 's, the logit scale (cosines are multiplied by it)'

OBJECTIVES = (
  Objective(
    name='softmax',
    paper='the baseline',
    hyperparameters={},
    make_head=_logits_head,
    loss=_softmax,
    scores=logits_scores,
  ),
  Objective(
    name='virtual_softmax',
    paper='Chen et al. 2018',
    hyperparameters={},
    make_head=class_weights_head,
    loss=_virtual_softmax,
    scores=logits_scores,
  ),
  Objective(
    name='normface',
    paper='Wang et al. 2017',
    hyperparameters={
      'scale': Hyperparameter(
        16.0,
        source='chosen here: a scale for few classes '
        "(pytorch-metric-learning's default temperature 0.05 is a scale of "
        '20)',
        doc=_SCALE_DOC,
      ),
    },
    make_head=class_weights_head,
    loss=_class_weights_loss(losses.normalized_softmax_cross_entropy),
    scores=class_weight_cosines,
  ),
  Objective(
    name='cosface',
    paper='Wang et al. 2018',
    hyperparameters={
      'scale': Hyperparameter(
        64.0,
        source='paper: Wang et al. 2018 (CosFace), implementation details',
        doc=_SCALE_DOC,
      ),
      'margin': Hyperparameter(
        0.35,
        source='paper: Wang et al. 2018 (CosFace), implementation details',
        doc='m, subtracted from the target cosine',
      ),
    },
    make_head=class_weights_head,
    loss=_class_weights_loss(losses.cosface_loss),
    scores=class_weight_cosines,
  ),
  Objective(
    name='arcface',
    paper='Deng et al. 2019',
    hyperparameters={
      'scale': Hyperparameter(
        64.0,
        source='paper: Deng et al. 2019 (ArcFace), implementation details',
        doc=_SCALE_DOC,
      ),
      'margin': Hyperparameter(
        0.5,
        source='paper: Deng et al. 2019 (ArcFace), implementation details',
        doc='m, added to the target angle (radians)',
      ),
    },
    make_head=class_weights_head,
    loss=_class_weights_loss(losses.arcface_loss),
    scores=class_weight_cosines,
  ),
  Objective(
    name='circle_class',
    paper='Sun et al. 2020',
    hyperparameters={
      'margin': Hyperparameter(
        0.25,
        source=_CIRCLE_FACE,
        doc='m, the relaxation margin',
      ),
      'gamma': Hyperparameter(
        256.0,
        source=_CIRCLE_FACE,
        doc='gamma, the scale factor',
      ),
    },
    make_head=class_weights_head,
    loss=_class_weights_loss(losses.circle_loss_class_level),
    scores=class_weight_cosines,
  ),
  Objective(
    name='center',
    paper='Wen et al. 2016',
    hyperparameters={
      'center_weight': Hyperparameter(
        0.003,
        source='paper: Wen et al. 2016, face recognition experiments',
        doc='lambda, the weight of the centre term added to softmax',
      ),
    },
    make_head=lambda num_classes, hparams: heads.CentersHead(num_classes),
    loss=_center,
    scores=logits_scores,
  ),
)
