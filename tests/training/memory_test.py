"""The cross-batch memory (XBM) in the train step and the train state.

tests/conftest.py gives this process 4 fake CPU devices. The steps run a
small LeNet++ on digits batches of 16 (2 examples of 8 classes), as in
steps_test.py; the memory holds 40 rows, so that 3 batches wrap around.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import datasets

import models
from configs import default
from models import heads
from training import checkpointing, objectives, optimizers
from training import steps as steps_lib

_GLOBAL_BATCH = 16
_SIZE = 40  # Chosen here: not a multiple of the batch, so writes wrap.
_DIM = 8


def _batches(count):
  """`count` different global batches, 2 examples of each of 8 classes."""
  digits = datasets.load_digits()
  batches = []
  for index in range(count):
    rows = np.concatenate(
      [
        np.flatnonzero(digits.target == c)[2 * index : 2 * index + 2]
        for c in range(8)
      ]
    )
    images = (digits.images[rows] / 16.0).astype(np.float32)[..., None]
    batches.append(
      {'image': images, 'label': digits.target[rows].astype(np.int32)}
    )
  return batches


def _memory_config(size=_SIZE, warmup_steps=0, weight=1.0):
  config = default.get_config().memory
  config.size = size
  config.warmup_steps = warmup_steps
  config.weight = weight
  return config


_LOSS = 'circle_pairwise'


def _optimizer():
  config = default.get_config(_LOSS).optimizer
  config.name = 'sgd'
  config.learning_rate = 1.0
  config.momentum = 0.0
  config.weight_decay = 0.0
  config.warmup_steps = 0
  learning_rate_fn = optimizers.create_learning_rate_fn(config, 10)
  return learning_rate_fn, optimizers.create_optimizer(config, learning_rate_fn)


@functools.cache
def _objective():
  objective = objectives.get_objective(_LOSS)
  hparams = objectives.resolve_hparams(
    objective, default.get_config(_LOSS).loss
  )
  return objective, hparams


@functools.cache
def _initial_state(memory_size):
  """The host state before step 0 (one compilation per test process)."""
  objective, hparams = _objective()
  backbone = models.get_model(
    'lenet',
    embedding_dim=_DIM,
    stage_filters=(4, 8),
    bn_axis_name=steps_lib.AXIS_NAME,
  )
  model = heads.EmbeddingModel(
    backbone=backbone, head=objective.make_head(10, hparams)
  )
  state = steps_lib.create_train_state(
    jax.random.key(0),
    model,
    (8, 8, 1),
    _optimizer()[1],
    memory_size=memory_size,
  )
  return steps_lib.to_host(state)


@functools.cache
def _steps(num_devices, warmup_steps, parallelism='pmap'):
  """Cached across tests: each distinct step compiles once."""
  objective, hparams = _objective()
  memory = None if warmup_steps is None else _memory_config(_SIZE, warmup_steps)
  return steps_lib.make_steps(
    objective,
    hparams,
    _optimizer()[0],
    10,
    parallelism=parallelism,
    devices=jax.local_devices()[:num_devices],
    memory=memory,
  )


def _setup(num_devices, warmup_steps, parallelism='pmap'):
  """A fresh replicated state and the steps; warm-up None: no memory."""
  steps = _steps(num_devices, warmup_steps, parallelism)
  state = _initial_state(0 if warmup_steps is None else _SIZE)
  return steps.replicate(state), steps


def _train(state, steps, batches):
  losses_seen = []
  for batch in batches:
    state, metrics = steps.train(state, batch)
    losses_seen.append(float(steps_lib.to_host(metrics['loss'])))
  return steps_lib.to_host(state), losses_seen


def _embed(state, images):
  """The step's training-mode embeddings of a global batch on one device."""

  def apply(images):
    (embeddings, _), _ = state.apply_fn(
      {
        'params': state.params,
        'batch_stats': state.batch_stats,
        heads.HEAD_STATE: state.head_state,
      },
      images,
      train=True,
      mutable=['batch_stats'],
    )
    return embeddings

  # A mapped axis of size 1 binds BatchNorm's cross-device axis name.
  mapped = jax.jit(jax.vmap(apply, axis_name=steps_lib.AXIS_NAME))
  return np.asarray(mapped(images[None])[0])


