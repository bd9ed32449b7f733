r"""Multi-label MS-COCO 2014 (80 labels): G-softmax vs sigmoid cross-entropy.

Train on train2014, test on val2014 (the split the multi-label papers
use; images without annotations left out: 82,081 and 40,137 images),
read from the annotation JSON without TensorFlow (input_pipeline/
datasets/multilabel_folder.py). Evaluation logs ``map`` and the
CP/CR/CF1/OP/OR/OF1 family at threshold 0.5 and for the top-3 labels
(``cf1@3``, ``of1@3``, ...). On a GPU, with ImageNet ResNet-101 weights
converted to safetensors (docs/retrieval_protocol.md, "Pretrained
backbones"):

  python -m input_pipeline.prepare --dataset=coco2014 \
    --multilabel_root=$DATA/coco2014 --image_size=448
  python train.py --config=configs/coco2014.py \
    --config.input.coco2014_root=$DATA/coco2014 \
    --config.model.init_from=resnet101.safetensors --workdir=runs/coco14_gsm
  python train.py --config=configs/coco2014.py:softmax_multilabel \
    --config.input.coco2014_root=$DATA/coco2014 \
    --config.model.init_from=resnet101.safetensors --workdir=runs/coco14_ce

``softmax_multilabel`` is the sigmoid cross-entropy baseline: the same
two-logit-per-label head as G-softmax with lambda = 0 (docs/losses.md,
section 2.2).
"""

import ml_collections

from configs import multilabel


def get_config(
  loss: str | None = 'g_softmax_multilabel',
) -> ml_collections.ConfigDict:
  """The MS-COCO 2014 config; `loss` defaults to G-softmax multi-label."""
  config = multilabel.protocol_config(loss, 'coco2014')
  # Required: ROOT holding annotations/, train2014/ and val2014/.
  config.input.coco2014_root = None
  return config
