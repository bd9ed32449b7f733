"""The objective registry: loss name -> head, loss call, prediction, defaults.

Each loss needs different things from the model (logits, class weights,
Gaussians, centres, vMF state, or nothing but the embeddings). This registry
keeps those differences in one table, so the training step has no per-loss
branches and adding a loss is one entry here.

Hyperparameters left as None in ``config.loss`` take the defaults below,
which come from the papers where they give them (see README, "Configs").
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

import losses
from models import heads


class PairwiseReference(NamedTuple):
  """The global batch a device's anchors are scored against."""

  embeddings: jax.Array  # [global_batch, dim]
  labels: jax.Array  # [global_batch]
  anchor_indices: jax.Array  # [local_batch] rows of the local anchors


# (outputs, embeddings, labels, hparams, reference) -> (losses, weights), both
# [batch]; the step averages sum(weights * losses) over the global batch.
LossFn = Callable[
  [Mapping[str, jax.Array], jax.Array, jax.Array, Any, Any],
  tuple[jax.Array, jax.Array],
]


@dataclasses.dataclass(frozen=True)
class Objective:
  """How one loss is trained and evaluated.

  Attributes:
    name: the ``config.loss.name``.
    make_head: (num_classes, hparams) -> a head module.
    loss: see `LossFn`.
    scores: (outputs, embeddings) -> ``[batch, num_classes]`` class scores
      for prediction, or None when the loss trains no classifier.
    defaults: hyperparameter defaults (fields of ``config.loss``).
    pairwise: scores anchors against the global batch (all-gathered).
    multilabel: targets are ``{0,1}`` label sets.
    periodic_mean_directions: vMF: re-estimate mean directions periodically.
  """

  name: str
  make_head: Callable[[int, Any], nn.Module]
  loss: LossFn
  scores: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array] | None
  defaults: Mapping[str, Any]
  pairwise: bool = False
  multilabel: bool = False
  periodic_mean_directions: bool = False


def _ones(labels):
  return jnp.ones(labels.shape[:1], jnp.float32)


def _cosine_scores(weights_key):
  def scores(outputs, embeddings):
    return losses.pairwise_cosine_similarity(embeddings, outputs[weights_key])

  return scores


def _logit_scores(outputs, embeddings):
  del embeddings
  return outputs['logits']


def _softmax(outputs, embeddings, labels, hp, reference):
  del embeddings, hp, reference
  return (
    optax.softmax_cross_entropy_with_integer_labels(outputs['logits'], labels),
    _ones(labels),
  )


def _g_softmax(outputs, embeddings, labels, hp, reference):
  del embeddings, reference
  per_example = losses.g_softmax_cross_entropy(
    outputs['logits'],
    labels,
    mu=outputs['mu'],
    sigma=outputs['sigma'],
    scale=hp.scale,
  )
  return per_example, _ones(labels)


def _multilabel_logits(outputs, num_labels):
  return outputs['logits'].reshape(-1, num_labels, 2)


def _g_softmax_multilabel(outputs, embeddings, labels, hp, reference):
  del embeddings, reference
  num_labels = labels.shape[-1]
  per_example = losses.g_softmax_multilabel_cross_entropy(
    _multilabel_logits(outputs, num_labels),
    labels,
    mu=outputs['mu'].reshape(num_labels, 2),
    sigma=outputs['sigma'].reshape(num_labels, 2),
    scale=hp.scale,
  )
  return per_example, _ones(labels)


def multilabel_probabilities(outputs, num_labels, hp) -> jax.Array:
  """``[batch, num_labels]`` probability that each label is present."""
  return losses.g_softmax_multilabel_probabilities(
    _multilabel_logits(outputs, num_labels),
    mu=outputs['mu'].reshape(num_labels, 2),
    sigma=outputs['sigma'].reshape(num_labels, 2),
    scale=hp.scale,
  )


def _proxy_loss(loss_fn, weights_key, *hparam_names):
  """A LossFn for losses of (embeddings, per-class vectors, labels)."""

  def loss(outputs, embeddings, labels, hp, reference):
    del reference
    hparams = {name: hp[name] for name in hparam_names}
    per_example = loss_fn(embeddings, outputs[weights_key], labels, **hparams)
    return per_example, _ones(labels)

  return loss


