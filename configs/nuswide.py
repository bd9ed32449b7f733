r"""Multi-label NUS-WIDE (81 concepts): G-softmax vs sigmoid cross-entropy.

The official split (161,789 training and 107,859 test images, fewer by
the files missing from a copy, which are skipped and counted), read from
the release's image lists and concept label files without TensorFlow
(input_pipeline/datasets/multilabel_folder.py). Evaluation logs ``map``
and the CP/CR/CF1/OP/OR/OF1 family at threshold 0.5 and for the top-3
labels (``cf1@3``, ``of1@3``, ...). On a GPU, with ImageNet ResNet-101
weights converted to safetensors (docs/retrieval_protocol.md,
"Pretrained backbones"):

  python -m input_pipeline.prepare --dataset=nuswide \
    --multilabel_root=$DATA/NUS-WIDE --image_size=448
  python train.py --config=configs/nuswide.py \
    --config.input.nuswide_root=$DATA/NUS-WIDE \
    --config.model.init_from=resnet101.safetensors --workdir=runs/nus_gsm
  python train.py --config=configs/nuswide.py:softmax_multilabel \
    --config.input.nuswide_root=$DATA/NUS-WIDE \
    --config.model.init_from=resnet101.safetensors --workdir=runs/nus_ce

``softmax_multilabel`` is the sigmoid cross-entropy baseline: the same
two-logit-per-label head as G-softmax with lambda = 0 (docs/losses.md,
section 2.2). The Gaussians (mu, sigma) learn at 100 times the network's
rate, as in the official NUS-WIDE script (on COCO at 1 time).
"""

import ml_collections

from configs import multilabel


def get_config(
  loss: str | None = 'g_softmax_multilabel',
) -> ml_collections.ConfigDict:
  """The NUS-WIDE config; `loss` defaults to G-softmax multi-label."""
  config = multilabel.protocol_config(loss, 'nuswide')
  # Required: ROOT holding Concepts81.txt, ImageList/, Groundtruth/ and
  # Flickr/.
  config.input.nuswide_root = None
  return config
