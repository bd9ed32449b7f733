"""Pair-wise losses: each local anchor scored against the global batch.

Pair-wise Circle (Sun et al. 2020), LDMAT (the CVIU 2024 distance-matrix
loss) and batch-hard triplet train nothing but the backbone. They need
several examples per class in a batch (class-balanced sampling) and see
the all-gathered global batch, so N devices compute the one-device loss.
With a cross-batch memory (``config.memory``; Wang et al. 2020, XBM) each
anchor is scored against the memory's rows of earlier steps too, a second
reference set of the same loss function.
"""

import jax.numpy as jnp

import losses
from models import heads
from training.objectives.interface import Hyperparameter, Objective

_BLOCK_SIZE = Hyperparameter(
  None,
  source='chosen here: None computes the [batch, batch] matrices at once',
  doc='anchors per block of the memory-bounded path (None: one block); '
  'memory grows as batch x block_size instead of batch squared',
  value_type=int,
)


def _global_batch_kwargs(inputs):
  if inputs.global_batch is None:
    return {}
  return {
    'reference': losses.ReferenceSet(
      inputs.global_batch.embeddings, inputs.global_batch.labels
    ),
    'anchor_indices': inputs.global_batch.anchor_indices,
  }


def _memory_kwargs(inputs):
  # No anchor_indices: the memory holds earlier steps' rows, never this
  # step's (the step enqueues after the loss). It may hold earlier copies
  # of the same images, which count as pairs, as in XBM.
  return {
    'reference': losses.ReferenceSet(
      inputs.memory.embeddings, inputs.memory.labels, inputs.memory.valid
    ),
  }


def _valid_anchors(inputs, kwargs):
  return losses.valid_pairwise_anchors(inputs.labels, **kwargs)


def _with_memory(per_anchor, inputs, *, weigh_all):
  """A pair-wise `LossFn` result: the batch term, plus the memory term.

  Each anchor's value is its loss against the batch plus ``weight`` times
  its loss against the memory (XBM's ``loss + weight * xbm_loss``, per
  anchor). Anchors are weighted 1 when they have a positive and a negative
  in the batch or in the memory (all anchors with `weigh_all`).

  Args:
    per_anchor: (reference keyword arguments) -> ``[local_batch]`` losses.
    inputs: the `LossInputs`.
    weigh_all: weight every anchor 1 (a loss defined without pairs).
  """
  batch = _global_batch_kwargs(inputs)
  values = per_anchor(**batch)
  if weigh_all:
    valid = jnp.ones(values.shape, bool)
  else:
    valid = _valid_anchors(inputs, batch)
  if inputs.memory is not None:
    memory = _memory_kwargs(inputs)
    values = values + inputs.memory.weight * per_anchor(**memory)
    if not weigh_all:
      valid = valid | _valid_anchors(inputs, memory)
  return values, valid.astype(jnp.float32)


def _circle(inputs, hparams):
  def per_anchor(**reference):
    return losses.circle_loss_pairwise(
      inputs.embeddings,
      inputs.labels,
      margin=hparams.margin,
      gamma=hparams.gamma,
      block_size=hparams.block_size,
      **reference,
    )

  return _with_memory(per_anchor, inputs, weigh_all=False)


def _triplet(inputs, hparams):
  def per_anchor(**reference):
    return losses.batch_hard_triplet_loss(
      inputs.embeddings,
      inputs.labels,
      margin=hparams.margin,
      block_size=hparams.block_size,
      **reference,
    )

  return _with_memory(per_anchor, inputs, weigh_all=False)


# Distance between two different one-hot label vectors, per distance.
_ONE_HOT_DISTANCE = {
  'euclidean': 2.0**0.5,
  'squared_euclidean': 2.0,
  'cosine': 1.0,
}


def _distance_matrix(inputs, hparams):
  inter = hparams.inter_class_distance
  if inter is None:
    inter = _ONE_HOT_DISTANCE[hparams.distance]

  def per_anchor(**reference):
    return losses.distance_matrix_loss(
      inputs.embeddings,
      inputs.labels,
      distance=hparams.distance,
      inter_class_distance=inter,
      intra_class_distance=hparams.intra_class_distance,
      relaxation=hparams.relaxation,
      normalize=hparams.normalize,
      block_size=hparams.block_size,
      **reference,
    )

  # Every pair counts for LDMAT, including an anchor's same-class pairs when
  # its class has no other member: all anchors are weighted.
  return _with_memory(per_anchor, inputs, weigh_all=True)


def _no_head(num_classes, hparams):
  del num_classes, hparams
  return heads.NoHead()


_LDMAT_UNPUBLISHED = (
  "chosen here: the paper's equation and settings are not public; this is "
  'the plain distance-matrix regression its abstract describes'
)

OBJECTIVES = (
  Objective(
    name='circle_pairwise',
    paper='Sun et al. 2020',
    hyperparameters={
      'margin': Hyperparameter(
        0.4,
        source="third-party code: pytorch-metric-learning's CircleLoss "
        'defaults, given as the fine-grained retrieval setting',
        doc='m, the relaxation margin',
      ),
      'gamma': Hyperparameter(
        80.0,
        source="third-party code: pytorch-metric-learning's CircleLoss "
        'defaults, given as the fine-grained retrieval setting',
        doc='gamma, the scale factor',
      ),
      'block_size': _BLOCK_SIZE,
    },
    make_head=_no_head,
    loss=_circle,
    sampling='class_balanced',
    reference='global_batch',
    uses_memory=True,
  ),
  Objective(
    name='ldmat',
    paper='CVIU 2024 (LDMAT)',
    hyperparameters={
      'distance': Hyperparameter(
        'euclidean',
        source=_LDMAT_UNPUBLISHED,
        doc="feature distance: 'euclidean', 'squared_euclidean' or 'cosine'",
      ),
      'inter_class_distance': Hyperparameter(
        None,
        source='chosen here: the distance of two one-hot label vectors',
        doc='target distance of a different-class pair (None: that of two '
        'one-hot vectors under `distance`)',
        value_type=float,
      ),
      'intra_class_distance': Hyperparameter(
        0.0,
        source='chosen here: the distance of equal one-hot label vectors',
        doc='target distance of a same-class pair',
      ),
      'relaxation': Hyperparameter(
        0.0,
        source=_LDMAT_UNPUBLISHED,
        doc='half-width of the dead band around each target (no penalty '
        'inside it)',
      ),
      'normalize': Hyperparameter(
        False,
        source=_LDMAT_UNPUBLISHED,
        doc='L2-normalise the embeddings first',
      ),
      'block_size': _BLOCK_SIZE,
    },
    make_head=_no_head,
    loss=_distance_matrix,
    sampling='class_balanced',
    reference='global_batch',
    uses_memory=True,
  ),
  Objective(
    name='triplet',
    paper='Hermans et al. 2017 (batch-hard)',
    hyperparameters={
      'margin': Hyperparameter(
        0.2,
        source='another paper: Schroff et al. 2015 (FaceNet)',
        doc='the distance margin',
      ),
      'block_size': _BLOCK_SIZE,
    },
    make_head=_no_head,
    loss=_triplet,
    sampling='class_balanced',
    reference='global_batch',
    uses_memory=True,
  ),
)
