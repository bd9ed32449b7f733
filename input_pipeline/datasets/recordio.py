"""Face training sets in MXNet RecordIO, read without MXNet.

insightface ships CASIA-WebFace and MS1M as a folder::

  DIR/train.rec   the records
  DIR/train.idx   lines ``<record index>\\t<byte offset in train.rec>``
  DIR/property    optional: ``<identities>,<height>,<width>``

A record in ``train.rec`` (dmlc-core's RecordIO) is the uint32 magic
``0xced7230a``, a uint32 whose upper 3 bits are a continuation flag and
whose lower 29 bits are the payload length, the payload, and zero padding
to a multiple of 4 bytes (little-endian). A payload holding the magic at a
4-byte boundary is written in parts (flag 1 first, 2 middle, 3 last; 0 a
whole record) with that magic left out between them; reading puts it back.

A payload is an ``IRHeader`` (uint32 flag, float32 label, uint64 id,
uint64 id2: 24 bytes) followed, when ``flag > 0``, by ``flag`` float32
labels that replace the single one, then the encoded image (JPEG). As
insightface's tools write a face set, record 0 is a header whose labels
``(first, last)`` give the range of identity header records: the images
are records ``1 .. first - 1``, the identities number ``last - first``,
and each image's class id is its (first) label. Without such a header
(record 0 with ``flag == 0``) every indexed record is an image, and the
identities number ``property``'s first field, else the largest label + 1.

The set is prepared once, like an image folder, into array_record records
by the TFDS builder `UserRecordIO` (``preparation.recordio_dir``):
``image`` (uint8 RGB, resized to ``config.input.image_size`` when given,
else every image must share the first one's size), ``label`` (the class
id) and ``record`` (the index in ``train.idx``). Split ``train`` holds
every image in index order; split ``test`` holds a copy of each identity's
first image, so the closed-set metrics are a fit check on training
images, not a held-out measure (the face sets' held-out measures are the
verification sets). The prepared copy lives in ``DATA_DIR/user_recordio/
<folder name>_<fingerprint>/1.1.0``; the fingerprint hashes the sizes and
modification times of ``train.rec``, ``train.idx`` and ``property`` and
the image size. Stored images are raw: CASIA-WebFace (0.49M images) at
112 x 112 takes about 18 GB, MS1M-v2 (5.8M) about 220 GB.
"""

import dataclasses
import hashlib
import io
import os
import re
import struct

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from input_pipeline.datasets import image_folder

BUILDER_NAME = 'user_recordio'
REC_NAME = 'train.rec'
IDX_NAME = 'train.idx'
PROPERTY_NAME = 'property'
SPLITS = ('train', 'test')
MAGIC = 0xCED7230A
# The lower 29 bits of a record's second word are its payload length.
LENGTH_BITS = 29
_WORDS = struct.Struct('<II')
IR_HEADER = struct.Struct('<IfQQ')
_MAGIC_BYTES = struct.pack('<I', MAGIC)


class RecordIOError(ValueError):
  """A missing, corrupt or foreign RecordIO file."""


def read_index(idx_path: str) -> dict[int, int]:
  """Record index -> byte offset, from a ``train.idx`` file.

  Raises:
    RecordIOError: for a missing file or a line that is not
      ``<index>\\t<offset>``.
  """
  if not os.path.isfile(idx_path):
    raise RecordIOError(f'recordio: {idx_path!r} does not exist')
  offsets = {}
  with open(idx_path) as file:
    for number, line in enumerate(file, 1):
      if not line.strip():
        continue
      fields = line.split()
      if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise RecordIOError(
          f'recordio: {idx_path}:{number}: expected "<index>\\t<offset>", '
          f'received {line.strip()!r}'
        )
      offsets[int(fields[0])] = int(fields[1])
  if not offsets:
    raise RecordIOError(f'recordio: {idx_path!r} indexes no record')
  return offsets


