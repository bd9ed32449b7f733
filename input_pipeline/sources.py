"""Opening a data set's splits and viewing them as training/test examples.

Every set ends up as TFDS ``ArrayRecordDataSource`` objects (random access,
thread-safe), one per TFDS split. A `SplitView` is a list of (source,
record) pairs: the whole split normally, or, under the class-disjoint
protocol, the records of some classes, possibly pooled from both splits.

Records are read per batch (``source.__getitems__`` where it works, else one
``source[i]`` per record: TFDS 4.9.10's ``mock_data`` source has a broken
``__getitems__``), so no set is held in memory; for the small sets a record
costs ~30 us. When labels are needed up front (class-balanced sampling,
class-disjoint protocol) they are scanned from the serialized records
without decoding images (`scan_labels`).
"""

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from input_pipeline import preparation
from input_pipeline.datasets import catalog

_RAW = tfds.decode.DeserializeMethod.RAW_BYTES
_SCAN_CHUNK = 1024


def _supports_batched_reads(source: Any) -> bool:
  """Whether ``source.__getitems__`` works (probed on one record)."""
  if len(source) == 0:
    return False
  try:
    source.__getitems__([0])
  except TypeError:  # The TFDS mock's unbound __getitems__.
    return False
  return True


class RecordReader:
  """Reads records of one data source by index, batched where possible."""

  def __init__(self, source: Any):
    self.source = source
    self.batched = _supports_batched_reads(source)

  def __len__(self) -> int:
    return len(self.source)

  def read(self, record_ids: np.ndarray) -> list[Any]:
    """The records `record_ids` (int ``[k]``), in that order."""
    ids = [int(i) for i in record_ids]
    if not ids:
      return []
    if self.batched:
      return list(self.source.__getitems__(ids))
    return [self.source[i] for i in ids]


@dataclasses.dataclass(frozen=True)
class OpenedSet:
  """A set's TFDS sources and facts read from its metadata.

  Attributes:
    spec: the set's spec (for image folders: completed from the folder).
    sources: TFDS split name -> reader of decoded records.
    raw_sources: TFDS split name -> reader of serialized records.
    class_names: names of all classes, or None when unknown.
    num_classes: all classes (labels for multi-label sets).
  """

  spec: catalog.DataSetSpec
  sources: dict[str, RecordReader]
  raw_sources: dict[str, RecordReader]
  class_names: tuple[str, ...] | None
  num_classes: int


def _class_names(features: Any, spec: catalog.DataSetSpec):
  """ClassLabel names of the label feature, or None."""
  try:
    feature = features
    for key in spec.label_key.split('/'):
      feature = feature[key]
    names = feature.names
  except (AttributeError, KeyError, TypeError):
    return None
  return tuple(str(n) for n in names) if names else None


