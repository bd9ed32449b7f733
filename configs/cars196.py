r"""Cars196 retrieval: 98 training car models, 98 test models.

The fine-tuning protocol of configs/retrieval.py with the official
Proxy-Anchor code's Cars settings (learning rate 1e-4 halved every 20
epochs, frozen BatchNorm). On a GPU:

  python -m input_pipeline.prepare --dataset=cars196 \
    --data_dir=$TFDS_DATA_DIR
  python train.py --config=configs/cars196.py:proxy_anchor \
    --config.model.init_from=resnet50.safetensors --workdir=runs/cars
"""

import ml_collections

from configs import retrieval


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  return retrieval.protocol_config(
    loss,
    input_name='cars196',
    learning_rate=1e-4,
    decay_every_epochs=20,
  )
