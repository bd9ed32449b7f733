"""Preparing data sets as array_record in a TFDS data dir, once.

* Embedded sets (digits, digits_multilabel), image folders, re-id folders,
  RecordIO face sets and the multi-label sets as distributed (NUS-WIDE,
  MS-COCO 2014) are prepared from local files, automatically on first use.
* Catalog sets are downloaded and prepared only when asked: by
  ``python -m input_pipeline.prepare`` or ``config.input.download=True``.

Safe under concurrency (two runs sharing a data dir, the workers of
``benchmarks.compare``, the processes of a multi-host run on a shared file
system): one process prepares a set while holding the lock file
``DATA_DIR/.<name>.lock`` (for ``DATA_DIR/<name>[/<config>]/<version>``;
see `common.locks`), the others wait for it and then read the
finished copy. TFDS prepares into ``incomplete.*`` beside the version dir
and renames it into place only once ``dataset_info.json`` is written, so a
set counts as prepared exactly when its version dir holds that file
(`is_prepared`). A preparer killed half-way leaves only ``incomplete.*``
dirs, which the next preparer removes before it starts again.

A waiter gives up after ``$DISCFEAT_PREPARE_TIMEOUT`` seconds (default
`DEFAULT_TIMEOUTS`, per origin) with `common.locks.LockTimeout`, naming
the lock and its holder. In a multi-process JAX run, `process_0_first` lets
process 0 prepare before the others look.
"""

import contextlib
import glob
import io
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import tensorflow_datasets as tfds
from absl import logging

from common import locks
from input_pipeline.datasets import (
  catalog,
  digits,
  image_folder,
  multilabel_folder,
  recordio,
  reid_folder,
)

_EMBEDDED_BUILDERS = {
  'digits': digits.Digits,
  'digits_multilabel': digits.DigitsMultilabel,
}
FILE_FORMAT = 'array_record'
TIMEOUT_ENV = 'DISCFEAT_PREPARE_TIMEOUT'
# Seconds a process waits for another one's preparation of a set of each
# origin (the digits take seconds; a large folder or download, hours).
DEFAULT_TIMEOUTS = {
  'embedded': 600.0,
  'folder': 6 * 3600.0,
  'catalog': 24 * 3600.0,
}
# TFDS prepares into DIR/<this prefix>XXXXXX_<version> and renames it.
_INCOMPLETE_PREFIX = 'incomplete.'
_T = TypeVar('_T')


def is_prepared(version_dir: str) -> bool:
  """Whether `version_dir` holds a finished preparation.

  TFDS writes ``dataset_info.json`` into its temporary dir last and then
  renames that dir to `version_dir`, so the file marks completion.
  """
  return os.path.isfile(os.path.join(version_dir, 'dataset_info.json'))


def lock_timeout(origin: str) -> float:
  """Seconds to wait for another preparer: ``$DISCFEAT_PREPARE_TIMEOUT``,
  else the origin's default.

  Raises:
    ValueError: for a value of the variable that is not a positive number.
  """
  value = os.environ.get(TIMEOUT_ENV)
  if not value:
    return DEFAULT_TIMEOUTS[origin]
  try:
    seconds = float(value)
  except ValueError:
    seconds = -1.0
  if not seconds > 0:
    raise ValueError(
      f'${TIMEOUT_ENV} must be a positive number of seconds, received {value!r}'
    )
  return seconds


def lock_path(version_dir: str, data_dir: str) -> str:
  """``DATA_DIR/.<name>.lock`` for ``DATA_DIR/<name>[/<config>]/<version>``.

  ``/`` in the name becomes ``_`` (``.coco_2017.lock``).
  """
  name = os.path.relpath(os.path.dirname(version_dir), data_dir)
  return os.path.join(data_dir, f'.{name.replace(os.sep, "_")}.lock')


def _discard_unfinished(version_dir: str) -> None:
  """Removes what an unfinished preparation of `version_dir` left.

  Only called while holding the set's lock, so nobody is writing there.
  """
  parent, version = os.path.split(version_dir)
  pattern = os.path.join(
    glob.escape(parent), f'{_INCOMPLETE_PREFIX}*_{glob.escape(version)}'
  )
  leftovers = glob.glob(pattern)
  # Without dataset_info.json, TFDS would "reuse" the dir as it is.
  if os.path.isdir(version_dir):
    leftovers.append(version_dir)
  for path in leftovers:
    logging.warning('Removing %s, left by an unfinished preparation.', path)
    shutil.rmtree(path)


