"""A few steps of the default on digits, for tests and smoke runs.

python train.py --config=configs/tiny.py --workdir=/tmp/tiny
"""

import ml_collections

from configs import default


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config(loss)
  config.input.batch_size = 32
  # One stage of LeNet++ has every kind of layer (convolutions, BatchNorm,
  # PReLU, pooling, the Dense embedding) and compiles and runs in a fraction
  # of the default's time (a second stage: a third more CPU per test run).
  config.model.stage_filters = (8,)
  config.model.embedding_dim = 8
  config.num_epochs = 1
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.eval_every_steps = 6
  config.checkpoint_every_steps = 3
  config.optimizer.warmup_steps = 0
  config.eval_batch_size = 128
  config.write_plots = False
  return config
