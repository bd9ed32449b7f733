"""The supported data sets: how each is stored, labelled and split.

Catalog sets come from the TFDS catalog and are read with
``tfds.data_source(..., download=False)`` from a data_dir where they were
prepared as array_record (``python -m input_pipeline.prepare``). Before any
TFDS call the data_dir is checked for the prepared version's
``dataset_info.json``, so a missing set fails in milliseconds with the
command that prepares it instead of TFDS's misleading "TFRECORD is not
supported" error (or, without ``download=False``, a DNS retry loop).

Class-disjoint protocols (``class_disjoint=True``; C classes, b the boundary):

* ``same_split`` (digits, MNIST, Fashion-MNIST, CIFAR, image folders): train
  on the train split's examples of classes [0, b), test on the test split's
  examples of classes [b, C); b = C // 2.
* ``all_splits`` (CUB-200-2011, Cars196): the retrieval papers' protocol,
  pooling both TFDS splits: train on every image of the first half of the
  classes (CUB 100, Cars 98), test on every image of the rest.
* SOP uses ``same_split`` with b = 11318: its TFDS train split holds classes
  0..11317 and its test split 11318..22633, already the standard protocol.

Test labels are re-based to 0..C-b-1.
"""

import dataclasses
import json
import os

import tensorflow_datasets as tfds

PREPARE_MODULE = 'input_pipeline.prepare'
# The digits' stored pixel values are counts 0..16 (4x4 blocks of a 32x32
# bitmap), not 0..255.
_DIGITS_MAX_PIXEL_VALUE = 16


@dataclasses.dataclass(frozen=True)
class DataSetSpec:
  """How one data set is read.

  Attributes:
    name: the name in ``config.input.name``.
    tfds_name: the TFDS builder name (with config, e.g. ``'coco/2017'``).
    origin: ``'embedded'`` (prepared offline from sklearn), ``'catalog'``
      (TFDS catalog, prepared by the prepare CLI), ``'folder'`` (the
      user's image folder), ``'reid'`` (a re-id set as distributed),
      ``'recordio'`` (an MXNet RecordIO face set) or ``'multilabel'``
      (NUS-WIDE or MS-COCO 2014 as distributed).
    splits: TFDS split names for our ``'train'`` and ``'test'``.
    eval_splits: further TFDS splits that evaluation reads by name (re-id:
      ``'query'`` and ``'gallery'``, evaluated one against the other).
    label_key: the record's label feature; ``'a/b'`` is ``record['a']['b']``.
    label_format: ``'class_id'`` (an integer), ``'multi_hot'`` (a 0/1
      vector) or ``'class_list'`` (the ids of the objects shown, any length).
    multilabel: targets are multi-hot vectors.
    num_classes: classes (labels for multi-label sets).
    max_pixel_value: the stored value meaning white (255, or 16 for digits).
    image_shape: the stored ``(H, W, C)``; None when sizes vary.
    augmentation: ``'none'``, ``'crop_flip'`` (4-pixel pad, crop, flip),
      ``'inception_crop'`` (random resized crop + flip) or ``'reid'``
      (flip, 10-pixel pad and crop, random erasing).
    camera_key: the record's camera id feature (re-id sets), or None.
    disjoint_pool: ``'same_split'``, ``'all_splits'``, or None where the
      class-disjoint protocol does not apply (multi-label sets).
    disjoint_boundary: the first test class; None means num_classes // 2.
    needs_tensorflow: the TFDS builder's own code imports TensorFlow.
    size_note: what preparing it costs, for the error message.
  """

  name: str
  tfds_name: str
  origin: str
  splits: tuple[str, str] = ('train', 'test')
  eval_splits: tuple[str, ...] = ()
  label_key: str = 'label'
  label_format: str = 'class_id'
  multilabel: bool = False
  num_classes: int = 0
  max_pixel_value: int = 255
  image_shape: tuple[int, int, int] | None = None
  augmentation: str = 'none'
  camera_key: str | None = None
  disjoint_pool: str | None = 'same_split'
  disjoint_boundary: int | None = None
  needs_tensorflow: bool = False
  size_note: str = ''