def prepare_once(
  version_dir: str,
  data_dir: str,
  build: Callable[[], Any],
  *,
  origin: str,
  purpose: str,
  timeout: float | None = None,
) -> str:
  """Runs `build` unless `version_dir` is prepared, in one process at once.

  Args:
    version_dir: the version dir that `build` prepares.
    data_dir: the TFDS data dir holding it (the lock goes there).
    build: prepares `version_dir` (a TFDS ``download_and_prepare``).
    origin: the set's origin (``'embedded'``, ``'folder'``, ``'catalog'``),
      for the default timeout.
    purpose: what is prepared, for the lock's holder record.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    `version_dir`, prepared.

  Raises:
    locks.LockTimeout: another process held the lock too long.
    RuntimeError: `build` returned without preparing `version_dir`.
  """
  if is_prepared(version_dir):
    return version_dir
  timeout = lock_timeout(origin) if timeout is None else timeout
  path = lock_path(version_dir, data_dir)
  with locks.holding(
    path,
    purpose=purpose,
    timeout=timeout,
    timeout_advice=f'To wait longer, raise the timeout (${TIMEOUT_ENV}, in '
    'seconds).',
  ):
    # Another process may have finished it while this one waited.
    if is_prepared(version_dir):
      return version_dir
    _discard_unfinished(version_dir)
    if origin == 'catalog':
      build()  # TFDS prints the download's size: the user may cancel.
    else:
      # Local files have no download size; TFDS would print "Unknown size".
      logging.info(
        '%s into %s (once).', purpose[:1].upper() + purpose[1:], version_dir
      )
      with contextlib.redirect_stdout(io.StringIO()):
        build()
    if not is_prepared(version_dir):
      raise RuntimeError(
        f'The preparation ({purpose}) ended without writing '
        f'{os.path.join(version_dir, "dataset_info.json")}'
      )
  return version_dir


def prepare_embedded(
  name: str, data_dir: str, *, timeout: float | None = None
) -> str:
  """Prepares the embedded set `name` if missing.

  Args:
    name: ``'digits'`` or ``'digits_multilabel'``.
    data_dir: the resolved TFDS data dir.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The prepared version directory.
  """
  builder_cls = _EMBEDDED_BUILDERS[name]
  version_dir = os.path.join(
    data_dir, builder_cls.name, str(builder_cls.VERSION)
  )

  def build():
    builder = builder_cls(data_dir=data_dir, file_format=FILE_FORMAT)
    builder.download_and_prepare(file_format=FILE_FORMAT)

  return prepare_once(
    version_dir,
    data_dir,
    build,
    origin='embedded',
    purpose=f'preparing {name}',
    timeout=timeout,
  )


def embedded_builder(
  name: str, data_dir: str, *, timeout: float | None = None
) -> tfds.core.DatasetBuilder:
  """The embedded set `name`'s builder, prepared on first use.

  Args:
    name: ``'digits'`` or ``'digits_multilabel'``.
    data_dir: the resolved TFDS data dir.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The prepared builder.
  """
  prepare_embedded(name, data_dir, timeout=timeout)
  # Made only now: a builder made before the data existed keeps metadata
  # without splits, even once another process has prepared them.
  return _EMBEDDED_BUILDERS[name](data_dir=data_dir, file_format=FILE_FORMAT)


def _prepare_user_set(
  builder_class,
  config_name: str,
  make_config: Callable[[], Any],
  data_dir: str,
  *,
  purpose: str,
  timeout: float | None,
) -> str:
  """A data set of the user's files, prepared once (`prepare_once`).

  Args:
    builder_class: its TFDS builder (image folder, re-id folder, RecordIO,
      multi-label folder).
    config_name: the name of its BuilderConfig: the files' fingerprint.
    make_config: builds the BuilderConfig; called by the preparing process
      only (a RecordIO header scan reads every record).
    data_dir: the resolved TFDS data dir.
    purpose: what is prepared, for the lock's holder record.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The version directory, readable with ``tfds.builder_from_directory``.
  """
  version_dir = os.path.join(
    data_dir, builder_class.name, config_name, str(builder_class.VERSION)
  )

  def build():
    builder = builder_class(
      config=make_config(), data_dir=data_dir, file_format=FILE_FORMAT
    )
    builder.download_and_prepare(file_format=FILE_FORMAT)

  return prepare_once(
    version_dir,
    data_dir,
    build,
    origin='folder',
    purpose=purpose,
    timeout=timeout,
  )


