"""Which examples make up the global batch of each training step.

Both samplers are pure functions of (seed, step): any step's batch can be
built at any time, in any order, by any process. That is what makes resuming
(start at step K) and multi-process runs (each process slices its rows out
of the same global batch) see exactly the batches of a single uninterrupted
run. Random streams are ``np.random.default_rng([seed, counter, stream])``;
NumPy's SeedSequence and PCG64 are stable across versions and platforms.
"""

import threading

import numpy as np

# Independent random streams derived from one seed.
STREAM_PERMUTATION = 0
STREAM_CLASS_BALANCED = 1
STREAM_AUGMENT = 2


def rng_for(seed: int, counter: int, stream: int) -> np.random.Generator:
  """The generator of `stream` at `counter` (an epoch or a step)."""
  if counter < 0:
    raise ValueError(f'step/epoch must be >= 0, received {counter}')
  # SeedSequence takes non-negative entropy; fold a negative seed into
  # [0, 2**64) so that every int is a valid, distinct seed.
  return np.random.default_rng([seed % 2**64, counter, stream])


def _power_of_two_at_most(n: int) -> int:
  return 1 << (max(n, 1).bit_length() - 1)


class RandomSampler:
  """Epochs of fresh permutations; each global batch a slice of one.

  Epoch e's order is a permutation drawn from (seed, e); step s reads
  positions ``[(s % S) * B, (s % S + 1) * B)`` of epoch ``s // S``'s
  permutation, where ``S = num_examples // B`` (the remainder is dropped).
  """

  def __init__(self, num_examples: int, batch_size: int, seed: int):
    """Initialises the sampler.

    Args:
      num_examples: size of the training set.
      batch_size: global batch size B.
      seed: the data seed.

    Raises:
      ValueError: when the batch is larger than the training set.
    """
    if batch_size > num_examples:
      raise ValueError(
        f'config.input.batch_size={batch_size} is larger than the '
        f'{num_examples} training examples: pass a smaller one, e.g. '
        f'--config.input.batch_size={_power_of_two_at_most(num_examples)}'
      )
    self.num_examples = num_examples
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = num_examples // batch_size
    self._lock = threading.Lock()
    # Prefetching threads work on neighbouring steps, which share at most
    # two epochs; keeping two permutations avoids redrawing them per step.
    self._permutations: dict[int, np.ndarray] = {}

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      permutation = self._permutations.get(epoch)
      if permutation is None:
        permutation = rng_for(self.seed, epoch, STREAM_PERMUTATION).permutation(
          self.num_examples
        )
        if len(self._permutations) >= 2:
          del self._permutations[min(self._permutations)]
        self._permutations[epoch] = permutation
      return permutation

  def global_indices(self, step: int) -> np.ndarray:
    """Example indices of step `step`'s global batch: int64 ``[B]``."""
    epoch, position = divmod(step, self.steps_per_epoch)
    start = position * self.batch_size
    return self._permutation(epoch)[start : start + self.batch_size]


class ClassBalancedSampler:
  """P classes x m examples per global batch (for pair-wise losses).

  Step s draws, from (seed, s), P distinct classes uniformly among the
  classes present, then m examples of each: without replacement, or with
  replacement for a class with fewer than m examples. Rows are grouped by
  class (``[c_1] * m + [c_2] * m + ...``), so a process slice whose size is a
  multiple of m holds whole groups.
  """

  def __init__(
    self,
    labels: np.ndarray,
    batch_size: int,
    samples_per_class: int,
    seed: int,
    local_batch_size: int | None = None,
  ):
    """Initialises the sampler.

    Args:
      labels: int ``[num_examples]`` class id of every training example.
      batch_size: global batch size B.
      samples_per_class: m, examples per class in a batch.
      seed: the data seed.
      local_batch_size: one process's rows; must hold whole class groups.

    Raises:
      ValueError: when m < 1, B or the local batch is not a multiple of m,
        or the batch asks for more classes than the training set has.
    """
    labels = np.asarray(labels)
    m = samples_per_class
    if m < 1:
      raise ValueError(
        f'config.input.samples_per_class must be >= 1, received {m}'
      )
    if batch_size % m:
      raise ValueError(
        f'config.input.batch_size={batch_size} must be a multiple of '
        f'config.input.samples_per_class={m} for the class_balanced sampler'
      )
    if local_batch_size is not None and local_batch_size % m:
      raise ValueError(
        f'the per-process batch ({local_batch_size} = batch_size '
        f'{batch_size} / process count) must be a multiple of '
        f'config.input.samples_per_class={m} so that each process holds '
        'whole class groups'
      )
    self.classes, counts = np.unique(labels, return_counts=True)
    self.classes_per_batch = batch_size // m
    if self.classes_per_batch > len(self.classes):
      raise ValueError(
        f'config.input.batch_size={batch_size} / samples_per_class={m} = '
        f'{self.classes_per_batch} classes per batch, but the training set '
        f'has only {len(self.classes)} classes'
      )
    order = np.argsort(labels, kind='stable')
    starts = np.concatenate([[0], np.cumsum(counts)])
    self._members = [
      order[starts[i] : starts[i + 1]] for i in range(len(self.classes))
    ]
    self.samples_per_class = m
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = max(len(labels) // batch_size, 1)

  def global_indices(self, step: int) -> np.ndarray:
    """Example indices of step `step`'s global batch: int64 ``[B]``."""
    rng = rng_for(self.seed, step, STREAM_CLASS_BALANCED)
    chosen = rng.choice(
      len(self.classes), size=self.classes_per_batch, replace=False
    )
    m = self.samples_per_class
    groups = []
    for class_position in chosen:
      members = self._members[class_position]
      groups.append(rng.choice(members, size=m, replace=len(members) < m))
    return np.concatenate(groups).astype(np.int64)
