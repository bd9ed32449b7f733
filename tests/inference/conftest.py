"""One tiny model trained on an image folder, shared by the package's tests.

The folder has 4 classes of 8x8 grey PNGs; the run is class-disjoint
(trains on a, b; evaluates on the test split's c, d), so its final
evaluation also writes ``retrieval.png``.
"""

import os

import numpy as np
import pytest
from PIL import Image

import train
from configs import tiny
from inference import model as model_lib

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


@pytest.fixture(scope='package')
def trained(tmp_path_factory):
  """``(workdir, image folder root)`` of a finished 2-step run."""
  root = str(tmp_path_factory.mktemp('images'))
  write_images(os.path.join(root, 'train'), TRAIN_PER_CLASS, seed=0)
  write_images(os.path.join(root, 'test'), TEST_PER_CLASS, seed=1)
  config = tiny.get_config()
  config.input.name = 'image_folder'
  config.input.image_folder = root
  config.input.data_dir = str(tmp_path_factory.mktemp('tfds'))
  config.input.class_disjoint = True
  config.input.batch_size = 8
  config.input.num_threads = 0
  config.num_train_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 2
  # 4 test devices: the evaluation batch is split over them.
  config.eval_batch_size = 8
  config.write_plots = True
  workdir = str(tmp_path_factory.mktemp('workdir'))
  # Compiled fast (most of XLA's optimisations off: tests/conftest.py).
  train.train_and_evaluate(config, workdir)
  return workdir, root


@pytest.fixture(scope='package')
def model(trained):
  """The trained run's model, restored."""
  workdir, _ = trained
  return model_lib.load(workdir)
