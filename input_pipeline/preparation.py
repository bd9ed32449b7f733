"""Preparing data sets as array_record in a TFDS data dir.

* Embedded sets (digits, digits_multilabel) and image folders are prepared
  from local files, automatically on first use.
* Catalog sets are downloaded and prepared only when asked: by
  ``python -m input_pipeline.prepare`` or ``config.input.download=True``.

Preparation of one set holds an exclusive ``fcntl`` lock on
``DATA_DIR/.<name>.lock``, so processes of one multi-process run that share
a data dir prepare it once: the others wait and then find it prepared.
"""

import contextlib
import fcntl
import os

import tensorflow_datasets as tfds
from absl import logging

from input_pipeline.datasets import catalog, digits, image_folder

_EMBEDDED_BUILDERS = {
  'digits': digits.Digits,
  'digits_multilabel': digits.DigitsMultilabel,
}
FILE_FORMAT = 'array_record'


@contextlib.contextmanager
def _exclusive(data_dir: str, name: str):
  """Holds an exclusive lock on ``data_dir/.name.lock``."""
  os.makedirs(data_dir, exist_ok=True)
  lock_path = os.path.join(data_dir, f'.{name.replace("/", "_")}.lock')
  with open(lock_path, 'a') as lock_file:
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock_file, fcntl.LOCK_UN)


def is_prepared(version_dir: str) -> bool:
  """TFDS writes dataset_info.json last, after renaming the finished dir."""
  return os.path.isfile(os.path.join(version_dir, 'dataset_info.json'))


def embedded_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The embedded set `name`'s builder, prepared on first use.

  Args:
    name: ``'digits'`` or ``'digits_multilabel'``.
    data_dir: the resolved TFDS data dir.

  Returns:
    The prepared builder.
  """
  builder_cls = _EMBEDDED_BUILDERS[name]
  builder = builder_cls(data_dir=data_dir, file_format=FILE_FORMAT)
  if not is_prepared(str(builder.data_path)):
    with _exclusive(data_dir, name):
      if not is_prepared(str(builder.data_path)):
        logging.info('Preparing %s in %s (offline).', name, builder.data_path)
        builder.download_and_prepare(file_format=FILE_FORMAT)
  return builder


def image_folder_dir(root: str, image_size: int | None, data_dir: str) -> str:
  """The prepared copy of an image folder, prepared on first use.

  Args:
    root: the folder holding ``train/<class>/`` and ``test/<class>/``.
    image_size: resize side, or None to keep the common original size.
    data_dir: the resolved TFDS data dir.

  Returns:
    The version directory, readable with ``tfds.builder_from_directory``.

  Raises:
    ValueError: for a bad layout or an unreadable image (naming its path).
  """
  listing = image_folder.list_folder(root)
  version_dir = os.path.join(
    data_dir,
    image_folder.BUILDER_NAME,
    image_folder.config_name(listing, image_size),
    str(image_folder.UserImageFolder.VERSION),
  )
  if is_prepared(version_dir):
    return version_dir
  with _exclusive(data_dir, image_folder.BUILDER_NAME):
    if not is_prepared(version_dir):
      config = image_folder.make_config(root, image_size)
      builder = image_folder.UserImageFolder(
        config=config, data_dir=data_dir, file_format=FILE_FORMAT
      )
      logging.info('Preparing image folder %s in %s.', root, version_dir)
      builder.download_and_prepare(file_format=FILE_FORMAT)
  return version_dir


def download_and_prepare_catalog(name: str, data_dir: str) -> str:
  """Downloads and prepares catalog set `name` as array_record.

  Args:
    name: a catalog name of `catalog.SPECS`.
    data_dir: the resolved TFDS data dir.

  Returns:
    The prepared version directory.
  """
  spec = catalog.get_spec(name)
  if spec.origin != 'catalog':
    raise ValueError(f'{name!r} is not a TFDS catalog set')
  catalog.check_tensorflow(spec)
  version_dir, _ = catalog.version_dir(spec.tfds_name, data_dir)
  with _exclusive(data_dir, spec.tfds_name):
    if not is_prepared(version_dir):
      logging.info(
        'Downloading and preparing %s (%s) into %s.',
        spec.tfds_name,
        spec.size_note,
        data_dir,
      )
      builder = tfds.builder(
        spec.tfds_name, data_dir=data_dir, file_format=FILE_FORMAT
      )
      builder.download_and_prepare(file_format=FILE_FORMAT)
  return version_dir


def prepare(
  name: str,
  data_dir: str | None = None,
  *,
  image_folder_root: str | None = None,
  image_size: int | None = None,
) -> str:
  """Prepares any supported set; catalog sets are downloaded.

  Args:
    name: a name of `catalog.NAMES`.
    data_dir: TFDS data dir; None: $TFDS_DATA_DIR or ~/tensorflow_datasets.
    image_folder_root: the folder, for ``name='image_folder'``.
    image_size: for ``name='image_folder'``: the stored image side.

  Returns:
    The prepared version directory.

  Raises:
    ValueError: for an unknown name, or image_folder without a folder.
  """
  spec = catalog.get_spec(name)
  data_dir = catalog.resolve_data_dir(data_dir)
  if spec.origin == 'embedded':
    return str(embedded_builder(name, data_dir).data_path)
  if spec.origin == 'folder':
    if not image_folder_root:
      raise ValueError(
        "name='image_folder' needs the folder (config.input.image_folder "
        'or --image_folder)'
      )
    return image_folder_dir(image_folder_root, image_size, data_dir)
  return download_and_prepare_catalog(name, data_dir)
