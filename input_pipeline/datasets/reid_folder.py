"""Person re-identification data sets as distributed: their images listed.

Market-1501 and DukeMTMC-reID (one folder per split, identity and camera
in every file name)::

  ROOT/bounding_box_train/0002_c1s1_000451_03.jpg
  ROOT/query/0001_c1s1_001051_00.jpg
  ROOT/bounding_box_test/0000_c1s1_000151_01.jpg   (0000: distractor)
  ROOT/bounding_box_test/-1_c1s1_000401_03.jpg     (-1: junk)

MSMT17 (list files naming each image and its identity; the camera is the
third field of the file name, counted from 1)::

  ROOT/train/0000/0000_000_01_0303morning_0015_0.jpg
  ROOT/test/...
  ROOT/list_train.txt, list_val.txt, list_query.txt, list_gallery.txt
  (lines ``<path relative to train/ or test/> <identity>``)

The conventions are torchreid's readers' (``torchreid/data/datasets/
image/market1501.py``, ``msmt17.py``): identity and camera parsed with the
pattern ``([-\\d]+)_c(\\d)``; junk images (identity -1) dropped from every
split; distractors (identity 0) kept in the gallery; cameras counted from
0; training identities relabelled 0..N-1 in sorted order (they are class
ids), query and gallery identities kept as they are (they only need to
compare equal); MSMT17's validation list is not part of its training
split (torchreid's default without ``combineall``).

A listing is prepared once, like an image folder, into array_record
records by the TFDS builder `UserReidFolder` (``preparation.reid_folder_dir``):
``image`` (uint8, resized to ``config.input.image_size``, RGB), ``label``
(the identity as above), ``camera`` (from 0) and ``path`` (relative to
ROOT), in splits ``train``, ``query`` and ``gallery`` in listing order.
The prepared copy lives in ``DATA_DIR/user_reid_folder/<folder name>_
<layout>_<fingerprint>/1.1.0``; the fingerprint hashes every listed
image's relative path, identity, camera, size and modification time and
the image size. Stored images are raw: Market-1501 at 256 x 128 takes
about 3.2 GB, MSMT17 about 12 GB.
"""

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets import image_folder

REID_SPLITS = ('train', 'query', 'gallery')
JUNK_ID = -1
MARKET_FOLDERS = {
  'train': 'bounding_box_train',
  'query': 'query',
  'gallery': 'bounding_box_test',
}
MSMT17_LISTS = {
  'train': ('train', 'list_train.txt'),
  'query': ('test', 'list_query.txt'),
  'gallery': ('test', 'list_gallery.txt'),
}
LAYOUTS = ('market1501', 'dukemtmc', 'msmt17')
BUILDER_NAME = 'user_reid_folder'
_NAME_PATTERN = re.compile(r'([-\d]+)_c(\d)')
_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


@dataclasses.dataclass(frozen=True)
class ReidImage:
  """One image: its path, identity and camera.

  Attributes:
    path: the absolute image path.
    identity: the class id (training split: relabelled 0..N-1) or the
      identity as distributed (query and gallery; 0 for distractors).
    camera: the camera id, counted from 0.
  """

  path: str
  identity: int
  camera: int


def parse_market_name(name: str) -> tuple[int, int]:
  """Identity and camera (from 0) of a Market-1501 / DukeMTMC-reID file.

  Args:
    name: a file name such as ``'0002_c1s1_000451_03.jpg'``.

  Returns:
    ``(identity, camera)``, e.g. ``(2, 0)``; identity -1 for junk images.

  Raises:
    ValueError: when the name does not start ``<identity>_c<camera>``.
  """
  match = _NAME_PATTERN.match(os.path.basename(name))
  if match is None:
    raise ValueError(
      f'a re-id image name must start <identity>_c<camera> (e.g. '
      f'0002_c1s1_000451_03.jpg), received {name!r}'
    )
  return int(match.group(1)), int(match.group(2)) - 1


def _relabelled(images: list[ReidImage]) -> tuple[ReidImage, ...]:
  identities = sorted({image.identity for image in images})
  codes = {identity: code for code, identity in enumerate(identities)}
  return tuple(
    dataclasses.replace(image, identity=codes[image.identity])
    for image in images
  )


