"""The per-device training and evaluation steps, and the train state.

The steps are written for one device holding a shard of the global batch,
with explicit collectives over `AXIS_NAME`; `make_steps` maps them over all
devices of all processes with `jax.pmap` (or `jax.shard_map`), each process
feeding its local devices.

Exactness across devices: every loss is the mean over the *global* batch.
Each device contributes ``sum(weights * losses) / psum(sum(weights))``
(`objectives.batch_loss`) and gradients are summed (`psum`), which is the
pmean of per-device means when all devices hold equally many examples.
Pairwise losses score the local anchors against the all-gathered global
batch; the gradient flows back through `all_gather` (its transpose is a
reduce-scatter), so the summed gradient equals the single-device gradient on
the global batch. A batch-level loss (Proxy-Anchor) computes its scalar from
the all-gathered batch on every device with weight 1 each, so each device
adds 1/N of it and the summed gradients are again the single-device ones.

Cross-batch memory (Wang et al. 2020, XBM): with ``config.memory.size > 0``
the state holds the embeddings and labels of the last ``size`` examples of
earlier global batches, replicated on every device. After the warm-up the
objective scores its local anchors against the memory too; after the loss
the step enqueues the all-gathered global batch (identical on every device,
so the replicas stay identical without communication).
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import PartitionSpec as P

from models import heads
from training import objectives
from training.objectives import interface

AXIS_NAME = 'batch'


class CrossBatchMemory(flax.struct.PyTreeNode):
  """A FIFO queue of the embeddings and labels of earlier global batches.

  Replicated: every device holds all of it, identical everywhere, because
  every local anchor is scored against every row. Rows are written in
  order from row 0, wrapping around at the end; the oldest rows are
  overwritten first.

  Attributes:
    embeddings: ``[size, dim]`` float32; zeros where not written yet.
    labels: ``[size]`` int32; zeros where not written yet.
    pointer: int32 scalar, the row the next enqueue starts at.
    filled: int32 scalar, the number of rows written so far (at most
      size): rows ``[0, filled)`` are valid.
  """

  embeddings: jax.Array
  labels: jax.Array
  pointer: jax.Array
  filled: jax.Array


class TrainState(train_state.TrainState):
  """Parameters, optimiser state and the model's non-gradient state.

  Attributes:
    batch_stats: BatchNorm running statistics.
    head_state: the head's non-gradient state (e.g. vMF mean directions),
      refreshed by the objective's `Refresh`, never by the optimiser.
    memory: the `CrossBatchMemory` (``config.memory.size > 0``), replicated
      like the rest of the state and checkpointed with it; None without.
  """

  batch_stats: Any
  head_state: Any
  memory: CrossBatchMemory | None = None


def create_memory(size: int, dim: int) -> CrossBatchMemory:
  """An empty memory of `size` rows of `dim`-dimensional embeddings."""
  return CrossBatchMemory(
    embeddings=jnp.zeros((size, dim), jnp.float32),
    labels=jnp.zeros((size,), jnp.int32),
    pointer=jnp.zeros((), jnp.int32),
    filled=jnp.zeros((), jnp.int32),
  )


def enqueue(
  memory: CrossBatchMemory, embeddings: jax.Array, labels: jax.Array
) -> CrossBatchMemory:
  """Writes `embeddings` ``[rows, dim]`` and `labels` at the pointer.

  The rows go to ``(pointer + i) % size`` in order, so the memory always
  holds the last ``size`` rows enqueued (all of them while fewer).

  Raises:
    ValueError: more rows than the memory has.
  """
  size = memory.labels.shape[0]
  rows = embeddings.shape[0]
  if rows > size:
    raise ValueError(
      f'config.memory.size ({size}) must be at least the global batch '
      f'({rows} examples): the memory holds whole batches'
    )
  index = (memory.pointer + jnp.arange(rows, dtype=jnp.int32)) % size
  embeddings = jax.lax.stop_gradient(embeddings).astype(jnp.float32)
  return memory.replace(
    embeddings=memory.embeddings.at[index].set(embeddings, unique_indices=True),
    labels=memory.labels.at[index].set(
      labels.astype(jnp.int32), unique_indices=True
    ),
    pointer=(memory.pointer + rows) % size,
    filled=jnp.minimum(memory.filled + rows, size),
  )


def memory_inputs(memory: CrossBatchMemory, weight: float) -> interface.Memory:
  """The `objectives.Memory` an objective's loss sees."""
  size = memory.labels.shape[0]
  return interface.Memory(
    embeddings=memory.embeddings,
    labels=memory.labels,
    valid=jnp.arange(size, dtype=jnp.int32) < memory.filled,
    weight=float(weight),
  )


