"""Helpers shared by the tests: data written on the fly, runs and their
checkpoints, the command lines' processes.

Imported by test modules (``from tests import support``) and by conftest
files, which keep only fixtures. Only public names of the packages under
test are used here.
"""

import functools
import json
import os
import socket
import struct

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorflow_datasets as tfds
from PIL import Image

import input_pipeline
import models
import train
from configs import tiny
from input_pipeline import preparation
from input_pipeline.datasets import catalog
from models import pretrained

# The repository's root: the command lines (train.py, embed.py, search.py)
# and configs/ are found from it, and the processes the tests start run in
# it.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  """A free TCP port on localhost (for jax.distributed's coordinator)."""
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


# Checkpoints.


def latest_checkpoint(workdir):
  """The newest checkpoint of a run's workdir, as saved.

  Args:
    workdir: the run's ``--workdir`` (str or path).

  Returns:
    ``(step, state)``: the checkpoint's step and the saved train state as a
    tree of arrays (``state['params']``, ``state['batch_stats']``, ...).
  """
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  try:
    step = manager.latest_step()
    restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
  finally:
    manager.close()
  return step, restored['state']


# Training runs.


class FirstTrainStates(list):
  """A loop hook (`train.train_and_evaluate(..., hooks=[it])`): appends,
  per run, the state its first train step receives."""

  def __init__(self):
    super().__init__()
    self._runs = []

  def __call__(self, step, state, steps):
    del step
    if not any(run is steps for run in self._runs):  # A new run's steps.
      self._runs.append(steps)
      self.append(jax.device_get(state))


def override(config, **dotted):
  """Sets ``config[a][b][c] = value`` for each ``'a.b.c'=value``."""
  for path, value in dotted.items():
    section, _, field = path.rpartition('.')
    target = config
    for key in filter(None, section.split('.')):
      target = target[key]
    target[field] = value
  return config


def without_embedding(params):
  """A backbone's params without the embedding layer (never pretrained)."""
  return {k: v for k, v in params.items() if k != 'embedding'}


def write_random_resnet18(path, stage_filters, image_size, *, seed):
  """Writes a random ResNet-18 in torchvision's naming, as weights to load.

  It stands for ImageNet weights: random parameters and non-trivial running
  statistics (initial ones would be all 0 and 1).

  Returns:
    ``(params, batch_stats)`` that were written.
  """
  model = models.get_model(
    'resnet18', embedding_dim=8, stage_filters=stage_filters
  )
  # Compiled once: eagerly, each operation of the init would compile alone.
  variables = jax.jit(functools.partial(model.init, train=False))(
    jax.random.key(seed), np.zeros((1, image_size, image_size, 3), np.float32)
  )
  rng = np.random.default_rng(seed)
  batch_stats = jax.tree.map(
    lambda s: np.abs(s + 0.3 * rng.standard_normal(s.shape)).astype(np.float32),
    variables['batch_stats'],
  )
  pretrained.save_resnet_torchvision(path, variables['params'], batch_stats)
  return variables['params'], batch_stats


# The tiny model trained on an image folder (the `trained` fixture): 4
# classes of 8x8 grey PNGs; the run is class-disjoint (trains on a, b;
# evaluates on the test split's c, d), so its final evaluation also writes
# ``retrieval.png``.
CLASSES = ('a', 'b', 'c', 'd')
TRAIN_PER_CLASS = 6
TEST_PER_CLASS = 3


def write_images(directory, count, seed, classes=CLASSES):
  """``directory/<class>/<i>.png`` (or flat when `classes` is None): grey
  8x8 images, each class a different brightness ramp plus noise."""
  rng = np.random.default_rng(seed)
  paths = []
  for label, name in enumerate(classes or (None,)):
    folder = directory if name is None else os.path.join(directory, name)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
      ramp = np.linspace(0, 1, 8)[None, :] * (label + 1) * 60
      pixels = np.clip(ramp + rng.normal(0, 20, (8, 8)), 0, 255)
      path = os.path.join(folder, f'{i}.png')
      Image.fromarray(pixels.astype(np.uint8)).save(path)
      paths.append(path)
  return paths


