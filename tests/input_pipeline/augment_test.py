"""Batch transforms against NumPy references written from the definitions."""

import numpy as np
import pytest
from PIL import Image

from input_pipeline import augment


def _reference_crop_flip(image, dy, dx, flip):
  """Zero-pad 4, crop at (dy, dx), mirror: one image, plain loops."""
  height, width, channels = image.shape
  out = np.zeros_like(image)
  for i in range(height):
    for j in range(width):
      src_i, src_j = i + dy - 4, j + dx - 4
      if 0 <= src_i < height and 0 <= src_j < width:
        out[i, j] = image[src_i, src_j]
  return out[:, ::-1] if flip else out


def test_crop_flip_matches_reference():
  rng = np.random.default_rng(0)
  images = list(rng.integers(0, 256, (6, 10, 9, 3), dtype=np.uint8))
  draws = rng.random((6, 3))
  # Include the extreme offsets 0 and 8 and both flip outcomes.
  draws[0, :2], draws[1, :2] = 0.0, 0.9999
  draws[:, 2] = [0.1, 0.9, 0.2, 0.7, 0.4, 0.6]
  batch = augment.make_batch(
    images,
    kind='crop_flip',
    out_shape=(10, 9, 3),
    max_pixel_value=255,
    draws=draws,
  )
  assert batch.dtype == np.float32 and batch.shape == (6, 10, 9, 3)
  for row, image in enumerate(images):
    dy, dx = np.floor(draws[row, :2] * 9).astype(int)
    expected = _reference_crop_flip(image, dy, dx, draws[row, 2] < 0.5)
    np.testing.assert_array_equal(batch[row], expected / np.float32(255))


def test_without_draws_images_are_only_scaled():
  rng = np.random.default_rng(1)
  images = list(rng.integers(0, 17, (3, 8, 8, 1), dtype=np.uint8))
  for kind in ('none', 'crop_flip'):
    batch = augment.make_batch(
      images,
      kind=kind,
      out_shape=(8, 8, 1),
      max_pixel_value=16,
      draws=None,
    )
    np.testing.assert_array_equal(batch, np.stack(images) / np.float32(16))


def test_center_crop_of_a_large_image():
  rng = np.random.default_rng(2)
  image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
  # 87.5% of the shorter side (16) is 14: a 14x14 box at (3, 1); resizing it
  # to 14x14 is the identity.
  batch = augment.make_batch(
    [image],
    kind='inception_crop',
    out_shape=(14, 14, 3),
    max_pixel_value=255,
    draws=None,
  )
  np.testing.assert_array_equal(batch[0], image[1:15, 3:17] / np.float32(255))


def test_inception_crop_handles_mixed_sizes_and_flips():
  rng = np.random.default_rng(3)
  # A horizontal ramp: a flip reverses it.
  images = [
    np.broadcast_to(
      np.linspace(0, 255, w).astype(np.uint8)[None, :, None], (h, w, 3)
    ).copy()
    for h, w in [(30, 50), (7, 90), (64, 12), (5, 5)]
  ]
  draws = rng.random((4, augment.num_draws('inception_crop')))
  draws[:, -1] = [0.1, 0.9, 0.1, 0.9]
  batch = augment.make_batch(
    images,
    kind='inception_crop',
    out_shape=(8, 8, 3),
    max_pixel_value=255,
    draws=draws,
  )
  assert batch.shape == (4, 8, 8, 3) and batch.dtype == np.float32
  assert batch.min() >= 0 and batch.max() <= 1
  for row in range(4):
    ramp = batch[row, 0, :, 0]
    if draws[row, -1] < 0.5:
      assert ramp[0] >= ramp[-1]  # flipped: decreasing
    else:
      assert ramp[0] <= ramp[-1]


def test_random_crop_box_constraints():
  rng = np.random.default_rng(4)
  for _ in range(200):
    height, width = rng.integers(4, 300, 2)
    x0, y0, x1, y1 = augment._random_crop_box(  # pylint: disable=protected-access
      height, width, rng.random(40)
    )
    assert 0 <= x0 < x1 <= width + 1e-9 and 0 <= y0 < y1 <= height + 1e-9
    ratio = (x1 - x0) / (y1 - y0)
    assert 3 / 4 - 1e-9 <= ratio <= 4 / 3 + 1e-9
    area = (x1 - x0) * (y1 - y0) / (height * width)
    assert area <= 1 + 1e-9


def test_random_crop_box_fallback_is_central():
  # A 10x100 strip: no crop of the allowed aspect ratios covers >= 8% of it
  # when every try asks for the whole area.
  draws = np.tile([1.0, 0.5, 0.5, 0.5], 10)
  box = augment._random_crop_box(10, 100, draws)  # pylint: disable=protected-access
  np.testing.assert_allclose(box, (50 - 20 / 3, 0, 50 + 20 / 3, 10))


