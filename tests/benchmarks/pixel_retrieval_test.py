"""benchmarks/pixel_retrieval.py reads every test image of the run's view."""

import numpy as np

from benchmarks import pixel_retrieval
from configs import digits_retrieval


def test_every_unseen_test_image_becomes_one_pixel_vector(digits_data_dir):
  config = digits_retrieval.get_config()
  config.input.data_dir = digits_data_dir
  config.eval_batch_size = 64  # Several batches, the last one padded.
  pixels, labels = pixel_retrieval.test_pixels(config)
  # sklearn's digits: 8 x 8 grey images; digits 5-9 of the test split,
  # numbered 0-4 after the 5 training classes.
  assert pixels.shape == (len(labels), 64)
  assert sorted(np.unique(labels)) == [0, 1, 2, 3, 4]
  assert len(labels) == len({tuple(row) for row in pixels}) > 150