def image_folder_dir(
  root: str,
  image_size: int | None,
  data_dir: str,
  *,
  timeout: float | None = None,
) -> str:
  """The prepared copy of an image folder, prepared on first use.

  Args:
    root: the folder holding ``train/<class>/`` and ``test/<class>/``.
    image_size: resize side, or None to keep the common original size.
    data_dir: the resolved TFDS data dir.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The version directory, readable with ``tfds.builder_from_directory``.

  Raises:
    ValueError: for a bad layout or an unreadable image (naming its path).
  """
  listing = image_folder.list_folder(root)
  return _prepare_user_set(
    image_folder.UserImageFolder,
    image_folder.config_name(listing, image_size),
    lambda: image_folder.make_config(root, image_size),
    data_dir,
    purpose=f'preparing image folder {listing.root}',
    timeout=timeout,
  )


def reid_folder_dir(
  root: str,
  layout: str,
  image_size,
  data_dir: str,
  *,
  timeout: float | None = None,
) -> str:
  """The prepared copy of a re-id folder, prepared on first use.

  Args:
    root: the folder as distributed (`reid_folder.list_layout`).
    layout: ``'market1501'``, ``'dukemtmc'`` or ``'msmt17'``.
    image_size: the stored side or ``(height, width)``; required.
    data_dir: the resolved TFDS data dir.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The version directory, readable with ``tfds.builder_from_directory``.

  Raises:
    ValueError: for a bad layout, image size or unreadable image.
  """
  listing = reid_folder.list_reid_folder(root, layout)
  config = reid_folder.make_config(listing, image_size)
  return _prepare_user_set(
    reid_folder.UserReidFolder,
    config.name,
    lambda: config,
    data_dir,
    purpose=f'preparing re-id folder {listing.root} ({layout})',
    timeout=timeout,
  )


def recordio_dir(
  root: str,
  image_size,
  data_dir: str,
  *,
  timeout: float | None = None,
) -> str:
  """The prepared copy of an MXNet RecordIO folder, prepared on first use.

  Args:
    root: the folder holding ``train.rec``, ``train.idx`` (and optionally
      ``property``).
    image_size: the stored side or ``(height, width)``, or None to keep
      the (common) original size.
    data_dir: the resolved TFDS data dir.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The version directory, readable with ``tfds.builder_from_directory``.

  Raises:
    recordio.RecordIOError: for a missing file or a corrupt record (naming
      its index and offset).
  """
  listing = recordio.list_recordio(root)
  image_folder.image_height_width(image_size)  # Raises for a bad size.
  return _prepare_user_set(
    recordio.UserRecordIO,
    recordio.config_name(listing, image_size),
    # The header scan reads every record: only the preparing process.
    lambda: recordio.make_config(listing, image_size),
    data_dir,
    purpose=f'preparing RecordIO folder {listing.root}',
    timeout=timeout,
  )


def multilabel_folder_dir(
  layout: str,
  root: str,
  image_size,
  data_dir: str,
  *,
  timeout: float | None = None,
) -> str:
  """The prepared copy of NUS-WIDE or MS-COCO 2014, prepared on first use.

  Args:
    layout: ``'nuswide'`` or ``'coco2014'`` (`multilabel_folder.LAYOUTS`).
    root: the set as distributed (`multilabel_folder.list_layout`).
    image_size: the stored side or ``(height, width)``; required.
    data_dir: the resolved TFDS data dir.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The version directory, readable with ``tfds.builder_from_directory``.

  Raises:
    ValueError: for a bad layout, image size or unreadable image.
  """
  listing = multilabel_folder.list_layout(root, layout)
  config = multilabel_folder.make_config(listing, image_size)
  return _prepare_user_set(
    multilabel_folder.UserMultilabelFolder,
    config.name,
    lambda: config,
    data_dir,
    purpose=f'preparing {layout} {listing.root}',
    timeout=timeout,
  )