def train_on_image_folder(root, data_dir, workdir):
  """Writes the image folder `root` and trains the tiny model 2 steps on it.

  Args:
    root: where ``train/`` and ``test/`` of `CLASSES` are written.
    data_dir: the run's TFDS data dir.
    workdir: the run's workdir.
  """
  write_images(os.path.join(root, 'train'), TRAIN_PER_CLASS, seed=0)
  write_images(os.path.join(root, 'test'), TEST_PER_CLASS, seed=1)
  config = tiny.get_config()
  config.input.name = 'image_folder'
  config.input.image_folder = root
  config.input.data_dir = data_dir
  config.input.class_disjoint = True
  config.input.batch_size = 8
  config.input.num_threads = 0
  config.num_train_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 2
  # 4 test devices: the evaluation batch is split over them.
  config.eval_batch_size = 8
  config.write_plots = True
  # Compiled fast (most of XLA's optimisations off: tests/conftest.py).
  train.train_and_evaluate(config, workdir)


def stored_image_feature(version_dir):
  """The ``image`` feature of a prepared set, as its features.json says:
  ``{'shape': ..., 'dtype': ..., 'encoding': ...}``."""
  with open(os.path.join(version_dir, 'features.json')) as file:
    features = json.load(file)
  return features['featuresDict']['features']['image']['tensor']


def evaluation_features(workdir):
  """``(embeddings, labels)`` of a run's final test-split evaluation."""
  with np.load(os.path.join(workdir, 'test_features.npz')) as data:
    return data['embeddings'], data['labels']


# Input data.


def make_input_config(**overrides):
  """`default_input_config()` with `overrides` and single-threaded reads."""
  config = input_pipeline.default_input_config()
  config.num_threads = 0
  for key, value in overrides.items():
    config[key] = value
  return config


def write_image_folder(
  root, *, classes=('cat', 'dog'), per_class=3, size=(6, 5), mode='RGB', seed=0
):
  """Writes ROOT/{train,test}/<class>/<i>.png of random pixels.

  Returns:
    ``{(split, class, i): uint8 array}`` of what was written.
  """
  rng = np.random.default_rng(seed)
  channels = 3 if mode == 'RGB' else 1
  written = {}
  for split in ('train', 'test'):
    for name in classes:
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(per_class):
        pixels = rng.integers(0, 256, (size[0], size[1], channels), np.uint8)
        image = pixels if channels == 3 else pixels[..., 0]
        Image.fromarray(image).save(os.path.join(root, split, name, f'{i}.png'))
        written[(split, name, i)] = pixels
  return written


# A Market-1501-style folder (tests of re-id): training identities 2, 7,
# 9, 11 (classes 0..3) from cameras 1 and 2; query identities 1 and 3
# (camera 1); gallery images of both from both cameras, a distractor
# (0000) and a junk image (-1), which the listing drops.
MARKET_TRAIN_IDS = (2, 7, 9, 11)
MARKET_TEST_IDS = (1, 3)


