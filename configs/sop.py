r"""Stanford Online Products retrieval: 11,318 training products, 11,316 test.

The fine-tuning protocol of configs/retrieval.py with the official
Proxy-Anchor code's SOP settings (learning rate 6e-4 quartered every 20
epochs, BatchNorm not frozen) and SOP's Recall@1/10/100/1000. On a GPU:

  python -m input_pipeline.prepare --dataset=stanford_online_products \
    --data_dir=$TFDS_DATA_DIR
  python train.py --config=configs/sop.py:proxy_anchor \
    --config.model.init_from=resnet50.safetensors --workdir=runs/sop
"""

import ml_collections

from configs import retrieval


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  return retrieval.protocol_config(
    loss,
    input_name='stanford_online_products',
    learning_rate=6e-4,
    decay_every_epochs=20,
    decay_factor=0.25,
    freeze_batch_norm=False,
    retrieval_ks=(1, 10, 100, 1000),
  )
