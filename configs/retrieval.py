r"""The fine-grained retrieval protocol that configs/cub200.py, cars196.py and
sop.py share.

Class-disjoint retrieval (Oh Song et al. 2016): train on the first half of
the classes, report Recall@K, MAP@R and NMI on the rest. The setting is
that of the deep-metric-learning papers that fine-tune ResNet-50 (Proxy-
Anchor, Kim et al. 2020; its official code, github.com/tjddus9597/
Proxy-Anchor-CVPR2020, is the source named "official code" below): an
ImageNet-pretrained backbone, a new 512-d embedding layer, random resized
crops of 224 and flips for training, resize to 256 and centre crop of 224
for testing, AdamW with a larger learning rate for the loss's class
weights or proxies than for the backbone.

Differences from the official code, kept on purpose: global average
pooling (the official ResNets add global max pooling), no gradient
clipping (it clips each gradient value at 10), and, for pair-wise losses,
the class-balanced sampler (the official code samples at random).
"""

import ml_collections

from configs import common, default


def protocol_config(
  loss: str | None,
  *,
  input_name: str,
  learning_rate: float,
  decay_every_epochs: int,
  decay_factor: float = 0.5,
  freeze_batch_norm: bool = True,
  retrieval_ks: tuple[int, ...] = (1, 2, 4, 8),
) -> ml_collections.ConfigDict:
  """The protocol's config for one data set.

  Args:
    loss: the loss (None: Proxy-Anchor, the protocol's reference loss).
    input_name: the TFDS catalog set.
    learning_rate: the backbone's AdamW learning rate.
    decay_every_epochs: epochs between learning-rate decays.
    decay_factor: the factor of each decay.
    freeze_batch_norm: BatchNorm with fixed statistics and affine
      parameters.
    retrieval_ks: the K of Recall@K.
  """
  config = default.get_config()
  config.input.name = input_name
  config.input.class_disjoint = True
  config.input.image_size = 224
  # Random resized crop (8%-100% of the area, aspect 3/4-4/3) + flip;
  # testing resizes the central 87.5% square: resize 256, centre crop 224.
  config.input.augment = True
  config.input.normalization = 'imagenet'
  # 180: the official code's batch for every data set. Pair-wise losses get
  # class-balanced batches of 45 classes x 4 images (4: chosen here).
  config.input.batch_size = 180
  config.input.samples_per_class = 4
  config.input.num_threads = 16  # Decoding 224-px JPEGs needs the cores.

  common.set_model(
    config, 'resnet50', embedding_dim=512, freeze_batch_norm=freeze_batch_norm
  )
  # Required: the path of ImageNet weights (docs/retrieval_protocol.md,
  # "Pretrained backbones"); a run without them stops with that message.
  config.model.init_from = None

  # AdamW, weight decay 1e-4, the backbone's learning rate stepped down
  # every `decay_every_epochs`; the embedding layer learns at the
  # backbone's rate, the loss's parameters (class weights / proxies, and
  # G-softmax's Gaussians) at 100x; in the first epoch only the new layers
  # learn (official code: its param_groups, the StepLR, --warm 1).
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = learning_rate
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_steps = 0
  config.optimizer.schedule = 'step'
  config.num_epochs = 60  # The official code's default --epochs.
  config.optimizer.decay_boundaries = tuple(
    epoch / config.num_epochs
    for epoch in range(
      decay_every_epochs, config.num_epochs, decay_every_epochs
    )
  )
  config.optimizer.decay_factor = decay_factor
  config.optimizer.lr_multipliers.embedding = 1.0
  config.optimizer.lr_multipliers.head = 100.0
  config.optimizer.lr_multipliers.gaussians = 100.0
  config.optimizer.backbone_frozen_epochs = 1.0

  config.retrieval_ks = retrieval_ks
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.eval_batch_size = 256
  config.write_plots = False  # 2-D plots say nothing of 512-d features.
  return common.set_loss(config, loss or 'proxy_anchor')
