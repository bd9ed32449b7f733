"""`create_dataset`: deterministic, resumable, multi-process batches.

Training batches are random-access by step: ``train_batch(step)`` is a pure
function of (seed, step, process index/count). The GLOBAL batch's example
indices come from the sampler (seed, step), the same in every process;
process p keeps rows ``[p * local, (p + 1) * local)``, reads only those
records, and augments row r with uniforms drawn for the whole global batch
from (seed, step) and sliced to its rows. Hence

* a run resumed at step K (``train_batches(start_step=K)``) sees exactly the
  batches an uninterrupted run sees from step K;
* the concatenated local batches of an N-process run equal the batch of a
  1-process run.

``train_batches`` maps a grain ``MapDataset.range(start_step, ...)`` of step
numbers through ``train_batch`` and iterates it with grain's
``ReadOptions(num_threads, prefetch_buffer_size)``: batches are built ahead
by threads (record reads, image decoding and PIL resizing release the GIL)
and come out in step order.

Small training sets are held in memory: when the training view's images,
decoded, fit ``config.input.in_memory_mb`` and need no per-image resize or
crop (``'none'`` and ``'crop_flip'`` sets), the first training batch
decodes the whole view once into one uint8 array; every batch is then an
index into it and batch operations (pad-crop, flip, scaling), the same
values as from the records.

Evaluation: ``eval_batches(split, batch_size)`` goes once over this
process's shard, the examples ``p, p + P, p + 2P, ...`` of the split (P
processes), in fixed-shape batches of `batch_size` rows (a per-process
size). Every process yields the same number of batches, ceil(ceil(n / P) /
batch_size), so collective eval steps stay in lockstep; padding rows are
zeros with ``mask`` False.
"""

import dataclasses
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import ml_collections
import numpy as np
from absl import logging

from input_pipeline import augment as augment_lib
from input_pipeline import sampling
from input_pipeline import sources as sources_lib
from input_pipeline.datasets import catalog, image_folder

