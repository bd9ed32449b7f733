r"""Your own images: ROOT/train/<class>/*.png|jpg and ROOT/test/<class>/*.

Prepared once into array_record (in the data dir), then used like any set.

  python train.py --config=configs/image_folder.py:arcface \
    --config.input.image_folder=/path/to/ROOT --workdir=runs/mine
"""

import ml_collections

from configs import common, default


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.input.name = 'image_folder'
  config.input.image_size = 64
  config.input.augment = True
  common.set_model(config, 'cifar_resnet20', embedding_dim=64)
  return common.set_loss(config, loss)
