r"""The pair- and proxy-based baselines on class-disjoint digits retrieval.

The losses the seed papers compare against (pair-based: contrastive, lifted
structure, N-pair, Multi-Similarity, triplet, angular, SupCon, NT-Xent;
proxy-based: ProxyNCA, SoftTriple, Proxy-Anchor) next to Circle (both
forms), LDMAT and vMF, on the task and schedule of configs/compare/digits.py's
retrieval: train on digits 0-4, retrieve among 5-9, 32-D embeddings, each
loss at its defaults.

  python -m benchmarks.compare --config=configs/compare/digits_baselines.py \
    --workdir=runs/compare_baselines --jobs=2
"""

import ml_collections

from configs.compare import digits
from training import objectives

# Every pair-wise loss of the registry (the ones that can score a
# cross-batch memory are exactly the pair-wise ones).
PAIR_LOSSES = tuple(
  objective.name
  for objective in objectives.all_objectives()
  if objective.uses_memory
)
# Proxy-based and the seed papers' class-level losses, named here: the
# registry has no "proxy" attribute.
PROXY_LOSSES = ('proxy_anchor', 'proxy_nca', 'soft_triple')
SEED_CLASS_LOSSES = ('circle_class', 'vmf')

LOSSES = ('softmax', *PAIR_LOSSES, *PROXY_LOSSES, *SEED_CLASS_LOSSES)


def get_config(mode: str = 'full') -> ml_collections.ConfigDict:
  """`mode`: 'full' (3 seeds), 'quick' (1 seed, 8 epochs) or 'smoke'."""
  config = digits.new_comparison('digits_baselines', mode)
  # No feature figures: the retrieval embeddings are 32-D.
  config.figure_task = ''
  config.tasks.retrieval = digits.make_task(
    'configs.digits_retrieval',
    LOSSES,
    digits.RETRIEVAL_METRICS,
    **digits.SCHEDULE,
  )
  # The same network at its random initialisation (a learning rate of 0:
  # only BatchNorm's statistics follow the data): what training adds to the
  # unseen classes, or takes away. Raw pixels: benchmarks/pixel_retrieval.py.
  config.tasks.untrained = digits.make_task(
    'configs.digits_retrieval',
    ('softmax',),
    digits.RETRIEVAL_METRICS,
    **digits.SCHEDULE,
    optimizer={'learning_rate': 0.0},
  )
  if mode == 'quick':
    config.seeds = (0,)
    config.results_dir = 'runs/compare_baselines_quick'
    for task in config.tasks.values():
      task.overrides.num_epochs = digits.QUICK_EPOCHS
    config.caveat = (
      f'Quick mode: one seed of {digits.QUICK_EPOCHS} epochs, a smoke test '
      'of the machinery, not a result.'
    )
  elif mode == 'smoke':
    config.seeds = (0,)
    config.results_dir = 'runs/compare_baselines_smoke'
    config.tasks.retrieval.losses = ('softmax', 'multi_similarity')
    for task in config.tasks.values():
      task.overrides.update(digits.SMOKE_SCHEDULE)
    config.caveat = 'Smoke mode: a few steps of two losses; not a result.'
  return config
