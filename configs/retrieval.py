r"""Fine-grained retrieval: CUB-200-2011, Cars196, Stanford Online Products.

Class-disjoint protocol (Oh Song et al. 2016): train on the first half of
the classes, report Recall@K, MAP@R and NMI on the rest. ResNet-50 with a
512-d embedding, 4 images per class per batch.

  python -m input_pipeline.prepare --dataset=caltech_birds2011 \
    --data_dir=$TFDS_DATA_DIR
  python train.py --config=configs/retrieval.py:circle_pairwise \
    --workdir=runs/cub_circle
  python train.py --config=configs/retrieval.py:vmf \
    --config.input.name=cars196 --workdir=runs/cars_vmf

The backbone starts from scratch unless given ImageNet weights, as the papers
fine-tune (README, "Pretrained backbones"):

  --config.model.init_from=resnet50.safetensors \
    --config.input.normalization=imagenet

Without them absolute numbers are not comparable with the papers'.
"""

import ml_collections

from configs import common, default


def get_config(
  loss: str | None = 'circle_pairwise',
) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.input.name = (
    'caltech_birds2011'  # or cars196, stanford_online_products
  )
  config.input.class_disjoint = True
  config.input.image_size = 224
  config.input.augment = True  # random resized crop + flip
  config.input.batch_size = 128
  config.input.samples_per_class = 4
  config.input.num_threads = 16
  common.set_model(config, 'resnet50', embedding_dim=512)
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-4
  config.optimizer.weight_decay = 1e-4
  config.num_epochs = 100
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.eval_batch_size = 256
  return common.set_loss(config, loss)
