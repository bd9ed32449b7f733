"""The embedded data sets: sklearn's 8x8 digits and a multi-label variant.

Both are TFDS builders prepared offline (the digits ship inside the
scikit-learn wheel) as array_record, so that they are read exactly like the
catalog sets: ``builder.as_data_source(split)`` and grain.

* ``digits``: 1797 grey images, 8x8x1 uint8 with values 0..16, 10 classes.
  A stratified 80/20 split with a fixed seed: 1438 train / 359 test.
* ``digits_multilabel``: two digits of the same split side by side, 8x16x1,
  target the multi-hot set of the digits shown (one label when both are the
  same digit). One composite per digit of the split, so 1438 / 359; the
  train composites use only train digits and the test composites only test
  digits. Each record keeps the indices of its two source digits
  (``left_index``, ``right_index``: positions in the digits split) and their
  labels, so the composition can be checked.

The builders live in a package module on purpose: TFDS locates a builder's
metadata through its module's package, and in a builder defined in a
top-level module ``dataset_info_from_configs`` fails with ``TypeError:
'<module>' is not a package`` (tensorflow-datasets 4.9).
"""

import numpy as np
import tensorflow_datasets as tfds

NUM_CLASSES = 10
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0
# Separate streams so that the pairing of train and test composites are
# independent of each other and of the split.
_PAIRING_SEEDS = {'train': 1, 'test': 2}


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The digits of one split, in the order the builder writes them.

  The split is stratified: in every class a fixed-seed permutation sends
  ``round(0.2 * count)`` digits to test and the rest to train; each split
  keeps sklearn's original order. NumPy's PCG64 stream is stable across
  versions, so the split is the same on every machine.

  Args:
    split: ``'train'`` or ``'test'``.

  Returns:
    ``(images, labels)``: uint8 ``[n, 8, 8, 1]`` with values 0..16 and int64
    ``[n]`` class ids 0..9.

  Raises:
    ValueError: for an unknown split.
  """
  if split not in ('train', 'test'):
    raise ValueError(f"split must be 'train' or 'test', received {split!r}")
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top

  digits = sk_datasets.load_digits()
  images = digits.images.astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  rng = np.random.default_rng(_SPLIT_SEED)
  is_test = np.zeros(len(labels), dtype=bool)
  for label in range(NUM_CLASSES):
    members = np.flatnonzero(labels == label)
    num_test = int(round(_TEST_FRACTION * len(members)))
    is_test[rng.permutation(members)[:num_test]] = True
  keep = is_test if split == 'test' else ~is_test
  return images[keep], labels[keep]


def compose_pairs(split: str) -> np.ndarray:
  """Which two digits of `split` each multi-label composite shows.

  Args:
    split: ``'train'`` or ``'test'``.

  Returns:
    int64 ``[n, 2]``: (left, right) positions in ``load_split(split)``; row
    i has left = i and right = a fixed permutation's i-th entry, so every
    digit appears once on each side.
  """
  _, labels = load_split(split)
  rng = np.random.default_rng(_PAIRING_SEEDS[split])
  right = rng.permutation(len(labels))
  return np.stack([np.arange(len(labels)), right], axis=1).astype(np.int64)


class Digits(tfds.core.GeneratorBasedBuilder):
  """sklearn's 8x8 handwritten digits (values 0..16), 80/20 stratified."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 80/20 split with seed 0.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        'The UCI optical digits bundled with scikit-learn: 8x8x1 uint8 '
        'images with values 0..16.'
      ),
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
          'label': tfds.features.ClassLabel(
            names=[str(d) for d in range(NUM_CLASSES)]
          ),
        }
      ),
      supervised_keys=('image', 'label'),
      # Keep the generation order, so records follow the documented order.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ship with sklearn.
    return {
      split: self._generate_examples(split) for split in ('train', 'test')
    }

  def _generate_examples(self, split):
    images, labels = load_split(split)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
      yield index, {'image': image, 'label': int(label)}


class DigitsMultilabel(tfds.core.GeneratorBasedBuilder):
  """Two digits side by side (8x16x1); target: the set of digits shown."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'One composite per digit of each split.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        'Pairs of sklearn digits of the same split side by side; the '
        'target is the multi-hot set of the digits shown.'
      ),
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(shape=(8, 16, 1), dtype=np.uint8),
          'labels': tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.uint8),
          'left_index': tfds.features.Tensor(shape=(), dtype=np.int64),
          'right_index': tfds.features.Tensor(shape=(), dtype=np.int64),
          'left_label': tfds.features.Tensor(shape=(), dtype=np.int64),
          'right_label': tfds.features.Tensor(shape=(), dtype=np.int64),
        }
      ),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
      split: self._generate_examples(split) for split in ('train', 'test')
    }

  def _generate_examples(self, split):
    images, labels = load_split(split)
    for index, (left, right) in enumerate(compose_pairs(split)):
      multi_hot = np.zeros(NUM_CLASSES, dtype=np.uint8)
      multi_hot[[labels[left], labels[right]]] = 1
      yield (
        index,
        {
          'image': np.concatenate([images[left], images[right]], axis=1),
          'labels': multi_hot,
          'left_index': left,
          'right_index': right,
          'left_label': labels[left],
          'right_label': labels[right],
        },
      )
