r"""Multi-label sets as distributed: NUS-WIDE's lists, MS-COCO 2014's JSON.

NUS-WIDE (``config.input.name='nuswide'``; the 81-concept ground truth
of the official release)::

  ROOT/Concepts81.txt                       (one concept per line)
  ROOT/ImageList/TrainImagelist.txt         (e.g. actor\0001_2124494179.jpg)
  ROOT/ImageList/TestImagelist.txt
  ROOT/Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt
  ROOT/Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt
  ROOT/Flickr/<folder>/<file>.jpg

Line i of a label file is 0 or 1 for line i of the split's image list;
labels are ordered as ``Concepts81.txt`` lists the concepts. List paths
are relative to ``Flickr/`` with ``\`` or ``/`` as separator. Listed
images missing on disk (the release's known missing files) are skipped,
counted and logged; images without any of the concepts are kept (the
official split, 161,789 training and 107,859 test images).

MS-COCO 2014 (``config.input.name='coco2014'``), the split the
multi-label papers use (train2014 to train, val2014 to test)::

  ROOT/annotations/instances_train2014.json
  ROOT/annotations/instances_val2014.json
  ROOT/train2014/COCO_train2014_000000000009.jpg
  ROOT/val2014/COCO_val2014_000000000042.jpg

The JSON is read with `json` (no pycocotools): labels are the categories
in increasing category id (80; ids 1..90 with gaps), an image is labelled
by every category of its annotations, crowd ones included. Images without
any annotation are dropped and counted, which leaves the 82,081 training
and 40,137 validation images the multi-label papers report (ML-GCN, Chen
et al. 2019). Images missing on disk are skipped and counted as above.

A listing is prepared once, like an image folder, into array_record
records by the TFDS builder `UserMultilabelFolder`
(``preparation.multilabel_folder_dir``): ``image`` (uint8, resized to
``config.input.image_size``, RGB), ``labels`` (uint8 multi-hot) and
``path`` (relative to ROOT), in splits ``train`` and ``test`` (NUS-WIDE)
or ``train`` and ``validation`` (COCO), in listing order. The prepared
copy lives in ``DATA_DIR/user_multilabel_folder/<folder name>_<layout>_
<fingerprint>/1.1.0``; the fingerprint hashes the list, label or
annotation files (size and modification time), every kept image's
relative path, labels, size and modification time, and the image size.
Stored images are raw: at 224 x 224, COCO 2014 takes about 18 GB and
NUS-WIDE about 40 GB.
"""

import dataclasses
import hashlib
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from input_pipeline.datasets import image_folder

BUILDER_NAME = 'user_multilabel_folder'
LAYOUTS = ('nuswide', 'coco2014')
# The builder's splits of each layout: (training, testing).
SPLITS = {'nuswide': ('train', 'test'), 'coco2014': ('train', 'validation')}
NUSWIDE_CONCEPTS = 'Concepts81.txt'
NUSWIDE_LISTS = {
  'train': ('ImageList', 'TrainImagelist.txt'),
  'test': ('ImageList', 'TestImagelist.txt'),
}
NUSWIDE_LABELS = ('Groundtruth', 'TrainTestLabels')
NUSWIDE_IMAGES = 'Flickr'
# COCO 2014: split -> (annotation file, image folder).
COCO2014_FILES = {
  'train': (('annotations', 'instances_train2014.json'), 'train2014'),
  'validation': (('annotations', 'instances_val2014.json'), 'val2014'),
}


@dataclasses.dataclass(frozen=True)
class MultilabelListing:
  """A multi-label set's images, listed and fingerprinted.

  Attributes:
    root: the absolute folder path.
    layout: one of `LAYOUTS`.
    class_names: the labels' names, in label order.
    files: split name -> ``(absolute path, label ids)`` per kept image.
    skipped: split name -> ``{'missing': n, 'unlabelled': n}``, the
      listed images left out (missing on disk; COCO: no annotation).
    fingerprint: a hex digest of the listing (module docstring).
  """

  root: str
  layout: str
  class_names: tuple[str, ...]
  files: dict[str, tuple[tuple[str, tuple[int, ...]], ...]]
  skipped: dict[str, dict[str, int]]
  fingerprint: str


def _require(root: str, relatives: list[str]) -> None:
  missing = [
    path for path in relatives if not os.path.exists(os.path.join(root, path))
  ]
  if missing:
    raise ValueError(
      f'{root!r} must hold {", ".join(relatives)}; missing: '
      f'{", ".join(missing)}'
    )


def _lines(path: str) -> list[str]:
  # The release's files have Windows line ends and trailing blanks.
  with open(path, encoding='utf-8', errors='replace') as file:
    return [line.strip() for line in file if line.strip()]