def _check_root(root: str, required: tuple[str, ...]) -> str:
  root = os.path.abspath(os.path.expanduser(root))
  missing = [
    name for name in required if not os.path.exists(os.path.join(root, name))
  ]
  if missing:
    raise ValueError(
      f'{root!r} must hold {", ".join(required)}; missing: {", ".join(missing)}'
    )
  return root


def list_market1501(root: str) -> dict[str, tuple[ReidImage, ...]]:
  """The train, query and gallery images of a Market-1501-style folder.

  DukeMTMC-reID has the same layout and names.

  Args:
    root: the folder holding ``bounding_box_train/``, ``query/`` and
      ``bounding_box_test/``.

  Returns:
    Split name -> its images sorted by file name, junk dropped.

  Raises:
    ValueError: on a missing folder, a split without images or an image
      name without identity and camera.
  """
  root = _check_root(root, tuple(MARKET_FOLDERS.values()))
  result = {}
  for split, folder in MARKET_FOLDERS.items():
    images = []
    for name in sorted(os.listdir(os.path.join(root, folder))):
      if not name.lower().endswith(_IMAGE_EXTENSIONS):
        continue
      identity, camera = parse_market_name(name)
      if identity == JUNK_ID:
        continue
      images.append(
        ReidImage(os.path.join(root, folder, name), identity, camera)
      )
    if not images:
      raise ValueError(f'{os.path.join(root, folder)!r} holds no re-id image')
    result[split] = _relabelled(images) if split == 'train' else tuple(images)
  return result


def list_msmt17(root: str) -> dict[str, tuple[ReidImage, ...]]:
  """The train, query and gallery images of MSMT17 from its list files.

  Args:
    root: the folder holding ``train/``, ``test/`` and the list files.

  Returns:
    Split name -> its images in list order.

  Raises:
    ValueError: on a missing folder or list file, a malformed line or an
      empty list.
  """
  required = ('train', 'test') + tuple(
    name for _, name in MSMT17_LISTS.values()
  )
  root = _check_root(root, required)
  result = {}
  for split, (folder, list_name) in MSMT17_LISTS.items():
    images = []
    list_path = os.path.join(root, list_name)
    with open(list_path) as file:
      for number, line in enumerate(file, 1):
        if not line.strip():
          continue
        fields = line.split()
        name_fields = os.path.basename(fields[0]).split('_')
        if len(fields) != 2 or len(name_fields) < 3:
          raise ValueError(
            f'{list_path}:{number}: expected "<path> <identity>" with a '
            f'name like 0000_000_01_0303morning_0015_0.jpg, received '
            f'{line.strip()!r}'
          )
        images.append(
          ReidImage(
            os.path.join(root, folder, fields[0]),
            int(fields[1]),
            int(name_fields[2]) - 1,
          )
        )
    if not images:
      raise ValueError(f'{list_path!r} lists no image')
    result[split] = _relabelled(images) if split == 'train' else tuple(images)
  return result


def list_layout(root: str, layout: str) -> dict[str, tuple[ReidImage, ...]]:
  """The splits of `root` read as `layout` (one of `LAYOUTS`).

  Raises:
    ValueError: for an unknown layout, or what the listing raises.
  """
  if layout in ('market1501', 'dukemtmc'):
    return list_market1501(root)
  if layout == 'msmt17':
    return list_msmt17(root)
  raise ValueError(
    f'config.input.reid_layout must be one of {LAYOUTS}, received {layout!r}'
  )


@dataclasses.dataclass(frozen=True)
class ReidListing:
  """A re-id folder's images, listed and fingerprinted.

  Attributes:
    root: the absolute folder path.
    layout: one of `LAYOUTS`.
    images: split name (`REID_SPLITS`) -> its images.
    num_identities: training identities (the classes, 0..N-1).
    fingerprint: a hex digest of every image's relative path, identity,
      camera, size and modification time.
  """

  root: str
  layout: str
  images: dict[str, tuple[ReidImage, ...]]
  num_identities: int
  fingerprint: str