def test_memory_holds_the_last_batches_in_order():
  """After K steps: the last K global batches, FIFO, wrapping around."""
  batches = _batches(4)
  state, steps = _setup(1, warmup_steps=0)
  expected_embeddings = np.zeros((_SIZE, _DIM), np.float32)
  expected_labels = np.zeros(_SIZE, np.int32)
  for k, batch in enumerate(batches):
    # What the step will enqueue: the batch embedded by the state before it
    # (BatchNorm in training mode, as in the step).
    embedded = _embed(steps_lib.to_host(state), batch['image'])
    state, _ = steps.train(state, batch)
    rows = (k * _GLOBAL_BATCH + np.arange(_GLOBAL_BATCH)) % _SIZE
    expected_embeddings[rows] = embedded
    expected_labels[rows] = batch['label']
    memory = steps_lib.to_host(state.memory)
    np.testing.assert_allclose(
      memory.embeddings, expected_embeddings, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(memory.labels, expected_labels)
    assert int(memory.pointer) == (k + 1) * _GLOBAL_BATCH % _SIZE
    assert int(memory.filled) == min((k + 1) * _GLOBAL_BATCH, _SIZE)
  # Read from the pointer on, the memory is the last 40 rows enqueued, in
  # order (4 batches of 16 into 40 rows: the writes wrapped twice).
  order = (int(memory.pointer) + np.arange(_SIZE)) % _SIZE
  enqueued = np.concatenate([batch['label'] for batch in batches])
  np.testing.assert_array_equal(memory.labels[order], enqueued[-_SIZE:])


def test_enqueue_is_fifo_with_wrap_around():
  memory = steps_lib.create_memory(5, 2)
  enqueue = jax.jit(steps_lib.enqueue)
  for k in range(4):
    rows = np.full((2, 2), k, np.float32)
    memory = enqueue(memory, rows, np.array([k, 10 + k], np.int32))
  # 8 rows into 5: rows 3..7 remain, row i at position i % 5.
  np.testing.assert_array_equal(memory.labels, [12, 3, 13, 11, 2])
  np.testing.assert_array_equal(memory.embeddings[:, 0], [2, 3, 3, 1, 2])
  assert int(memory.pointer) == 3 and int(memory.filled) == 5
  with pytest.raises(ValueError, match='at least the global batch'):
    steps_lib.enqueue(memory, np.zeros((6, 2)), np.zeros(6, np.int32))


def test_four_devices_equal_one_device():
  """One step against a filled memory: loss, gradients, new memory."""
  batches = _batches(3)
  # Two steps on one device fill 32 of the 40 rows; the third step scores
  # its anchors against them and wraps around as it enqueues.
  state, steps = _setup(1, warmup_steps=0)
  filled, _ = _train(state, steps, batches[:2])
  one, loss_one = _train(steps.replicate(filled), steps, batches[2:])
  for parallelism in ('pmap', 'shard_map'):
    steps = _steps(4, 0, parallelism)
    four, loss_four = _train(steps.replicate(filled), steps, batches[2:])
    np.testing.assert_allclose(loss_four, loss_one, rtol=1e-5)
    # With SGD at learning rate 1, the parameter change is the gradient.
    # Circle's gamma = 80 amplifies the round-off of differently ordered
    # sums (as in steps_test.py); a missing memory term would be O(1) off.
    change_one = jax.tree.map(np.subtract, filled.params, one.params)
    change_four = jax.tree.map(np.subtract, filled.params, four.params)
    assert optax.tree.norm(change_one) > 0
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5),
      change_four,
      change_one,
    )
    np.testing.assert_allclose(
      four.memory.embeddings, one.memory.embeddings, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(four.memory.labels, one.memory.labels)
    assert int(four.memory.filled) == int(one.memory.filled) == _SIZE
    assert int(four.memory.pointer) == int(one.memory.pointer) == 8


def test_warmup_is_respected():
  """Before the warm-up the loss is the memory-less one; after, it is not."""
  batches = _batches(3)
  without, steps = _setup(1, warmup_steps=None)
  _, plain = _train(without, steps, batches)
  state, steps = _setup(1, warmup_steps=2)
  _, with_memory = _train(state, steps, batches)
  # Steps 0 and 1 are before the warm-up of 2: the memory-less losses
  # (the memory already holds step 0's batch at step 1).
  np.testing.assert_allclose(with_memory[:2], plain[:2], rtol=1e-6)
  # Step 2 adds the memory term (the same parameters as the plain run's
  # step 2, since steps 0 and 1 were the same).
  assert with_memory[2] > plain[2] + 1e-3


def _circle_reference(x, y, reference, reference_labels, margin, gamma):
  """Per-anchor Circle loss (Sun et al. 2020, Eq. 4), float64 NumPy."""
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
  out = []
  for anchor, label in zip(x, y, strict=True):
    cosines = reference @ anchor
    same = reference_labels == label
    s_p, s_n = cosines[same], cosines[~same]
    if not len(s_p) or not len(s_n):
      out.append(0.0)
      continue
    alpha_p = np.maximum(1.0 + margin - s_p, 0.0)
    alpha_n = np.maximum(s_n + margin, 0.0)
    positive = np.exp(-gamma * alpha_p * (s_p - (1.0 - margin))).sum()
    negative = np.exp(gamma * alpha_n * (s_n - margin)).sum()
    out.append(np.log1p(negative * positive))
  return np.array(out)


@pytest.mark.parametrize('block_size', [None, 3])
def test_circle_memory_term_matches_numpy(block_size):
  """The objective's per-anchor value: batch term + weight * memory term."""
  rng = np.random.default_rng(0)
  objective = objectives.get_objective('circle_pairwise')
  config = default.get_config('circle_pairwise').loss
  config.gamma = 8.0
  config.block_size = block_size
  hparams = objectives.resolve_hparams(objective, config)
  assert hparams.margin == 0.4
  x = rng.standard_normal((6, 4))
  y = np.array([0, 0, 1, 1, 2, 3], np.int32)
  memory = rng.standard_normal((9, 4))
  # Rows 6..8 are unwritten: zeros with label 0 (the anchors' class 0
  # must not find positives there, nor anyone negatives).
  memory_labels = np.array([0, 1, 1, 2, 4, 2, 0, 0, 0], np.int32)
  memory[6:] = 0.0
  valid = np.arange(9) < 6
  weight = 0.5
  inputs = objectives.LossInputs(
    jnp.asarray(x, jnp.float32),
    jnp.asarray(y),
    {},
    memory=objectives.interface.Memory(
      jnp.asarray(memory, jnp.float32),
      jnp.asarray(memory_labels),
      jnp.asarray(valid),
      weight,
    ),
  )
  values, weights = jax.jit(lambda inputs: objective.loss(inputs, hparams))(
    inputs
  )
  # The batch term: each anchor against the others (own copy excluded).
  batch = np.array(
    [
      _circle_reference(
        x[i : i + 1],
        y[i : i + 1],
        np.delete(x, i, 0),
        np.delete(y, i),
        0.4,
        8.0,
      )[0]
      for i in range(6)
    ]
  )
  memory_term = _circle_reference(
    x, y, memory[valid], memory_labels[valid], 0.4, 8.0
  )
  np.testing.assert_allclose(
    values, batch + weight * memory_term, rtol=2e-5, atol=1e-6
  )
  # Anchors 4 and 5 (classes 2 and 3) have no positive in the batch; class
  # 2 has one in the memory, class 3 none anywhere.
  np.testing.assert_array_equal(weights, [1, 1, 1, 1, 1, 0])


def test_partly_filled_memory_drops_its_unwritten_rows():
  """A warm-up shorter than the fill: the step's loss over written rows.

  With a warm-up of 1 step, step 1 scores its anchors against a memory of
  which 16 of 40 rows are written. The other 24 are zeros of label 0: were
  they counted (`memory_inputs` marking every row valid), class 0 would
  gain positives of cosine 0 and every other class negatives, and the loss
  would differ by far more than round-off.
  """
  batches = _batches(2)
  state, steps = _setup(1, warmup_steps=1)
  after_first, _ = _train(state, steps, batches[:1])
  memory = after_first.memory
  filled = int(memory.filled)
  assert filled == _GLOBAL_BATCH < _SIZE
  embedded = _embed(after_first, batches[1]['image']).astype(np.float64)
  labels = batches[1]['label']
  _, (loss,) = _train(steps.replicate(after_first), steps, batches[1:])
  _, hparams = _objective()
  reference = functools.partial(
    _circle_reference, margin=hparams.margin, gamma=hparams.gamma
  )
  batch_term = np.array(
    [
      reference(
        embedded[i : i + 1],
        labels[i : i + 1],
        np.delete(embedded, i, 0),
        np.delete(labels, i),
      )[0]
      for i in range(_GLOBAL_BATCH)
    ]
  )
  written = np.arange(_SIZE) < filled
  memory_term = reference(
    embedded,
    labels,
    np.asarray(memory.embeddings, np.float64)[written],
    np.asarray(memory.labels)[written],
  )
  # Every anchor has a positive and a negative in the batch: weight 1 each.
  expected = np.mean(batch_term + _memory_config().weight * memory_term)
  np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_resume_with_a_filled_memory_is_exact(tmp_path):
  """Checkpoint with a non-empty memory, restore, continue == straight."""
  batches = _batches(4)
  # The warm-up ends at the resumed step: the restored step count decides.
  state, steps = _setup(1, warmup_steps=2)
  straight, _ = _train(state, steps, batches)
  halfway, _ = _train(state, steps, batches[:2])
  assert 0 < int(halfway.memory.filled) < _SIZE
  config = default.get_config(_LOSS)
  config.memory = _memory_config(warmup_steps=2)
  checkpointer = checkpointing.Checkpointer(
    str(tmp_path), config, max_to_keep=1
  )
  checkpointer.save(2, halfway)
  checkpointer.close()
  checkpointer = checkpointing.Checkpointer(
    str(tmp_path), config, max_to_keep=1
  )
  restored = checkpointer.restore(_initial_state(_SIZE))
  checkpointer.close()
  jax.tree.map(np.testing.assert_array_equal, restored.memory, halfway.memory)
  resumed, _ = _train(steps.replicate(restored), steps, batches[2:])
  jax.tree.map(
    np.testing.assert_array_equal,
    (resumed.step, resumed.params, resumed.memory),
    (straight.step, straight.params, straight.memory),
  )


def test_memory_needs_a_loss_that_uses_it():
  objective = objectives.get_objective('proxy_anchor')
  assert not objective.uses_memory
  with pytest.raises(ValueError, match='does not use a cross-batch memory'):
    steps_lib.memory_settings(_memory_config(), objective)
  assert steps_lib.memory_settings(_memory_config(size=0), objective) is None
  users = {o.name for o in objectives.all_objectives() if o.uses_memory}
  assert users == {
    'angular',
    'circle_pairwise',
    'contrastive',
    'ldmat',
    'lifted_structure',
    'multi_similarity',
    'n_pairs',
    'ntxent',
    'supcon',
    'triplet',
    'triplet_margin',
  }


def test_checkpoint_of_another_memory_size_is_refused(tmp_path):
  config = default.get_config(_LOSS)
  config.memory = _memory_config()
  state = _initial_state(_SIZE)
  checkpointer = checkpointing.Checkpointer(
    str(tmp_path), config, max_to_keep=1
  )
  checkpointer.save(1, state)
  checkpointer.close()
  checkpointer = checkpointing.Checkpointer(
    str(tmp_path), config, max_to_keep=1
  )
  # Orbax checks each array's shape against the target's (a jax.Array, as
  # create_train_state makes it). It reads the arrays concurrently, so the
  # first mismatch it reports is the embeddings' (40, 8) or the labels'
  # (40,).
  smaller = state.replace(memory=steps_lib.create_memory(24, _DIM))
  with pytest.raises(
    checkpointing.IncompatibleCheckpointError, match=r'shape.*\(40,'
  ):
    checkpointer.restore(smaller)
  # Without a memory the state is a plain TrainState: another tree.
  plain = steps_lib.TrainState(
    **{
      field: getattr(state, field)
      for field in ('step', 'apply_fn', 'params', 'tx', 'opt_state')
      + ('batch_stats', 'head_state')
    }
  )
  with pytest.raises(checkpointing.IncompatibleCheckpointError):
    checkpointer.restore(plain)
  checkpointer.close()


def test_64k_rows_fit_in_2_gib_with_blocks():
  """M = 65,536 at D = 128: the blocked loss's compiled temporary memory.

  Compiled, not run: 1024 anchors (a large per-device batch) against the
  memory in blocks of 64 rows hold [64, M] matrices, not [1024, M] ones.
  """
  objective = objectives.get_objective(_LOSS)
  config = default.get_config(_LOSS).loss
  config.block_size = 64
  hparams = objectives.resolve_hparams(objective, config)
  batch, size, dim = 1024, 65536, 128

  def step(embeddings, labels, memory):
    def loss(embeddings):
      inputs = objectives.LossInputs(
        embeddings,
        labels,
        {},
        objectives.GlobalBatch(
          embeddings, labels, jnp.arange(batch, dtype=jnp.int32)
        ),
        steps_lib.memory_inputs(memory, 1.0),
      )
      return objectives.batch_loss(objective, hparams, inputs)

    gradient = jax.grad(loss)(embeddings)
    return gradient, steps_lib.enqueue(memory, embeddings, labels)

  memory = jax.eval_shape(lambda: steps_lib.create_memory(size, dim))
  compiled = (
    jax.jit(step)
    .lower(
      jax.ShapeDtypeStruct((batch, dim), jnp.float32),
      jax.ShapeDtypeStruct((batch,), jnp.int32),
      memory,
    )
    .compile()
  )
  temp = compiled.memory_analysis().temp_size_in_bytes
  assert temp < 2 * 2**30, temp / 2**20