def create_train_state(
  rng: jax.Array,
  model: nn.Module,
  image_shape: tuple[int, int, int],
  tx: optax.GradientTransformation,
  *,
  memory_size: int = 0,
) -> TrainState:
  """Initialises the model on a dummy batch of 2 images.

  Args:
    rng: the initialisation key.
    model: the `EmbeddingModel`.
    image_shape: ``(height, width, channels)``.
    tx: the optimiser.
    memory_size: rows of the cross-batch memory (``config.memory.size``);
      0: none.
  """
  dummy = jnp.zeros((2, *image_shape), jnp.float32)
  # Compiled as one program: run eagerly, every initialiser and layer is a
  # compilation of its own (about 100 for LeNet++, seconds on a CPU).
  init = jax.jit(functools.partial(model.init, train=False))
  variables = init(rng, dummy)
  fields = {
    'apply_fn': model.apply,
    'params': variables['params'],
    'tx': tx,
    'batch_stats': variables.get('batch_stats', {}),
    'head_state': variables.get(heads.HEAD_STATE, {}),
  }
  if memory_size:
    embeddings, _ = jax.eval_shape(
      functools.partial(model.apply, train=False), variables, dummy
    )
    fields['memory'] = create_memory(memory_size, embeddings.shape[-1])
  return TrainState.create(**fields)


def _variables(state: TrainState, params) -> dict[str, Any]:
  return {
    'params': params,
    'batch_stats': state.batch_stats,
    heads.HEAD_STATE: state.head_state,
  }


class MemorySettings(NamedTuple):
  """``config.memory``: see configs/default.py."""

  size: int
  warmup_steps: int
  weight: float


def memory_settings(
  config: Any, objective: objectives.Objective
) -> MemorySettings | None:
  """Checked settings from ``config.memory``; None when it is off.

  Raises:
    ValueError: a negative size or warm-up, or a memory for an objective
      without `uses_memory`.
  """
  if config is None or not config.size:
    return None
  if config.size < 0 or config.warmup_steps < 0:
    raise ValueError(
      'config.memory.size and config.memory.warmup_steps must be >= 0, '
      f'received {config.size} and {config.warmup_steps}'
    )
  if not objective.uses_memory:
    users = [o.name for o in objectives.all_objectives() if o.uses_memory]
    raise ValueError(
      f'config.memory.size={config.size} but the loss {objective.name!r} '
      'does not use a cross-batch memory (set config.memory.size=0); the '
      f'losses that do: {", ".join(users)}'
    )
  return MemorySettings(
    int(config.size), int(config.warmup_steps), float(config.weight)
  )


