r"""Face recognition: IResNet-50 on 112x112 aligned faces, verification sets.

The training set is an image folder, one folder per identity
(ROOT/train/<identity>/*.jpg, and a few images per identity in
ROOT/test/<identity>/ for the closed-set metrics), or insightface's MXNet
RecordIO set (CASIA-WebFace, MS1M: --config.input.name=recordio
--config.input.recordio=DIR with DIR/train.rec, train.idx); the
verification sets (insightface's lfw.bin, cfp_fp.bin, agedb_30.bin, or
LFW's pairs.txt) are listed in config.verification. docs/faces.md gives
the commands.

  python train.py --config=configs/face.py:arcface \
    --config.input.image_folder=/data/casia_webface \
    --config.verification='("/data/faces/lfw.bin",)' --workdir=runs/face

Each number's source is in the comment beside it ("arcface_torch" is
insightface's recognition/arcface_torch/configs/base.py, ms1mv3_r50.py its
MS1M config).
"""

import ml_collections

from configs import common, default


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config()
  # An identity folder (config.input.image_folder); 'recordio' with
  # config.input.recordio=DIR reads insightface's train.rec/train.idx.
  config.input.name = 'image_folder'
  # Aligned faces, 112x112: arcface_torch's input size (iresnet fc_scale 7x7).
  config.input.image_size = 112
  # arcface_torch scales faces to [-1, 1]: (x / 255 - 0.5) / 0.5.
  config.input.normalization = 'arcface'
  # arcface_torch flips horizontally; image folders here have no flip-only
  # augmentation (their kind is 'none'): chosen here, no augmentation.
  config.input.augment = False
  # arcface_torch: batch_size 128 per GPU; this is the global batch (scale
  # it by the device count to match a multi-GPU arcface_torch run).
  config.input.batch_size = 128
  # Identities per class-balanced batch, for the pair-wise losses: chosen
  # here (CASIA-WebFace has >= 14 images per identity after cleaning).
  config.input.samples_per_class = 4
  # arcface_torch: network r50, embedding_size 512.
  common.set_model(config, 'iresnet50', embedding_dim=512)

  # arcface_torch: SGD, lr 0.1 (ms1mv3_r50.py: 0.2 for MS1M), momentum 0.9,
  # weight decay 5e-4, no Nesterov (torch's SGD default).
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 5e-4
  # arcface_torch decays polynomially (power 2) after warmup_epoch 0 (2 in
  # ms1mv3_r50.py); this project has no polynomial schedule: cosine, chosen
  # here as the closest smooth decay to 0.
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 0
  # arcface_torch: num_epoch 20 (ms1mv3_r50.py: 25).
  config.num_epochs = 20
  config.eval_every_steps = 2000  # arcface_torch: verbose 2000.
  config.checkpoint_every_steps = 2000
  config.eval_batch_size = 256
  # Paths to lfw.bin, cfp_fp.bin, agedb_30.bin (arcface_torch's val_targets)
  # or mappings with path/kind/images/name: see configs/default.py.
  config.verification = ()
  config.verification_flip = True
  return common.set_loss(config, loss or 'arcface')
