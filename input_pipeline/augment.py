"""Turning decoded uint8 images into a float32 batch, with augmentation.

Randomness comes in as uniform draws in [0, 1), one row per image, that the
caller takes from the global batch's stream (seed, step) and slices to this
process's rows. Each image's augmentation is therefore a function of
(seed, step, global row) alone: independent of the process count, of the
other rows and of the thread that builds the batch.

Kinds (``DataSetSpec.augmentation``):

* ``'none'``: digits, MNIST-like sets (a flipped digit is another digit).
* ``'crop_flip'``: CIFAR-like: zero-pad 4 pixels, random crop back to the
  original size, horizontal flip with probability 1/2. Vectorised over the
  batch with one gather.
* ``'inception_crop'``: large images of any size: training draws a random
  crop of 8%..100% of the area and aspect ratio in [3/4, 4/3] (up to 10
  tries, else the central crop of the whole image), resized to
  ``image_size``, flipped with probability 1/2; evaluation (and training
  without augmentation) resizes the central 87.5% square, the classic
  resize-to-256 / center-crop-224 ratio. Crop and resize are one PIL
  ``resize(box=...)`` call per image; the flip happens as each crop is
  copied into the batch.
* ``'reid'``: person re-identification, images stored at their final
  size (256 x 128): zero-pad 10 pixels and crop back, flip with
  probability 1/2, then random erasing (Zhong et al. 2020): with
  probability 0.5 a rectangle of 2%..40% of the image with aspect ratio
  in [0.3, 1 / 0.3] is filled with the ImageNet mean. Vectorised over the
  batch.

Output values are ``pixel / max_pixel_value`` in [0, 1]; `normalize` then
scales them as a pretrained backbone expects (``config.input.normalization``).
`make_batch` and `augment_array` can do both at once (their
``normalization``): `to_float` looks each uint8 value's result up in a
table, the same floats 3x faster.
"""

import math

import numpy as np

KINDS = ('none', 'crop_flip', 'inception_crop', 'reid')
CROP_PADDING = 4
# The strong re-id baseline's training transform (Luo et al. 2019, "Bag of
# Tricks and A Strong Baseline for Deep Person Re-identification"; its code
# github.com/michuanhaohao/reid-strong-baseline, data/transforms/build.py:
# RandomHorizontalFlip(0.5), Pad(10) + RandomCrop, RandomErasing).
REID_PADDING = 10
# Random erasing (Zhong et al. 2020, "Random Erasing Data Augmentation",
# AAAI; the values of its re-id experiments and of its code's RandomErasing
# defaults, which the baseline above uses): erase with probability 0.5 a
# rectangle of area 0.02..0.4 of the image and aspect ratio (height /
# width) uniform in [0.3, 1 / 0.3], the first of up to 100 candidates that
# fits. The fill: the ImageNet mean, which `normalize` with 'imagenet' maps
# to 0 (the baseline's code fills the already normalised tensor with the
# mean's values instead, a small shift it does not discuss).
ERASE_PROBABILITY = 0.5
ERASE_AREA = (0.02, 0.4)
ERASE_MIN_ASPECT = 0.3
_ERASE_ATTEMPTS = 100
CENTER_CROP_FRACTION = 0.875
_MIN_AREA, _MAX_AREA = 0.08, 1.0
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
_CROP_ATTEMPTS = 10
# Pixels `to_float` converts at a time (a 224 x 224 image: 1.4x this).
_CHUNK_PIXELS = 2**16

# config.input.normalization: None or 'none' keeps pixels in [0, 1];
# 'imagenet' is what ImageNet-pretrained torchvision and timm models expect.
# 'arcface': [-1, 1], as insightface's arcface_torch feeds its face models
# ((x / 255 - 0.5) / 0.5 in its data loader and verification code).
NORMALIZATIONS = ('none', 'imagenet', 'arcface')
# The per-channel (R, G, B) mean and standard deviation of ImageNet's
# training images in [0, 1], as torchvision's and timm's ImageNet models
# normalise their input (torchvision.transforms.Normalize in its reference
# training scripts; timm's IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def num_draws(kind: str) -> int:
  """How many uniforms one image of `kind` consumes."""
  if kind == 'crop_flip':
    return 3  # dy, dx, flip.
  if kind == 'inception_crop':
    return 4 * _CROP_ATTEMPTS + 1  # (area, ratio, x, y) per try, flip.
  if kind == 'reid':
    # dy, dx, flip, erase?, then (area, aspect, y, x) per erasing try.
    return 4 + 4 * _ERASE_ATTEMPTS
  return 0