def download_and_prepare_catalog(
  name: str, data_dir: str, *, timeout: float | None = None
) -> str:
  """Downloads and prepares catalog set `name` as array_record.

  Args:
    name: a catalog name of `catalog.SPECS`.
    data_dir: the resolved TFDS data dir.
    timeout: seconds to wait for another preparer; None: `lock_timeout`.

  Returns:
    The prepared version directory.
  """
  spec = catalog.get_spec(name)
  if spec.origin != 'catalog':
    raise ValueError(f'{name!r} is not a TFDS catalog set')
  catalog.check_tensorflow(spec)
  version_dir, _ = catalog.version_dir(spec.tfds_name, data_dir)

  def build():
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

  return prepare_once(
    version_dir,
    data_dir,
    build,
    origin='catalog',
    purpose=f'downloading and preparing {spec.tfds_name}',
    timeout=timeout,
  )


def prepare(
  name: str,
  data_dir: str | None = None,
  *,
  image_folder_root: str | None = None,
  image_size=None,
  reid_root: str | None = None,
  reid_layout: str = 'market1501',
  recordio_root: str | None = None,
  multilabel_root: str | None = None,
) -> str:
  """Prepares any supported set; catalog sets are downloaded.

  Args:
    name: a name of `catalog.NAMES`.
    data_dir: TFDS data dir; None: $TFDS_DATA_DIR or ~/tensorflow_datasets.
    image_folder_root: the folder, for ``name='image_folder'``.
    image_size: for ``name='image_folder'`` and ``'reid_folder'``: the
      stored image side or ``(height, width)``.
    reid_root: the folder, for ``name='reid_folder'``.
    reid_layout: its layout (`reid_folder.LAYOUTS`).
    recordio_root: the folder, for ``name='recordio'``.
    multilabel_root: the folder, for ``name='nuswide'`` and
      ``'coco2014'``.

  Returns:
    The prepared version directory.

  Raises:
    ValueError: for an unknown name, or image_folder without a folder.
  """
  spec = catalog.get_spec(name)
  data_dir = catalog.resolve_data_dir(data_dir)
  if spec.origin == 'embedded':
    return prepare_embedded(name, data_dir)
  if spec.origin == 'folder':
    if not image_folder_root:
      raise ValueError(
        "name='image_folder' needs the folder (config.input.image_folder "
        'or --image_folder)'
      )
    return image_folder_dir(image_folder_root, image_size, data_dir)
  if spec.origin == 'reid':
    if not reid_root:
      raise ValueError(
        "name='reid_folder' needs the folder (config.input.reid_root or "
        '--reid_root)'
      )
    return reid_folder_dir(reid_root, reid_layout, image_size, data_dir)
  if spec.origin == 'recordio':
    if not recordio_root:
      raise ValueError(
        "name='recordio' needs the folder (config.input.recordio or --recordio)"
      )
    return recordio_dir(recordio_root, image_size, data_dir)
  if spec.origin == 'multilabel':
    if not multilabel_root:
      raise ValueError(
        f'name={name!r} needs the folder (config.input.{name}_root or '
        '--multilabel_root)'
      )
    return multilabel_folder_dir(name, multilabel_root, image_size, data_dir)
  return download_and_prepare_catalog(name, data_dir)


# The config.input field naming the user's files, per origin.
_ROOT_FIELDS = {
  'folder': ('image_folder', 'ROOT holding train/<class>/ and test/<class>/'),
  'reid': ('reid_root', 'the Market-1501, DukeMTMC-reID or MSMT17 folder'),
  'recordio': ('recordio', 'DIR holding train.rec and train.idx'),
  'multilabel': ('{name}_root', 'the set as distributed'),
}


def _root_field(spec: catalog.DataSetSpec) -> str:
  """The config.input field naming the folder of `spec`'s set."""
  return _ROOT_FIELDS[spec.origin][0].format(name=spec.name)