class RecordFile:
  """Random access to the records of a ``train.rec`` by index.

  Not thread-safe (one open file and its position).
  """

  def __init__(self, rec_path: str, offsets: dict[int, int]):
    if not os.path.isfile(rec_path):
      raise RecordIOError(f'recordio: {rec_path!r} does not exist')
    self.path = rec_path
    self.offsets = offsets
    self._file = open(rec_path, 'rb')  # noqa: SIM115 (closed by close()).

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> 'RecordFile':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def error(self, index: int, offset: int, what: str) -> RecordIOError:
    """A one-line error naming the file, the record and its offset."""
    return RecordIOError(
      f'recordio: {self.path}: record index {index} at offset {offset}: '
      f'{what}; the file is corrupt or not MXNet RecordIO'
    )

  def read(self, index: int, *, max_bytes: int | None = None) -> bytes:
    """The payload of record `index` (its parts joined).

    Args:
      index: a record index of ``train.idx``.
      max_bytes: read only this many leading bytes of a whole (one-part)
        record; a record in parts is read whole.

    Raises:
      RecordIOError: for an index not in ``train.idx``, a bad magic or a
        payload cut short, naming the index and the offset.
    """
    if index not in self.offsets:
      raise RecordIOError(
        f'recordio: {self.path}: record index {index} is not in the index file'
      )
    offset = self.offsets[index]
    parts = []
    while True:
      self._file.seek(offset)
      words = self._file.read(_WORDS.size)
      if len(words) < _WORDS.size:
        raise self.error(index, offset, 'the file ends inside the header')
      magic, length_and_flag = _WORDS.unpack(words)
      if magic != MAGIC:
        raise self.error(
          index, offset, f'bad magic 0x{magic:08x} (expected 0x{MAGIC:08x})'
        )
      length = length_and_flag & ((1 << LENGTH_BITS) - 1)
      flag = length_and_flag >> LENGTH_BITS
      if flag not in ((0, 1) if not parts else (2, 3)):
        raise self.error(index, offset, f'unexpected part flag {flag}')
      wanted = length
      if flag == 0 and max_bytes is not None:
        wanted = min(length, max_bytes)
      payload = self._file.read(wanted)
      if len(payload) < wanted:
        raise self.error(
          index,
          offset,
          f'payload of {length} bytes cut short at {len(payload)}',
        )
      parts.append(payload)
      if flag in (0, 3):
        break
      # Parts 1 and 2 lost the magic that followed them.
      parts.append(_MAGIC_BYTES)
      offset += _WORDS.size + length + (-length) % 4
    return b''.join(parts)


@dataclasses.dataclass(frozen=True)
class Header:
  """A record's ``IRHeader`` with its labels.

  Attributes:
    flag: 0, or the number of float32 labels after the header.
    labels: the label (flag 0) or the `flag` labels.
    id: the record id.
    id2: the second id.
  """

  flag: int
  labels: tuple[float, ...]
  id: int
  id2: int


def unpack(payload: bytes) -> tuple[Header, bytes]:
  """The header and the image bytes of a payload.

  Raises:
    ValueError: for a payload shorter than its header and labels.
  """
  if len(payload) < IR_HEADER.size:
    raise ValueError(
      f'a payload of {len(payload)} bytes has no {IR_HEADER.size}-byte IRHeader'
    )
  flag, label, record_id, id2 = IR_HEADER.unpack_from(payload)
  rest = IR_HEADER.size
  if flag == 0:
    labels = (float(label),)
  else:
    if len(payload) < rest + 4 * flag:
      raise ValueError(
        f'an IRHeader with flag {flag} needs {4 * flag} label bytes; the '
        f'payload has {len(payload) - rest}'
      )
    labels = tuple(
      float(v) for v in np.frombuffer(payload, '<f4', flag, offset=rest)
    )
    rest += 4 * flag
  return Header(flag, labels, record_id, id2), payload[rest:]


@dataclasses.dataclass(frozen=True)
class RecordIOListing:
  """A RecordIO folder's files, fingerprinted (nothing decoded).

  Attributes:
    root: the absolute folder path.
    fingerprint: a hex digest of the files' names, sizes and modification
      times.
  """

  root: str
  fingerprint: str

  @property
  def rec_path(self) -> str:
    return os.path.join(self.root, REC_NAME)

  @property
  def idx_path(self) -> str:
    return os.path.join(self.root, IDX_NAME)


