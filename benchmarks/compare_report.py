"""The comparison's results table (markdown) and figures.

Everything here reads run records (`benchmarks.compare`): one dict per
(task, loss, seed) run with its final metrics, wall-clock seconds and the
loss's hyperparameters. Nothing trains.
"""

import collections
import datetime
import os
from collections.abc import Sequence
from typing import Any

import cpuinfo
import jax
import matplotlib
import ml_collections
import numpy as np

import evaluation

matplotlib.use('Agg')
from matplotlib import pyplot as plt  # noqa: E402

# Column title and whether lower is better, per metric key of results.json.
_METRICS = {
  'accuracy': ('accuracy', False),
  'nearest_class_mean_accuracy': ('NCM accuracy', False),
  'compactness': ('compactness', True),
  'separability': ('separability', False),
  'cosine_compactness': ('cos. compactness', True),
  'cosine_separability': ('cos. separability', False),
  'cosine_min_separability': ('cos. min. separability', False),
  'ratio': ('separation ratio', False),
  'cosine_ratio': ('cos. separation ratio', False),
  'map@r': ('MAP@R', False),
  'nmi': ('NMI', False),
  'map': ('mAP', False),
  'cf1': ('CF1', False),
  'of1': ('OF1', False),
}
_HEADLINE = ('accuracy', 'recall@1', 'map@r', 'nmi', 'map', 'of1')
_REFERENCE_LOSSES = ('softmax', 'softmax_multilabel')
# Runs of both a row and the reference row before a cell may be bold.
MIN_RUNS_TO_MARK = 2


def metric_title(key: str) -> str:
  if key.startswith('recall@'):
    return 'R@' + key.split('@')[1]
  return _METRICS.get(key, (key, False))[0]


def lower_is_better(key: str) -> bool:
  return _METRICS.get(key, (key, False))[1]


def headline(metrics: dict[str, Any]) -> str:
  """A short line of a run's main metrics, for the log."""
  return ' '.join(
    f'{metric_title(key)} {metrics[key]:.3f}'
    for key in _HEADLINE
    if key in metrics
  )


def summarize(
  records: Sequence[dict[str, Any]], task: str, metrics: Sequence[str]
) -> dict[str, dict[str, tuple[float, float, int]]]:
  """Mean, sample standard deviation and count per loss and metric.

  Args:
    records: run records of any tasks.
    task: the task to summarise.
    metrics: metric keys, plus ``'seconds'`` for the run time.

  Returns:
    ``{loss: {metric: (mean, std, n)}}`` in the records' loss order; std is
    0 for a single seed and the metric is absent where no run reported it.
  """
  values = collections.defaultdict(lambda: collections.defaultdict(list))
  for record in records:
    if record['task'] != task or 'error' in record:
      continue
    for key in metrics:
      value = record['seconds'] if key == 'seconds' else None
      if value is None:
        value = record['metrics'].get(key)
      if value is not None:
        values[record['loss']][key].append(float(value))
  return {
    loss: {
      key: (
        float(np.mean(samples)),
        float(np.std(samples, ddof=1)) if len(samples) > 1 else 0.0,
        len(samples),
      )
      for key, samples in per_metric.items()
    }
    for loss, per_metric in values.items()
  }


def _cell(stats, key, reference) -> str:
  if stats is None:
    return 'n/a'
  mean, std, count = stats
  digits = 1 if key == 'seconds' else 3
  text = f'{mean:.{digits}f}' + (f' ± {std:.{digits}f}' if count > 1 else '')
  if key == 'seconds' or reference is None:
    return text
  # One run has no spread: nothing to tell a difference from seed noise by.
  if count < MIN_RUNS_TO_MARK or reference[2] < MIN_RUNS_TO_MARK:
    return text
  # Bold only a difference larger than the seeds' spread of both rows: a
  # mean ahead by less than that is noise at 3 seeds.
  spread = float(np.hypot(std, reference[1]))
  gain = reference[0] - mean if lower_is_better(key) else mean - reference[0]
  return f'**{text}**' if gain > spread else text