def _digest_file(digest, root: str, path: str) -> None:
  stat = os.stat(path)
  relative = os.path.relpath(path, root)
  digest.update(f'{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())


def _keep_present(digest, root, split, candidates, skipped):
  """The candidates whose image exists, each fingerprinted."""
  kept = []
  for path, labels in candidates:
    try:
      stat = os.stat(path)
    except FileNotFoundError:
      skipped[split]['missing'] += 1
      continue
    digest.update(
      f'{split}\0{os.path.relpath(path, root)}\0{",".join(map(str, labels))}'
      f'\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode()
    )
    kept.append((path, labels))
  return tuple(kept)


def list_nuswide(root: str) -> MultilabelListing:
  """The train and test images of NUS-WIDE with their 81 concepts.

  Args:
    root: the folder holding ``Concepts81.txt``, ``ImageList/``,
      ``Groundtruth/TrainTestLabels/`` and ``Flickr/``.

  Returns:
    The listing; images missing on disk are counted in ``skipped``.

  Raises:
    ValueError: for a missing file, a label file whose length differs
      from its image list, a value other than 0 or 1, or a split left
      without images.
  """
  root = os.path.abspath(os.path.expanduser(root))
  _require(
    root,
    [NUSWIDE_CONCEPTS, NUSWIDE_IMAGES]
    + [os.path.join(*parts) for parts in NUSWIDE_LISTS.values()],
  )
  digest = hashlib.sha256(b'nuswide')
  concepts_path = os.path.join(root, NUSWIDE_CONCEPTS)
  _digest_file(digest, root, concepts_path)
  concepts = tuple(_lines(concepts_path))
  if not concepts:
    raise ValueError(f'{concepts_path!r} lists no concept')
  files, skipped = {}, {}
  for split, parts in NUSWIDE_LISTS.items():
    list_path = os.path.join(root, *parts)
    _digest_file(digest, root, list_path)
    names = _lines(list_path)
    matrix = np.zeros((len(names), len(concepts)), np.uint8)
    for column, concept in enumerate(concepts):
      label_path = os.path.join(
        root, *NUSWIDE_LABELS, f'Labels_{concept}_{split.capitalize()}.txt'
      )
      if not os.path.isfile(label_path):
        raise ValueError(f'NUS-WIDE: {label_path!r} does not exist')
      _digest_file(digest, root, label_path)
      values = _lines(label_path)
      if len(values) != len(names) or not set(values) <= {'0', '1'}:
        raise ValueError(
          f'NUS-WIDE: {label_path!r} must hold one 0 or 1 per line of '
          f'{list_path!r} ({len(names)} lines), received {len(values)} '
          f'lines with values {sorted(set(values))[:5]}'
        )
      matrix[:, column] = np.asarray(values) == '1'
    candidates = [
      (
        os.path.join(root, NUSWIDE_IMAGES, *re.split(r'[\\/]', name)),
        tuple(int(i) for i in np.flatnonzero(row)),
      )
      for name, row in zip(names, matrix, strict=True)
    ]
    skipped[split] = {'missing': 0, 'unlabelled': 0}
    files[split] = _keep_present(digest, root, split, candidates, skipped)
  return _finish(root, 'nuswide', concepts, files, skipped, digest)


def list_coco2014(root: str) -> MultilabelListing:
  """The train2014 and val2014 images of MS-COCO with their 80 labels.

  Args:
    root: the folder holding ``annotations/instances_{train,val}2014.json``
      and the ``train2014/`` and ``val2014/`` images.

  Returns:
    The listing, images in increasing image id; images without any
    annotation or missing on disk are counted in ``skipped``.

  Raises:
    ValueError: for a missing file, JSON without ``images``,
      ``annotations`` and ``categories``, an annotation of an unknown
      image or category, splits with different categories, or a split
      left without images.
  """
  root = os.path.abspath(os.path.expanduser(root))
  _require(
    root,
    [
      path
      for parts, folder in COCO2014_FILES.values()
      for path in (os.path.join(*parts), folder)
    ],
  )
  digest = hashlib.sha256(b'coco2014')
  files, skipped, class_names = {}, {}, None
  for split, (parts, folder) in COCO2014_FILES.items():
    json_path = os.path.join(root, *parts)
    _digest_file(digest, root, json_path)
    with open(json_path) as file:
      data = json.load(file)
    if not all(key in data for key in ('images', 'annotations', 'categories')):
      raise ValueError(
        f'{json_path!r} must be a COCO instances file with images, '
        'annotations and categories'
      )
    categories = sorted(data['categories'], key=lambda c: c['id'])
    names = tuple(str(c['name']) for c in categories)
    if class_names is not None and names != class_names:
      raise ValueError(f'{json_path!r} has other categories than train2014')
    class_names = names
    codes = {c['id']: code for code, c in enumerate(categories)}
    image_names = {image['id']: image['file_name'] for image in data['images']}
    labels = {image_id: set() for image_id in image_names}
    for annotation in data['annotations']:
      image_id, category = annotation['image_id'], annotation['category_id']
      if image_id not in labels or category not in codes:
        raise ValueError(
          f'{json_path!r}: annotation {annotation.get("id")} names image '
          f'{image_id} or category {category}, which the file does not list'
        )
      labels[image_id].add(codes[category])
    skipped[split] = {'missing': 0, 'unlabelled': 0}
    candidates = []
    for image_id in sorted(image_names):
      if not labels[image_id]:
        skipped[split]['unlabelled'] += 1
        continue
      path = os.path.join(root, folder, image_names[image_id])
      candidates.append((path, tuple(sorted(labels[image_id]))))
    files[split] = _keep_present(digest, root, split, candidates, skipped)
  return _finish(root, 'coco2014', class_names, files, skipped, digest)


def _finish(root, layout, class_names, files, skipped, digest):
  for split, counts in skipped.items():
    if any(counts.values()):
      logging.warning(
        '%s %s, split %s: left out %d images missing on disk and %d '
        'without labels.',
        layout,
        root,
        split,
        counts['missing'],
        counts['unlabelled'],
      )
    if not files[split]:
      raise ValueError(f'{layout} {root!r}: no {split} image on disk')
  return MultilabelListing(
    root=root,
    layout=layout,
    class_names=tuple(class_names),
    files=files,
    skipped=skipped,
    fingerprint=digest.hexdigest(),
  )


def list_layout(root: str, layout: str) -> MultilabelListing:
  """The splits of `root` read as `layout` (one of `LAYOUTS`).

  Raises:
    ValueError: for an unknown layout, or what the listing raises.
  """
  if layout == 'nuswide':
    return list_nuswide(root)
  if layout == 'coco2014':
    return list_coco2014(root)
  raise ValueError(f'a multi-label layout is one of {LAYOUTS}, not {layout!r}')


def config_name(listing: MultilabelListing, image_size) -> str:
  """The builder config name: folder name, layout and a content hash."""
  slug = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(listing.root))
  digest = hashlib.sha256(
    f'{listing.fingerprint}\0{image_folder.size_key(image_size)}'.encode()
  ).hexdigest()
  return f'{slug.strip("_") or "multilabel"}_{listing.layout}_{digest[:16]}'


