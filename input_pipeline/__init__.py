"""Input pipeline: TFDS data sets read with grain, without TensorFlow.

Public API::

  dataset = input_pipeline.create_dataset(config.input, seed=config.seed)
  dataset.info                    # DatasetInfo: classes, image shape, sizes
  for batch in dataset.train_batches(start_step): ...   # endless, resumable
  for batch in dataset.eval_batches('test', 256): ...   # one padded pass

``default_input_config()`` lists every ``config.input`` field. Catalog sets
are prepared (downloaded) with ``python -m input_pipeline.prepare``.
"""

from input_pipeline.config import default_input_config
from input_pipeline.datasets.catalog import NAMES, DataNotPreparedError
from input_pipeline.pipeline import (
  SAMPLERS,
  Dataset,
  DatasetInfo,
  create_dataset,
)

__all__ = (
  'NAMES',
  'SAMPLERS',
  'DataNotPreparedError',
  'Dataset',
  'DatasetInfo',
  'create_dataset',
  'default_input_config',
)
