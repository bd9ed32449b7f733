"""Argument checks shared by the backbones."""

import jax.numpy as jnp


def check_embedding_dim(embedding_dim) -> None:
  """Raises ValueError unless `embedding_dim` is a positive int."""
  if (
    isinstance(embedding_dim, bool)
    or not isinstance(embedding_dim, int)
    or embedding_dim < 1
  ):
    raise ValueError(
      f'`embedding_dim` must be a positive int, received {embedding_dim!r}'
    )


def check_images(images) -> None:
  """Raises ValueError unless `images` is ``[batch, height, width, chan]``."""
  shape = jnp.shape(images)
  if len(shape) != 4:
    raise ValueError(
      '`images` must have rank 4 ([batch, height, width, channels]), '
      f'received shape {shape}'
    )