def _global_batch(embeddings, labels):
  """The global batch and the local anchors' rows in it."""
  local = embeddings.shape[0]
  return objectives.GlobalBatch(
    embeddings=jax.lax.all_gather(embeddings, AXIS_NAME, tiled=True),
    labels=jax.lax.all_gather(labels, AXIS_NAME, tiled=True),
    anchor_indices=jax.lax.axis_index(AXIS_NAME) * local
    + jnp.arange(local, dtype=jnp.int32),
  )


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  objective: objectives.Objective,
  hparams: Any,
  learning_rate_fn: optax.Schedule,
  memory: MemorySettings | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on this device's shard of the global batch.

  Args:
    state: the replicated train state.
    batch: ``{'image': [local_batch, H, W, C], 'label': [local_batch] or
      [local_batch, num_labels]}``.
    objective: the loss's registry entry.
    hparams: its resolved hyperparameters.
    learning_rate_fn: for logging the current learning rate.
    memory: the cross-batch memory's settings, or None (off). From step
      ``memory.warmup_steps`` on (counting from 0) the loss sees
      ``state.memory``; at every step the global batch is enqueued after
      the loss.

  Returns:
    The new state and metrics, identical on every device.
  """
  labels = batch['label']
  state_memory = state.memory
  held = 0 if state_memory is None else state_memory.labels.shape[0]
  if held != (memory.size if memory else 0):
    raise ValueError(
      f'config.memory.size is {memory.size if memory else 0} but the state '
      f'holds a memory of {held} rows: create the state with '
      'create_train_state(..., memory_size=config.memory.size)'
    )

  def objective_loss(inputs):
    def loss(inputs):
      return objectives.batch_loss_terms(
        objective, hparams, inputs, axis_name=AXIS_NAME
      )

    if memory is None:
      return loss(inputs)
    with_memory = inputs._replace(
      memory=memory_inputs(state_memory, memory.weight)
    )
    if memory.warmup_steps == 0:
      return loss(with_memory)
    # The same branch on every device (the step is replicated); before the
    # warm-up the memory term is not computed at all.
    return jax.lax.cond(
      state.step >= memory.warmup_steps,
      lambda: loss(with_memory),
      lambda: loss(inputs),
    )

  def loss_fn(params):
    (embeddings, outputs), updates = state.apply_fn(
      _variables(state, params),
      batch['image'],
      train=True,
      mutable=['batch_stats'],
    )
    inputs = objectives.LossInputs(embeddings, labels, outputs)
    if objective.reference == 'global_batch':
      inputs = inputs._replace(global_batch=_global_batch(embeddings, labels))
    loss, terms = objective_loss(inputs)
    return loss, (updates, inputs, terms)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, (updates, inputs, terms)), grads = grad_fn(state.params)
  grads = jax.lax.psum(grads, AXIS_NAME)
  loss = jax.lax.psum(loss, AXIS_NAME)
  replaced = {'batch_stats': updates.get('batch_stats', {})}
  if memory is not None:
    gathered = inputs.global_batch
    if gathered is None:
      gathered = _global_batch(inputs.embeddings, labels)
    # After the loss: this step's anchors never meet their own rows.
    replaced['memory'] = enqueue(
      state_memory, gathered.embeddings, gathered.labels
    )
  new_state = state.apply_gradients(grads=grads, **replaced)
  metrics = {
    'loss': loss,
    # A sum of objectives: each term's loss, unweighted.
    **{
      f'loss/{name}': jax.lax.psum(value, AXIS_NAME)
      for name, value in terms.items()
    },
    'learning_rate': learning_rate_fn(state.step),
    'grad_norm': optax.tree.norm(grads),
    'embedding_norm': jax.lax.pmean(
      jnp.mean(jnp.linalg.norm(inputs.embeddings, axis=-1)), AXIS_NAME
    ),
  }
  if objective.scores is not None and not objective.multilabel:
    scores = objective.scores(inputs.embeddings, inputs.outputs, hparams)
    predictions = jnp.argmax(scores, -1)
    metrics['accuracy'] = jax.lax.pmean(
      jnp.mean(predictions == labels), AXIS_NAME
    )
  return new_state, metrics


def eval_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  objective: objectives.Objective,
  hparams: Any,
) -> dict[str, jax.Array]:
  """Embeddings and class scores of one evaluation batch (no collectives).

  The batch needs only ``'image'``: predicting reads no labels.

  Returns:
    ``{'embeddings': [batch, dim]}`` plus the objective's ``'scores'``
    (``[batch, num_classes]``, or ``[batch, num_labels]`` probabilities for
    multi-label objectives) where it has them.
  """
  embeddings, outputs = state.apply_fn(
    _variables(state, state.params), batch['image'], train=False
  )
  result = {'embeddings': embeddings}
  if objective.scores is not None:
    result['scores'] = objective.scores(embeddings, outputs, hparams)
  return result


def refresh_statistics_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  statistics_fn: Callable[..., Any],
  num_classes: int,
) -> Any:
  """An objective's refresh statistics of one batch, summed over devices."""
  embeddings, _ = state.apply_fn(
    _variables(state, state.params), batch['image'], train=False
  )
  statistics = statistics_fn(
    embeddings, batch['label'], batch['mask'], num_classes
  )
  return jax.lax.psum(statistics, AXIS_NAME)


