r"""Market-1501 person re-identification: Circle loss on the strong baseline.

Train on the 751 training identities of ``bounding_box_train``, evaluate
the query split against the gallery (``bounding_box_test``) under the
Market-1501 protocol: ``reid/cmc@1``, ``reid/cmc@5``, ``reid/cmc@10``,
``reid/map`` and ``reid/minp`` (training/evaluation_loop.py). On a GPU,
with the folder as distributed and ImageNet ResNet-50 weights converted
to safetensors (docs/retrieval_protocol.md, "Pretrained backbones"):

  python -m input_pipeline.prepare --dataset=reid_folder \
    --reid_root=$DATA/Market-1501-v15.09.15 --image_size=256,128
  python train.py --config=configs/market1501.py:circle_pairwise \
    --config.input.reid_root=$DATA/Market-1501-v15.09.15 \
    --config.model.init_from=resnet50.safetensors --workdir=runs/market
  python embed.py --workdir=runs/market --split=query --output=query.npz
  python embed.py --workdir=runs/market --split=gallery --output=gallery.npz

DukeMTMC-reID (the same layout) and MSMT17 (list files) run with
``--config.input.reid_layout=dukemtmc`` or ``msmt17`` and their folder.

The setting is the strong re-id baseline's (Luo et al. 2019, "Bag of
Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW;
its code github.com/michuanhaohao/reid-strong-baseline, named "the
baseline" below), each number with its source beside it. Differences,
kept on purpose:

* BNNeck (``config.model.bnneck``, models/heads.py, EmbeddingModel) is
  on where the loss's head is a classifier or none: pair-wise losses see
  the embedding before its BatchNorm, the bias-free classifier the one
  after it, and evaluation embeds the one after it. Losses of class
  vectors (CosFace, ArcFace, proxies, vMF) train without it. With a
  pair-wise loss alone, the BatchNorm's scale gets no gradient: the
  evaluated feature is the embedding standardised by running statistics.
* The baseline trains ID (softmax with label smoothing) + triplet (margin
  0.3) together, or + centre loss; here Circle pair-wise by default, and
  ``:softmax+triplet`` is the baseline's pair without label smoothing
  (margin 0.3 set below).
* A Dense embedding layer follows the pooled features (every backbone
  here ends in one); the baseline uses the 2048-d pooled features.
* AdamW's decoupled weight decay instead of Adam's L2 term.
"""

import ml_collections

from configs import common, default
from models import heads
from training import objectives


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  """The Market-1501 config; `loss` defaults to ``circle_pairwise``."""
  config = default.get_config()
  config.input.name = 'reid_folder'
  # Required: the folder as distributed (Market-1501-v15.09.15).
  config.input.reid_root = None
  config.input.reid_layout = 'market1501'
  # (height, width) 256 x 128: the baseline's INPUT.SIZE_TRAIN/SIZE_TEST.
  config.input.image_size = (256, 128)
  # Pad 10 + crop, flip 0.5, random erasing 0.5 (area 0.02-0.4, aspect
  # 0.3-3.33): the baseline's training transform (input_pipeline/
  # augment.py, kind 'reid', names each source). Testing: resize only.
  config.input.augment = True
  config.input.normalization = 'imagenet'
  # P x K = 16 identities x 4 images: the baseline's IMS_PER_BATCH 64 and
  # NUM_INSTANCE 4, for every loss (identity-balanced sampling).
  config.input.batch_size = 64
  config.input.samples_per_class = 4
  config.input.sampler = 'class_balanced'
  config.input.num_threads = 16  # Decoding and erasing need the cores.

  # ResNet-50 from ImageNet weights (the baseline's backbone); last stride
  # 1 (the baseline's LAST_STRIDE: a 16 x 8 last stage at 256 x 128).
  # 2048: the dimension of the baseline's features (chosen here as the
  # embedding's).
  common.set_model(config, 'resnet50', embedding_dim=2048, last_stride=1)
  # Required: the path of ImageNet weights (docs/retrieval_protocol.md,
  # "Pretrained backbones"); a run without them stops with that message.
  config.model.init_from = None

  # Adam(W) at 3.5e-4, weight decay 5e-4, 10 warm-up epochs, x0.1 at
  # epochs 40 and 70 of 120: the baseline's SOLVER settings (BASE_LR,
  # WEIGHT_DECAY, WARMUP_ITERS, STEPS, MAX_EPOCHS).
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 3.5e-4
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = 'step'
  config.num_epochs = 120
  config.optimizer.decay_boundaries = (40 / 120, 70 / 120)
  config.optimizer.decay_factor = 0.1
  # 10 epochs of Market-1501: 12,936 training images / 64 = 202 steps
  # each (warm-up is given in steps here).
  config.optimizer.warmup_steps = 2020

  # Every 10 epochs (chosen here: the 19k query and gallery images take a
  # while); the final evaluation comes at the end whatever this is.
  config.eval_every_steps = 2020
  config.eval_batch_size = 256
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.write_plots = False  # 2-D plots say nothing of 2048-d features.

  common.set_loss(config, loss or 'circle_pairwise')
  # BNNeck: the baseline's MODEL.NECK 'bnneck', TEST.NECK_FEAT 'after'
  # (config/defaults.py), for the losses it fits (see the docstring).
  config.model.bnneck = _bnneck_fits(config.loss.name)
  if config.loss.name == 'softmax+triplet':
    # The baseline's triplet margin (SOLVER.MARGIN 0.3, config/defaults.py).
    config.loss.triplet.margin = 0.3
  if config.loss.name == 'circle_pairwise':
    # The re-id setting of Circle loss (Sun et al. 2020): m = 0.25,
    # gamma = 128, as pytorch-metric-learning's docstring quotes the paper
    # and fast-reid's default uses; not checked against the paper text
    # (docs/losses.md, section 5.2).
    config.loss.margin = 0.25
    config.loss.gamma = 128.0
  return config


def _bnneck_fits(loss: str) -> bool:
  """Whether the loss's head is one BNNeck can precede (a classifier or
  none); `heads.without_classifier_bias` refuses the others."""
  objective = objectives.get_objective(loss)
  hparams = objectives.resolve_hparams(objective, objectives.loss_config(loss))
  try:
    heads.without_classifier_bias(objective.make_head(1, hparams))
  except ValueError:
    return False
  return True