def test_make_batch_errors():
  image = np.zeros((4, 4, 3), np.uint8)
  with pytest.raises(ValueError, match='kind must be one of'):
    augment.make_batch(
      [image],
      kind='mixup',
      out_shape=(4, 4, 3),
      max_pixel_value=255,
      draws=None,
    )
  with pytest.raises(ValueError, match=r'draws must have shape \(1, 3\)'):
    augment.make_batch(
      [image],
      kind='crop_flip',
      out_shape=(4, 4, 3),
      max_pixel_value=255,
      draws=np.zeros((1, 2)),
    )
  with pytest.raises(ValueError, match='channel'):
    augment.make_batch(
      [image], kind='none', out_shape=(4, 4, 1), max_pixel_value=255, draws=None
    )


def _reference_reid(image, draws):
  """Zero-pad 10, crop, mirror, then Zhong et al.'s random erasing loop
  (their RandomErasing.__call__), one image in [0, 1]."""
  height, width, channels = image.shape
  out = np.zeros_like(image)
  dy, dx = np.floor(draws[:2] * 21).astype(int)
  for i in range(height):
    for j in range(width):
      src_i, src_j = i + dy - 10, j + dx - 10
      if 0 <= src_i < height and 0 <= src_j < width:
        out[i, j] = image[src_i, src_j]
  if draws[2] < 0.5:
    out = out[:, ::-1]
  out = out.astype(np.float32) / np.float32(255)
  if draws[3] >= 0.5:
    return out
  for attempt in range(100):
    area_u, aspect_u, y_u, x_u = draws[4 + 4 * attempt : 8 + 4 * attempt]
    target_area = (0.02 + 0.38 * area_u) * height * width
    aspect = 0.3 + (1 / 0.3 - 0.3) * aspect_u
    h = int(round(np.sqrt(target_area * aspect)))
    w = int(round(np.sqrt(target_area / aspect)))
    if w < width and h < height:
      y0 = int(np.floor(y_u * (height - h + 1)))
      x0 = int(np.floor(x_u * (width - w + 1)))
      out[y0 : y0 + h, x0 : x0 + w] = augment.IMAGENET_MEAN
      return out
  return out


def test_reid_matches_reference():
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (12, 24, 12, 3), dtype=np.uint8)
  draws = rng.random((12, augment.num_draws('reid')))
  draws[:6, 3] = 0.2  # Half the rows erased, half not.
  draws[6:, 3] = 0.7
  draws[0, :2], draws[1, :2] = 0.0, 0.9999  # Extreme offsets 0 and 20.
  batch = augment.augment_array(
    images, kind='reid', max_pixel_value=255, draws=draws
  )
  assert batch.dtype == np.float32 and batch.shape == images.shape
  for row in range(len(images)):
    np.testing.assert_allclose(
      batch[row], _reference_reid(images[row], draws[row]), atol=1e-7
    )
  # The same through make_batch (records of another size are resized).
  np.testing.assert_array_equal(
    augment.make_batch(
      list(images),
      kind='reid',
      out_shape=(24, 12, 3),
      max_pixel_value=255,
      draws=draws,
    ),
    batch,
  )


def test_reid_erasing_statistics():
  # About half the images erased, each over 2%..40% of its area.
  rng = np.random.default_rng(4)
  images = np.full((400, 32, 16, 3), 255, np.uint8)
  draws = rng.random((400, augment.num_draws('reid')))
  draws[:, :2] = 0.5  # No shift: only erased pixels differ from white.
  batch = augment.augment_array(
    images, kind='reid', max_pixel_value=255, draws=draws
  )
  erased = np.all(batch < 1, axis=-1).mean(axis=(1, 2))
  assert 0.4 < np.mean(erased > 0) < 0.6
  fractions = erased[erased > 0]
  assert fractions.min() >= 0.015 and fractions.max() <= 0.45


@pytest.mark.parametrize('normalization', [None, 'none', 'imagenet', 'arcface'])
@pytest.mark.parametrize(
  'shape,white',
  [
    ((3, 300, 250, 3), 255),  # Larger than a chunk: one image at a time.
    ((70, 8, 8, 1), 16),  # Many images per chunk, grey, digits' white.
    ((2, 5, 7, 1), 255),
  ],
)
def test_to_float_is_normalize_bit_for_bit(normalization, shape, white):
  rng = np.random.default_rng(5)
  batch = rng.integers(0, white + 1, shape, dtype=np.uint8)
  expected = augment.normalize(
    batch.astype(np.float32) / np.float32(white), normalization
  )
  out = augment.to_float(batch, white, normalization)
  assert out.dtype == np.float32 and out.shape == expected.shape
  np.testing.assert_array_equal(out, expected)