def task_table(
  records: Sequence[dict[str, Any]], task: str, metrics: Sequence[str]
) -> str:
  """The markdown table of one task; cells better than softmax in bold.

  Bold needs `MIN_RUNS_TO_MARK` runs in both rows and a gain beyond their
  combined standard deviation; a single seed marks nothing.
  """
  summary = summarize(records, task, (*metrics, 'seconds'))
  reference_loss = next((n for n in _REFERENCE_LOSSES if n in summary), None)
  reference = summary.get(reference_loss, {})
  arrows = {key: ' ↓' if lower_is_better(key) else ' ↑' for key in metrics}
  header = ['loss', *(metric_title(k) + arrows[k] for k in metrics), 'time s']
  lines = [
    '| ' + ' | '.join(header) + ' |',
    '|' + '---|' * len(header),
  ]
  for loss, stats in summary.items():
    name = f'{loss} (reference)' if loss == reference_loss else loss
    cells = [
      _cell(
        stats.get(key),
        key,
        None if loss == reference_loss else reference.get(key),
      )
      for key in (*metrics, 'seconds')
    ]
    lines.append('| ' + ' | '.join([name, *cells]) + ' |')
  failures = [
    f'{record["loss"]} seed {record["seed"]}: {record["error"]}'
    for record in records
    if record['task'] == task and 'error' in record
  ]
  if failures:
    lines += ['', 'Failed runs (not in the means): ' + '; '.join(failures)]
  return '\n'.join(lines)


def hparams_caption(records: Sequence[dict[str, Any]], task: str) -> str:
  """Each loss's hyperparameters, as the runs used them."""
  seen = {}
  for record in records:
    if (
      record['task'] == task
      and 'error' not in record
      and record['loss'] not in seen
    ):
      seen[record['loss']] = record['hparams']
  parts = []
  for loss, hparams in seen.items():
    values = ', '.join(
      f'{key}={value}' for key, value in hparams.items() if value is not None
    )
    parts.append(f'{loss} ({values or "none"})')
  return '; '.join(parts)


def _overrides_text(task: ml_collections.ConfigDict) -> str:
  flat = []

  def walk(prefix, node):
    for key, value in node.items():
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        walk(f'{prefix}{key}.', value)
      else:
        flat.append(f'`{prefix}{key}={value}`')

  walk('', task.overrides)
  return ', '.join(flat) or 'none'


def _cells_text(seed_list: Sequence[int]) -> str:
  """What a cell holds and what its bold means, for the page's header."""
  seeds = ', '.join(str(seed) for seed in seed_list)
  if len(seed_list) < MIN_RUNS_TO_MARK:
    return (
      f'Each cell is the result of one run (seed {seeds}; the seed sets the '
      'initialisation and the batch order). No cell is bold: one seed gives '
      'no spread, so a difference from the softmax reference row cannot be '
      f'told from seed noise (bold needs {MIN_RUNS_TO_MARK} or more seeds).'
    )
  return (
    f'Each cell is the mean ± sample standard deviation over seeds {seeds} '
    '(the seed sets the initialisation and the batch order). Bold: better '
    "than the softmax reference row by more than the two rows' combined "
    'standard deviation (√(s² + s_ref²)), where both rows have '
    f'{MIN_RUNS_TO_MARK} or more runs.'
  )


def markdown(
  config: ml_collections.ConfigDict,
  records: Sequence[dict[str, Any]],
  *,
  jobs: int,
  figures: Sequence[str] = (),
) -> str:
  """The whole results page."""
  mode = config.get('mode', 'full')
  title = f'# Loss comparison: {config.name}'
  lines = [title + ('' if mode == 'full' else f' ({mode} mode)'), '']
  if config.get('caveat'):
    lines += [f'> {config.caveat}', '']
  lines += [
    f'Written by `python -m benchmarks.compare` on '
    f'{datetime.date.today().isoformat()}: jax {jax.__version__}, '
    f'{cpuinfo.get_cpu_info()["brand_raw"]} ({os.cpu_count()} cores), '
    f'{jobs} run(s) at a time'
    + (' (each single-threaded)' if jobs > 1 else '')
    + '.',
    '',
    _cells_text(config.seeds)
    + ' `time s` is the wall-clock time of one run, compilation and '
    "evaluation included. Hyperparameters are each loss's defaults (sources "
    'in docs/losses.md §1); the schedule is shared by every loss.',
    '',
    "Metrics: accuracy from each loss's own classifier (none for the "
    'pair-wise losses); NCM accuracy assigns a test feature to the nearest '
    'training-class mean; cos. compactness is the mean cosine distance of '
    "a class's features to its mean direction (lower: more compact); "
    'cos. separability the mean cosine distance between class mean '
    'directions (higher: more separated); separation ratio is mean '
    'between-class distance over mean within-class distance (Euclidean, '
    'scale-free); retrieval metrics are on classes unseen in training.',
  ]
  for task_name, task in config.tasks.items():
    lines += [
      '',
      f'## {task_name} (`{task.experiment}`)',
      '',
      task_table(records, task_name, task.metrics),
      '',
      f'Overrides for every run: {_overrides_text(task)}. Hyperparameters: '
      + hparams_caption(records, task_name)
      + '.',
    ]
  if figures:
    lines += ['', '## Figures', '']
    lines += [
      f'![{os.path.basename(path)}]({os.path.basename(path)})'
      for path in figures
    ]
  return '\n'.join(lines) + '\n'


