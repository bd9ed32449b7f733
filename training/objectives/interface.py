"""What an objective is: everything the training system knows of one loss.

An `Objective` bundles the head a loss needs, the loss call, the class
scores it predicts with, its hyperparameters (each with a default and the
source of that default) and the optional hooks some losses need: head state
refreshed outside the gradient step (vMF's mean directions) and extra
evaluation metrics (G-softmax's Gaussian measures). The training loop,
the steps and the evaluation loop call these fields and never name a loss.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax

import losses
from models import heads

# Resolved hyperparameters: a frozen ConfigDict read by attribute
# (``hparams.margin``).
HParams = Any


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
  """One hyperparameter of a loss.

  Attributes:
    default: the value used unless the config sets another.
    source: where the default comes from: ``'paper: <authors year,
      section>'`` only where the paper states it, otherwise ``'official
      code: ...'``, ``'another paper: ...'`` or ``'chosen here: <why>'``.
    doc: what it is, for the README table and the config.
    value_type: the type a command-line override is parsed as; needed only
      when `default` is None (None means "derived", as the doc says).
  """

  default: Any
  source: str
  doc: str
  value_type: type | None = None

  def __post_init__(self):
    if self.default is None and self.value_type is None:
      raise ValueError('A hyperparameter defaulting to None needs value_type')

  @property
  def type(self) -> type:
    return self.value_type or type(self.default)


class GlobalBatch(NamedTuple):
  """The global batch (all devices, all hosts) a device's anchors see.

  Attributes:
    embeddings: ``[global_batch, dim]``, all-gathered; gradients flow back
      to the device that computed each row.
    labels: ``[global_batch]`` or ``[global_batch, num_labels]``.
    anchor_indices: ``[local_batch]`` rows of this device's examples.
  """

  embeddings: jax.Array
  labels: jax.Array
  anchor_indices: jax.Array


class Memory(NamedTuple):
  """Embeddings of earlier steps, a second reference set (cross-batch memory).

  Wang, Zhang, Huang and Scott, "Cross-Batch Memory for Embedding Learning"
  (XBM, CVPR 2020): the anchors are scored against the memory as well as
  against the batch, and the memory term is added with a weight.

  Attributes:
    embeddings: ``[size, dim]`` float32 embeddings of earlier global
      batches; constants (no gradient reaches them).
    labels: ``[size]`` int32 class ids.
    valid: ``[size]`` bool, False for rows not written yet: such rows must
      be neither positives nor negatives (``ReferenceSet.valid`` of the
      pair-wise losses).
    weight: the memory term's weight (XBM's lambda), a Python float.
  """

  embeddings: jax.Array
  labels: jax.Array
  valid: jax.Array
  weight: float


class LossInputs(NamedTuple):
  """What the step hands an objective's loss.

  Attributes:
    embeddings: ``[local_batch, dim]`` float32 embeddings of this device.
    labels: ``[local_batch]`` class ids, or ``[local_batch, num_labels]``
      in ``{0, 1}`` for multi-label objectives.
    outputs: the head's outputs by name (``logits``, ``class_weights``...).
    global_batch: the `GlobalBatch` for objectives with
      ``reference='global_batch'``; None otherwise (and in evaluation).
    memory: the cross-batch `Memory` for objectives with `uses_memory`,
      when the config turns it on and after its warm-up; None otherwise.
  """

  embeddings: jax.Array
  labels: jax.Array
  outputs: Mapping[str, jax.Array]
  global_batch: GlobalBatch | None = None
  memory: Memory | None = None


# (inputs, hparams) -> (values, weights), both [n]. The step minimises
# sum(weights * values) summed over devices / (sum of weights over devices):
# per-example losses give values [local_batch] with weights 1 (or 0 for
# anchors without pairs); a batch-level loss computed from the global batch
# gives its scalar as values [1] with weight 1 on every device, which makes
# the summed gradient exactly that of the one-device loss.
LossFn = Callable[[LossInputs, HParams], tuple[jax.Array, jax.Array]]


# (embeddings, head outputs, hparams) -> class scores; see `Objective`.
ScoresFn = Callable[[jax.Array, Mapping[str, jax.Array], HParams], jax.Array]


class Refresh(NamedTuple):
  """Head state recomputed from a whole split, outside the gradient step.

  The loop calls it every ``period(hparams, steps_per_epoch)`` steps (and
  before the first): `statistics` runs on every evaluation batch of the
  training split on every device; its results are summed over batches,
  devices and hosts, and `update` turns the sums into the new head state.

  Attributes:
    period: (hparams, steps_per_epoch) -> steps between refreshes.
    statistics: (embeddings ``[n, dim]``, labels ``[n]``, mask ``[n]``
      bool (False: padding), num_classes) -> a tree of sums.
    update: (head_state, summed statistics, hparams) -> new head_state.
  """

  period: Callable[[HParams, int], int]
  statistics: Callable[[jax.Array, jax.Array, jax.Array, int], Any]
  update: Callable[[Any, Any, HParams], Any]


@dataclasses.dataclass(frozen=True)
class Objective:
  """How one loss is trained and evaluated.

  Attributes:
    name: the ``config.loss.name`` that selects it.
    paper: the reference, for the README and the logs.
    hyperparameters: name -> `Hyperparameter`; exactly the fields of
      ``config.loss`` besides ``name``.
    make_head: (num_classes, hparams) -> the head module.
    loss: see `LossFn`.
    scores: (embeddings ``[batch, dim]``, head outputs, hparams) ->
      ``[batch, num_classes]`` class scores whose argmax is the prediction
      (multi-label: ``[batch, num_labels]`` probabilities that each label
      is present); None when the loss trains no classifier (prediction by
      nearest class mean only). Labels are not needed to predict.
    multilabel: targets are ``{0, 1}`` label sets.
    sampling: ``'class_balanced'`` for losses that need several examples of
      a class in each batch (pair-wise losses), else ``'random'``.
    reference: ``'global_batch'`` for losses that score the all-gathered
      global batch (pair-wise and batch-level losses), else ``'local'``.
    uses_memory: the loss can score its anchors against a cross-batch
      `Memory` too (``LossInputs.memory``), adding ``weight`` times that
      term to each anchor's loss; per-anchor pair-wise losses only (a
      batch-level loss such as Proxy-Anchor has no per-anchor reference
      set to extend). ``config.memory.size > 0`` needs such a loss.
    refresh: a `Refresh`, or None.
    extra_metrics: (head params as numpy arrays, hparams) -> dict of
      metric name -> float, added to every evaluation; or None.
    terms: for a weighted sum of objectives (`composite.combine`), its
      terms; their heads' outputs are ``outputs[term.name]`` and their
      hyperparameters ``hparams[term.name]`` (with its ``weight``).
  """

  name: str
  paper: str
  hyperparameters: Mapping[str, Hyperparameter]
  make_head: Callable[[int, HParams], nn.Module]
  loss: LossFn
  scores: ScoresFn | None = None
  multilabel: bool = False
  sampling: Literal['random', 'class_balanced'] = 'random'
  reference: Literal['local', 'global_batch'] = 'local'
  uses_memory: bool = False
  refresh: Refresh | None = None
  extra_metrics: Callable[[Any, HParams], dict[str, float]] | None = None
  terms: tuple['Objective', ...] = ()


def per_example(values: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A `LossFn` result for ``[local_batch]`` losses, each of weight 1."""
  return values, jax.numpy.ones(values.shape[:1], jax.numpy.float32)


