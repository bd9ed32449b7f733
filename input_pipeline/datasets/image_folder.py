"""The user's own images, prepared once into array_record by a TFDS builder.

Expected layout (file names and class folder names are free; only the
extensions .png, .jpg and .jpeg count, in any letter case; other files are
skipped with a warning)::

  ROOT/train/<class>/*.png|jpg|jpeg
  ROOT/test/<class>/*.png|jpg|jpeg

Tiny ImageNet as distributed is read as such a folder too: a ROOT holding
``val/val_annotations.txt`` (lines ``<file>\t<wnid>\t<box>``) is listed
as ``train/<wnid>/images/*.JPEG`` for training and ``val/images/*``,
labelled by the annotations, for testing (its ``test/`` has no labels and
is not read)::

  ROOT/train/n01443537/images/n01443537_0.JPEG
  ROOT/val/images/val_0.JPEG
  ROOT/val/val_annotations.txt

Class names are the sorted union of the class folder names of both splits,
and class ids are their positions in that list. Images are decoded with PIL;
grey images (modes 1, L, I, I;16, F) stay one-channel when every image of the
folder is grey, anything else is converted to RGB. With ``image_size`` (a
side, or a ``(height, width)`` pair) every image is resized (bilinear,
aspect ratio not kept) to that size; without it all images must share one
size.

The prepared copy lives in
``DATA_DIR/user_image_folder/<folder name>_<fingerprint>/1.1.0``. The
fingerprint hashes every image's relative path, size and modification time
and the image size, so editing the folder leads to a fresh preparation
instead of stale data; an unchanged folder is prepared only once. Stored
images are raw uint8 tensors: fast to read, ``H * W * C`` bytes each on disk
(one bytes value per image; version 1.0.0 stored one int64 per pixel).
"""

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

BUILDER_NAME = 'user_image_folder'
SPLITS = ('train', 'test')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
# Where a Tiny ImageNet folder labels its validation images.
TINY_IMAGENET_ANNOTATIONS = ('val', 'val_annotations.txt')
_GREY_MODES = ('1', 'L', 'I', 'I;16', 'F')
# config.input.image_size: a side, a (height, width) pair, or None.
ImageSize = int | tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class FolderListing:
  """The images of a folder, without opening any of them.

  Attributes:
    root: the absolute folder path.
    class_names: sorted class folder names of both splits.
    files: per split, ``(path, class id)`` pairs sorted by class then name.
    fingerprint: a hex digest of the files' relative paths, sizes and
      modification times.
  """

  root: str
  class_names: tuple[str, ...]
  files: dict[str, tuple[tuple[str, int], ...]]
  fingerprint: str


def list_folder(root: str) -> FolderListing:
  """Lists ROOT/{train,test}/<class>/ images and fingerprints them.

  A Tiny ImageNet folder (``val/val_annotations.txt``) is listed by
  `list_tiny_imagenet` instead.

  Args:
    root: the folder holding ``train/`` and ``test/``.

  Returns:
    The listing.

  Raises:
    ValueError: when `root`, ``root/train`` or ``root/test`` is missing, or
      a split holds no image.
  """
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise ValueError(
      f'image_folder must be a directory holding train/ and test/, '
      f'received {root!r}, which is not a directory'
    )
  if os.path.isfile(os.path.join(root, *TINY_IMAGENET_ANNOTATIONS)):
    return list_tiny_imagenet(root)
  classes_per_split = {}
  for split in SPLITS:
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      raise ValueError(
        f'image_folder {root!r} must hold a {split}/ directory with one '
        f'sub-directory per class; {split_dir!r} does not exist'
      )
    classes_per_split[split] = sorted(
      entry.name
      for entry in os.scandir(split_dir)
      if entry.is_dir() and not entry.name.startswith('.')
    )
  class_names = tuple(sorted(set().union(*classes_per_split.values())))
  class_ids = {name: index for index, name in enumerate(class_names)}
  files, digest, skipped = {}, hashlib.sha256(), 0
  for split in SPLITS:
    split_files = []
    for class_name in classes_per_split[split]:
      class_dir = os.path.join(root, split, class_name)
      for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith('.'):
          continue
        if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
          skipped += 1
          continue
        stat = entry.stat()
        relative = os.path.relpath(entry.path, root)
        digest.update(
          f'{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode()
        )
        split_files.append((entry.path, class_ids[class_name]))
    if not split_files:
      raise ValueError(
        f'image_folder {root!r}: {split}/ holds no {"/".join(IMAGE_EXTENSIONS)}'
        f' image in any class sub-directory'
      )
    files[split] = tuple(split_files)
  if skipped:
    logging.warning(
      'image_folder %s: skipped %d files without an image extension %s.',
      root,
      skipped,
      IMAGE_EXTENSIONS,
    )
  return FolderListing(
    root=root,
    class_names=class_names,
    files=files,
    fingerprint=digest.hexdigest(),
  )


