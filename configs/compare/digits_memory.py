r"""The pair-wise losses on digits retrieval, without and with the memory.

Cross-batch memory (Wang et al. 2020, XBM; docs/memory.md):
the same class-disjoint retrieval task (train on digits 0-4, retrieve among
5-9) and schedule as configs/compare/digits.py, run twice for every
pair-wise loss: as is, and with each anchor also scored against a memory
of earlier batches.

  python -m benchmarks.compare --config=configs/compare/digits_memory.py \
    --workdir=runs/compare_memory --jobs=2
"""

import ml_collections

from configs.compare import digits
from training import objectives

MEMORY_LOSSES = tuple(
  objective.name
  for objective in objectives.all_objectives()
  if objective.uses_memory
)

# Chosen here, for digits: the retrieval training set (digits 0-4 of the
# training split) has 721 images, 11 steps of 64 per epoch, 330 steps in 30
# epochs. The paper gives its memory sizes as fractions of the training
# set; 512 rows (8 global batches) are about 70 % of it. Its warm-up of
# about 1k iterations would outlast this training; 100 steps (9 epochs) are
# about a third of it. The weight is the paper's 1.
MEMORY = {'size': 512, 'warmup_steps': 100, 'weight': 1.0}


def get_config(mode: str = 'full') -> ml_collections.ConfigDict:
  """`mode`: 'full' (3 seeds), 'quick' (1 seed, 8 epochs) or 'smoke'."""
  config = digits.new_comparison('digits_memory', mode)
  # No feature figures: the retrieval embeddings are 32-D.
  config.figure_task = ''
  config.tasks.retrieval = digits.make_task(
    'configs.digits_retrieval',
    MEMORY_LOSSES,
    digits.RETRIEVAL_METRICS,
    **digits.SCHEDULE,
  )
  config.tasks.retrieval_memory = digits.make_task(
    'configs.digits_retrieval',
    MEMORY_LOSSES,
    digits.RETRIEVAL_METRICS,
    **digits.SCHEDULE,
    memory=MEMORY,
  )
  if mode == 'quick':
    config.seeds = (0,)
    config.results_dir = 'runs/compare_memory_quick'
    for task in config.tasks.values():
      task.overrides.num_epochs = digits.QUICK_EPOCHS
    # A third of the 88 steps, as in the full comparison.
    config.tasks.retrieval_memory.overrides.memory.warmup_steps = 30
  elif mode == 'smoke':
    config.seeds = (0,)
    config.results_dir = 'runs/compare_memory_smoke'
    for task in config.tasks.values():
      task.losses = ('circle_pairwise',)
      task.overrides.update(digits.SMOKE_SCHEDULE)
    config.tasks.retrieval_memory.overrides.memory = dict(
      MEMORY, size=128, warmup_steps=2
    )
  return config