def test_to_float_of_other_types_and_of_every_byte():
  # Every stored value, including those above white, is looked up right.
  batch = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, -1)
  np.testing.assert_array_equal(
    augment.to_float(batch, 16, 'imagenet'),
    augment.normalize(batch.astype(np.float32) / np.float32(16), 'imagenet'),
  )
  floats = batch.astype(np.float64)
  np.testing.assert_array_equal(
    augment.to_float(floats, 255, 'arcface'),
    augment.normalize(floats.astype(np.float32) / 255, 'arcface'),
  )


@pytest.mark.parametrize('kind', augment.KINDS)
@pytest.mark.parametrize('augmented', [False, True])
def test_make_batch_normalizes_as_normalize_after(kind, augmented):
  rng = np.random.default_rng(6)
  images = list(rng.integers(0, 256, (5, 24, 20, 3), dtype=np.uint8))
  draws = rng.random((5, augment.num_draws(kind))) if augmented else None
  for normalization in ('imagenet', 'arcface'):
    kwargs = dict(
      kind=kind, out_shape=(24, 20, 3), max_pixel_value=255, draws=draws
    )
    np.testing.assert_array_equal(
      augment.make_batch(images, normalization=normalization, **kwargs),
      augment.normalize(augment.make_batch(images, **kwargs), normalization),
    )


def test_inception_crop_is_each_box_resized_then_mirrored():
  rng = np.random.default_rng(7)
  images = [
    rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for h, w in [(375, 500), (500, 375), (40, 30)]
  ]
  draws = rng.random((3, augment.num_draws('inception_crop')))
  draws[:, -1] = [0.2, 0.8, 0.3]
  batch = augment.make_batch(
    images,
    kind='inception_crop',
    out_shape=(32, 32, 3),
    max_pixel_value=255,
    draws=draws,
  )
  for row, image in enumerate(images):
    box = augment._random_crop_box(  # pylint: disable=protected-access
      *image.shape[:2], draws[row, :-1]
    )
    crop = Image.fromarray(image).resize(
      (32, 32), Image.Resampling.BILINEAR, box=box
    )
    crop = np.asarray(crop)
    if draws[row, -1] < 0.5:
      crop = crop[:, ::-1]
    np.testing.assert_array_equal(batch[row], crop / np.float32(255))


def _torchvision_crop_params(rng, height, width):
  """torchvision's RandomResizedCrop.get_params (scale (0.08, 1), ratio
  (3/4, 4/3)), written from its source: (area fraction, aspect ratio)."""
  area = height * width
  for _ in range(10):
    target = area * rng.uniform(0.08, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = int(round(np.sqrt(target * ratio)))
    h = int(round(np.sqrt(target / ratio)))
    if 0 < w <= width and 0 < h <= height:
      return w * h / area, w / h
  in_ratio = width / height
  if in_ratio < 3 / 4:
    w, h = width, int(round(width / (3 / 4)))
  elif in_ratio > 4 / 3:
    h, w = height, int(round(height * 4 / 3))
  else:
    w, h = width, height
  return w * h / area, w / h


@pytest.mark.parametrize('height,width', [(375, 500), (500, 333), (224, 224)])
def test_crop_box_distribution_is_torchvisions(height, width):
  # The scale and aspect-ratio distributions of `_random_crop_box` against
  # torchvision's sampler (independent draws, 20,000 each): same range,
  # quantiles within sampling error (and torchvision's rounding to pixels).
  rng = np.random.default_rng(8)
  draws = rng.random((20_000, 40))
  crop_box = augment._random_crop_box  # pylint: disable=protected-access
  boxes = np.array([crop_box(height, width, d) for d in draws])
  widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  ours = np.stack([widths * heights / (height * width), widths / heights], 1)
  theirs = np.array(
    [_torchvision_crop_params(rng, height, width) for _ in range(20_000)]
  )
  assert ours[:, 0].min() >= 0.08 - 1e-9 and ours[:, 0].max() <= 1 + 1e-9
  assert ours[:, 1].min() >= 3 / 4 - 1e-9 and ours[:, 1].max() <= 4 / 3 + 1e-9
  assert np.all(boxes[:, :2] >= -1e-9)
  assert np.all(boxes[:, 2] <= width + 1e-9)
  assert np.all(boxes[:, 3] <= height + 1e-9)
  quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
  np.testing.assert_allclose(
    np.quantile(ours[:, 0], quantiles),
    np.quantile(theirs[:, 0], quantiles),
    atol=0.02,
  )
  np.testing.assert_allclose(
    np.quantile(np.log(ours[:, 1]), quantiles),
    np.quantile(np.log(theirs[:, 1]), quantiles),
    atol=0.02,
  )
  # The box's position is uniform over the places it fits: its centre's
  # mean is the image's centre.
  centre = (boxes[:, 0] + boxes[:, 2]) / 2 / width
  assert abs(centre.mean() - 0.5) < 0.01
