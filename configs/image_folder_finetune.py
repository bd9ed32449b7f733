r"""Your own images, fine-tuning ImageNet weights as the retrieval papers do.

ROOT/train/<class>/*.png|jpg and ROOT/test/<class>/* (docs/data.md),
prepared once at 224 px. The protocol of configs/retrieval.py (ImageNet
ResNet-50, new 512-d embedding, random resized crops + flips, AdamW with
the head at 100x and the backbone frozen for the first epoch, frozen
BatchNorm) with CUB's learning rate and schedule, and the folder's own
train/test split instead of a class-disjoint one:

  python train.py --config=configs/image_folder_finetune.py:proxy_anchor \
    --config.input.image_folder=/path/to/ROOT \
    --config.model.init_from=resnet50.safetensors --workdir=runs/mine
"""

import ml_collections

from configs import retrieval


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  config = retrieval.protocol_config(
    loss,
    input_name='image_folder',
    learning_rate=1e-4,
    decay_every_epochs=10,
  )
  # The folder's test split holds the test images, of the same classes.
  config.input.class_disjoint = False
  # 64 = 16 classes x 4 for pair-wise losses, so that a folder of a few
  # dozen classes works (chosen here; the data sets' configs use 180).
  config.input.batch_size = 64
  return config
