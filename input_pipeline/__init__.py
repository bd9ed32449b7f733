"""Input pipeline: TFDS data sets read with grain, without TensorFlow.

Public API::

  input_pipeline.check_input(config.input)  # Is the data there? Fast.
  dataset = input_pipeline.create_dataset(config.input, seed=config.seed)
  dataset.info                    # DatasetInfo: classes, image shape, sizes
  for batch in dataset.train_batches(start_step): ...   # endless, resumable
  for batch in dataset.eval_batches('test', 256): ...   # one padded pass

``default_input_config()`` lists every ``config.input`` field. Catalog sets
are prepared (downloaded) with ``python -m input_pipeline.prepare``.
Face verification sets (insightface's ``NAME.bin``, LFW's ``pairs.txt``)
are read whole by ``read_verification_bin`` and ``read_lfw_pairs``.

The names are loaded on first use, so that a process that only prepares
data (``input_pipeline.prepare``, ``input_pipeline.preparation``) does not
import grain and JAX.
"""

import importlib

_MODULES = {
  'NAMES': 'input_pipeline.datasets.catalog',
  'DataNotPreparedError': 'input_pipeline.datasets.catalog',
  'default_input_config': 'input_pipeline.config',
  'SAMPLERS': 'input_pipeline.pipeline',
  'check_input': 'input_pipeline.preparation',
  'Dataset': 'input_pipeline.pipeline',
  'DatasetInfo': 'input_pipeline.pipeline',
  'create_dataset': 'input_pipeline.pipeline',
  'read_lfw_pairs': 'input_pipeline.verification',
  'read_verification_bin': 'input_pipeline.verification',
}

__all__ = (
  'NAMES',
  'SAMPLERS',
  'DataNotPreparedError',
  'Dataset',
  'DatasetInfo',
  'check_input',
  'create_dataset',
  'default_input_config',
  'read_lfw_pairs',
  'read_verification_bin',
)


def __getattr__(name):
  if name not in _MODULES:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(_MODULES[name]), name)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
