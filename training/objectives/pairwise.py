"""Pair-wise losses: each local anchor scored against the global batch.

Pair-wise Circle (Sun et al. 2020), LDMAT (the CVIU 2024 distance-matrix
loss) and batch-hard triplet train nothing but the backbone. They need
several examples per class in a batch (class-balanced sampling) and see
the all-gathered global batch, so N devices compute the one-device loss.
With a cross-batch memory (``config.memory``; Wang et al. 2020, XBM) each
anchor is scored against the memory's rows of earlier steps too, a second
reference set of the same loss function.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

import losses
from models import heads
from training.objectives.interface import HParams, Hyperparameter, Objective

_BLOCK_SIZE = Hyperparameter(
  None,
  source='chosen here: None computes the [batch, batch] matrices at once',
  doc='anchors per block of the memory-bounded path (None: one block); '
  'memory grows as batch x block_size instead of batch squared',
  value_type=int,
)

# (reference set, anchor_indices): the keyword arguments a pair-wise loss
# and `losses.valid_pairwise_anchors` take; (None, None) is the batch.
_Reference = tuple[losses.ReferenceSet | None, jax.Array | None]


def _global_batch_reference(inputs) -> _Reference:
  if inputs.global_batch is None:
    return None, None
  batch = inputs.global_batch
  reference = losses.ReferenceSet(batch.embeddings, batch.labels)
  return reference, batch.anchor_indices


def _memory_reference(inputs) -> _Reference:
  # No anchor_indices: the memory holds earlier steps' rows, never this
  # step's (the step enqueues after the loss). It may hold earlier copies
  # of the same images, which count as pairs, as in XBM.
  memory = inputs.memory
  reference = losses.ReferenceSet(
    memory.embeddings, memory.labels, memory.valid
  )
  return reference, None


def _valid_anchors(inputs, reference: _Reference) -> jax.Array:
  reference_set, anchor_indices = reference
  return losses.valid_pairwise_anchors(
    inputs.labels, reference=reference_set, anchor_indices=anchor_indices
  )


def _with_memory(per_anchor, inputs, *, weigh_all):
  """A pair-wise `LossFn` result: the batch term, plus the memory term.

  Each anchor's value is its loss against the batch plus ``weight`` times
  its loss against the memory (XBM's ``loss + weight * xbm_loss``, per
  anchor). Anchors are weighted 1 when they have a positive and a negative
  in the batch or in the memory (all anchors with `weigh_all`).

  Args:
    per_anchor: (reference set, anchor_indices) -> ``[local_batch]``
      losses.
    inputs: the `LossInputs`.
    weigh_all: weight every anchor 1 (a loss defined without pairs).
  """
  batch = _global_batch_reference(inputs)
  values = per_anchor(*batch)
  if weigh_all:
    valid = jnp.ones(values.shape, bool)
  else:
    valid = _valid_anchors(inputs, batch)
  if inputs.memory is not None:
    memory = _memory_reference(inputs)
    values = values + inputs.memory.weight * per_anchor(*memory)
    if not weigh_all:
      valid = valid | _valid_anchors(inputs, memory)
  return values, valid.astype(jnp.float32)


def _no_head(num_classes, hparams):
  del num_classes, hparams
  return heads.NoHead()


def _pairwise_objective(
  *,
  name: str,
  paper: str,
  hyperparameters: Mapping[str, Hyperparameter],
  loss_fn: Callable[..., jax.Array],
  loss_kwargs: Callable[[HParams], dict[str, Any]] | None = None,
  weigh_all: bool = False,
) -> Objective:
  """The registry entry of a pair-wise loss, from what is its own.

  Every pair-wise entry trains no head, draws class-balanced batches,
  scores its local anchors against the global batch and, with a
  cross-batch memory, against the memory too (`_with_memory`), and has the
  ``block_size`` hyperparameter of the memory-bounded path, added here
  after the loss's own.

  Args:
    name: the ``config.loss.name``.
    paper: the reference, for the README and the logs.
    hyperparameters: the loss's own hyperparameters, in table order.
    loss_fn: the per-anchor loss, called as ``loss_fn(embeddings, labels,
      **loss_kwargs(hparams), reference=..., anchor_indices=...,
      block_size=hparams.block_size)``.
    loss_kwargs: hparams -> the loss's keyword arguments; None passes each
      of `hyperparameters` under its own name.
    weigh_all: weight every anchor 1, not only those with a positive and a
      negative (a loss defined without pairs).

  Returns:
    The `Objective`.
  """
  if loss_kwargs is None:

    def loss_kwargs(hparams):
      return {key: getattr(hparams, key) for key in hyperparameters}

  def loss(inputs, hparams):
    def per_anchor(reference, anchor_indices):
      return loss_fn(
        inputs.embeddings,
        inputs.labels,
        **loss_kwargs(hparams),
        reference=reference,
        anchor_indices=anchor_indices,
        block_size=hparams.block_size,
      )

    return _with_memory(per_anchor, inputs, weigh_all=weigh_all)

  return Objective(
    name=name,
    paper=paper,
    hyperparameters={**hyperparameters, 'block_size': _BLOCK_SIZE},
    make_head=_no_head,
    loss=loss,
    sampling='class_balanced',
    reference='global_batch',
    uses_memory=True,
  )


# Distance between two different one-hot label vectors, per distance.
_ONE_HOT_DISTANCE = {
  'euclidean': 2.0**0.5,
  'squared_euclidean': 2.0,
  'cosine': 1.0,
}


def _distance_matrix_kwargs(hparams):
  inter = hparams.inter_class_distance
  if inter is None:
    inter = _ONE_HOT_DISTANCE[hparams.distance]
  return {
    'distance': hparams.distance,
    'inter_class_distance': inter,
    'intra_class_distance': hparams.intra_class_distance,
    'relaxation': hparams.relaxation,
    'normalize': hparams.normalize,
  }


_LDMAT_UNPUBLISHED = (
  "chosen here: the paper's equation and settings are not public; this is "
  'the plain distance-matrix regression its abstract describes'
)

OBJECTIVES = (
  _pairwise_objective(
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
    },
    loss_fn=losses.circle_loss_pairwise,
  ),
  _pairwise_objective(
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
    },
    loss_fn=losses.distance_matrix_loss,
    loss_kwargs=_distance_matrix_kwargs,
    # Every pair counts for LDMAT, including an anchor's same-class pairs
    # when its class has no other member: all anchors are weighted.
    weigh_all=True,
  ),
  _pairwise_objective(
    name='triplet',
    paper='Hermans et al. 2017 (batch-hard)',
    hyperparameters={
      'margin': Hyperparameter(
        0.2,
        source='another paper: Schroff et al. 2015 (FaceNet)',
        doc='the distance margin',
      ),
    },
    loss_fn=losses.batch_hard_triplet_loss,
  ),
)