PARALLELISMS = ('pmap', 'shard_map')


class ParallelSteps(NamedTuple):
  """The steps mapped over the local devices, taking host batches.

  Attributes:
    train: (state, batch) -> (state, metrics).
    evaluate: (state, batch) -> dict of ``[local_batch, ...]`` numpy arrays.
    refresh_statistics: (state, batch) -> the objective's refresh
      statistics of the batch summed over all devices; None when the
      objective has no refresh.
    replicate: state -> the same state replicated over the devices, as the
      train step returns it. Feeding the step a state in this form (after
      initialisation, restoring or replacing a part) keeps it to one
      compilation; a fresh state (uncommitted arrays on one device, a
      Python int step) would compile the step a second time.
  """

  train: Callable[..., Any]
  evaluate: Callable[..., Any]
  refresh_statistics: Callable[..., Any] | None
  replicate: Callable[[Any], Any]


def make_steps(
  objective,
  hparams,
  learning_rate_fn,
  num_classes,
  *,
  parallelism: str = 'pmap',
  devices=None,
  memory: Any = None,
) -> ParallelSteps:
  """The steps over `devices` (default: all devices of all processes).

  `memory` is ``config.memory`` (None or size 0: off); the state must then
  come from ``create_train_state(..., memory_size=config.memory.size)``.

  Both parallelisms run the same per-device functions with the same
  collectives, so they compute the same numbers:

  - ``'pmap'`` (the default): `jax.pmap` with the state broadcast
    (``in_axes=None``) and returned as one value (``out_axes=None``): every
    device computes the same update from the summed gradients, so the step
    never stacks or unstacks a per-device copy of the state.
  - ``'shard_map'``: `jax.jit` of `jax.shard_map` over a 1-D device mesh,
    the batch sharded along it and the state replicated (``P()``), the form
    JAX recommends for new code.

  In both, ``ParallelSteps.replicate`` places a state as the train step
  returns it, so that feeding it in compiles the step once.
  """
  if parallelism not in PARALLELISMS:
    raise ValueError(
      f'config.parallelism must be one of {PARALLELISMS}, received '
      f'{parallelism!r}'
    )
  # All devices of all processes: collectives must span the global batch.
  # Each process feeds its local devices.
  devices = list(devices or jax.devices())
  train = functools.partial(
    train_step,
    objective=objective,
    hparams=hparams,
    learning_rate_fn=learning_rate_fn,
    memory=memory_settings(memory, objective),
  )
  evaluate = functools.partial(eval_step, objective=objective, hparams=hparams)
  sums = None
  if objective.refresh is not None:
    sums = functools.partial(
      refresh_statistics_step,
      statistics_fn=objective.refresh.statistics,
      num_classes=num_classes,
    )
  if parallelism == 'pmap':
    mapped = _pmap_steps(train, evaluate, sums, devices)
  else:
    mapped = _shard_map_steps(train, evaluate, sums, devices)
  return mapped._replace(replicate=_replicator(devices))


def _replicator(devices):
  mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS_NAME,))
  replicated = jax.sharding.NamedSharding(mesh, P())

  def replicate(state):
    # Built from host copies: valid in multi-process runs too, where every
    # process holds the same values and the mesh spans all processes.
    def place(x):
      host = np.asarray(to_host(jnp.asarray(x)))
      return jax.make_array_from_callback(
        host.shape, replicated, lambda index: host[index]
      )

    return jax.tree.map(place, state)

  return replicate


