"""Embeddings of a folder of images or of a split, through the evaluation step.

Images go to `TrainedModel.embed_batch` (the mapped evaluation step of
``steps.make_steps``) in batches of one fixed size, the last one padded, so
the step compiles once. Image files are decoded by grain worker threads
ahead of the model (as the input pipeline builds its batches); a split is
read through ``Dataset.eval_batches``, exactly the evaluation's batches.
"""

import math
from collections.abc import Iterable, Sequence

import grain
import numpy as np
import tqdm
from absl import logging

from inference import embeddings_file
from inference import images as images_lib
from inference import model as model_lib


def _batch_size(model: model_lib.TrainedModel, batch_size: int | None) -> int:
  """The requested size (default: the evaluation's), a multiple of the
  local devices."""
  size = int(batch_size or model.config.eval_batch_size)
  if size <= 0:
    raise ValueError(f'batch_size must be positive, received {size}')
  multiple = model.batch_multiple
  return math.ceil(size / multiple) * multiple


def _embed_batches(
  model: model_lib.TrainedModel,
  batches: Iterable[dict[str, np.ndarray]],
  total: int,
  *,
  progress: bool,
  description: str,
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
  """Runs padded batches (``image``, ``mask`` and any other rows) through
  the model; returns the embeddings and every batch's other fields, the
  padding rows dropped."""
  embeddings, extras = [], []
  with tqdm.tqdm(
    total=total, unit='image', desc=description, disable=not progress
  ) as bar:
    for batch in batches:
      mask = batch['mask']
      embeddings.append(model.embed_batch(batch['image'])[mask])
      extras.append(
        {
          key: value[mask]
          for key, value in batch.items()
          if key not in ('image', 'mask')
        }
      )
      bar.update(int(np.sum(mask)))
  if not embeddings:
    return np.zeros((0, 0), np.float32), []
  return np.concatenate(embeddings), extras


def embed_files(
  model: model_lib.TrainedModel,
  paths: Sequence[str],
  *,
  batch_size: int | None = None,
  progress: bool = True,
) -> np.ndarray:
  """float32 ``[len(paths), dim]`` embeddings of image files.

  Args:
    model: the trained model.
    paths: image files (PNG, JPEG, anything PIL reads).
    batch_size: images per step; default ``config.eval_batch_size``
      (rounded up to a multiple of the local devices).
    progress: show a progress bar (tqdm, on stderr).

  Raises:
    ValueError: for an unreadable image, naming it.
  """
  size = _batch_size(model, batch_size)
  num_batches = math.ceil(len(paths) / size)
  shape = model.image_shape

  def make(batch_index: int) -> dict[str, np.ndarray]:
    batch_paths = paths[batch_index * size : (batch_index + 1) * size]
    image = np.zeros((size, *shape), np.float32)
    mask = np.zeros(size, bool)
    image[: len(batch_paths)] = model.transform.load(batch_paths)
    mask[: len(batch_paths)] = True
    return {'image': image, 'mask': mask}

  batches = grain.MapDataset.range(0, num_batches).map(make)
  threads = int(model.config.input.get('num_threads', 2))
  if threads > 0:
    batches = batches.to_iter_dataset(
      grain.ReadOptions(
        num_threads=threads,
        prefetch_buffer_size=max(int(model.config.input.get('prefetch', 4)), 1),
      )
    )
  embeddings, _ = _embed_batches(
    model, batches, len(paths), progress=progress, description='embed'
  )
  return embeddings


def embed_folder(
  model: model_lib.TrainedModel,
  root: str,
  *,
  batch_size: int | None = None,
  progress: bool = True,
) -> embeddings_file.Embeddings:
  """Embeddings of ``ROOT/*`` or ``ROOT/<class>/*`` (`images.list_folder`),
  with labels and class names where the folder has class folders."""
  listing = images_lib.list_folder(root)
  logging.info(
    'Embedding %d images of %s (%s) with the step %d checkpoint of %s.',
    len(listing.paths),
    listing.root,
    f'{len(listing.class_names)} classes'
    if listing.class_names
    else 'no classes',
    model.step,
    model.workdir,
  )
  embeddings = embed_files(
    model, listing.paths, batch_size=batch_size, progress=progress
  )
  return embeddings_file.Embeddings(
    embeddings=embeddings,
    workdir=model.workdir,
    step=model.step,
    labels=listing.labels,
    class_names=listing.class_names,
    paths=listing.paths,
    folder=listing.root,
  )


def embed_split(
  model: model_lib.TrainedModel,
  split: str,
  *,
  batch_size: int | None = None,
  progress: bool = True,
) -> embeddings_file.Embeddings:
  """Embeddings of a split of the model's own data set, as evaluated.

  Args:
    model: the trained model.
    split: ``'test'`` (under the class-disjoint protocol: the held-out
      classes) or ``'train'``; for re-id sets also ``'query'`` and
      ``'gallery'``.
    batch_size: images per step; default ``config.eval_batch_size``.
    progress: show a progress bar.

  Returns:
    The embeddings with the examples' positions in the split and, for
    single-label data, their labels and class names (multi-label targets
    are not stored); for re-id sets their camera ids.
  """
  info = model.dataset.info
  size = _batch_size(model, batch_size)
  total = model.dataset.num_examples(split)
  batches = model.dataset.eval_batches(split, size, with_index=True)
  embeddings, extras = _embed_batches(
    model, batches, total, progress=progress, description=f'embed {split}'
  )
  labels = class_names = None
  if not info.multilabel:
    labels = np.concatenate([extra['label'] for extra in extras])
    labels = labels.astype(np.int64)
    class_names = {'test': info.test_class_names, 'train': info.class_names}
    class_names = class_names.get(split)
  cameras = None
  if extras and 'camera' in extras[0]:
    cameras = np.concatenate([extra['camera'] for extra in extras])
    cameras = cameras.astype(np.int64)
  return embeddings_file.Embeddings(
    embeddings=embeddings,
    workdir=model.workdir,
    step=model.step,
    labels=labels,
    class_names=class_names,
    indices=np.concatenate([extra['index'] for extra in extras]).astype(
      np.int64
    ),
    dataset=info.name,
    split=split,
    cameras=cameras,
  )
