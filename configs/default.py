r"""G-softmax on the embedded digits data set: the README's main job.

Run (under 3 minutes on a 2-core CPU; rerunning resumes):

  python train.py --config=configs/default.py --workdir=runs/default

The argument picks another loss, and any field, the loss's hyperparameters
and the backbone's attributes included, can be overridden, e.g.

  python train.py --config=configs/default.py:circle_pairwise \
    --config.loss.gamma=128 --workdir=runs/circle
"""

import ml_collections

from configs import common
from input_pipeline import config as input_config


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  """The default experiment; other configs start from it and override."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # 'pmap' (default) or 'shard_map' (jit over a 1-D device mesh); both run
  # the same per-device step and give the same numbers.
  config.parallelism = 'pmap'

  # Input: every field is documented in input_pipeline/config.py.
  config.input = input_config.default_input_config()
  config.input.name = 'digits'  # sklearn's 8x8 digits, prepared offline.
  config.input.batch_size = 64  # Global batch, split over devices.
  # Pair-wise losses' class-balanced batches: 8 of the 10 digits x 8 each.
  config.input.samples_per_class = 8

  # Model: a backbone producing the embedding; the loss picks the head.
  # config.model holds every attribute of the backbone (models/), e.g.
  # LeNet++'s stage_filters (32, 64, 128) and dtype ('bfloat16' runs the
  # backbone in bfloat16; parameters, heads and losses stay float32).
  common.set_model(config, 'lenet', embedding_dim=2)  # 2-D feature plots.

  # Loss: the config argument picks it; config.loss then holds exactly its
  # hyperparameters at their defaults (the README's loss table lists each
  # with its source).
  common.set_loss(config, loss or 'g_softmax')

  # Cross-batch memory (Wang et al. 2020, "Cross-Batch Memory for Embedding
  # Learning", XBM): pair-wise losses also score each anchor against the
  # embeddings of the last `size` examples of earlier steps
  # (docs/memory.md). Needs a loss with `uses_memory` (the per-anchor
  # pair-wise losses: circle_pairwise, ldmat, triplet and the pair-based
  # baselines of training/objectives/pair_baselines.py).
  config.memory = ml_collections.ConfigDict()
  # Rows kept, at least the global batch; 0 turns the memory off. Chosen
  # here: off by default. The paper gives its sizes as fractions of the
  # training set (the official code's sample config: 55,000 rows).
  config.memory.size = 0
  # Steps before the memory term enters the loss (rows are enqueued from
  # the first step). The paper: about 1k iterations, until the embeddings
  # drift slowly; the official sample config's START_ITERATION is 1000.
  # A warm-up shorter than the fill (size / global batch steps) starts the
  # term on a partly written memory: its unwritten rows are neither
  # positives nor negatives, so early anchors see fewer memory pairs.
  config.memory.warmup_steps = 1000
  # Weight of the memory term added to each anchor's batch loss: 1, as in
  # the paper and the official code's XBM.WEIGHT.
  config.memory.weight = 1.0

  # Optimiser and schedule (optax).
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adamw'  # or 'sgd'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.momentum = 0.9  # SGD only.
  config.optimizer.nesterov = True  # SGD only.
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'cosine'  # constant, cosine or step
  config.optimizer.warmup_steps = 50
  config.optimizer.decay_boundaries = (0.5, 0.75)  # 'step': run fractions.
  config.optimizer.decay_factor = 0.1  # 'step': factor at each boundary.
  # Fine-tuning: each group's learning rate is the schedule's times its
  # multiplier (training/optimizers.py): the backbone, its new embedding
  # layer, the loss's head (class weights, proxies) and G-softmax's
  # Gaussians (mu, sigma). All 1: one rate.
  config.optimizer.lr_multipliers = ml_collections.ConfigDict(
    {'backbone': 1.0, 'embedding': 1.0, 'head': 1.0, 'gaussians': 1.0}
  )
  # Epochs at the start during which the backbone does not learn (only the
  # new embedding layer and head do); 0: none.
  config.optimizer.backbone_frozen_epochs = 0.0

  # Length and bookkeeping. Steps of 0 mean "one epoch" where it applies.
  config.num_epochs = 30
  config.num_train_steps = 0  # > 0 overrides num_epochs.
  # Reported one period late (training/periodic.py): the read never drains
  # the device's queue.
  config.log_every_steps = 20
  config.eval_every_steps = 0  # 0: every epoch.
  config.checkpoint_every_steps = 200
  config.max_checkpoints_to_keep = 2
  config.eval_batch_size = 256
  config.retrieval_ks = (1, 2, 4, 8)
  config.write_plots = True
  # Save the final test embeddings and labels (test_features.npz).
  config.write_features = True
  # Face verification sets evaluated with the test split (training/
  # verification.py): paths to insightface's NAME.bin, or mappings with
  # path, kind ('bin', 'lfw_pairs'), images, name. Logged as
  # verify/<set>/<metric>; roc.png at the end. Empty: none.
  config.verification = ()
  # Embed each image and its mirror image and add them (insightface's
  # flip-fused features).
  config.verification_flip = True
  return config
