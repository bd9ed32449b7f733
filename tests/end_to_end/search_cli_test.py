"""search.py: a folder of queries against an embedded split, a picture."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from evaluation import plots
from inference import embed, embeddings_file
from tests import support


def test_search_a_folder_with_picture(trained, model, tmp_path):
  workdir, root = trained
  gallery = embed.embed_split(model, 'test', progress=False)
  gallery_path = embeddings_file.save(tmp_path / 'gallery.npz', gallery)
  # The class 'c' of the test split, as a folder of one class.
  queries = str(tmp_path / 'queries')
  shutil.copytree(os.path.join(root, 'test', 'c'), os.path.join(queries, 'c'))
  picture = tmp_path / 'retrieval.png'
  output = tmp_path / 'results.json'
  completed = subprocess.run(
    [
      sys.executable,
      'search.py',
      f'--gallery={gallery_path}',
      f'--queries={queries}',
      '--k=4',
      f'--output={output}',
      f'--picture={picture}',
    ],
    cwd=support.ROOT,
    # One device: the same step, compiled once.
    env=dict(
      os.environ,
      JAX_PLATFORMS='cpu',
      XLA_FLAGS='--xla_cpu_use_fusion_emitters=false',
    ),
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert completed.returncode == 0, completed.stderr
  assert '3 queries against 6 gallery embeddings' in completed.stdout
  with open(output) as file:
    written = json.load(file)
  # The queries' class 'c' is the gallery's class 'c' (by name).
  first = written['results'][0]
  assert first['label'] == 'c'
  assert all(n['correct'] == (n['label'] == 'c') for n in first['neighbours'])
  # The query is in the gallery too (the same file): found first.
  assert first['neighbours'][0]['score'] == pytest.approx(1.0, abs=1e-5)
  with Image.open(picture) as image:
    # One query class: one row of the query and its 4 neighbours.
    assert image.size == (
      5 * plots.RETRIEVAL_CELL_WIDTH,
      plots.RETRIEVAL_CELL_HEIGHT + plots.RETRIEVAL_TITLE_HEIGHT,
    )