def _center(outputs, embeddings, labels, hp, reference):
  del reference
  softmax = optax.softmax_cross_entropy_with_integer_labels(
    outputs['logits'], labels
  )
  center = losses.center_loss(embeddings, outputs['centers'], labels)
  return softmax + hp.center_weight * center, _ones(labels)


def _reference_kwargs(reference: PairwiseReference | None):
  if reference is None:
    return {}
  return {
    'reference_embeddings': reference.embeddings,
    'reference_labels': reference.labels,
    'anchor_indices': reference.anchor_indices,
  }


def _valid_weights(labels, reference):
  kwargs = {}
  if reference is not None:
    kwargs = {
      'reference_labels': reference.labels,
      'anchor_indices': reference.anchor_indices,
    }
  return losses.valid_pairwise_anchors(labels, **kwargs).astype(jnp.float32)


def _circle_pairwise(outputs, embeddings, labels, hp, reference):
  del outputs
  per_example = losses.circle_loss_pairwise(
    embeddings,
    labels,
    margin=hp.margin,
    gamma=hp.gamma,
    block_size=hp.block_size,
    **_reference_kwargs(reference),
  )
  return per_example, _valid_weights(labels, reference)


def _distance_matrix(outputs, embeddings, labels, hp, reference):
  del outputs
  per_example = losses.distance_matrix_loss(
    embeddings,
    labels,
    distance=hp.distance,
    inter_class_distance=hp.inter_class_distance
    or _ONE_HOT_DISTANCE[hp.distance],
    intra_class_distance=hp.intra_class_distance,
    relaxation=hp.relaxation,
    normalize=hp.normalize,
    block_size=hp.block_size,
    **_reference_kwargs(reference),
  )
  # Every pair counts for LDMAT, including an anchor's same-class pairs when
  # its class has no other member: all anchors are weighted.
  return per_example, _ones(labels)


# Distance between two different one-hot label vectors, per distance.
_ONE_HOT_DISTANCE = {
  'euclidean': 2.0**0.5,
  'squared_euclidean': 2.0,
  'cosine': 1.0,
}


def _triplet(outputs, embeddings, labels, hp, reference):
  del outputs
  per_example = losses.batch_hard_triplet_loss(
    embeddings,
    labels,
    margin=hp.margin,
    block_size=hp.block_size,
    **_reference_kwargs(reference),
  )
  return per_example, _valid_weights(labels, reference)


def _gaussian_head(num_classes, hp):
  return heads.GaussianLogitsHead(
    num_classes, mu_init=hp.mu_init, sigma_init=hp.sigma_init
  )


def _two_way_gaussian_head(num_labels, hp):
  # One "present" and one "absent" logit (and Gaussian) per label.
  return _gaussian_head(2 * num_labels, hp)


