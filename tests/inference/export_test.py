"""export: the embedding function reloads and runs with JAX alone."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from inference import export, images

# Imports only jax and numpy: the project's packages (and flax) are not
# even importable, since the script runs outside the repository with them
# blocked.
_RELOAD = textwrap.dedent(
  """
  import sys
  for name in ('inference', 'models', 'training', 'losses', 'flax', 'train'):
    sys.modules[name] = None  # Any import of them raises ImportError.
  import jax
  import numpy as np
  path, inputs, outputs = sys.argv[1:]
  with open(path, 'rb') as file:
    embed = jax.export.deserialize(bytearray(file.read()))
  images = np.load(inputs)
  result = {
    str(size): np.asarray(embed.call(images[:size]))
    for size in (len(images), 3)
  }
  np.savez(outputs, **result)
  """
)


def test_export_round_trip(trained, model, tmp_path):
  _, root = trained
  path = export.save(tmp_path / 'embed.jaxexport', model)
  with open(path + export.METADATA_SUFFIX) as file:
    metadata = json.load(file)
  assert metadata['input']['shape'] == ['b', 8, 8, 1]
  assert metadata['step'] == model.step
  listing = images.list_folder(os.path.join(root, 'test'))
  inputs = model.transform.load(listing.paths)
  expected = model.embed_batch(inputs)
  np.save(tmp_path / 'inputs.npy', inputs)
  script = tmp_path / 'reload.py'
  script.write_text(_RELOAD)
  completed = subprocess.run(
    [
      sys.executable,
      str(script),
      path,
      str(tmp_path / 'inputs.npy'),
      str(tmp_path / 'outputs.npz'),
    ],
    cwd=tmp_path,
    env={**os.environ, 'PYTHONPATH': ''},
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert completed.returncode == 0, completed.stderr
  with np.load(tmp_path / 'outputs.npz') as outputs:
    np.testing.assert_allclose(
      outputs[str(len(inputs))], expected, rtol=1e-5, atol=1e-6
    )
    # The batch dimension is symbolic: any batch size runs.
    np.testing.assert_allclose(outputs['3'], expected[:3], rtol=1e-5, atol=1e-6)
  # And in this process, through the module's own loader.
  np.testing.assert_allclose(
    export.embed(export.load(path), inputs), expected, rtol=1e-5, atol=1e-6
  )