def _pmap_steps(train, evaluate, sums, devices) -> ParallelSteps:
  def mapped(fn, out_axes):
    return jax.pmap(
      fn,
      axis_name=AXIS_NAME,
      in_axes=(None, 0),
      out_axes=out_axes,
      devices=devices,
    )

  p_train = mapped(train, (None, None))
  p_evaluate = mapped(evaluate, 0)
  p_sums = None if sums is None else mapped(sums, None)
  num_devices = len(
    [d for d in devices if d.process_index == jax.process_index()]
  )

  def evaluate_batch(state, batch):
    outputs = p_evaluate(state, shard_for_devices(batch, num_devices))
    return jax.tree.map(
      lambda x: np.asarray(x).reshape(-1, *x.shape[2:]), outputs
    )

  return ParallelSteps(
    train=lambda state, batch: p_train(
      state, shard_for_devices(batch, num_devices)
    ),
    evaluate=evaluate_batch,
    refresh_statistics=None
    if p_sums is None
    else lambda state, batch: p_sums(
      state, shard_for_devices(batch, num_devices)
    ),
    replicate=None,
  )


def _shard_map_steps(train, evaluate, sums, devices) -> ParallelSteps:
  mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS_NAME,))
  batch_sharding = jax.sharding.NamedSharding(mesh, P(AXIS_NAME))

  def mapped(fn, out_specs):
    return jax.jit(
      # check_vma=False gives pmap's semantics: each device differentiates
      # its own loss and the step sums gradients with an explicit psum. With
      # the check on, autodiff would already psum the cotangents of the
      # replicated parameters, and the explicit psum would count them twice.
      jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(P(), P(AXIS_NAME)),
        out_specs=out_specs,
        check_vma=False,
      )
    )

  s_train = mapped(train, (P(), P()))
  s_evaluate = mapped(evaluate, P(AXIS_NAME))
  s_sums = None if sums is None else mapped(sums, P())

  def to_global(batch):
    _check_divisible(batch, len(mesh.local_devices))
    # Each process holds its slice of the global batch; the mesh spans the
    # devices of every process.
    return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(batch_sharding, x),
      batch,
    )

  def evaluate_batch(state, batch):
    outputs = s_evaluate(state, to_global(batch))
    # This process's rows of the global result.
    return jax.tree.map(
      lambda x: np.concatenate(
        [np.asarray(shard.data) for shard in x.addressable_shards]
      ),
      outputs,
    )

  return ParallelSteps(
    train=lambda state, batch: s_train(state, to_global(batch)),
    evaluate=evaluate_batch,
    refresh_statistics=None
    if s_sums is None
    else lambda state, batch: s_sums(state, to_global(batch)),
    replicate=None,
  )


def _check_divisible(batch: dict[str, Any], num_devices: int) -> None:
  for array in jax.tree.leaves(batch):
    if array.shape[0] % num_devices:
      raise ValueError(
        f'The local batch ({array.shape[0]} examples) must be divisible by '
        f'the number of local devices ({num_devices}); change '
        'config.input.batch_size or config.eval_batch_size'
      )


def shard_for_devices(batch: dict[str, Any], num_devices: int):
  """Reshapes host arrays ``[local_batch, ...]`` to ``[devices, per, ...]``."""
  _check_divisible(batch, num_devices)
  return jax.tree.map(lambda x: x.reshape(num_devices, -1, *x.shape[1:]), batch)


def to_host(tree: Any) -> Any:
  """Numpy copies of replicated values (this process's first replica).

  In a multi-process run a replicated array spans devices of other
  processes, which `jax.device_get` refuses; every process holds a whole
  replica, so its first local shard is the value.
  """

  def fetch(x):
    if isinstance(x, jax.Array):
      return np.asarray(x.addressable_data(0))
    return x

  return jax.tree.map(fetch, tree)