def open_set(config: Any) -> OpenedSet:
  """Opens the configured set's train and test splits.

  Embedded sets, image folders, re-id folders, RecordIO face sets and the
  multi-label sets as distributed are prepared on first use; catalog sets
  must already be prepared (or `config.download` set). Safe when several
  processes open a set at once (`preparation.prepare_once`).

  Args:
    config: the input config (``name``, ``data_dir``, ``download``,
      ``image_folder``, ``reid_root``, ``reid_layout``, ``recordio``,
      ``nuswide_root``, ``coco2014_root``, ``image_size``).

  Returns:
    The opened set (its sources: the spec's splits and eval_splits).

  Raises:
    ValueError: for an unknown name or a bad image folder.
    catalog.DataNotPreparedError: for a catalog set missing from data_dir.
  """
  spec = catalog.get_spec(config.name)
  data_dir = catalog.resolve_data_dir(config.get('data_dir'))
  splits = tuple(dict.fromkeys(spec.splits + spec.eval_splits))
  # In a multi-process run, process 0 prepares before the others look.
  version_dir = preparation.process_0_first(
    lambda: preparation.prepare_input(config), spec.name
  )
  if spec.origin == 'embedded':
    builder = preparation.embedded_builder(spec.name, data_dir)
    sources = {s: builder.as_data_source(s) for s in splits}
    raw = {
      s: builder.as_data_source(s, deserialize_method=_RAW) for s in splits
    }
  elif spec.origin in ('folder', 'reid', 'recordio', 'multilabel'):
    builder = tfds.builder_from_directory(version_dir)
    sources = {s: builder.as_data_source(s) for s in splits}
    raw = {
      s: builder.as_data_source(s, deserialize_method=_RAW) for s in splits
    }
    shape = tuple(builder.info.features['image'].shape)
    if spec.origin == 'multilabel':
      # Labels counted from the data (81 / 80 as released).
      spec = dataclasses.replace(
        spec,
        num_classes=len(builder.info.metadata['class_names']),
        image_shape=shape,
      )
    elif spec.origin in ('reid', 'recordio'):
      # Training identities are the classes; the spec keeps its kind.
      spec = dataclasses.replace(
        spec,
        num_classes=int(builder.info.metadata['num_identities']),
        image_shape=shape,
      )
    else:
      num_classes = builder.info.features['label'].num_classes
      spec = dataclasses.replace(
        spec,
        num_classes=num_classes,
        image_shape=shape,
        augmentation='crop_flip' if max(shape[:2]) <= 64 else 'inception_crop',
      )
  else:

    def source(split, **kwargs):
      return tfds.data_source(
        spec.tfds_name,
        split=split,
        data_dir=data_dir,
        download=False,
        **kwargs,
      )

    sources = {s: source(s) for s in splits}
    raw = {s: source(s, deserialize_method=_RAW) for s in splits}
  features = sources[splits[0]].dataset_info.features
  sources = {s: RecordReader(source) for s, source in sources.items()}
  raw = {s: RecordReader(source) for s, source in raw.items()}
  class_names = _class_names(features, spec)
  if spec.name == 'digits_multilabel':
    class_names = tuple(str(d) for d in range(spec.num_classes))
  if spec.origin == 'multilabel':
    class_names = tuple(str(n) for n in builder.info.metadata['class_names'])
  if class_names is not None and len(class_names) != spec.num_classes:
    raise ValueError(
      f'{spec.name}: the data have {len(class_names)} classes, expected '
      f'{spec.num_classes}'
    )
  return OpenedSet(
    spec=spec,
    sources=sources,
    raw_sources=raw,
    class_names=class_names,
    num_classes=spec.num_classes,
  )


def scan_labels(raw_source: RecordReader, label_key: str) -> np.ndarray:
  """Every record's integer label, parsed without decoding the image.

  Args:
    raw_source: a reader returning serialized ``tf.train.Example`` bytes.
    label_key: the int64 label feature.

  Returns:
    int64 ``[len(raw_source)]``.
  """
  labels = np.empty(len(raw_source), dtype=np.int64)
  for start in range(0, len(raw_source), _SCAN_CHUNK):
    ids = np.arange(start, min(start + _SCAN_CHUNK, len(raw_source)))
    for i, record in zip(ids, raw_source.read(ids), strict=True):
      example = tf_example_pb2.Example.FromString(bytes(record))
      labels[i] = example.features.feature[label_key].int64_list.value[0]
  return labels


@dataclasses.dataclass(frozen=True)
class SplitView:
  """Examples drawn from one or more TFDS splits.

  Attributes:
    sources: the readers records come from.
    source_ids: int32 ``[n]``: which source holds example i.
    record_ids: int64 ``[n]``: its record index in that source.
    labels: int64 ``[n]`` labels (re-based under the class-disjoint
      protocol), or None to read them from the records.
  """

  sources: tuple[RecordReader, ...]
  source_ids: np.ndarray
  record_ids: np.ndarray
  labels: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.record_ids)

  def read(self, positions: np.ndarray) -> list[Any]:
    """The records of examples `positions` (int ``[k]``), in that order."""
    positions = np.asarray(positions, dtype=np.int64)
    records = [None] * len(positions)
    source_ids = self.source_ids[positions]
    for source_id in np.unique(source_ids):
      where = np.flatnonzero(source_ids == source_id)
      fetched = self.sources[source_id].read(self.record_ids[positions[where]])
      for slot, record in zip(where, fetched, strict=True):
        records[slot] = record
    return records