def _fingerprint_entry(digest, root: str, path: str) -> None:
  stat = os.stat(path)
  relative = os.path.relpath(path, root)
  digest.update(f'{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())


def list_tiny_imagenet(root: str) -> FolderListing:
  """Lists a Tiny ImageNet folder as an image folder's train and test.

  Args:
    root: the folder holding ``train/<wnid>/images/`` and ``val/images/``
      with ``val/val_annotations.txt``.

  Returns:
    The listing: training images of each class folder (``train/<wnid>/
    images/*``) and the validation images as the test split, both sorted
    by class then name; classes are the sorted training wnids. The
    fingerprint covers the annotations file too.

  Raises:
    ValueError: for a missing folder, an annotation line without a file
      and a wnid, a wnid without a training folder, a missing image, or a
      split without images.
  """
  root = os.path.abspath(os.path.expanduser(root))
  train_dir = os.path.join(root, 'train')
  if not os.path.isdir(train_dir):
    raise ValueError(
      f'Tiny ImageNet folder {root!r} must hold train/<wnid>/images/; '
      f'{train_dir!r} does not exist'
    )
  class_names = tuple(
    sorted(
      entry.name
      for entry in os.scandir(train_dir)
      if entry.is_dir() and not entry.name.startswith('.')
    )
  )
  class_ids = {name: index for index, name in enumerate(class_names)}
  digest = hashlib.sha256()
  train_files = []
  for name in class_names:
    images_dir = os.path.join(train_dir, name, 'images')
    if not os.path.isdir(images_dir):
      continue
    for entry in sorted(os.scandir(images_dir), key=lambda e: e.name):
      if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
        _fingerprint_entry(digest, root, entry.path)
        train_files.append((entry.path, class_ids[name]))
  annotations = os.path.join(root, *TINY_IMAGENET_ANNOTATIONS)
  _fingerprint_entry(digest, root, annotations)
  test_files = []
  with open(annotations) as file:
    for number, line in enumerate(file, 1):
      if not line.strip():
        continue
      fields = line.split('\t')
      if len(fields) < 2 or fields[1].strip() not in class_ids:
        raise ValueError(
          f'{annotations}:{number}: expected "<file>\\t<wnid>\\t..." with '
          f'a wnid of train/, received {line.strip()!r}'
        )
      path = os.path.join(root, 'val', 'images', fields[0].strip())
      if not os.path.isfile(path):
        raise ValueError(f'{annotations}:{number}: {path!r} does not exist')
      test_files.append((path, class_ids[fields[1].strip()]))
  test_files.sort(key=lambda item: (item[1], os.path.basename(item[0])))
  for path, _ in test_files:
    _fingerprint_entry(digest, root, path)
  for split, files in (('train', train_files), ('test', test_files)):
    if not files:
      raise ValueError(f'Tiny ImageNet folder {root!r}: no {split} image')
  return FolderListing(
    root=root,
    class_names=class_names,
    files={'train': tuple(train_files), 'test': tuple(test_files)},
    fingerprint=digest.hexdigest(),
  )


def image_height_width(image_size: ImageSize) -> tuple[int, int] | None:
  """``(height, width)`` of ``config.input.image_size``, or None.

  Args:
    image_size: None, a side (a square), or a ``(height, width)`` pair
      (re-id's 256 x 128 people).

  Raises:
    ValueError: for anything else, or a size that is not positive.
  """
  if image_size is None:
    return None
  if isinstance(image_size, (int, np.integer)) and not isinstance(
    image_size, bool
  ):
    sizes = (int(image_size), int(image_size))
  elif (
    isinstance(image_size, (tuple, list))
    and len(image_size) == 2
    and all(
      isinstance(side, (int, np.integer)) and not isinstance(side, bool)
      for side in image_size
    )
  ):
    sizes = (int(image_size[0]), int(image_size[1]))
  else:
    sizes = (0, 0)
  if min(sizes) <= 0:
    raise ValueError(
      'config.input.image_size must be None, a positive side or a (height, '
      f'width) pair of positive ints, received {image_size!r}'
    )
  return sizes


def size_key(image_size: ImageSize) -> str:
  """The image size as a stable string (a side as before, pairs HxW)."""
  sizes = image_height_width(image_size)
  if sizes is None or isinstance(image_size, (int, np.integer)):
    return str(image_size)
  return f'{sizes[0]}x{sizes[1]}'


def config_name(listing: FolderListing, image_size: ImageSize) -> str:
  """The builder config name: the folder's name and a content hash."""
  slug = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(listing.root))
  digest = hashlib.sha256(
    f'{listing.fingerprint}\0{size_key(image_size)}'.encode()
  ).hexdigest()
  return f'{slug.strip("_") or "folder"}_{digest[:16]}'