SAMPLERS = ('random', 'class_balanced')
# train_batches is endless; grain needs a length.
_END_OF_TIME = 2**62
# Records read and decoded at a time when a training view is held in memory.
_DECODE_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and the evaluation need to know about the data.

  Attributes:
    name: ``config.input.name``.
    num_classes: classes the model is trained on (training classes under
      the class-disjoint protocol; labels for multi-label sets).
    image_shape: ``(H, W, C)`` of the batches' images.
    multilabel: labels are multi-hot ``[batch, num_classes]``.
    num_train_examples: examples in the training view.
    num_test_examples: examples in the test view.
    class_names: names of the training classes, or None when unknown.
    num_test_classes: classes of the test view (== num_classes unless
      class-disjoint).
    test_class_names: names of the test classes (index = re-based label).
    class_disjoint: the class-disjoint protocol is in use.
    reid: a re-identification set: evaluation ranks the ``'query'`` split
      against the ``'gallery'`` split (also ``'test'``), whose batches
      carry camera ids.
  """

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  multilabel: bool
  num_train_examples: int
  num_test_examples: int
  class_names: tuple[str, ...] | None
  num_test_classes: int = 0
  test_class_names: tuple[str, ...] | None = None
  class_disjoint: bool = False
  reid: bool = False


def _nested(record: dict[str, Any], key: str) -> Any:
  for part in key.split('/'):
    record = record[part]
  return record


class Dataset:
  """Training and evaluation batches of one configured data set.

  Attributes:
    info: the `DatasetInfo`.
    spec: the set's `DataSetSpec`, completed from the prepared data (image
      folders: the stored image shape).
    global_batch_size: training batch over all processes.
    local_batch_size: this process's rows of it.
    process_index: this process.
    process_count: processes sharing the global batch.
    steps_per_epoch: ``num_train_examples // global_batch_size`` (>= 1).
  """

  def __init__(
    self,
    *,
    info: DatasetInfo,
    spec: catalog.DataSetSpec,
    train_view: sources_lib.SplitView,
    test_view: sources_lib.SplitView,
    sampler: Any,
    seed: int,
    process_index: int,
    process_count: int,
    augment: bool,
    num_threads: int,
    prefetch: int,
    normalization: str = 'none',
    in_memory_bytes: int = 0,
    eval_views: dict[str, sources_lib.SplitView] | None = None,
  ):
    self.info = info
    self.global_batch_size = sampler.batch_size
    self.local_batch_size = sampler.batch_size // process_count
    self.process_index = process_index
    self.process_count = process_count
    self.steps_per_epoch = sampler.steps_per_epoch
    self.spec = spec
    self._views = {'train': train_view, 'test': test_view}
    # Further splits evaluation reads by name (re-id: query, gallery).
    self._views.update(eval_views or {})
    self._sampler = sampler
    self._seed = seed
    # The transform always runs (it resizes and, for large images, crops);
    # it is random only with draws, i.e. in training with augment=True.
    self._transform_kind = spec.augmentation
    self._augment_kind = spec.augmentation if augment else 'none'
    self._num_threads = num_threads
    self._prefetch = prefetch
    self._normalization = augment_lib.check_normalization(normalization)
    # make_batch builds the images with their stored channels; normalize
    # may repeat grey ones to RGB (info.image_shape is what the model sees).
    height, width, channels = info.image_shape
    if spec.image_shape is not None:
      channels = spec.image_shape[-1]
    self._decoded_shape = (height, width, channels)
    self._in_memory_bytes = in_memory_bytes
    # The training view in memory: None until the first training batch,
    # then (images, labels), or False when it does not qualify.
    self._held: tuple[np.ndarray, np.ndarray] | bool | None = None
    self._held_lock = threading.Lock()

  def _labels(
    self, view: sources_lib.SplitView, positions: np.ndarray, records
  ) -> np.ndarray:
    """int32 ``[k]`` class ids or ``[k, num_classes]`` multi-hot targets."""
    if view.labels is not None:
      return view.labels[positions].astype(np.int32)
    spec = self.spec
    values = [_nested(record, spec.label_key) for record in records]
    if spec.label_format == 'class_id':
      return np.asarray(values, dtype=np.int32).reshape(len(records))
    targets = np.zeros((len(records), spec.num_classes), np.int32)
    for row, value in enumerate(values):
      if spec.label_format == 'multi_hot':
        targets[row] = np.asarray(value) != 0
      else:  # class_list: the objects' class ids, repeats allowed.
        targets[row, np.asarray(value, dtype=np.int64)] = 1
    return targets

  def _examples(
    self,
    view: sources_lib.SplitView,
    positions: np.ndarray,
    draws: np.ndarray | None,
  ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Images float32 ``[k, H, W, C]``, labels and records of examples
    `positions`."""
    records = view.read(positions)
    images = []
    for record in records:
      image = np.asarray(record['image'])
      images.append(image[..., None] if image.ndim == 2 else image)
    batch = augment_lib.make_batch(
      images,
      kind=self._transform_kind,
      out_shape=self._decoded_shape,
      max_pixel_value=self.spec.max_pixel_value,
      draws=draws,
      normalization=self._normalization,
    )
    return batch, self._labels(view, positions, records), records

  def _held_train_view(self) -> tuple[np.ndarray, np.ndarray] | None:
    """The training view's uint8 images and labels, decoded once, or None
    when they do not fit the budget or need per-image resizing."""
    with self._held_lock:  # grain's threads ask at once.
      if self._held is None:
        self._held = self._decode_train_view() or False
      return self._held or None

  def _decode_train_view(self) -> tuple[np.ndarray, np.ndarray] | None:
    view = self._views['train']
    size = len(view) * math.prod(self._decoded_shape)
    if self._transform_kind == 'inception_crop' or size > self._in_memory_bytes:
      return None
    images = np.empty((len(view), *self._decoded_shape), np.uint8)
    labels = []
    for start in range(0, len(view), _DECODE_CHUNK):
      positions = np.arange(start, min(start + _DECODE_CHUNK, len(view)))
      records = view.read(positions)
      for row, record in zip(positions, records, strict=True):
        image = np.asarray(record['image'])
        image = image[..., None] if image.ndim == 2 else image
        if image.shape != self._decoded_shape or image.dtype != np.uint8:
          return None  # Resized per image: the records' path does it.
        images[row] = image
      labels.append(self._labels(view, positions, records))
    logging.info(
      'Training images of %s held in memory: %d x %s, %.1f MiB.',
      self.info.name,
      len(view),
      self._decoded_shape,
      size / 2**20,
    )
    return images, np.concatenate(labels)

  def global_batch_indices(self, step: int) -> np.ndarray:
    """int64 ``[global_batch]``: training-view positions of step's batch."""
    return self._sampler.global_indices(step)

  def train_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of step `step`'s global batch.

    Args:
      step: the step (>= 0).

    Returns:
      ``{'image': float32 [local_batch, H, W, C], 'label': int32
      [local_batch]}`` (multi-label: int32 ``[local_batch, num_classes]``).
    """
    step = int(step)
    rows = slice(
      self.process_index * self.local_batch_size,
      (self.process_index + 1) * self.local_batch_size,
    )
    positions = self._sampler.global_indices(step)[rows]
    draws = None
    if self._augment_kind != 'none':
      rng = sampling.rng_for(self._seed, step, sampling.STREAM_AUGMENT)
      draws = rng.random(
        (self.global_batch_size, augment_lib.num_draws(self._augment_kind))
      )[rows]
    held = self._held_train_view()
    if held is None:
      images, labels, _ = self._examples(self._views['train'], positions, draws)
    else:
      images = augment_lib.augment_array(
        held[0][positions],
        kind=self._transform_kind,
        max_pixel_value=self.spec.max_pixel_value,
        draws=draws,
        normalization=self._normalization,
      )
      labels = held[1][positions]
    return {'image': images, 'label': labels}

  def _iterate(self, start: int, stop: int, make) -> Iterator[Any]:
    dataset = grain.MapDataset.range(start, stop).map(make)
    if self._num_threads <= 0:
      return iter(dataset)
    return iter(
      dataset.to_iter_dataset(
        grain.ReadOptions(
          num_threads=self._num_threads,
          # A buffer smaller than the threads would leave threads idle
          # (grain warns); config.input.prefetch is a lower bound.
          prefetch_buffer_size=max(self._prefetch, self._num_threads),
        )
      )
    )

  def train_batches(
    self, start_step: int = 0
  ) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches from step `start_step` on.

    Args:
      start_step: the first batch's step (a resumed run passes the step it
        restored).

    Returns:
      An iterator of `train_batch` (start_step), (start_step + 1), ...
    """
    if start_step < 0:
      raise ValueError(f'start_step must be >= 0, received {start_step}')
    return self._iterate(start_step, _END_OF_TIME, self.train_batch)

  def eval_batches(
    self, split: str, batch_size: int, *, with_index: bool = False
  ) -> Iterator[dict[str, np.ndarray]]:
    """One pass over this process's shard of `split`, without augmentation.

    Args:
      split: ``'train'`` (the training view), ``'test'``, or one of the
        spec's ``eval_splits`` (re-id: ``'query'``, ``'gallery'``).
      batch_size: rows per batch in this process.
      with_index: add ``'index'``: int32 ``[batch_size]`` position of each
        row in the split's view (-1 on padding).

    Returns:
      An iterator of ``{'image': float32 [batch_size, H, W, C], 'label':
      int32 [batch_size] (or [batch_size, num_classes]), 'mask': bool
      [batch_size]}``, plus ``'camera'``: int32 ``[batch_size]`` for sets
      with camera ids (re-id); padding rows are zeros with mask False.

    Raises:
      ValueError: for an unknown split or a non-positive batch size.
    """
    if split not in self._views:
      raise ValueError(
        f'split must be {" or ".join(map(repr, self._views))}, received '
        f'{split!r}'
      )
    if batch_size <= 0:
      raise ValueError(f'batch_size must be positive, received {batch_size}')
    view = self._views[split]
    shard = np.arange(self.process_index, len(view), self.process_count)
    per_process = math.ceil(len(view) / self.process_count)
    num_batches = math.ceil(per_process / batch_size)
    label_shape = (self.info.num_classes,) if self.info.multilabel else ()

    def make(batch_index: int) -> dict[str, np.ndarray]:
      positions = shard[
        batch_index * batch_size : (batch_index + 1) * batch_size
      ]
      valid = len(positions)
      images, labels, records = self._examples(view, positions, None)
      mask = np.zeros(batch_size, bool)
      mask[:valid] = True
      if valid < batch_size:  # Full batches are not copied again.
        image = np.zeros((batch_size, *self.info.image_shape), np.float32)
        label = np.zeros((batch_size, *label_shape), np.int32)
        image[:valid], label[:valid] = images, labels
        images, labels = image, label
      batch = {'image': images, 'label': labels, 'mask': mask}
      if self.spec.camera_key is not None:
        camera = np.zeros(batch_size, np.int32)
        camera[:valid] = [
          _nested(record, self.spec.camera_key) for record in records
        ]
        batch['camera'] = camera
      if with_index:
        index = np.full(batch_size, -1, np.int32)
        index[:valid] = positions
        batch['index'] = index
      return batch

    return self._iterate(0, num_batches, make)

  def num_examples(self, split: str) -> int:
    """Examples in `split` (a name `eval_batches` takes), all processes."""
    if split not in self._views:
      raise ValueError(
        f'split must be {" or ".join(map(repr, self._views))}, received '
        f'{split!r}'
      )
    return len(self._views[split])

  def images(
    self, split: str, positions: Sequence[int], batch_size: int
  ) -> dict[int, np.ndarray]:
    """The evaluation's input images of some examples of a split.

    Reads the split's evaluation batches in order and stops once every
    position was seen.

    Args:
      split: ``'train'`` or ``'test'``.
      positions: example positions in the split's view (as `eval_batches`
        numbers them with ``with_index=True``).
      batch_size: rows per batch read.

    Returns:
      position -> ``[H, W, C]`` image.

    Raises:
      ValueError: this is one process's shard of a multi-process run.
    """
    if self.process_count > 1:
      raise ValueError(
        'Dataset.images reads a whole split: open the data set in one process'
      )
    wanted = {int(p) for p in positions}
    found: dict[int, np.ndarray] = {}
    for batch in self.eval_batches(split, batch_size, with_index=True):
      for row in np.flatnonzero(batch['mask']):
        index = int(batch['index'][row])
        if index in wanted:
          found[index] = batch['image'][row]
      if len(found) == len(wanted):
        break
    return found


