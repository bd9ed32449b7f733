"""The vMF loss (Zhe et al. 2018) with periodically re-estimated directions.

The class mean directions are not learned by gradient: they are head state,
re-estimated from the whole training split (every device and host adding
its per-class sums) every `update_every_steps` steps and before the first.
"""

import flax
import jax.numpy as jnp

import losses
from models import heads
from training.objectives.interface import (
  Hyperparameter,
  Objective,
  Refresh,
  per_example,
)


def _loss(inputs, hparams):
  return per_example(
    losses.vmf_cross_entropy(
      inputs.embeddings,
      inputs.outputs['mean_directions'],
      inputs.labels,
      kappa=hparams.kappa,
    )
  )


def _scores(embeddings, outputs, hparams):
  del hparams
  return losses.pairwise_cosine_similarity(
    embeddings, outputs['mean_directions']
  )


def _period(hparams, steps_per_epoch):
  return hparams.update_every_steps or steps_per_epoch


def _statistics(embeddings, labels, mask, num_classes):
  # Padding rows get an out-of-range label, which the class sums drop.
  labels = jnp.where(mask, labels, num_classes)
  return losses.vmf_direction_sums(embeddings, labels, num_classes)


def _update(head_state, statistics, hparams):
  del hparams
  sums, counts = statistics
  head_state = flax.core.unfreeze(head_state)
  directions = head_state['head']['mean_directions']
  head_state['head']['mean_directions'] = losses.vmf_mean_directions_from_sums(
    sums, counts, previous=directions
  )
  return head_state


OBJECTIVES = (
  Objective(
    name='vmf',
    paper='Zhe et al. 2018',
    hyperparameters={
      'kappa': Hyperparameter(
        16.0,
        source="chosen here: the paper's value is not known here; with a "
        'shared kappa vMF is a normalised softmax of scale kappa, so this '
        "project's normface scale is used (the third-party code uses 5 or "
        '15)',
        doc='kappa, the concentration shared by every class',
      ),
      'update_every_steps': Hyperparameter(
        None,
        source='chosen here: the abstract says only "periodically"; the '
        'third-party code re-estimates every 1,500 iterations',
        doc='steps between re-estimations of the mean directions (None: '
        'one epoch)',
        value_type=int,
      ),
    },
    make_head=lambda num_classes, hparams: heads.MeanDirectionsHead(
      num_classes
    ),
    loss=_loss,
    scores=_scores,
    refresh=Refresh(period=_period, statistics=_statistics, update=_update),
  ),
)
