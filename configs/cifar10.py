r"""CIFAR-10 with ResNet-20 (He et al. 2016 §4.2 schedule, shortened).

Prepare the data once (downloads):
  python -m input_pipeline.prepare --dataset=cifar10 --data_dir=$TFDS_DATA_DIR
Then, on a GPU/TPU host:
  python train.py --config=configs/cifar10.py:g_softmax --workdir=runs/c10
"""

import ml_collections

from configs import common, default


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.input.name = 'cifar10'
  config.input.batch_size = 128
  config.input.samples_per_class = 16  # Pair-wise: 8 of 10 classes x 16.
  config.input.augment = True  # pad-4 crop + horizontal flip
  common.set_model(config, 'cifar_resnet20', embedding_dim=64)
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'step'  # x0.1 at 50% and 75% of the run
  config.optimizer.warmup_steps = 400
  config.num_epochs = 160
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  config.eval_every_steps = 0  # every epoch
  config.write_plots = True
  return common.set_loss(config, loss)