def batch_level(value: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A `LossFn` result for a scalar loss of the whole global batch.

  Every device computes the same scalar from the `GlobalBatch`; weighting
  it 1 on each of N devices makes each contribute value / N, and the
  gradients summed over devices (through the all-gather) are exactly those
  of the one-device loss.
  """
  return value.reshape(1), jax.numpy.ones((1,), jax.numpy.float32)


def batch_loss(
  objective: Objective,
  hparams: HParams,
  inputs: LossInputs,
  *,
  axis_name: str | None = None,
) -> jax.Array:
  """The objective's loss of a batch: ``sum(w * values) / sum(w)``.

  The one place where an objective's ``(values, weights)`` (see `LossFn`)
  become the scalar that training minimises; the steps, the loss benchmark
  and the tests call it. A sum of objectives (``terms``) is the weighted sum
  of its terms' batch losses (`batch_loss_terms`).

  Args:
    objective: the loss's registry entry.
    hparams: its resolved hyperparameters.
    inputs: the batch's `LossInputs`. On one device (`axis_name` None) an
      objective with ``reference='global_batch'`` is given the batch itself
      as its global batch when `inputs.global_batch` is None.
    axis_name: the device axis of a data-parallel step, or None. With it,
      the result is this device's share: its ``sum(w * values)`` over the
      weights summed over all devices, so that the shares summed over the
      devices (as the step sums the gradients) are the loss of the global
      batch.

  Returns:
    A scalar; 0 when every weight is 0 (no anchor has pairs).
  """
  return batch_loss_terms(objective, hparams, inputs, axis_name=axis_name)[0]


def batch_loss_terms(
  objective: Objective,
  hparams: HParams,
  inputs: LossInputs,
  *,
  axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """`batch_loss`, and each term's own (unweighted) loss for a sum of
  objectives (``{}`` otherwise); the same device shares as `batch_loss`."""
  if objective.reference == 'global_batch' and inputs.global_batch is None:
    if axis_name is not None:
      raise ValueError(
        f'The loss {objective.name!r} scores the global batch: give '
        'inputs.global_batch in a data-parallel step'
      )
    rows = jax.numpy.arange(inputs.embeddings.shape[0], dtype=jax.numpy.int32)
    inputs = inputs._replace(
      global_batch=GlobalBatch(inputs.embeddings, inputs.labels, rows)
    )
  if objective.terms:
    total, parts = 0.0, {}
    for term in objective.terms:
      term_hparams = hparams[term.name]
      parts[term.name] = batch_loss(
        term,
        term_hparams,
        inputs._replace(
          outputs=inputs.outputs[term.name],
          memory=inputs.memory if term.uses_memory else None,
        ),
        axis_name=axis_name,
      )
      total = total + term_hparams.weight * parts[term.name]
    return total, parts
  values, weights = objective.loss(inputs, hparams)
  total_weight = jax.numpy.sum(weights)
  if axis_name is not None:
    total_weight = jax.lax.psum(total_weight, axis_name)
  loss = jax.numpy.sum(weights * values) / jax.numpy.maximum(total_weight, 1.0)
  return loss, {}


# Heads and scores that several objectives share.


def class_weights_head(num_classes: int, hparams: HParams) -> nn.Module:
  """A `make_head`: bias-free class weights (proxies) ``[C, dim]``."""
  del hparams
  return heads.ClassWeightsHead(num_classes)


def logits_scores(embeddings, outputs, hparams) -> jax.Array:
  """A `ScoresFn`: the head's ``logits``."""
  del embeddings, hparams
  return outputs['logits']


def class_weight_cosines(embeddings, outputs, hparams) -> jax.Array:
  """A `ScoresFn`: the cosine to each class weight (proxy); the closest
  class vector, by angle, is the prediction."""
  del hparams
  return losses.pairwise_cosine_similarity(embeddings, outputs['class_weights'])