def _user_root(spec: catalog.DataSetSpec, config: Any) -> str:
  """The folder of a set prepared from the user's files; raises if unset."""
  field, expected = _root_field(spec), _ROOT_FIELDS[spec.origin][1]
  root = config.get(field)
  if not root:
    raise ValueError(
      f'config.input.name={spec.name!r} needs config.input.{field} '
      f'({expected}), received {root!r}'
    )
  return root


def check_input(config: Any) -> None:
  """Refuses an input config whose data is missing; prepares nothing.

  What `prepare_input` would raise for a missing set, in milliseconds and
  without reading any file's contents: a catalog set that is not prepared
  in the data dir (and ``config.download`` is off), or a set of the
  user's files whose folder is unset or does not exist. Embedded sets are
  always available. ``train.py`` calls it before it imports the modules
  only training needs.

  Args:
    config: the input config, as for `prepare_input`.

  Raises:
    ValueError: for an unknown name, or a user's folder unset or missing.
    catalog.DataNotPreparedError: for a catalog set missing from data_dir
      without ``config.download``.
  """
  spec = catalog.get_spec(config.name)
  if spec.origin == 'embedded':
    return
  if spec.origin in _ROOT_FIELDS:
    root = _user_root(spec, config)
    if not os.path.exists(root):
      raise ValueError(
        f'config.input.{_root_field(spec)} must be an existing folder, '
        f'received {root!r}, which does not exist'
      )
    return
  catalog.check_tensorflow(spec)
  if not config.get('download', False):
    data_dir = catalog.resolve_data_dir(config.get('data_dir'))
    catalog.check_prepared(spec, data_dir)


def prepare_input(config: Any) -> str:
  """Makes the set of an input config readable, as training would.

  Embedded sets and image folders are prepared if missing; a catalog set is
  downloaded only with ``config.download``, else checked.

  Args:
    config: the input config (``name``, ``data_dir``, ``download``,
      ``image_folder``, ``image_size``).

  Returns:
    The prepared version directory.

  Raises:
    ValueError: for an unknown name or a bad image folder.
    catalog.DataNotPreparedError: for a catalog set missing from data_dir
      without ``config.download``.
  """
  spec = catalog.get_spec(config.name)
  data_dir = catalog.resolve_data_dir(config.get('data_dir'))
  image_size = config.get('image_size')
  if spec.origin == 'embedded':
    return prepare_embedded(spec.name, data_dir)
  if spec.origin == 'folder':
    return image_folder_dir(_user_root(spec, config), image_size, data_dir)
  if spec.origin == 'reid':
    return reid_folder_dir(
      _user_root(spec, config),
      config.get('reid_layout', 'market1501'),
      image_size,
      data_dir,
    )
  if spec.origin == 'recordio':
    return recordio_dir(_user_root(spec, config), image_size, data_dir)
  if spec.origin == 'multilabel':
    return multilabel_folder_dir(
      spec.name, _user_root(spec, config), image_size, data_dir
    )
  catalog.check_tensorflow(spec)
  try:
    return catalog.check_prepared(spec, data_dir)
  except catalog.DataNotPreparedError:
    if not config.get('download', False):
      raise
  return download_and_prepare_catalog(spec.name, data_dir)


def process_0_first(prepare_fn: Callable[[], _T], name: str) -> _T:
  """Runs `prepare_fn` in JAX process 0 before the other processes.

  In a multi-process JAX run every process calls this at the same point:
  process 0 prepares, all meet at a barrier
  (``multihost_utils.sync_global_devices``), then the others run
  `prepare_fn` and find the set prepared on a shared data dir, or prepare
  their own copy on a per-host one (under the file lock either way). In a
  single process (or before JAX is imported) it only runs `prepare_fn`.

  Args:
    prepare_fn: prepares the set; called once in every process.
    name: the set's name, which makes the barrier's name.

  Returns:
    What `prepare_fn` returns.
  """
  jax = sys.modules.get('jax')
  if jax is None or jax.process_count() == 1:
    return prepare_fn()
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  barrier = f'input_pipeline: {name} prepared by process 0'
  if jax.process_index() == 0:
    try:
      return prepare_fn()
    finally:
      # Also after an error: the others must not wait forever; they try
      # themselves and meet the same error.
      multihost_utils.sync_global_devices(barrier)
  multihost_utils.sync_global_devices(barrier)
  return prepare_fn()