SPECS = {
  spec.name: spec
  for spec in (
    DataSetSpec(
      name='digits',
      tfds_name='digits',
      origin='embedded',
      num_classes=10,
      max_pixel_value=_DIGITS_MAX_PIXEL_VALUE,
      image_shape=(8, 8, 1),
    ),
    DataSetSpec(
      name='digits_multilabel',
      tfds_name='digits_multilabel',
      origin='embedded',
      label_key='labels',
      label_format='multi_hot',
      multilabel=True,
      num_classes=10,
      max_pixel_value=_DIGITS_MAX_PIXEL_VALUE,
      image_shape=(8, 16, 1),
      disjoint_pool=None,
    ),
    DataSetSpec(
      name='mnist',
      tfds_name='mnist',
      origin='catalog',
      num_classes=10,
      image_shape=(28, 28, 1),
      size_note='~11 MiB download',
    ),
    DataSetSpec(
      name='fashion_mnist',
      tfds_name='fashion_mnist',
      origin='catalog',
      num_classes=10,
      image_shape=(28, 28, 1),
      size_note='~30 MiB download',
    ),
    DataSetSpec(
      name='cifar10',
      tfds_name='cifar10',
      origin='catalog',
      num_classes=10,
      image_shape=(32, 32, 3),
      augmentation='crop_flip',
      size_note='~163 MiB download',
    ),
    DataSetSpec(
      name='cifar100',
      tfds_name='cifar100',
      origin='catalog',
      num_classes=100,
      image_shape=(32, 32, 3),
      augmentation='crop_flip',
      size_note='~161 MiB download',
    ),
    DataSetSpec(
      name='caltech_birds2011',
      tfds_name='caltech_birds2011',
      origin='catalog',
      num_classes=200,
      augmentation='inception_crop',
      disjoint_pool='all_splits',
      size_note='~1.2 GiB download',
    ),
    DataSetSpec(
      name='cars196',
      tfds_name='cars196',
      origin='catalog',
      num_classes=196,
      augmentation='inception_crop',
      disjoint_pool='all_splits',
      size_note='~1.9 GiB download',
    ),
    DataSetSpec(
      name='stanford_online_products',
      tfds_name='stanford_online_products',
      origin='catalog',
      label_key='class_id',
      num_classes=22634,
      augmentation='inception_crop',
      disjoint_boundary=11318,
      size_note='~2.9 GiB download',
    ),
    DataSetSpec(
      name='coco',
      tfds_name='coco/2017',
      origin='catalog',
      # COCO's test split has no annotations; evaluate on validation.
      splits=('train', 'validation'),
      label_key='objects/label',
      label_format='class_list',
      multilabel=True,
      num_classes=80,
      augmentation='inception_crop',
      disjoint_pool=None,
      # TFDS's coco builder uses `tf.int64` in its _info().
      needs_tensorflow=True,
      size_note='~25 GiB download',
    ),
    DataSetSpec(
      name='image_folder',
      tfds_name='user_image_folder',
      origin='folder',
    ),
    DataSetSpec(
      name='reid_folder',
      tfds_name='user_reid_folder',
      origin='reid',
      # The gallery is also the 'test' split (what train/test code reads).
      splits=('train', 'gallery'),
      eval_splits=('query', 'gallery'),
      augmentation='reid',
      camera_key='camera',
      # Query and gallery identities are already disjoint from training's.
      disjoint_pool=None,
    ),
    DataSetSpec(
      name='recordio',
      tfds_name='user_recordio',
      origin='recordio',
      # arcface_torch flips faces; no flip-only kind exists here yet, and
      # crops would move the aligned landmarks: none.
      augmentation='none',
    ),
    # NUS-WIDE and MS-COCO 2014 as distributed (datasets/
    # multilabel_folder.py); labels are counted from the data (81 and 80
    # as released, fewer in tests).
    DataSetSpec(
      name='nuswide',
      tfds_name='user_multilabel_folder',
      origin='multilabel',
      label_key='labels',
      label_format='multi_hot',
      multilabel=True,
      augmentation='inception_crop',
      disjoint_pool=None,
    ),
    DataSetSpec(
      name='coco2014',
      tfds_name='user_multilabel_folder',
      origin='multilabel',
      # The multi-label papers test on val2014.
      splits=('train', 'validation'),
      label_key='labels',
      label_format='multi_hot',
      multilabel=True,
      augmentation='inception_crop',
      disjoint_pool=None,
    ),
  )
}
NAMES = tuple(SPECS)
# Used when config.input.image_size is None for a set without one size.
DEFAULT_LARGE_IMAGE_SIZE = 224