_OBJECTIVES = {
  objective.name: objective
  for objective in (
    Objective(
      name='softmax',
      make_head=lambda c, hp: heads.LogitsHead(c),
      loss=_softmax,
      scores=_logit_scores,
      defaults={},
    ),
    Objective(
      name='g_softmax',
      make_head=_gaussian_head,
      loss=_g_softmax,
      scores=_logit_scores,
      # Luo et al.'s Tiny ImageNet script: lambda 0.1, mu0 0, sigma0 1.
      defaults={'scale': 0.1, 'mu_init': 0.0, 'sigma_init': 1.0},
    ),
    Objective(
      name='g_softmax_multilabel',
      make_head=_two_way_gaussian_head,
      loss=_g_softmax_multilabel,
      scores=None,
      # The official multi-label runs effectively used lambda = 1 (the
      # criterion is built without gsm_scale; losses.md §1.4).
      defaults={'scale': 1.0, 'mu_init': 0.0, 'sigma_init': 1.0},
      multilabel=True,
    ),
    Objective(
      name='softmax_multilabel',
      make_head=_two_way_gaussian_head,
      loss=_g_softmax_multilabel,
      scores=None,
      # The baseline of G-softmax's multi-label experiments: the same
      # per-label two-way softmax without the Gaussian term.
      defaults={'scale': 0.0, 'mu_init': 0.0, 'sigma_init': 1.0},
      multilabel=True,
    ),
    Objective(
      name='virtual_softmax',
      make_head=lambda c, hp: heads.ClassWeightsHead(c),
      loss=_proxy_loss(losses.virtual_softmax_cross_entropy, 'class_weights'),
      scores=_logit_scores,
      defaults={},
    ),
    Objective(
      name='normface',
      make_head=lambda c, hp: heads.ClassWeightsHead(c),
      loss=_proxy_loss(
        losses.normalized_softmax_cross_entropy, 'class_weights', 'scale'
      ),
      scores=_cosine_scores('class_weights'),
      # Wang et al. 2017 (NormFace) use a scale around 16 for few
      # classes; PML's temperature 0.05 is scale 20.
      defaults={'scale': 16.0},
    ),
    Objective(
      name='cosface',
      make_head=lambda c, hp: heads.ClassWeightsHead(c),
      loss=_proxy_loss(losses.cosface_loss, 'class_weights', 'scale', 'margin'),
      scores=_cosine_scores('class_weights'),
      defaults={'scale': 64.0, 'margin': 0.35},  # CosFace paper.
    ),
    Objective(
      name='arcface',
      make_head=lambda c, hp: heads.ClassWeightsHead(c),
      loss=_proxy_loss(losses.arcface_loss, 'class_weights', 'scale', 'margin'),
      scores=_cosine_scores('class_weights'),
      defaults={'scale': 64.0, 'margin': 0.5},  # ArcFace paper.
    ),
    Objective(
      name='circle_class',
      make_head=lambda c, hp: heads.ClassWeightsHead(c),
      loss=_proxy_loss(
        losses.circle_loss_class_level, 'class_weights', 'margin', 'gamma'
      ),
      scores=_cosine_scores('class_weights'),
      # Sun et al.'s class-level (face recognition) setting.
      defaults={'margin': 0.25, 'gamma': 256.0},
    ),
    Objective(
      name='vmf',
      make_head=lambda c, hp: heads.MeanDirectionsHead(c),
      loss=_proxy_loss(losses.vmf_cross_entropy, 'mean_directions', 'kappa'),
      scores=_cosine_scores('mean_directions'),
      # kappa is unconfirmed in the paper; the third-party code uses
      # 5-15. Mean directions are re-estimated every epoch by default.
      defaults={'kappa': 16.0, 'update_every_steps': None},
      periodic_mean_directions=True,
    ),
    Objective(
      name='center',
      make_head=lambda c, hp: heads.CentersHead(c),
      loss=_center,
      scores=_logit_scores,
      # Wen et al. 2016 use lambda = 0.003 for face recognition.
      defaults={'center_weight': 0.003},
    ),
    Objective(
      name='circle_pairwise',
      make_head=lambda c, hp: heads.NoHead(),
      loss=_circle_pairwise,
      scores=None,
      # Sun et al.'s fine-grained retrieval setting (m 0.4, gamma 80).
      defaults={'margin': 0.4, 'gamma': 80.0, 'block_size': None},
      pairwise=True,
    ),
    Objective(
      name='ldmat',
      make_head=lambda c, hp: heads.NoHead(),
      loss=_distance_matrix,
      scores=None,
      defaults={
        'distance': 'euclidean',
        # None: the distance between two one-hot label vectors under the
        # chosen feature distance.
        'inter_class_distance': None,
        'intra_class_distance': 0.0,
        'relaxation': 0.0,
        'normalize': False,
        'block_size': None,
      },
      pairwise=True,
    ),
    Objective(
      name='triplet',
      make_head=lambda c, hp: heads.NoHead(),
      loss=_triplet,
      scores=None,
      # FaceNet's margin; batch-hard mining as Hermans et al. 2017.
      defaults={'margin': 0.2, 'block_size': None},
      pairwise=True,
    ),
  )
}


def names() -> list[str]:
  """The valid ``config.loss.name`` values."""
  return sorted(_OBJECTIVES)


def get_objective(name: str) -> Objective:
  """The objective registered under `name`; the error lists valid names."""
  if name not in _OBJECTIVES:
    raise ValueError(
      f'Unknown loss name {name!r} (config.loss.name); valid names: '
      f'{", ".join(names())}'
    )
  return _OBJECTIVES[name]


def resolve_hparams(
  objective: Objective, loss_config: ml_collections.ConfigDict
) -> ml_collections.FrozenConfigDict:
  """The loss's hyperparameters: config values, None -> the defaults."""
  resolved = {}
  for key, default in objective.defaults.items():
    value = loss_config.get(key)
    resolved[key] = default if value is None else value
  return ml_collections.FrozenConfigDict(resolved)