def write_market1501(root, *, train_per_camera=2, size=(20, 10), seed=0):
  """Writes ROOT/{bounding_box_train,query,bounding_box_test}/ JPEGs named
  as Market-1501's (``0002_c1s1_000451_03.jpg``); each identity's images
  share a colour, so a model can learn them.

  Returns:
    ``{folder: [file names]}`` of what was written.
  """
  rng = np.random.default_rng(seed)
  colours = {pid: rng.integers(0, 256, 3) for pid in range(12)}
  written = {}

  def image(folder, pid, camera, frame):
    name = f'{pid:04d}_c{camera}s1_{frame:06d}_01.jpg'
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    base = colours.get(pid, np.zeros(3))
    pixels = base + rng.normal(0, 20, (*size, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
      os.path.join(root, folder, name)
    )
    written.setdefault(folder, []).append(name)

  for pid in MARKET_TRAIN_IDS:
    for camera in (1, 2):
      for frame in range(train_per_camera):
        image('bounding_box_train', pid, camera, frame)
  for pid in MARKET_TEST_IDS:
    image('query', pid, 1, 100)
    for camera in (1, 2):
      image('bounding_box_test', pid, camera, 200)
  image('bounding_box_test', 0, 1, 151)
  image('bounding_box_train', -1, 1, 1)
  image('bounding_box_test', -1, 2, 401)
  return written


# Multi-label sets as distributed (tests of NUS-WIDE and MS-COCO 2014).

NUSWIDE_CONCEPTS = ('animal', 'sky', 'water')
# (list line, labels, on disk); the release's lines use backslashes.
NUSWIDE_ROWS = {
  'train': (
    ('animal\\0001_11.jpg', (1, 0, 0), True),
    ('sky\\0002_12.png', (0, 1, 1), True),
    ('sky\\0003_13.jpg', (1, 1, 0), False),  # Missing on disk.
    ('water\\0004_14.jpg', (0, 0, 0), True),  # No concept: kept.
  ),
  'test': (
    ('water\\0005_15.jpg', (0, 0, 1), True),
    ('animal/0006_16.png', (1, 0, 1), True),
  ),
}


def _write_random_image(path, rng, size=(10, 12)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = rng.integers(0, 256, (*size, 3), np.uint8)
  Image.fromarray(pixels).save(path)


def write_nuswide(root, *, train_copies=1):
  """Writes NUS-WIDE's layout: Concepts81.txt, ImageList/{Train,Test}
  Imagelist.txt (backslashes, CRLF), Groundtruth/TrainTestLabels/
  Labels_<concept>_{Train,Test}.txt and Flickr/<folder>/<file> for the
  rows of `NUSWIDE_ROWS` on disk (one listed training image is missing).

  `train_copies` > 1 lists the training rows that many times, each copy
  under file names of its own (``c<copy>_<name>``): 3 usable training
  images per copy."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, 'ImageList'))
  labels_dir = os.path.join(root, 'Groundtruth', 'TrainTestLabels')
  os.makedirs(labels_dir)
  with open(os.path.join(root, 'Concepts81.txt'), 'w') as file:
    file.write('\r\n'.join(NUSWIDE_CONCEPTS) + '\r\n')
  for split, rows in NUSWIDE_ROWS.items():
    if split == 'train':
      rows = rows + tuple(
        (line.replace('\\', f'\\c{copy}_'), labels, present)
        for copy in range(1, train_copies)
        for line, labels, present in rows
      )
    name = split.capitalize()
    with open(
      os.path.join(root, 'ImageList', f'{name}Imagelist.txt'), 'w'
    ) as f:
      f.write(''.join(f'{line}\r\n' for line, _, _ in rows))
    for column, concept in enumerate(NUSWIDE_CONCEPTS):
      with open(
        os.path.join(labels_dir, f'Labels_{concept}_{name}.txt'), 'w'
      ) as file:
        file.write(''.join(f'{row[1][column]} \r\n' for row in rows))
    for line, _, present in rows:
      if present:
        parts = line.replace('\\', '/').split('/')
        _write_random_image(os.path.join(root, 'Flickr', *parts), rng)


def write_coco2014(root, *, train_copies=1):
  """Writes MS-COCO 2014's layout: annotations/instances_{train,val}2014.json
  and {train,val}2014/COCO_<split>2014_<id>.jpg. Category ids 1, 3, 5
  (labels 0..2: person, car, airplane); train2014 has 2 usable images (and
  one unannotated, one missing on disk) per copy of `train_copies` (ids
  shifted by 100 a copy), val2014 2: 40 (airplane) and 42 (person, car)."""
  rng = np.random.default_rng(1)
  # Category ids with gaps, listed out of order: labels follow the ids.
  categories = [
    {'id': 5, 'name': 'airplane'},
    {'id': 1, 'name': 'person'},
    {'id': 3, 'name': 'car'},
  ]
  splits = {
    'train': (
      # (image id, file, category ids of its annotations, on disk)
      (9, (1, 1, 5), True),
      (2, (3,), True),
      (4, (), True),  # No annotation: dropped.
      (7, (5,), False),  # Missing on disk.
    ),
    'val': ((42, (3, 1), True), (40, (5,), True)),
  }
  splits['train'] += tuple(
    (image_id + 100 * copy, category_ids, present)
    for copy in range(1, train_copies)
    for image_id, category_ids, present in splits['train']
  )
  os.makedirs(os.path.join(root, 'annotations'))
  for split, rows in splits.items():
    images, annotations = [], []
    for image_id, category_ids, present in rows:
      name = f'COCO_{split}2014_{image_id:012d}.jpg'
      images.append({'id': image_id, 'file_name': name})
      for category in category_ids:
        annotations.append(
          {
            'id': len(annotations) + 1,
            'image_id': image_id,
            'category_id': category,
            'iscrowd': 0,
          }
        )
      if present:
        _write_random_image(os.path.join(root, f'{split}2014', name), rng)
    path = os.path.join(root, 'annotations', f'instances_{split}2014.json')
    with open(path, 'w') as file:
      json.dump(
        {
          'images': images,
          'annotations': annotations,
          'categories': categories,
        },
        file,
      )


# Tiny ImageNet as distributed.

TINY_IMAGENET_WNIDS = ('n02124075', 'n01443537', 'n04067472')


def write_tiny_imagenet(
  root, *, wnids=TINY_IMAGENET_WNIDS, per_class=3, val_per_class=2, seed=0
):
  """Writes Tiny ImageNet's layout: train/<wnid>/images/*.JPEG (one grey),
  train/<wnid>/<wnid>_boxes.txt, val/images/val_*.JPEG with
  val/val_annotations.txt (shuffled lines), an unlabelled test/images/,
  wnids.txt and words.txt.

  Returns:
    ``{relative path: (uint8 pixels, wnid)}`` of the labelled images.
  """
  rng = np.random.default_rng(seed)
  written = {}

  def image(relative, wnid, grey=False):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = rng.integers(0, 256, (8, 8, 3), np.uint8)
    if grey:
      pixels[..., 1] = pixels[..., 2] = pixels[..., 0]
    # PNG bytes under a .JPEG name: the pixels stay exact, PIL reads by
    # content.
    Image.fromarray(pixels[..., 0] if grey else pixels).save(path, 'PNG')
    written[relative] = (pixels, wnid)

  for wnid in wnids:
    for i in range(per_class):
      image(f'train/{wnid}/images/{wnid}_{i}.JPEG', wnid, grey=i == 0)
    with open(os.path.join(root, 'train', wnid, f'{wnid}_boxes.txt'), 'w') as f:
      f.write(f'{wnid}_0.JPEG\t0\t0\t7\t7\n')
  lines = []
  for index in range(val_per_class * len(wnids)):
    wnid = wnids[index % len(wnids)]
    image(f'val/images/val_{index}.JPEG', wnid)
    lines.append(f'val_{index}.JPEG\t{wnid}\t0\t1\t6\t7\n')
  rng.shuffle(lines)
  with open(os.path.join(root, 'val', 'val_annotations.txt'), 'w') as file:
    file.writelines(lines)
  image('test/images/test_0.JPEG', None)
  del written['test/images/test_0.JPEG']
  with open(os.path.join(root, 'wnids.txt'), 'w') as file:
    file.write('\n'.join(wnids) + '\n')
  with open(os.path.join(root, 'words.txt'), 'w') as file:
    file.write(''.join(f'{wnid}\tsomething\n' for wnid in wnids))
  return written


def mark_prepared(name, data_dir):
  """Writes the dataset_info.json that marks `name` as prepared.

  Under `tfds.testing.mock_data` TFDS serves random records instead of
  reading files, but the pipeline first checks (without TFDS) that the set
  was prepared as array_record; this fakes that metadata.
  """
  spec = catalog.get_spec(name)
  path, _ = catalog.version_dir(spec.tfds_name, data_dir)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'dataset_info.json'), 'w') as f:
    json.dump({'fileFormat': 'array_record'}, f)
  return path


def prepare_catalog_records(name, data_dir, splits):
  """Prepares catalog set `name` in `data_dir` from the given records.

  A copy of the real TFDS builder (same name, version and features) whose
  examples are `splits` instead of a download, prepared as array_record:
  the pipeline then reads it through ``tfds.data_source`` exactly like a
  prepared catalog set. Needs no TensorFlow when images are PIL images.

  Args:
    name: a catalog name (``config.input.name``).
    data_dir: the TFDS data dir.
    splits: TFDS split name -> list of example dicts.

  Returns:
    The prepared version directory.
  """
  base = tfds.builder_cls(catalog.get_spec(name).tfds_name)

  class Offline(base, skip_registration=True):
    name = base.name

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: self._generate_examples(r) for s, r in splits.items()}

    def _generate_examples(self, records):
      yield from enumerate(records)

  builder = Offline(data_dir=data_dir, file_format=preparation.FILE_FORMAT)
  builder.download_and_prepare(file_format=preparation.FILE_FORMAT)
  return builder.data_dir


# MXNet RecordIO (insightface's face sets), written without MXNet.

RECORDIO_MAGIC = struct.pack('<I', 0xCED7230A)


def recordio_record(payload: bytes) -> bytes:
  """One record as dmlc-core writes it, in parts where the payload holds
  the magic at a 4-byte boundary (flags 1, 2, 3; 0 for a whole one)."""
  cuts = [
    i
    for i in range(0, len(payload) - 3, 4)
    if payload[i : i + 4] == RECORDIO_MAGIC
  ]
  pieces, start = [], 0
  for cut in cuts:
    pieces.append(payload[start:cut])
    start = cut + 4
  pieces.append(payload[start:])
  out = b''
  for number, piece in enumerate(pieces):
    if len(pieces) == 1:
      flag = 0
    else:
      flag = 1 if number == 0 else 3 if number == len(pieces) - 1 else 2
    out += RECORDIO_MAGIC + struct.pack('<I', (flag << 29) | len(piece))
    out += piece + b'\0' * (-len(piece) % 4)
  return out


def pack_recordio(label, image=b'', labels=None, record_id=0):
  """An IRHeader (flag, label, id, id2) + labels + image, as MXNet packs."""
  if labels is None:
    return struct.pack('<IfQQ', 0, label, record_id, 0) + image
  return (
    struct.pack('<IfQQ', len(labels), 0.0, record_id, 0)
    + np.asarray(labels, '<f4').tobytes()
    + image
  )


def write_recordio(root, payloads):
  """Writes train.rec and train.idx (``index\\toffset`` lines)."""
  os.makedirs(root, exist_ok=True)
  offset, lines = 0, []
  with open(os.path.join(root, 'train.rec'), 'wb') as rec:
    for index, payload in enumerate(payloads):
      lines.append(f'{index}\t{offset}\n')
      data = recordio_record(payload)
      rec.write(data)
      offset += len(data)
  with open(os.path.join(root, 'train.idx'), 'w') as idx:
    idx.writelines(lines)


def write_recordio_face_set(root, encoded, labels, size):
  """A face set as insightface's tools lay it out.

  Record 0 is a header with labels (first, last): the images are records
  1..first-1, the identity records first..last-1 each label their images'
  range; `property` says ``identities,height,width``.

  Args:
    root: the folder (train.rec, train.idx, property).
    encoded: the images' PNG or JPEG bytes.
    labels: their identities.
    size: ``(height, width)`` of the images.
  """
  first = len(labels) + 1
  identities = sorted(set(labels))
  payloads = [pack_recordio(0, labels=(first, first + len(identities)))]
  payloads += [
    pack_recordio(label, image, record_id=i + 1)
    for i, (label, image) in enumerate(zip(labels, encoded, strict=True))
  ]
  for identity in identities:
    where = [i + 1 for i, label in enumerate(labels) if label == identity]
    payloads.append(pack_recordio(0, labels=(where[0], where[-1] + 1)))
  write_recordio(root, payloads)
  with open(os.path.join(root, 'property'), 'w') as file:
    file.write(f'{len(identities)},{size[0]},{size[1]}')
