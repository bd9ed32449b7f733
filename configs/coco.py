r"""Multi-label MS COCO 2017 (80 labels): G-softmax vs its softmax baseline.

  python -m input_pipeline.prepare --dataset=coco --data_dir=$TFDS_DATA_DIR
  python train.py --config=configs/coco.py --workdir=runs/coco_gsoftmax
  python train.py --config=configs/coco.py:softmax_multilabel \
    --workdir=runs/coco_softmax
"""

import ml_collections

from configs import common, default


def get_config(
  loss: str | None = 'g_softmax_multilabel',
) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.input.name = 'coco'
  config.input.image_size = 224
  config.input.augment = True
  config.input.batch_size = 64
  config.input.num_threads = 16
  common.set_model(config, 'resnet50', embedding_dim=2048)
  config.optimizer.learning_rate = 1e-4
  config.num_epochs = 30
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  return common.set_loss(config, loss)