def _output_shape(spec: catalog.DataSetSpec, image_size, normalization: str):
  sizes = image_folder.image_height_width(image_size)
  if spec.image_shape is None:
    side = catalog.DEFAULT_LARGE_IMAGE_SIZE
    return (*(sizes or (side, side)), 3)
  height, width, channels = spec.image_shape
  if sizes is not None:
    height, width = sizes
  return (
    height,
    width,
    augment_lib.normalized_channels(channels, normalization),
  )


def create_dataset(
  config: ml_collections.ConfigDict,
  *,
  seed: int,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Dataset:
  """Opens (preparing if local) the configured data set.

  Args:
    config: the input config (`input_pipeline.default_input_config`).
    seed: the data seed (sampling and augmentation).
    process_index: this process; default ``jax.process_index()``.
    process_count: processes; default ``jax.process_count()``.

  Returns:
    The `Dataset`.

  Raises:
    ValueError: for an unknown name or sampler, a bad batch size, process
      index or image folder.
    input_pipeline.DataNotPreparedError: for a catalog set that is not
      prepared in the data dir (the message gives the command to run).
  """
  spec = catalog.get_spec(config.name)
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = (
      jax.process_index() if process_index is None else process_index
    )
    process_count = (
      jax.process_count() if process_count is None else process_count
    )
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f'process_index must be in [0, process_count), received '
      f'process_index={process_index}, process_count={process_count}'
    )
  batch_size = int(config.batch_size)
  if batch_size <= 0 or batch_size % process_count:
    raise ValueError(
      f'config.input.batch_size must be a positive multiple of the process '
      f'count {process_count}, received {batch_size}'
    )
  sampler_name = config.get('sampler', 'random')
  if sampler_name not in SAMPLERS:
    raise ValueError(
      f'config.input.sampler must be one of {SAMPLERS}, received '
      f'{sampler_name!r}'
    )
  class_disjoint = bool(config.get('class_disjoint', False))
  if spec.multilabel and sampler_name == 'class_balanced':
    raise ValueError(
      f"config.input.sampler='class_balanced' needs single labels; "
      f'{spec.name!r} is multi-label'
    )
  if spec.multilabel and class_disjoint:
    raise ValueError(
      f'config.input.class_disjoint=True is not defined for the multi-label '
      f'set {spec.name!r}'
    )
  if spec.origin == 'reid' and class_disjoint:
    raise ValueError(
      'config.input.class_disjoint=True does not apply to re-id sets: their '
      'query and gallery identities are already disjoint from the training '
      'ones'
    )
  image_size = config.get('image_size')
  image_folder.image_height_width(image_size)  # Raises for a bad size.
  normalization = augment_lib.check_normalization(config.get('normalization'))

  opened = sources_lib.open_set(config)
  spec = opened.spec
  train_view, test_view, boundary = sources_lib.build_views(
    opened,
    class_disjoint=class_disjoint,
    need_train_labels=sampler_name == 'class_balanced',
  )
  local_batch_size = batch_size // process_count
  if sampler_name == 'class_balanced':
    sampler = sampling.ClassBalancedSampler(
      train_view.labels,
      batch_size,
      int(config.samples_per_class),
      seed,
      local_batch_size=local_batch_size,
    )
  else:
    sampler = sampling.RandomSampler(len(train_view), batch_size, seed)

  names = opened.class_names
  info = DatasetInfo(
    name=spec.name,
    num_classes=boundary,
    image_shape=_output_shape(spec, image_size, normalization),
    multilabel=spec.multilabel,
    num_train_examples=len(train_view),
    num_test_examples=len(test_view),
    class_names=names[:boundary] if names else None,
    num_test_classes=opened.num_classes - boundary
    if class_disjoint
    else opened.num_classes,
    test_class_names=(names[boundary:] if class_disjoint else names)
    if names
    else None,
    class_disjoint=class_disjoint,
    reid=spec.origin == 'reid',
  )
  augment = bool(config.get('augment', False))
  if augment and spec.augmentation == 'none':
    logging.info(
      'config.input.augment=True: %s has no augmentation (flips and crops '
      'would change what a digit shows).',
      spec.name,
    )
  logging.info(
    'Data set %s: %d train / %d test examples, %d classes, images %s, '
    'global batch %d (%d per process, process %d of %d).',
    spec.name,
    info.num_train_examples,
    info.num_test_examples,
    info.num_classes,
    info.image_shape,
    batch_size,
    local_batch_size,
    process_index,
    process_count,
  )
  return Dataset(
    info=info,
    spec=spec,
    train_view=train_view,
    test_view=test_view,
    sampler=sampler,
    seed=seed,
    process_index=process_index,
    process_count=process_count,
    augment=augment,
    num_threads=int(config.get('num_threads', 2)),
    prefetch=int(config.get('prefetch', 4)),
    normalization=normalization,
    in_memory_bytes=int(config.get('in_memory_mb', 0)) * 2**20,
    eval_views={
      split: sources_lib.whole_split(opened.sources[split])
      for split in spec.eval_splits
    },
  )
