r"""Every loss against softmax on digits: the papers' comparison in miniature.

Three tasks, each an experiment config (a module with ``get_config(loss)``)
run for every listed loss and seed:

1. classification with 2-D features (the papers' feature figure),
2. class-disjoint retrieval (train on digits 0-4, retrieve among 5-9),
3. multi-label classification of composed digits (softmax vs G-softmax).

  python -m benchmarks.compare --config=configs/compare/digits.py
  python -m benchmarks.compare --config=configs/compare/digits.py:quick

Hyperparameters are each loss's defaults (training/objectives/, sources in
the README); the only digits tuning is the shared schedule below, the same
for every loss.
"""

import ml_collections

from training import objectives


def _losses(*, multilabel: bool, reference: str) -> tuple[str, ...]:
  # Every registered loss of the kind, the reference row first.
  names = [
    objective.name
    for objective in objectives.all_objectives()
    if objective.multilabel == multilabel and objective.name != reference
  ]
  return (reference, *names)


SINGLE_LABEL_LOSSES = _losses(multilabel=False, reference='softmax')
MULTILABEL_LOSSES = _losses(multilabel=True, reference='softmax_multilabel')

CLASSIFICATION_METRICS = (
  'accuracy',
  'nearest_class_mean_accuracy',
  'cosine_compactness',
  'cosine_separability',
  'ratio',
)
RETRIEVAL_METRICS = (
  'recall@1',
  'recall@2',
  'recall@4',
  'recall@8',
  'map@r',
  'nmi',
)
MULTILABEL_METRICS = ('map', 'cf1', 'of1')


def make_task(experiment, losses, metrics, **overrides):
  """One task of a comparison: an experiment config module run per loss."""
  task = ml_collections.ConfigDict()
  # A module whose get_config(loss) returns the experiment for one loss.
  task.experiment = experiment
  task.losses = losses
  # Columns of the task's table, in order (keys of results.json).
  task.metrics = metrics
  # Applied to every run of the task (nested keys merge).
  task.overrides = ml_collections.ConfigDict(overrides)
  return task


def new_comparison(name: str, mode: str) -> ml_collections.ConfigDict:
  """The fields every comparison config has, for data set `name`."""
  if mode not in ('full', 'quick', 'smoke'):
    raise ValueError(
      f"config argument must be 'full', 'quick' or 'smoke', received {mode!r}"
    )
  config = ml_collections.ConfigDict()
  config.name = name
  config.seeds = (0, 1, 2)
  # Where the table (markdown) and the figures go.
  config.results_dir = 'results'
  # The task whose 2-D test features make the figure grid and bar chart.
  config.figure_task = 'classification'
  config.tasks = ml_collections.ConfigDict()
  return config


def get_config(mode: str = 'full') -> ml_collections.ConfigDict:
  """The comparison; `mode` is 'full', 'quick' (1 seed, 8 epochs, no
  retrieval) or 'smoke' (a few steps of two losses, for the test suite)."""
  config = new_comparison('digits', mode)

  # The same schedule and network for every loss: the default's 30 epochs,
  # with LeNet++ at half its width so that 78 runs take < 30 min on 2 CPU
  # cores.
  shared = {
    'num_epochs': 30,
    'model': {'stage_filters': (16, 32, 64)},
    'checkpoint_every_steps': 1000,
    'eval_every_steps': 1000,
    'write_plots': False,
  }
  config.tasks.classification = make_task(
    'configs.digits', SINGLE_LABEL_LOSSES, CLASSIFICATION_METRICS, **shared
  )
  config.tasks.retrieval = make_task(
    'configs.digits_retrieval',
    SINGLE_LABEL_LOSSES,
    RETRIEVAL_METRICS,
    **shared,
  )
  config.tasks.multilabel = make_task(
    'configs.digits_multilabel', MULTILABEL_LOSSES, MULTILABEL_METRICS, **shared
  )

  if mode == 'quick':
    # Every loss once on classification (the table and both figures) and
    # the multi-label pair; retrieval only in the full comparison. Each
    # run's fixed cost (compiling, evaluating) dominates at this length.
    config.seeds = (0,)
    config.results_dir = 'runs/compare_quick'
    del config.tasks['retrieval']
    for task in config.tasks.values():
      task.overrides.num_epochs = 8
  elif mode == 'smoke':
    config.seeds = (0, 1)
    config.results_dir = 'runs/compare_smoke'
    smoke = {
      'num_epochs': 1,
      'num_train_steps': 4,
      'input': {'batch_size': 32},
      'model': {'stage_filters': (8, 16)},
      'optimizer': {'warmup_steps': 0},
      'eval_batch_size': 128,
    }
    config.tasks.classification.losses = ('softmax', 'circle_pairwise')
    config.tasks.multilabel.losses = ('g_softmax_multilabel',)
    del config.tasks['retrieval']
    for task in config.tasks.values():
      task.overrides.update(smoke)
  return config
