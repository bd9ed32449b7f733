r"""CIFAR-100 with ResNet-56.

  python -m input_pipeline.prepare --dataset=cifar100 --data_dir=$TFDS_DATA_DIR
  python train.py --config=configs/cifar100.py:virtual_softmax \
    --workdir=runs/c100
"""

import ml_collections

from configs import cifar10, common


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  config = cifar10.get_config(loss)
  config.input.name = 'cifar100'
  config.input.samples_per_class = 4  # Pair-wise: 32 of 100 classes x 4.
  common.set_model(config, 'cifar_resnet56', embedding_dim=128)
  return common.set_loss(config, loss)
