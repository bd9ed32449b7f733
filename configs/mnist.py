r"""MNIST (or Fashion-MNIST) with LeNet++ and 2-D features.

Prepare the data once (downloads):
  python -m input_pipeline.prepare --dataset=mnist --data_dir=$TFDS_DATA_DIR
Then:
  python train.py --config=configs/mnist.py:virtual_softmax --workdir=runs/mnist
  python train.py --config=configs/mnist.py --config.input.name=fashion_mnist \
    --workdir=runs/fashion_mnist
"""

import ml_collections

from configs import common, default


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.input.name = 'mnist'
  config.input.batch_size = 128
  config.input.samples_per_class = 16  # Pair-wise: 8 of 10 classes x 16.
  config.num_epochs = 20
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 100
  return common.set_loss(config, loss)