def _open_image(path: str, draft_size: tuple[int, int] | None = None):
  """PIL-opens and decodes `path`; any failure names the file.

  Args:
    path: the image file.
    draft_size: ``(width, height)``: a JPEG is decoded at 1/2, 1/4 or 1/8
      of its size (PIL's ``Image.draft``, scaling in the DCT domain) when
      both sides stay at least this large; None decodes every pixel.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    image = Image.open(path)
    if draft_size is not None and image.format == 'JPEG':
      image.draft(None, draft_size)
    image.load()
  except Exception as error:  # PIL raises many types for bad files.
    raise ValueError(
      f'image_folder: cannot read image {path!r}: '
      f'{type(error).__name__}: {error}'
    ) from error
  return image


def decode_image(path: str, channels: int, image_size: ImageSize) -> np.ndarray:
  """The image at `path` as uint8 ``[H, W, channels]``, resized to
  `image_size` (a side or ``(height, width)``) unless None.

  A JPEG at least twice the size in both sides is decoded at a reduced
  scale first (`_open_image`), which the bilinear resize then finishes:
  the same picture within JPEG's own error, decoded up to 3x faster
  (benchmarks/README.md, `make bench-jpeg`).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  sizes = image_height_width(image_size)
  image = _open_image(path, None if sizes is None else (sizes[1], sizes[0]))
  image = image.convert('L' if channels == 1 else 'RGB')
  if sizes is not None:
    image = image.resize((sizes[1], sizes[0]), Image.Resampling.BILINEAR)
  array = np.asarray(image, dtype=np.uint8)
  return array.reshape(array.shape[0], array.shape[1], channels)


@dataclasses.dataclass(eq=False, repr=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  """One folder, one image size (a BuilderConfig so each gets its own dir).

  Attributes:
    listing: the folder's files and class names.
    image_size: resize side or ``(height, width)``, or None to keep the
      (common) original size.
    image_shape: the stored ``(H, W, C)``.
  """

  listing: FolderListing | None = None
  image_size: ImageSize = None
  image_shape: tuple[int, int, int] = (0, 0, 0)

  def __repr__(self) -> str:
    # TFDS logs the config; the default repr would list every file.
    return f'ImageFolderConfig({self.name!r}, image_shape={self.image_shape})'


def make_config(root: str, image_size: ImageSize) -> ImageFolderConfig:
  """Scans the folder and fixes the stored image shape.

  Every image's header is read (not its pixels) to find the channel count
  and, without `image_size`, to check that all sizes agree.

  Args:
    root: the folder holding ``train/`` and ``test/``.
    image_size: resize side or ``(height, width)``, or None.

  Returns:
    The builder config.

  Raises:
    ValueError: for a bad layout, an unreadable image (naming its path), a
      non-positive image_size, or differing image sizes without image_size.
  """
  sizes = image_height_width(image_size)
  from PIL import Image  # pylint: disable=g-import-not-at-top

  listing = list_folder(root)
  all_grey, first_size, first_path = True, None, None
  for split in SPLITS:
    for path, _ in listing.files[split]:
      try:
        with Image.open(path) as image:
          mode, size = image.mode, image.size
      except Exception as error:  # PIL raises many types for bad files.
        raise ValueError(
          f'image_folder: cannot read image {path!r}: '
          f'{type(error).__name__}: {error}'
        ) from error
      all_grey &= mode in _GREY_MODES
      if first_size is None:
        first_size, first_path = size, path
      elif image_size is None and size != first_size:
        raise ValueError(
          f'image_folder: images differ in size ({first_path!r} is '
          f'{first_size[0]}x{first_size[1]}, {path!r} is {size[0]}x'
          f'{size[1]}); set config.input.image_size to resize them'
        )
  channels = 1 if all_grey else 3
  if sizes is None:
    image_shape = (first_size[1], first_size[0], channels)
  else:
    image_shape = (*sizes, channels)
  return ImageFolderConfig(
    name=config_name(listing, image_size),
    description=f'Images of {listing.root}',
    listing=listing,
    image_size=image_size,
    image_shape=image_shape,
  )


class UserImageFolder(tfds.core.GeneratorBasedBuilder):
  """A user's ``train/<class>/*`` + ``test/<class>/*`` image folder."""

  # 1.1.0: the pixels as one bytes value (TFDS's Encoding.BYTES) instead of
  # one int64 per pixel, which took 1 ms per 224 x 224 image to parse; a
  # folder prepared as 1.0.0 is prepared again once.
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Raw uint8 images, class ids from folder names.',
    '1.1.0': 'Raw uint8 images stored as bytes.',
  }

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if not isinstance(config, ImageFolderConfig) or config.listing is None:
      raise ValueError(
        'UserImageFolder needs config=make_config(root, image_size)'
      )
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
          'label': tfds.features.ClassLabel(
            names=list(config.listing.class_names)
          ),
          'path': tfds.features.Text(),
        }
      ),
      supervised_keys=('image', 'label'),
      # Keep the generation order, so records follow the documented order.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    config = self.builder_config
    channels = config.image_shape[-1]
    for index, (path, label) in enumerate(config.listing.files[split]):
      image = decode_image(path, channels, config.image_size)
      if image.shape != config.image_shape:
        raise ValueError(
          f'image_folder: {path!r} decodes to shape {image.shape}, '
          f'expected {config.image_shape}; set config.input.image_size'
        )
      yield (
        index,
        {
          'image': image,
          'label': label,
          'path': os.path.relpath(path, config.listing.root),
        },
      )
