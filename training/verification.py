"""Face verification sets as evaluation tasks of a run.

``config.verification`` lists the sets (`input_pipeline.verification.
read_set`: a path to insightface's ``NAME.bin``, or a mapping with ``path``,
``kind``, ``images``, ``name``); they are read once per process, when
first evaluated. Each evaluation embeds every image of a set (resized to
the model's input and scaled like the data set's evaluation images), with
``config.verification_flip`` also its horizontal mirror image, the two
embeddings summed (insightface's flip-fused features), L2-normalises,
scores each pair by cosine similarity and reports
`evaluation.verification_metrics` as ``verify/<set>/<metric>``.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

import evaluation
from input_pipeline import augment
from input_pipeline import verification as sets_lib

PREFIX = 'verify'


def entries(config) -> tuple[Any, ...]:
  """``config.verification`` (empty for configs without the field)."""
  return tuple(config.get('verification', None) or ())


# Sets already read, by entry and file modification time: every evaluation
# of a run reuses them.
_CACHE: dict[str, sets_lib.VerificationSet] = {}


def _read(entry: Any) -> sets_lib.VerificationSet:
  fields = _as_dict(entry)
  path = os.path.expanduser(str(fields.get('path', '')))
  mtime = os.path.getmtime(path) if os.path.exists(path) else None
  key = repr((sorted(fields.items()), mtime))
  if key not in _CACHE:
    _CACHE[key] = sets_lib.read_set(fields)
  return _CACHE[key]


def read_sets(config) -> list[sets_lib.VerificationSet]:
  """The sets of ``config.verification``, read once per process."""
  found = [_read(entry) for entry in entries(config)]
  names = [found_set.name for found_set in found]
  if len(set(names)) != len(names):
    raise ValueError(
      f'config.verification: two sets have the same name in {names}; give '
      "each entry a distinct 'name'"
    )
  return found


def _as_dict(entry: Any) -> dict[str, Any]:
  return {'path': entry} if isinstance(entry, str) else dict(entry)


def model_inputs(
  images: np.ndarray,
  image_shape: Sequence[int],
  normalization: str | None,
  *,
  flip: bool = False,
) -> np.ndarray:
  """uint8 RGB ``[b, H, W, 3]`` -> the model's float32 ``[b, *image_shape]``.

  A bilinear resize where the size differs (the image folders' evaluation
  transform), grey where the model takes one channel, then the input
  normalization (`augment.normalize`).
  """
  height, width, channels = image_shape
  if flip:
    images = images[:, :, ::-1]
  batch = augment.make_batch(
    list(images),
    kind='none',
    out_shape=(height, width, 3),
    max_pixel_value=255,
    draws=None,
  )
  if channels == 1 and augment.normalized_channels(1, normalization) == 1:
    batch = batch.mean(axis=-1, keepdims=True)
  return augment.normalize(batch, normalization)


class _Rows:
  """A set's images as an evaluation split, for `evaluation_loop.collect`:
  each process embeds its rows; the labels are the rows' indices."""

  def __init__(self, images, image_shape, normalization, flip):
    self._images = images
    self._image_shape = tuple(image_shape)
    self._normalization = normalization
    self._flip = flip

  def eval_batches(self, split, batch_size):
    del split
    rows = np.arange(
      jax.process_index(), len(self._images), jax.process_count()
    )
    per_process = -(-len(self._images) // jax.process_count())
    for start in range(0, per_process, batch_size):
      chosen = rows[start : start + batch_size]
      image = np.zeros((batch_size, *self._image_shape), np.float32)
      label = np.zeros(batch_size, np.int32)
      mask = np.zeros(batch_size, bool)
      if len(chosen):
        image[: len(chosen)] = model_inputs(
          self._images[chosen],
          self._image_shape,
          self._normalization,
          flip=self._flip,
        )
      label[: len(chosen)], mask[: len(chosen)] = chosen, True
      yield {'image': image, 'label': label, 'mask': mask}


def embed(
  state,
  images: np.ndarray,
  *,
  eval_step,
  collect: Callable[..., dict[str, np.ndarray]],
  image_shape: Sequence[int],
  normalization: str | None,
  batch_size: int,
  flip: bool,
) -> np.ndarray:
  """L2-normalised embeddings ``[n, d]`` of `images`, in their order
  (flip-fused: the sum of the image's and its mirror image's)."""
  total = 0.0
  for flipped in (False, True) if flip else (False,):
    rows = _Rows(images, image_shape, normalization, flipped)
    outputs = collect(eval_step, state, rows, 'verification', batch_size)
    order = np.argsort(outputs['label'])
    total = total + outputs['embeddings'][order].astype(np.float64)
  norms = np.linalg.norm(total, axis=1, keepdims=True)
  return total / np.maximum(norms, 1e-12)


def evaluate(
  state,
  config,
  *,
  eval_step,
  collect,
  image_shape: Sequence[int],
  roc_path: str | None = None,
) -> dict[str, float]:
  """Metrics of every set of ``config.verification``.

  Args:
    state: the train state, as `eval_step` takes it.
    config: the experiment config.
    eval_step: `steps.ParallelSteps.evaluate`.
    collect: `evaluation_loop.collect`.
    image_shape: the model's input shape.
    roc_path: where to draw the sets' ROC curves (PNG), or None.

  Returns:
    ``{'verify/<set>/<metric>': value}``; empty when the config lists no
    set.
  """
  results, curves = {}, {}
  for found in read_sets(config):
    embeddings = embed(
      state,
      found.images,
      eval_step=eval_step,
      collect=collect,
      image_shape=image_shape,
      normalization=config.input.get('normalization'),
      batch_size=config.eval_batch_size,
      flip=config.get('verification_flip', True),
    )
    similarities = np.sum(embeddings[0::2] * embeddings[1::2], axis=1)
    metrics = evaluation.verification_metrics(similarities, found.same)
    for key, value in metrics.items():
      results[f'{PREFIX}/{found.name}/{key}'] = value
    far, tar, _ = evaluation.verification_roc(similarities, found.same)
    curves[found.name] = (far, tar)
  if curves and roc_path:
    evaluation.plot_roc_curves(
      curves, roc_path, title=f'{config.loss.name}: verification ROC'
    )
  return results
