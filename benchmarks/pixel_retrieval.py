r"""Retrieval on raw pixels: the floor a learned embedding has to beat.

The class-disjoint digits retrieval of configs/digits_retrieval.py (train
on digits 0-4, retrieve among 5-9) scored on the test split's images as
they enter the network (8 x 8 pixels, normalised: 64-D vectors), with the
metrics the comparisons report (`evaluation.retrieval_metrics`).

  python -m benchmarks.pixel_retrieval [--config=configs/digits_retrieval.py]
"""

import numpy as np
from absl import app, flags
from ml_collections import config_flags

import evaluation
import input_pipeline

METRICS = ('recall@1', 'recall@2', 'recall@4', 'recall@8', 'map@r', 'nmi')


def test_pixels(config) -> tuple[np.ndarray, np.ndarray]:
  """The test split's images flattened to vectors, and their labels."""
  dataset = input_pipeline.create_dataset(config.input, seed=config.seed)
  images, labels = [], []
  for batch in dataset.eval_batches('test', config.eval_batch_size):
    kept = batch['mask'].astype(bool)
    images.append(batch['image'][kept].reshape(int(kept.sum()), -1))
    labels.append(batch['label'][kept])
  return np.concatenate(images).astype(np.float64), np.concatenate(labels)


def main(argv):
  del argv
  pixels, labels = test_pixels(flags.FLAGS.config)
  print(
    f'{len(labels)} test images, {pixels.shape[1]} values each, '
    f'{len(np.unique(labels))} classes'
  )
  print('| features | ' + ' | '.join(METRICS) + ' |')
  print('|---' * (len(METRICS) + 1) + '|')
  for metric in ('cosine', 'euclidean'):
    results = evaluation.retrieval_metrics(pixels, labels, metric=metric)
    cells = ' | '.join(f'{results[key]:.3f}' for key in METRICS)
    print(f'| pixels, {metric} | {cells} |')


if __name__ == '__main__':
  # Defined here, not at import: the tests import this module beside
  # benchmarks.compare, whose --config is another flag.
  config_flags.DEFINE_config_file(
    'config', 'configs/digits_retrieval.py', 'An experiment config.'
  )
  app.run(main)