def get_spec(name: str) -> DataSetSpec:
  """The spec of `name`.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  if name not in SPECS:
    raise ValueError(
      f'Unknown data set config.input.name={name!r}; valid names: '
      f'{", ".join(NAMES)}'
    )
  return SPECS[name]


def resolve_data_dir(data_dir: str | None) -> str:
  """`data_dir`, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  if not data_dir:
    data_dir = os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'
  return os.path.abspath(os.path.expanduser(data_dir))


def version_dir(tfds_name: str, data_dir: str) -> tuple[str, str]:
  """Where TFDS keeps the code's version of `tfds_name` under `data_dir`.

  Only the builder class is looked up (no builder is constructed, nothing is
  read or downloaded).

  Args:
    tfds_name: ``'name'`` or ``'name/config'``.
    data_dir: the TFDS data dir.

  Returns:
    ``(path, version)``: ``DATA_DIR/name[/config]/VERSION`` and the version.
  """
  name, _, config = tfds_name.partition('/')
  builder_cls = tfds.builder_cls(name)
  version = builder_cls.VERSION
  if config:
    for builder_config in builder_cls.BUILDER_CONFIGS:
      if builder_config.name == config and builder_config.version:
        version = builder_config.version
  parts = [data_dir, name] + ([config] if config else []) + [str(version)]
  return os.path.join(*parts), str(version)


def prepare_command(name: str, data_dir: str) -> str:
  """The shell command that prepares `name` in `data_dir`."""
  return f'python -m {PREPARE_MODULE} --dataset={name} --data_dir={data_dir}'


class DataNotPreparedError(FileNotFoundError):
  """A catalog data set is missing from (or unusable in) the data_dir."""


def check_prepared(spec: DataSetSpec, data_dir: str) -> str:
  """Checks that `spec`'s set is prepared as array_record in `data_dir`.

  Reads only ``dataset_info.json``; never calls TFDS's readers, so it cannot
  hang on the network.

  Args:
    spec: a catalog spec.
    data_dir: the resolved data dir.

  Returns:
    The prepared version directory.

  Raises:
    DataNotPreparedError: naming the set, the data dir and the command that
      prepares it, when the set is missing or was prepared as tfrecord.
  """
  path, version = version_dir(spec.tfds_name, data_dir)
  command = prepare_command(spec.name, data_dir)
  info_path = os.path.join(path, 'dataset_info.json')
  if not os.path.isfile(info_path):
    parent = os.path.dirname(path)
    found = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
    found_note = (
      f' (found only version(s) {", ".join(found)} in {parent})'
      if found
      else ''
    )
    raise DataNotPreparedError(
      f"Data set '{spec.name}' (TFDS '{spec.tfds_name}' {version}) is not "
      f'prepared in data_dir {data_dir!r}: {info_path} does not exist'
      f'{found_note}. Prepare it once with\n  {command}\n(this downloads '
      f'it: {spec.size_note}), or set config.input.download=True, or point '
      'config.input.data_dir / $TFDS_DATA_DIR at a data dir that has it.'
    )
  with open(info_path) as f:
    file_format = json.load(f).get('fileFormat', 'tfrecord')
  if file_format != 'array_record':
    raise DataNotPreparedError(
      f"Data set '{spec.name}' in data_dir {data_dir!r} was prepared as "
      f'{file_format}, which tfds.data_source cannot read without '
      'TensorFlow; prepare an array_record copy in another data dir with\n'
      f'  {prepare_command(spec.name, "OTHER_DIR")}'
    )
  return path


# The setup.cfg extra that installs TensorFlow (not in the default install).
TENSORFLOW_EXTRA = 'coco'


def check_tensorflow(spec: DataSetSpec) -> None:
  """Raises ImportError when `spec`'s TFDS builder needs missing TensorFlow.

  Called before anything else touches the set (and before any download), so
  the error comes in milliseconds instead of from inside TFDS.
  """
  if not spec.needs_tensorflow:
    return
  import importlib.util  # pylint: disable=g-import-not-at-top

  if importlib.util.find_spec('tensorflow') is None:
    raise ImportError(
      f'config.input.name={spec.name!r} needs TensorFlow for its TFDS '
      f'builder ({spec.tfds_name} describes its features with TensorFlow), '
      'which the default install leaves out: '
      f"pip install -e '.[{TENSORFLOW_EXTRA}]'"
    )
