"""configs/face.py end to end: a tiny RecordIO set of drawn "faces" and a
tiny .bin verification set, both in insightface's formats, 2 training
steps of an IResNet."""

import io
import json
import os
import pickle

import numpy as np
from PIL import Image, ImageDraw

import train
from configs import face
from tests import support

IDENTITIES = 4
SIZE = 16


def _face(identity, rng):
  """A drawn face: head colour and eye spacing by identity, plus noise."""
  image = Image.new('RGB', (SIZE, SIZE), (20, 20, 20))
  draw = ImageDraw.Draw(image)
  colour = (60 * identity + 40, 200 - 40 * identity, 120)
  draw.ellipse((2, 1, SIZE - 3, SIZE - 2), fill=colour)
  gap = 2 + identity
  for x in (SIZE // 2 - gap // 2 - 1, SIZE // 2 + gap // 2):
    draw.point((x, SIZE // 3), fill=(0, 0, 0))
  pixels = np.asarray(image, np.float64) + rng.normal(0, 8, (SIZE, SIZE, 3))
  return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write_faces(root, rng):
  """The training set as insightface ships it: train.rec / train.idx."""
  encoded, labels = [], []
  for identity in range(IDENTITIES):
    for _ in range(4):
      buffer = io.BytesIO()
      _face(identity, rng).save(buffer, format='JPEG')
      encoded.append(buffer.getvalue())
      labels.append(identity)
  support.write_recordio_face_set(root, encoded, labels, (SIZE, SIZE))


def _write_bin(path, rng, num_pairs=20):
  encoded, flags = [], []
  for i in range(num_pairs):
    first = i % IDENTITIES
    second = first if i % 2 == 0 else (first + 1) % IDENTITIES
    for identity in (first, second):
      buffer = io.BytesIO()
      _face(identity, rng).save(buffer, format='JPEG')
      encoded.append(buffer.getvalue())
    flags.append(first == second)
  with open(path, 'wb') as file:
    pickle.dump((encoded, flags), file, protocol=2)


def test_face_config_trains_and_verifies(tmp_path):
  rng = np.random.default_rng(0)
  _write_faces(str(tmp_path / 'faces'), rng)
  _write_bin(str(tmp_path / 'tiny_lfw.bin'), rng)
  config = face.get_config('arcface')
  config.input.name = 'recordio'
  config.input.recordio = str(tmp_path / 'faces')
  config.input.data_dir = str(tmp_path / 'tfds')
  config.input.image_size = SIZE
  config.input.batch_size = 8
  config.input.num_threads = 0
  config.model.name = 'iresnet18'
  config.model.embedding_dim = 16
  config.num_train_steps = 2
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_batch_size = 8
  config.verification = (str(tmp_path / 'tiny_lfw.bin'),)
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  for metric in ('accuracy', 'accuracy_std', 'auc', 'eer', 'tar@far=1e-3'):
    assert 0.0 <= results[f'verify/tiny_lfw/{metric}'] <= 1.0
  with open(os.path.join(workdir, 'results.json')) as file:
    assert 'verify/tiny_lfw/accuracy' in json.load(file)['metrics']
  assert os.path.getsize(os.path.join(workdir, 'roc.png')) > 0