def _resize(
  image: np.ndarray,
  size: tuple[int, int],
  box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
  """Bilinear resize of the `box` region (x0, y0, x1, y1) of `image`.

  Args:
    image: uint8 ``[H, W, C]``, C in {1, 3}.
    size: output ``(height, width)``.
    box: the source region in pixels; None is the whole image.

  Returns:
    uint8 ``[height, width, C]``.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  resized = pil.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
  return np.asarray(resized, dtype=np.uint8).reshape(size[0], size[1], channels)


def _random_crop_box(
  height: int, width: int, draws: np.ndarray
) -> tuple[float, float, float, float]:
  """The first of the candidate crops that fits, else the central one.

  Args:
    height: image height.
    width: image width.
    draws: ``[4 * attempts]`` uniforms (area, log-ratio, x, y per try).

  Returns:
    ``(x0, y0, x1, y1)`` in pixels.
  """
  draws = draws.reshape(_CROP_ATTEMPTS, 4)
  area = height * width * (_MIN_AREA + (_MAX_AREA - _MIN_AREA) * draws[:, 0])
  ratio = np.exp(_LOG_RATIO[0] + (_LOG_RATIO[1] - _LOG_RATIO[0]) * draws[:, 1])
  crop_w = np.sqrt(area * ratio)
  crop_h = np.sqrt(area / ratio)
  fits = np.flatnonzero((crop_w <= width) & (crop_h <= height))
  if fits.size:
    i = fits[0]
    x0 = draws[i, 2] * (width - crop_w[i])
    y0 = draws[i, 3] * (height - crop_h[i])
    return (x0, y0, x0 + crop_w[i], y0 + crop_h[i])
  # Fallback: the whole image cropped to the nearest allowed aspect ratio.
  ratio = min(max(width / height, 3 / 4), 4 / 3)
  crop_w, crop_h = min(width, height * ratio), min(height, width / ratio)
  x0, y0 = (width - crop_w) / 2, (height - crop_h) / 2
  return (x0, y0, x0 + crop_w, y0 + crop_h)


def _center_crop_box(
  height: int, width: int
) -> tuple[float, float, float, float]:
  """The central square of side 87.5% of the shorter side."""
  side = CENTER_CROP_FRACTION * min(height, width)
  x0, y0 = (width - side) / 2, (height - side) / 2
  return (x0, y0, x0 + side, y0 + side)


def _flip(batch: np.ndarray, flips: np.ndarray) -> np.ndarray:
  """Mirrors the rows of `batch` ``[b, H, W, C]`` where `flips` ``[b]``."""
  return np.where(flips[:, None, None, None], batch[:, :, ::-1], batch)


def _pad_crop(
  batch: np.ndarray, dy: np.ndarray, dx: np.ndarray, pad: int = CROP_PADDING
) -> np.ndarray:
  """Zero-pads `batch` ``[b, H, W, C]`` by `pad` and crops each image at
  (dy, dx)."""
  b, height, width, _ = batch.shape
  padded = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  # Every window as a view [b, 2 pad + 1, 2 pad + 1, C, H, W]; one gather
  # picks each image's (17x faster than indexing pixel by pixel).
  windows = np.lib.stride_tricks.sliding_window_view(
    padded, (height, width), axis=(1, 2)
  )
  return np.moveaxis(windows[np.arange(b), dy, dx], 1, -1)


def _erase(batch: np.ndarray, draws: np.ndarray) -> np.ndarray:
  """Random erasing of float `batch` ``[b, H, W, C]`` in [0, 1].

  Args:
    batch: the images.
    draws: ``[b, 1 + 4 * attempts]`` uniforms: erase when the first is
      below `ERASE_PROBABILITY`, then (area, aspect, y, x) per try.

  Returns:
    The batch with each erased image's rectangle set to the ImageNet mean
    (its average for grey images).
  """
  b, height, width, channels = batch.shape
  tries = draws[:, 1:].reshape(b, _ERASE_ATTEMPTS, 4)
  low, high = ERASE_AREA
  area = height * width * (low + (high - low) * tries[..., 0])
  aspect = (
    ERASE_MIN_ASPECT
    + (1 / ERASE_MIN_ASPECT - ERASE_MIN_ASPECT) * (tries[..., 1])
  )
  # Zhong et al.'s code: h = round(sqrt(area * aspect)), w likewise, kept
  # when h < H and w < W; the corner uniform over the positions that fit.
  heights = np.rint(np.sqrt(area * aspect)).astype(np.int64)
  widths = np.rint(np.sqrt(area / aspect)).astype(np.int64)
  fits = (heights < height) & (widths < width)
  first = np.argmax(fits, axis=1)
  rows = np.arange(b)
  erase = (draws[:, 0] < ERASE_PROBABILITY) & fits[rows, first]
  h, w = heights[rows, first], widths[rows, first]
  y0 = np.floor(tries[rows, first, 2] * (height - h + 1)).astype(np.int64)
  x0 = np.floor(tries[rows, first, 3] * (width - w + 1)).astype(np.int64)
  ys = np.arange(height)[None, :, None]
  xs = np.arange(width)[None, None, :]
  inside = (
    erase[:, None, None]
    & (ys >= y0[:, None, None])
    & (ys < (y0 + h)[:, None, None])
    & (xs >= x0[:, None, None])
    & (xs < (x0 + w)[:, None, None])
  )
  fill = np.asarray(IMAGENET_MEAN, np.float32)
  if channels != 3:
    fill = np.full(channels, fill.mean(), np.float32)
  return np.where(inside[..., None], fill, batch).astype(np.float32)


def make_batch(
  images: list[np.ndarray],
  *,
  kind: str,
  out_shape: tuple[int, int, int],
  max_pixel_value: int,
  draws: np.ndarray | None,
  normalization: str | None = None,
) -> np.ndarray:
  """Builds the float32 batch from decoded images.

  Args:
    images: ``b`` uint8 arrays ``[H_i, W_i, C]`` (sizes may differ for
      ``'inception_crop'``; otherwise they are resized when they differ from
      `out_shape`).
    kind: one of `KINDS`.
    out_shape: ``(H, W, C)`` of each output image.
    max_pixel_value: stored value of white (255; 16 for the digits).
    draws: ``[b, num_draws(kind)]`` uniforms in [0, 1) to augment, or None
      for the deterministic (evaluation) transform.
    normalization: as `normalize` takes it; None: pixels in [0, 1].

  Returns:
    float32 ``[b, H, W, C']``: ``normalize(images in [0, 1],
    normalization)``, bit for bit.

  Raises:
    ValueError: for an unknown kind or draws of the wrong shape.
  """
  if kind not in KINDS:
    raise ValueError(f'kind must be one of {KINDS}, received {kind!r}')
  height, width, channels = out_shape
  if not images:
    return np.zeros((0, height, width, channels), np.float32)
  if draws is not None and kind != 'none':
    expected = (len(images), num_draws(kind))
    if draws.shape != expected:
      raise ValueError(
        f'draws must have shape {expected}, received {draws.shape}'
      )
  if kind == 'inception_crop':
    batch = _inception_crops(images, (height, width), draws)
  else:
    batch = np.stack(
      [
        image
        if image.shape[:2] == (height, width)
        else _resize(image, (height, width))
        for image in images
      ]
    )
  if batch.shape[1:] != out_shape:
    raise ValueError(
      f'images must have {channels} channel(s) to give {out_shape}, '
      f'received a batch of shape {batch.shape}'
    )
  if kind == 'inception_crop':
    return to_float(batch, max_pixel_value, normalization)
  return augment_array(
    batch,
    kind=kind,
    max_pixel_value=max_pixel_value,
    draws=draws,
    normalization=normalization,
  )


def _inception_crops(
  images: list[np.ndarray], size: tuple[int, int], draws: np.ndarray | None
) -> np.ndarray:
  """uint8 ``[b, *size, C]``: each image's crop box resized to `size`,
  mirrored where its last draw is below 1/2 (the central box, unmirrored,
  without draws)."""
  batch = np.empty((len(images), *size, images[0].shape[-1]), np.uint8)
  for row, image in enumerate(images):
    if image.shape[-1] != batch.shape[-1]:
      raise ValueError(
        'images must share their channel count, received '
        f'{images[0].shape} and {image.shape}'
      )
    if draws is None:
      box = _center_crop_box(image.shape[0], image.shape[1])
    else:
      box = _random_crop_box(image.shape[0], image.shape[1], draws[row, :-1])
    crop = _resize(image, size, box)
    # Mirrored while copied into the batch: no pass over the whole batch.
    batch[row] = (
      crop[:, ::-1] if draws is not None and draws[row, -1] < 0.5 else crop
    )
  return batch


def augment_array(
  batch: np.ndarray,
  *,
  kind: str,
  max_pixel_value: int,
  draws: np.ndarray | None,
  normalization: str | None = None,
) -> np.ndarray:
  """`make_batch` for images of one shape already in one array.

  Args:
    batch: uint8 ``[b, H, W, C]`` images of the output shape.
    kind: ``'none'``, ``'crop_flip'`` or ``'reid'`` (``'inception_crop'``
      resizes each image: `make_batch`).
    max_pixel_value: stored value of white.
    draws: ``[b, num_draws(kind)]`` uniforms, or None (no augmentation).
    normalization: as `normalize` takes it; None: pixels in [0, 1].

  Returns:
    float32 ``[b, H, W, C']``, batch operations only.
  """
  if kind == 'inception_crop':
    raise ValueError("augment_array takes 'none', 'crop_flip' or 'reid' images")
  augmented = kind in ('crop_flip', 'reid') and draws is not None
  if augmented:
    if draws.shape != (len(batch), num_draws(kind)):
      raise ValueError(
        f'draws must have shape {(len(batch), num_draws(kind))}, received '
        f'{draws.shape}'
      )
    pad = CROP_PADDING if kind == 'crop_flip' else REID_PADDING
    offsets = np.floor(draws[:, :2] * (2 * pad + 1)).astype(int)
    batch = _pad_crop(batch, offsets[:, 0], offsets[:, 1], pad)
    batch = _flip(batch, draws[:, 2] < 0.5)
  if augmented and kind == 'reid':
    # Erased in [0, 1] (the fill is the mean there), then normalised.
    batch = _erase(to_float(batch, max_pixel_value, None), draws[:, 3:])
    return normalize(batch, normalization)
  return to_float(batch, max_pixel_value, normalization)


def to_float(
  batch: np.ndarray, max_pixel_value: int, normalization: str | None
) -> np.ndarray:
  """``normalize(batch / max_pixel_value, normalization)`` in float32.

  Args:
    batch: ``[b, H, W, C]``, uint8 (the fast path) or another number type.
    max_pixel_value: stored value of white.
    normalization: as `normalize` takes it.

  Returns:
    float32 ``[b, H, W, C']``, bit for bit ``normalize(batch.astype(
    np.float32) / np.float32(max_pixel_value), normalization)``: a uint8
    pixel has 256 values, so each channel's 256 results are computed by
    those very operations once and then looked up (with 'imagenet', 3x
    faster than computing them on a 32 x 224 x 224 batch).
  """
  if batch.dtype != np.uint8 or check_normalization(normalization) == 'none':
    # One vectorised pass is fastest when there is nothing to normalise.
    return normalize(
      batch.astype(np.float32) / np.float32(max_pixel_value), normalization
    )
  channels = batch.shape[-1]
  values = np.arange(256, dtype=np.uint8)[:, None].repeat(channels, axis=1)
  table = normalize(
    values.astype(np.float32)[None, None] / np.float32(max_pixel_value),
    normalization,
  )[0, 0]  # [256, C'].
  out = np.empty((*batch.shape[:-1], table.shape[-1]), np.float32)
  # In chunks of about _CHUNK_PIXELS: each chunk's input and output stay in
  # the cache between the channels' passes (twice as fast as whole-batch
  # passes at 224 x 224), and small images still go many at a time.
  rows = max(1, _CHUNK_PIXELS // max(1, math.prod(batch.shape[1:-1])))
  for start in range(0, len(batch), rows):
    chunk = slice(start, start + rows)
    for c in range(table.shape[-1]):
      # Grey images normalised to RGB look up their one channel 3 times.
      np.take(
        table[:, c],
        batch[chunk, ..., min(c, channels - 1)],
        out=out[chunk, ..., c],
        mode='clip',
      )
  return out


def check_normalization(normalization: str | None) -> str:
  """`normalization` by name ('none' for None); raises ValueError if unknown."""
  if normalization is None:
    return 'none'
  if normalization not in NORMALIZATIONS:
    raise ValueError(
      f'config.input.normalization must be None or one of {NORMALIZATIONS}, '
      f'received {normalization!r}'
    )
  return normalization


def normalized_channels(channels: int, normalization: str | None) -> int:
  """Channels of the images `normalize` returns for `channels` in."""
  if check_normalization(normalization) == 'imagenet':
    return 3
  return channels


def normalize(batch: np.ndarray, normalization: str | None) -> np.ndarray:
  """Scales a float32 batch in [0, 1] as a pretrained backbone expects.

  Args:
    batch: ``[b, H, W, C]`` float32 in [0, 1] (`make_batch`'s output), C in
      {1, 3} for 'imagenet'.
    normalization: None or 'none' (returns `batch` as is), 'arcface'
      (``(x - 0.5) / 0.5``, in [-1, 1]) or 'imagenet': grey images (C = 1)
      are repeated to 3 channels, then every channel ``c`` becomes
      ``(x - IMAGENET_MEAN[c]) / IMAGENET_STD[c]`` (RGB).

  Returns:
    float32 ``[b, H, W, C']``.

  Raises:
    ValueError: for an unknown normalization, or 'imagenet' on images with
      neither 1 nor 3 channels.
  """
  normalization = check_normalization(normalization)
  if normalization == 'none':
    return batch
  if normalization == 'arcface':
    return ((batch - np.float32(0.5)) / np.float32(0.5)).astype(np.float32)
  channels = batch.shape[-1]
  if channels == 1:
    batch = np.repeat(batch, 3, axis=-1)
  elif channels != 3:
    raise ValueError(
      "config.input.normalization='imagenet' needs RGB or grey images, "
      f'received {channels} channels'
    )
  mean = np.asarray(IMAGENET_MEAN, np.float32)
  std = np.asarray(IMAGENET_STD, np.float32)
  return ((batch - mean) / std).astype(np.float32)
