r"""Every loss against softmax on digits: the papers' comparison in miniature.

Three tasks, each an experiment config (a module with ``get_config(loss)``)
run for every listed loss and seed:

1. classification with 2-D features (the papers' feature figure),
2. class-disjoint retrieval (train on digits 0-4, retrieve among 5-9),
3. multi-label classification of composed digits (softmax vs G-softmax).

  python -m benchmarks.compare --config=configs/compare/digits.py
  python -m benchmarks.compare --config=configs/compare/digits.py:quick

The quick mode (``make compare QUICK=1``) is a smoke test of the whole
comparison machinery (every loss trains, evaluates and reaches the table and
the figures), not a result: one seed of 8 epochs leaves the models
undertrained (softmax near 0.6 accuracy against 0.96 after the full 30) and
gives no spread to judge a difference by, so its table marks nothing.

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


# Epochs of the quick mode (the Makefile's `make compare QUICK=1` says it).
QUICK_EPOCHS = 8

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

# The same schedule and network for every loss of the digits comparisons:
# the default's 30 epochs, with LeNet++ at half its width so that 78 runs
# take < 30 min on 2 CPU cores.
SCHEDULE = {
  'num_epochs': 30,
  'model': {'stage_filters': (16, 32, 64)},
  'checkpoint_every_steps': 1000,
  'eval_every_steps': 1000,
  'write_plots': False,
}
# The smoke modes' runs (the test suite's): a few steps of a one-stage
# LeNet++, as configs/tiny.py.
SMOKE_SCHEDULE = {
  'num_epochs': 1,
  'num_train_steps': 4,
  'model': {'stage_filters': (8,)},
  'optimizer': {'warmup_steps': 0},
  'eval_batch_size': 128,
}


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
  config.mode = mode
  # What the report must say first when its numbers are not results (the
  # quick and smoke modes); empty for a comparison meant as one.
  config.caveat = ''
  config.seeds = (0, 1, 2)
  # Where the table (markdown) and the figures go.
  config.results_dir = 'results'
  # The task whose 2-D test features make the figure grid and bar chart.
  config.figure_task = 'classification'
  config.tasks = ml_collections.ConfigDict()
  return config


def get_config(mode: str = 'full') -> ml_collections.ConfigDict:
  """The comparison; `mode` is 'full', 'quick' (a smoke test of the
  machinery: 1 seed, `QUICK_EPOCHS` epochs, no retrieval) or 'smoke' (a few
  steps of two losses, for the test suite)."""
  config = new_comparison('digits', mode)

  config.tasks.classification = make_task(
    'configs.digits', SINGLE_LABEL_LOSSES, CLASSIFICATION_METRICS, **SCHEDULE
  )
  config.tasks.retrieval = make_task(
    'configs.digits_retrieval',
    SINGLE_LABEL_LOSSES,
    RETRIEVAL_METRICS,
    **SCHEDULE,
  )
  config.tasks.multilabel = make_task(
    'configs.digits_multilabel',
    MULTILABEL_LOSSES,
    MULTILABEL_METRICS,
    **SCHEDULE,
  )

  if mode == 'quick':
    # Every loss once on classification (the table and both figures) and
    # the multi-label pair; retrieval only in the full comparison. Each
    # run's fixed cost (compiling, evaluating) dominates at this length.
    # Softmax needs the full 30 epochs to converge; these 15 runs would
    # then take about 7 min on 2 cores (the full comparison's run times),
    # so the quick mode stays a smoke test instead.
    config.seeds = (0,)
    config.results_dir = 'runs/compare_quick'
    del config.tasks['retrieval']
    for task in config.tasks.values():
      task.overrides.num_epochs = QUICK_EPOCHS
    config.caveat = (
      'Quick mode: a smoke test of the comparison machinery (every loss '
      'trains, evaluates and reaches this table and the figures), not a '
      f'result. One seed of {QUICK_EPOCHS} epochs instead of 3 seeds of '
      f'{SCHEDULE["num_epochs"]}: the models are undertrained (softmax reaches '
      'about 0.6 accuracy here, 0.96 in the full comparison) and no row '
      'can be told from seed noise. `make compare` gives the results '
      '(results/digits.md).'
    )
  elif mode == 'smoke':
    config.seeds = (0, 1)
    config.results_dir = 'runs/compare_smoke'
    smoke = {**SMOKE_SCHEDULE, 'input': {'batch_size': 32}}
    config.tasks.classification.losses = ('softmax', 'circle_pairwise')
    config.tasks.multilabel.losses = ('g_softmax_multilabel',)
    del config.tasks['retrieval']
    for task in config.tasks.values():
      task.overrides.update(smoke)
    config.caveat = (
      'Smoke mode: a few steps of a few losses, for the test suite; not a '
      'result.'
    )
  return config
