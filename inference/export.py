"""The embedding function as a portable `jax.export` file.

The model's evaluation step (`steps.eval_step`, its embeddings output) with
the trained parameters baked in as constants, exported for a symbolic batch
size: ``images float32 [b, H, W, C] -> embeddings [b, dim]``, the images
in [0, 1] (then normalised as the run's ``config.input.normalization``
says, e.g. ImageNet's mean and deviation for pretrained backbones).
Reloading needs JAX alone, none of this project's code::

  import jax, numpy as np
  with open('W/embed.jaxexport', 'rb') as file:
    embed = jax.export.deserialize(bytearray(file.read()))
  embeddings = embed.call(np.zeros((5, 8, 8, 1), np.float32))

Beside the file, ``<file>.json`` says what the function takes: the input
shape and value range, the transform that turns image files into inputs,
the workdir and step it came from.
"""

import functools
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from inference import images as images_lib
from inference import model as model_lib
from training import steps as steps_lib

METADATA_SUFFIX = '.json'


def export_embedding(
  model: model_lib.TrainedModel, *, platforms: Sequence[str] | None = None
) -> jax.export.Exported:
  """The model's embedding step, exported.

  Args:
    model: the trained model.
    platforms: platforms to lower for (``'cpu'``, ``'cuda'``, ``'tpu'``);
      None: the default backend's.

  Returns:
    The exported function of images ``[b, H, W, C]`` (b symbolic).
  """
  state = steps_lib.to_host(model.state)
  eval_step = functools.partial(
    steps_lib.eval_step, objective=model.objective, hparams=model.hparams
  )
  info = model.dataset.info
  label_shape = (info.num_classes,) if info.multilabel else ()

  def embed(images):
    labels = jnp.zeros((images.shape[0], *label_shape), jnp.int32)
    # The class scores are computed and dropped: XLA removes them.
    return eval_step(state, {'image': images, 'label': labels})['embeddings']

  height, width, channels = model.image_shape
  (batch,) = jax.export.symbolic_shape('b')
  images = jax.ShapeDtypeStruct((batch, height, width, channels), jnp.float32)
  return jax.export.export(
    jax.jit(embed), platforms=None if platforms is None else tuple(platforms)
  )(images)


def metadata(
  model: model_lib.TrainedModel, exported: jax.export.Exported
) -> dict:
  """What the exported function takes and where it came from."""
  transform: images_lib.Transform = model.transform
  return {
    'input': {
      'shape': ['b', *model.image_shape],
      'dtype': 'float32',
      # Before the normalization, if any.
      'range': [0.0, 1.0],
      'from_image_files': {
        'decode': (
          'PIL, converted to grey (L)'
          if transform.channels == 1
          else 'PIL, converted to RGB'
        ),
        'resize_on_decode': transform.decode_size,
        'transform': transform.kind,
        'scale': f'pixel / {images_lib.FILE_MAX_PIXEL_VALUE}',
        'normalization': transform.normalization,
      },
    },
    'output': {
      'shape': ['b', int(exported.out_avals[0].shape[-1])],
      'dtype': str(exported.out_avals[0].dtype),
      'similarity': 'cosine',
    },
    'platforms': list(exported.platforms),
    'workdir': model.workdir,
    'step': model.step,
    'loss': model.config.loss.name,
    'data_set': model.dataset.info.name,
    'jax_version': jax.__version__,
  }


def save(
  path: str | os.PathLike,
  model: model_lib.TrainedModel,
  *,
  platforms: Sequence[str] | None = None,
) -> str:
  """Exports the embedding step to `path` and its metadata beside it.

  Returns:
    `path`.
  """
  path = os.fspath(path)
  exported = export_embedding(model, platforms=platforms)
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path, 'wb') as file:
    file.write(exported.serialize())
  with open(path + METADATA_SUFFIX, 'w') as file:
    json.dump(metadata(model, exported), file, indent=2)
  return path


def load(path: str | os.PathLike) -> jax.export.Exported:
  """The exported function in `path` (`jax.export.deserialize`); call it
  with ``.call(images)``."""
  with open(os.fspath(path), 'rb') as file:
    return jax.export.deserialize(bytearray(file.read()))


def embed(exported: jax.export.Exported, images: np.ndarray) -> np.ndarray:
  """Embeddings ``[b, dim]`` of model inputs ``[b, H, W, C]``."""
  return np.asarray(exported.call(jnp.asarray(images, jnp.float32)))
