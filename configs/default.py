r"""G-softmax on the embedded digits data set: the README's main job.

Run (under 3 minutes on a 2-core CPU; rerunning resumes):

  python train.py --config=configs/default.py --workdir=runs/default

Any field can be overridden on the command line, e.g.

  python train.py --config=configs/default.py --workdir=runs/circle \
    --config.loss.name=circle_pairwise --config.loss.gamma=128
"""

import ml_collections

from input_pipeline import config as input_config


def _unset(field_type):
  # None that can still be overridden from the command line with a value of
  # this type; the objective then uses the paper's default.
  return ml_collections.config_dict.placeholder(field_type)


def get_config() -> ml_collections.ConfigDict:
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
  config.model = ml_collections.ConfigDict()
  config.model.name = 'lenet'  # lenet, cifar_resnet20/32/56, resnet18/50
  config.model.embedding_dim = 2  # 2 gives the classic 2-D feature plots.
  # Other fields set here are passed to the backbone as attributes, e.g.
  # config.model.stage_filters for LeNet++ (default (32, 64, 128)).

  # Loss: `name` picks the objective; a hyperparameter left None takes the
  # paper's default for that loss (training/objectives.py, README "Losses").
  config.loss = ml_collections.ConfigDict()
  config.loss.name = 'g_softmax'
  # G-softmax lambda; NormFace / CosFace / ArcFace scale s.
  config.loss.scale = _unset(float)
  config.loss.mu_init = _unset(float)  # G-softmax initial Gaussian means.
  config.loss.sigma_init = _unset(float)  # ... and standard deviations.
  # Circle m, CosFace / ArcFace m, triplet margin.
  config.loss.margin = _unset(float)
  config.loss.gamma = _unset(float)  # Circle scale gamma.
  config.loss.kappa = _unset(float)  # vMF concentration.
  # vMF: steps between mean-direction updates (None: one epoch).
  config.loss.update_every_steps = _unset(int)
  config.loss.center_weight = _unset(float)  # Centre loss lambda.
  # LDMAT: feature distance, class-pair targets and relaxation band.
  config.loss.distance = _unset(str)
  config.loss.inter_class_distance = _unset(float)
  config.loss.intra_class_distance = _unset(float)
  config.loss.relaxation = _unset(float)
  config.loss.normalize = _unset(bool)  # LDMAT: L2-normalise features.
  # Pairwise losses: anchors per block (bounds memory at large batches).
  config.loss.block_size = _unset(int)

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

  # Length and bookkeeping. Steps of 0 mean "one epoch" where it applies.
  config.num_epochs = 30
  config.num_train_steps = 0  # > 0 overrides num_epochs.
  config.log_every_steps = 20
  config.eval_every_steps = 0  # 0: every epoch.
  config.checkpoint_every_steps = 200
  config.max_checkpoints_to_keep = 2
  config.eval_batch_size = 256
  config.retrieval_ks = (1, 2, 4, 8)
  config.write_plots = True
  # Save the final test embeddings and labels (test_features.npz).
  config.write_features = True
  return config
