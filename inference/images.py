"""Images as a trained model's evaluation saw them.

Two sources:

* Image files (`list_folder`, `Transform.load`): decoded as the model's
  data set was prepared, then put through the data set's deterministic
  evaluation transform (`augment.make_batch` without draws: a resize where
  the size differs; for large images the central crop) and its input
  normalization (`augment.normalize`). Files are 8-bit: white is 255,
  whatever the data set stores (the digits store 0..16).
  For a model trained on an image folder the files of that folder become
  exactly the evaluation's inputs.
* Examples of the model's prepared data set: `input_pipeline.Dataset.images`
  reads them through the evaluation's own batches.
"""

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from input_pipeline import augment
from input_pipeline.datasets import catalog, image_folder

# Files are 8-bit images.
FILE_MAX_PIXEL_VALUE = 255


@dataclasses.dataclass(frozen=True)
class Transform:
  """Image file -> model input, as the data set's evaluation images.

  Attributes:
    image_shape: the model's input ``(H, W, C)``.
    kind: the data set's transform (`augment.KINDS`), run without draws.
    channels: the channels the images are decoded to and transformed with
      (the stored ones; the normalization may repeat grey to RGB).
    decode_size: image folders store images resized to this side when
      prepared; files are resized the same way before the transform.
    normalization: ``config.input.normalization`` (`augment.normalize`).
  """

  image_shape: tuple[int, int, int]
  kind: str
  channels: int
  decode_size: int | None = None
  normalization: str = 'none'

  @classmethod
  def of_data_set(
    cls,
    spec: catalog.DataSetSpec,
    image_shape: tuple[int, int, int],
    image_size: int | None,
    normalization: str | None,
  ) -> 'Transform':
    """The transform of a data set.

    Args:
      spec: its spec, completed from the prepared data
        (`sources.open_set`).
      image_shape: the model's input shape (`DatasetInfo.image_shape`).
      image_size: ``config.input.image_size``.
      normalization: ``config.input.normalization``.
    """
    # As `input_pipeline.Dataset` builds its batches: the stored channels
    # where the set fixes them, else the model's.
    channels = (
      spec.image_shape[-1] if spec.image_shape is not None else image_shape[-1]
    )
    return cls(
      image_shape=tuple(image_shape),
      kind=spec.augmentation,
      channels=channels,
      decode_size=image_size
      if spec.origin in ('folder', 'reid', 'recordio')
      else None,
      normalization=augment.check_normalization(normalization),
    )

  def load(self, paths: Sequence[str]) -> np.ndarray:
    """float32 ``[len(paths), H, W, C]`` model inputs (in [0, 1] unless
    normalised).

    Raises:
      ValueError: for a file PIL cannot read, naming it.
    """
    # The preparation's own decoding: PIL, grey or RGB, its resize.
    decoded = [
      image_folder.decode_image(path, self.channels, self.decode_size)
      for path in paths
    ]
    batch = augment.make_batch(
      decoded,
      kind=self.kind,
      out_shape=(*self.image_shape[:2], self.channels),
      max_pixel_value=FILE_MAX_PIXEL_VALUE,
      draws=None,
    )
    return augment.normalize(batch, self.normalization)


@dataclasses.dataclass(frozen=True)
class FolderImages:
  """The image files of a folder, with classes when it has class folders.

  Attributes:
    root: the absolute folder path.
    paths: absolute file paths, sorted by class then name.
    labels: int64 ``[n]`` class ids (positions in `class_names`), or None.
    class_names: the sorted class folder names, or None.
  """

  root: str
  paths: tuple[str, ...]
  labels: np.ndarray | None
  class_names: tuple[str, ...] | None


def _image_files(directory: str) -> list[str]:
  return sorted(
    entry.path
    for entry in os.scandir(directory)
    if entry.is_file()
    and not entry.name.startswith('.')
    and entry.name.lower().endswith(image_folder.IMAGE_EXTENSIONS)
  )


def list_folder(root: str) -> FolderImages:
  """``ROOT/*.png|jpg|jpeg`` (no labels) or ``ROOT/<class>/*`` (labels).

  Args:
    root: a folder holding either image files or class folders of image
      files (e.g. an image folder's ``ROOT/test``), not both.

  Returns:
    The listing.

  Raises:
    ValueError: when `root` is not a directory, mixes image files and
      class folders, or holds no image.
  """
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise ValueError(f'{root!r} is not a directory of images')
  files = _image_files(root)
  class_names = tuple(
    sorted(
      entry.name
      for entry in os.scandir(root)
      if entry.is_dir() and not entry.name.startswith('.')
    )
  )
  if files and class_names:
    raise ValueError(
      f'{root!r} holds both image files and folders ({class_names[0]!r}, '
      '...): give either the images or one folder per class'
    )
  if files:
    return FolderImages(root, tuple(files), None, None)
  paths, labels = [], []
  for label, name in enumerate(class_names):
    class_files = _image_files(os.path.join(root, name))
    paths.extend(class_files)
    labels.extend([label] * len(class_files))
  if not paths:
    raise ValueError(
      f'{root!r} holds no {"/".join(image_folder.IMAGE_EXTENSIONS)} image, '
      'neither directly nor in class folders'
    )
  return FolderImages(
    root, tuple(paths), np.asarray(labels, np.int64), class_names
  )