def whole_split(
  source: RecordReader, labels: np.ndarray | None = None
) -> SplitView:
  """A view of every record of `source`."""
  n = len(source)
  return SplitView(
    sources=(source,),
    source_ids=np.zeros(n, np.int32),
    record_ids=np.arange(n, dtype=np.int64),
    labels=labels,
  )


def class_disjoint_selection(
  train_labels: np.ndarray,
  test_labels: np.ndarray,
  *,
  pool: str,
  boundary: int,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
  """Splits examples by class: [0, boundary) to train, the rest to test.

  Args:
    train_labels: int ``[n_train]`` labels of the TFDS train split.
    test_labels: int ``[n_test]`` labels of the TFDS test split.
    pool: ``'same_split'`` (train from the train split, test from the test
      split) or ``'all_splits'`` (both from the union of the splits).
    boundary: the first test class.

  Returns:
    For the training and the test view each ``(split_ids, record_ids,
    labels)``: int32 split (0 train, 1 test), int64 record index and int64
    label, test labels re-based by ``- boundary``.

  Raises:
    ValueError: for an unknown pool.
  """
  if pool not in ('same_split', 'all_splits'):
    raise ValueError(
      f"pool must be 'same_split' or 'all_splits', received {pool!r}"
    )
  split_ids = np.concatenate(
    [np.zeros(len(train_labels), np.int32), np.ones(len(test_labels), np.int32)]
  )
  record_ids = np.concatenate(
    [np.arange(len(train_labels)), np.arange(len(test_labels))]
  ).astype(np.int64)
  labels = np.concatenate([train_labels, test_labels]).astype(np.int64)
  if pool == 'same_split':
    train_mask = (split_ids == 0) & (labels < boundary)
    test_mask = (split_ids == 1) & (labels >= boundary)
  else:
    train_mask = labels < boundary
    test_mask = ~train_mask
  return (
    (split_ids[train_mask], record_ids[train_mask], labels[train_mask]),
    (
      split_ids[test_mask],
      record_ids[test_mask],
      labels[test_mask] - boundary,
    ),
  )


def build_views(
  opened: OpenedSet, *, class_disjoint: bool, need_train_labels: bool
) -> tuple[SplitView, SplitView, int]:
  """The training and test views of an opened set.

  Args:
    opened: the opened set.
    class_disjoint: apply the set's class-disjoint protocol.
    need_train_labels: scan the training labels (class-balanced sampling).

  Returns:
    ``(train_view, test_view, boundary)``: boundary is the number of
    training classes under the class-disjoint protocol, else num_classes.

  Raises:
    ValueError: for class_disjoint on a set without a protocol, or labels
      outside [0, num_classes).
  """
  spec = opened.spec
  train_split, test_split = spec.splits
  train_source = opened.sources[train_split]
  test_source = opened.sources[test_split]

  def labels_of(split):
    labels = scan_labels(opened.raw_sources[split], spec.label_key)
    bad = np.flatnonzero((labels < 0) | (labels >= opened.num_classes))
    if bad.size:
      raise ValueError(
        f'{spec.name} {split}: record {bad[0]} has label {labels[bad[0]]}, '
        f'outside [0, {opened.num_classes})'
      )
    return labels

  if not class_disjoint:
    train_labels = labels_of(train_split) if need_train_labels else None
    return (
      whole_split(train_source, train_labels),
      whole_split(test_source),
      opened.num_classes,
    )
  if spec.disjoint_pool is None:
    raise ValueError(
      f'config.input.class_disjoint=True is not defined for the '
      f'multi-label set {spec.name!r}'
    )
  boundary = spec.disjoint_boundary or opened.num_classes // 2
  train_part, test_part = class_disjoint_selection(
    labels_of(train_split),
    labels_of(test_split),
    pool=spec.disjoint_pool,
    boundary=boundary,
  )
  views = tuple(
    SplitView(
      sources=(train_source, test_source),
      source_ids=split_ids,
      record_ids=record_ids,
      labels=labels,
    )
    for split_ids, record_ids, labels in (train_part, test_part)
  )
  return views[0], views[1], boundary