def list_recordio(root: str) -> RecordIOListing:
  """Checks that `root` holds ``train.rec`` and ``train.idx``; fingerprints.

  Raises:
    RecordIOError: when `root` or one of the two files is missing.
  """
  root = os.path.abspath(os.path.expanduser(root))
  missing = [
    name
    for name in (REC_NAME, IDX_NAME)
    if not os.path.isfile(os.path.join(root, name))
  ]
  if missing:
    raise RecordIOError(
      f'config.input.recordio={root!r} must hold {REC_NAME} and {IDX_NAME}; '
      f'missing: {", ".join(missing)}'
    )
  digest = hashlib.sha256()
  for name in (REC_NAME, IDX_NAME, PROPERTY_NAME):
    path = os.path.join(root, name)
    if os.path.isfile(path):
      stat = os.stat(path)
      digest.update(f'{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
  return RecordIOListing(root=root, fingerprint=digest.hexdigest())


def read_property(root: str) -> int | None:
  """The identity count of ``root/property`` (``N,H,W``), or None."""
  path = os.path.join(root, PROPERTY_NAME)
  if not os.path.isfile(path):
    return None
  with open(path) as file:
    text = file.read().strip()
  first = text.split(',')[0].strip()
  if not first.isdigit():
    raise RecordIOError(
      f'recordio: {path!r} must read "<identities>,<height>,<width>", '
      f'received {text[:80]!r}'
    )
  return int(first)


@dataclasses.dataclass(frozen=True)
class RecordIOContents:
  """What a scan of every image header found.

  Attributes:
    image_indices: int64 ``[n]`` record indices of the images.
    labels: int64 ``[n]`` their class ids.
    num_identities: the classes.
    test_indices: int64 record indices of each identity's first image.
  """

  image_indices: np.ndarray
  labels: np.ndarray
  num_identities: int
  test_indices: np.ndarray


def scan(listing: RecordIOListing) -> RecordIOContents:
  """Reads every image record's header (not its image).

  Raises:
    RecordIOError: for a corrupt record (naming its index and offset), an
      image record the index file lacks, or a label outside the identity
      count.
  """
  offsets = read_index(listing.idx_path)
  with RecordFile(listing.rec_path, offsets) as records:

    def header_of(index, max_bytes=None):
      payload = records.read(index, max_bytes=max_bytes)
      try:
        return unpack(payload)[0]
      except ValueError as error:
        raise records.error(index, offsets[index], str(error)) from None

    num_identities = None
    first = min(offsets)
    header = header_of(first) if first == 0 else None
    if header is not None and header.flag > 0 and len(header.labels) >= 2:
      start, stop = int(header.labels[0]), int(header.labels[1])
      image_indices = np.arange(1, start, dtype=np.int64)
      num_identities = stop - start
    else:
      image_indices = np.array(sorted(offsets), dtype=np.int64)
    labels = np.empty(len(image_indices), np.int64)
    for position, index in enumerate(image_indices):
      # The header and up to 255 float labels: no image bytes.
      header = header_of(int(index), IR_HEADER.size + 1024)
      labels[position] = int(header.labels[0])
  from_property = read_property(listing.root)
  if num_identities is None:
    num_identities = from_property or int(labels.max()) + 1
  elif from_property is not None and from_property != num_identities:
    logging.warning(
      'recordio %s: property gives %d identities, the header records %d; '
      'using the header records.',
      listing.root,
      from_property,
      num_identities,
    )
  bad = np.flatnonzero((labels < 0) | (labels >= num_identities))
  if bad.size:
    raise RecordIOError(
      f'recordio: {listing.rec_path}: record index {image_indices[bad[0]]} '
      f'has label {labels[bad[0]]}, outside the {num_identities} identities '
      '[0, N) the headers give'
    )
  _, first_positions = np.unique(labels, return_index=True)
  return RecordIOContents(
    image_indices=image_indices,
    labels=labels,
    num_identities=num_identities,
    test_indices=image_indices[np.sort(first_positions)],
  )


def decode(data: bytes, image_size, where: str) -> np.ndarray:
  """Encoded image bytes as uint8 RGB ``[H, W, 3]``, resized when asked."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    image = Image.open(io.BytesIO(data))
    image = image.convert('RGB')
  except Exception as error:  # PIL raises many types for bad data.
    raise RecordIOError(
      f'recordio: {where}: cannot decode the image: '
      f'{type(error).__name__}: {error}'
    ) from error
  sizes = image_folder.image_height_width(image_size)
  if sizes is not None and image.size != (sizes[1], sizes[0]):
    image = image.resize((sizes[1], sizes[0]), Image.Resampling.BILINEAR)
  return np.asarray(image, dtype=np.uint8)


def config_name(listing: RecordIOListing, image_size) -> str:
  """The builder config name: the folder's name and a content hash."""
  slug = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(listing.root))
  digest = hashlib.sha256(
    f'{listing.fingerprint}\0{image_folder.size_key(image_size)}'.encode()
  ).hexdigest()
  return f'{slug.strip("_") or "recordio"}_{digest[:16]}'


