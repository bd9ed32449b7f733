r"""CUB-200-2011 retrieval: 100 training bird species, 100 test species.

The fine-tuning protocol of configs/retrieval.py with the official
Proxy-Anchor code's CUB settings (learning rate 1e-4 halved every 10
epochs, frozen BatchNorm). On a GPU:

  python -m input_pipeline.prepare --dataset=caltech_birds2011 \
    --data_dir=$TFDS_DATA_DIR
  python train.py --config=configs/cub200.py:proxy_anchor \
    --config.model.init_from=resnet50.safetensors --workdir=runs/cub
"""

import ml_collections

from configs import retrieval


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  return retrieval.protocol_config(
    loss,
    input_name='caltech_birds2011',
    learning_rate=1e-4,
    decay_every_epochs=10,
  )