def feature_grid(
  config: ml_collections.ConfigDict,
  records: Sequence[dict[str, Any]],
  workdir: str,
  path: str,
) -> str | None:
  """The figure task's test features, one panel per loss (first seed)."""
  panels = []
  seed = config.seeds[0]
  for record in records:
    if (
      record['task'] != config.figure_task
      or record['seed'] != seed
      or 'error' in record
    ):
      continue
    features = os.path.join(
      workdir, record['task'], record['loss'], str(seed), 'test_features.npz'
    )
    if not os.path.exists(features):
      continue
    with np.load(features) as data:
      panels.append((record['loss'], data['embeddings'], data['labels']))
  if not panels:
    return None
  return evaluation.plot_feature_grid(
    panels,
    path,
    title=f'{config.name}: test features per loss (seed {seed})',
  )


def geometry_bars(
  config: ml_collections.ConfigDict,
  records: Sequence[dict[str, Any]],
  path: str,
) -> str | None:
  """Cosine compactness and separability per loss, mean ± std."""
  keys = ('cosine_compactness', 'cosine_separability', 'ratio')
  summary = summarize(records, config.figure_task, keys)
  summary = {
    loss: stats for loss, stats in summary.items() if len(stats) == len(keys)
  }
  if not summary:
    return None
  names = list(summary)
  figure, axes = plt.subplots(
    1, len(keys), figsize=(4.2 * len(keys), 0.35 * len(names) + 1.5)
  )
  positions = np.arange(len(names))
  for axis, key in zip(axes, keys, strict=True):
    means = [summary[name][key][0] for name in names]
    stds = [summary[name][key][1] for name in names]
    colours = ['0.55' if n in _REFERENCE_LOSSES else 'C0' for n in names]
    axis.barh(positions, means, xerr=stds, color=colours, capsize=2)
    axis.set_yticks(positions, names if axis is axes[0] else [''] * len(names))
    axis.invert_yaxis()
    arrow = '(lower: more compact)' if lower_is_better(key) else '(higher)'
    axis.set_title(f'{metric_title(key)} {arrow}', fontsize=9)
    axis.grid(axis='x', alpha=0.3)
  spread = (
    f'mean ± std over {len(config.seeds)} seeds'
    if len(config.seeds) >= MIN_RUNS_TO_MARK
    else 'one run per loss, no spread'
  )
  mode = config.get('mode', 'full')
  name = config.name + ('' if mode == 'full' else f' ({mode} mode)')
  figure.suptitle(f'{name}, {config.figure_task}: {spread}; grey = softmax')
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path


def write(
  config: ml_collections.ConfigDict,
  records: Sequence[dict[str, Any]],
  *,
  workdir: str,
  jobs: int,
) -> list[str]:
  """Writes the figures and the markdown page; returns their paths."""
  directory = config.results_dir
  os.makedirs(directory, exist_ok=True)
  figures = []
  if config.figure_task:
    grid = feature_grid(
      config,
      records,
      workdir,
      os.path.join(directory, f'{config.name}_features.png'),
    )
    bars = geometry_bars(
      config, records, os.path.join(directory, f'{config.name}_geometry.png')
    )
    figures = [path for path in (grid, bars) if path]
  page = os.path.join(directory, f'{config.name}.md')
  with open(page, 'w') as file:
    file.write(markdown(config, records, jobs=jobs, figures=figures))
  return [page, *figures]