def list_reid_folder(root: str, layout: str) -> ReidListing:
  """Lists and fingerprints `root` as `layout` (`list_layout`)."""
  root = os.path.abspath(os.path.expanduser(root))
  images = list_layout(root, layout)
  digest = hashlib.sha256(layout.encode())
  for split in REID_SPLITS:
    for image in images[split]:
      stat = os.stat(image.path)
      digest.update(
        f'{split}\0{os.path.relpath(image.path, root)}\0{image.identity}\0'
        f'{image.camera}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode()
      )
  return ReidListing(
    root=root,
    layout=layout,
    images=images,
    num_identities=len({image.identity for image in images['train']}),
    fingerprint=digest.hexdigest(),
  )


def config_name(listing: ReidListing, image_size) -> str:
  """The builder config name: folder name, layout and a content hash."""
  slug = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(listing.root))
  digest = hashlib.sha256(
    f'{listing.fingerprint}\0{image_folder.size_key(image_size)}'.encode()
  ).hexdigest()
  return f'{slug.strip("_") or "reid"}_{listing.layout}_{digest[:16]}'


@dataclasses.dataclass(eq=False, repr=False)
class ReidFolderConfig(tfds.core.BuilderConfig):
  """One re-id folder at one image size.

  Attributes:
    listing: the folder's images.
    image_shape: the stored ``(H, W, 3)``.
  """

  listing: ReidListing | None = None
  image_shape: tuple[int, int, int] = (0, 0, 3)

  def __repr__(self) -> str:
    # TFDS logs the config; the default repr would list every image.
    return f'ReidFolderConfig({self.name!r}, image_shape={self.image_shape})'


def make_config(listing: ReidListing, image_size) -> ReidFolderConfig:
  """The builder config of `listing` stored at `image_size`.

  Args:
    listing: `list_reid_folder`'s listing.
    image_size: a side or ``(height, width)``; re-id images differ in size
      (DukeMTMC-reID, MSMT17), so it is required.

  Raises:
    ValueError: for a missing or bad image size.
  """
  sizes = image_folder.image_height_width(image_size)
  if sizes is None:
    raise ValueError(
      "config.input.name='reid_folder' needs config.input.image_size, e.g. "
      '(256, 128) (height, width) as the re-id baselines resize people'
    )
  return ReidFolderConfig(
    name=config_name(listing, image_size),
    description=f'Re-id images of {listing.root} ({listing.layout})',
    listing=listing,
    image_shape=(*sizes, 3),
  )


class UserReidFolder(tfds.core.GeneratorBasedBuilder):
  """A person re-identification folder: train, query and gallery."""

  # 1.1.0: the pixels as one bytes value (TFDS's Encoding.BYTES) instead of
  # one int64 per pixel, which took 1.2 ms to parse for a 224 x 224 image
  # (as image folders); a set prepared as 1.0.0 is prepared again once.
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Raw uint8 RGB images, identities and cameras.',
    '1.1.0': 'Raw uint8 images stored as bytes.',
  }

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if not isinstance(config, ReidFolderConfig) or config.listing is None:
      raise ValueError('UserReidFolder needs config=make_config(listing, size)')
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
          # Training split: class ids 0..N-1; query and gallery: the
          # identities as distributed (0: distractor).
          'label': tfds.features.Scalar(dtype=np.int64),
          'camera': tfds.features.Scalar(dtype=np.int64),
          'path': tfds.features.Text(),
        }
      ),
      # The number of classes, read back by the pipeline.
      metadata=tfds.core.MetadataDict(
        num_identities=config.listing.num_identities
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    return {split: self._generate_examples(split) for split in REID_SPLITS}

  def _generate_examples(self, split):
    config = self.builder_config
    for index, image in enumerate(config.listing.images[split]):
      yield (
        index,
        {
          'image': image_folder.decode_image(
            image.path, 3, config.image_shape[:2]
          ),
          'label': image.identity,
          'camera': image.camera,
          'path': os.path.relpath(image.path, config.listing.root),
        },
      )