@dataclasses.dataclass(eq=False, repr=False)
class MultilabelFolderConfig(tfds.core.BuilderConfig):
  """One multi-label set at one image size.

  Attributes:
    listing: the set's images.
    image_shape: the stored ``(H, W, 3)``.
  """

  listing: MultilabelListing | None = None
  image_shape: tuple[int, int, int] = (0, 0, 3)

  def __repr__(self) -> str:
    # TFDS logs the config; the default repr would list every image.
    return (
      f'MultilabelFolderConfig({self.name!r}, image_shape={self.image_shape})'
    )


def make_config(
  listing: MultilabelListing, image_size
) -> MultilabelFolderConfig:
  """The builder config of `listing` stored at `image_size`.

  Raises:
    ValueError: for a missing or bad image size (the images differ in
      size, so it is required).
  """
  sizes = image_folder.image_height_width(image_size)
  if sizes is None:
    raise ValueError(
      f'config.input.name={listing.layout!r} needs config.input.image_size '
      '(its images differ in size), e.g. 224'
    )
  return MultilabelFolderConfig(
    name=config_name(listing, image_size),
    description=f'Multi-label images of {listing.root} ({listing.layout})',
    listing=listing,
    image_shape=(*sizes, 3),
  )


class UserMultilabelFolder(tfds.core.GeneratorBasedBuilder):
  """NUS-WIDE or MS-COCO 2014 as distributed, with multi-hot labels."""

  # 1.1.0: the pixels as one bytes value (TFDS's Encoding.BYTES) instead of
  # one int64 per pixel, which took 1.2 ms to parse for a 224 x 224 image
  # (as image folders); a set prepared as 1.0.0 is prepared again once.
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Raw uint8 RGB images, multi-hot labels.',
    '1.1.0': 'Raw uint8 images stored as bytes.',
  }

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if not isinstance(config, MultilabelFolderConfig) or config.listing is None:
      raise ValueError(
        'UserMultilabelFolder needs config=make_config(listing, size)'
      )
    listing = config.listing
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
          'labels': tfds.features.Tensor(
            shape=(len(listing.class_names),), dtype=np.uint8
          ),
          'path': tfds.features.Text(),
        }
      ),
      # The label names and what was left out, read back by the pipeline.
      metadata=tfds.core.MetadataDict(
        class_names=list(listing.class_names),
        skipped=listing.skipped,
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    return {
      split: self._generate_examples(split)
      for split in SPLITS[self.builder_config.listing.layout]
    }

  def _generate_examples(self, split):
    config = self.builder_config
    num_classes = len(config.listing.class_names)
    for index, (path, labels) in enumerate(config.listing.files[split]):
      multi_hot = np.zeros(num_classes, np.uint8)
      multi_hot[list(labels)] = 1
      yield (
        index,
        {
          'image': image_folder.decode_image(path, 3, config.image_shape[:2]),
          'labels': multi_hot,
          'path': os.path.relpath(path, config.listing.root),
        },
      )