@dataclasses.dataclass(eq=False, repr=False)
class RecordIOConfig(tfds.core.BuilderConfig):
  """One RecordIO folder at one image size.

  Attributes:
    listing: the folder.
    contents: its scanned headers.
    image_size: the resize side or ``(height, width)``, or None.
    image_shape: the stored ``(H, W, 3)``.
  """

  listing: RecordIOListing | None = None
  contents: RecordIOContents | None = None
  image_size: image_folder.ImageSize = None
  image_shape: tuple[int, int, int] = (0, 0, 3)

  def __repr__(self) -> str:
    # TFDS logs the config; the default repr would list every record.
    return f'RecordIOConfig({self.name!r}, image_shape={self.image_shape})'


def make_config(listing: RecordIOListing, image_size) -> RecordIOConfig:
  """Scans the headers and fixes the stored image shape.

  Raises:
    RecordIOError: for a corrupt record or a bad label (`scan`), or a
      folder without images.
  """
  contents = scan(listing)
  if not len(contents.image_indices):
    raise RecordIOError(f'recordio: {listing.rec_path!r} holds no image')
  sizes = image_folder.image_height_width(image_size)
  if sizes is None:
    first = int(contents.image_indices[0])
    with RecordFile(listing.rec_path, read_index(listing.idx_path)) as records:
      image = decode(
        unpack(records.read(first))[1], None, f'record index {first}'
      )
    sizes = image.shape[:2]
  return RecordIOConfig(
    name=config_name(listing, image_size),
    description=f'RecordIO images of {listing.root}',
    listing=listing,
    contents=contents,
    image_size=image_size,
    image_shape=(*sizes, 3),
  )


class UserRecordIO(tfds.core.GeneratorBasedBuilder):
  """An MXNet RecordIO face set: train and a test copy of first images."""

  # TFDS would name the class user_record_io.
  name = BUILDER_NAME
  # 1.1.0: the pixels as one bytes value (TFDS's Encoding.BYTES) instead of
  # one int64 per pixel, which took 1.2 ms to parse for a 224 x 224 image
  # (as image folders); a set prepared as 1.0.0 is prepared again once.
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Raw uint8 RGB images, class ids from headers.',
    '1.1.0': 'Raw uint8 images stored as bytes.',
  }

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if not isinstance(config, RecordIOConfig) or config.contents is None:
      raise ValueError('UserRecordIO needs config=make_config(listing, size)')
    return tfds.core.DatasetInfo(
      builder=self,
      description=config.description,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(
            shape=config.image_shape,
            dtype=np.uint8,
            encoding=tfds.features.Encoding.BYTES,
          ),
          'label': tfds.features.Scalar(dtype=np.int64),
          'record': tfds.features.Scalar(dtype=np.int64),
        }
      ),
      # The number of classes, read back by the pipeline.
      metadata=tfds.core.MetadataDict(
        num_identities=config.contents.num_identities
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    contents = self.builder_config.contents
    return {
      'train': self._generate_examples(contents.image_indices),
      'test': self._generate_examples(contents.test_indices),
    }

  def _generate_examples(self, indices):
    config = self.builder_config
    listing = config.listing
    with RecordFile(listing.rec_path, read_index(listing.idx_path)) as records:
      for position, index in enumerate(indices):
        index = int(index)
        where = f'{listing.rec_path}: record index {index}'
        try:
          header, data = unpack(records.read(index))
        except ValueError as error:
          if isinstance(error, RecordIOError):
            raise
          raise RecordIOError(f'recordio: {where}: {error}') from None
        image = decode(data, config.image_size, where)
        if image.shape != config.image_shape:
          raise RecordIOError(
            f'recordio: {where}: the image is {image.shape[1]}x'
            f'{image.shape[0]}, the first one {config.image_shape[1]}x'
            f'{config.image_shape[0]}; set config.input.image_size'
          )
        yield (
          position,
          {
            'image': image,
            'label': int(header.labels[0]),
            'record': index,
          },
        )
