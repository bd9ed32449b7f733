"""embed.py: the trained run's test split embedded and exported."""

import os
import subprocess
import sys

import numpy as np

from inference import embeddings_file
from tests import support


def test_embed_a_split_and_export(trained, tmp_path):
  workdir, _ = trained
  output = tmp_path / 'test.npz'
  exported = tmp_path / 'embed.jaxexport'
  completed = subprocess.run(
    [
      sys.executable,
      'embed.py',
      f'--workdir={workdir}',
      '--split=test',
      f'--output={output}',
      f'--export={exported}',
      '--noprogress',
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
  expected, expected_labels = support.evaluation_features(workdir)
  result = embeddings_file.load(output)
  np.testing.assert_allclose(result.embeddings, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(result.labels, expected_labels)
  assert result.class_names == ('c', 'd')
  assert os.path.getsize(exported) > 0
  assert os.path.isfile(f'{exported}.json')
