"""The loss comparison: a reduced run end to end, and its table arithmetic."""

import json
import os

import numpy as np
import pytest

from benchmarks import compare, compare_report
from configs.compare import digits as compare_digits


def _record(task, loss, seed, seconds, **metrics):
  return {
    'task': task,
    'loss': loss,
    'seed': seed,
    'seconds': seconds,
    'metrics': metrics,
    'hparams': {'margin': 0.4},
  }


def test_summarize_is_mean_and_sample_std():
  records = [
    _record('a', 'softmax', 0, 10.0, accuracy=0.5),
    _record('a', 'softmax', 1, 14.0, accuracy=0.7),
    _record('a', 'softmax', 2, 12.0, accuracy=0.9),
    _record('a', 'circle', 0, 5.0, accuracy=0.4),
    _record('b', 'softmax', 0, 99.0, accuracy=0.0),
  ]
  summary = compare_report.summarize(records, 'a', ('accuracy', 'seconds'))
  assert list(summary) == ['softmax', 'circle']
  mean, std, count = summary['softmax']['accuracy']
  samples = np.array([0.5, 0.7, 0.9])
  assert mean == pytest.approx(samples.mean())
  assert std == pytest.approx(np.sqrt(np.sum((samples - 0.7) ** 2) / 2))
  assert count == 3
  assert summary['softmax']['seconds'][0] == pytest.approx(12.0)
  # One seed: no spread to report.
  assert summary['circle']['accuracy'] == (pytest.approx(0.4), 0.0, 1)


def test_table_marks_losses_better_than_softmax():
  records = [
    _record('a', 'softmax', 0, 1.0, accuracy=0.8, cosine_compactness=0.2),
    _record('a', 'better', 0, 1.0, accuracy=0.9, cosine_compactness=0.1),
    _record('a', 'worse', 0, 1.0, accuracy=0.7, cosine_compactness=0.3),
  ]
  table = compare_report.task_table(
    records, 'a', ('accuracy', 'cosine_compactness')
  ).splitlines()
  assert table[0].startswith('| loss | accuracy ↑ | cos. compactness ↓')
  assert table[2] == '| softmax (reference) | 0.800 | 0.200 | 1.0 |'
  # Higher accuracy and lower compactness are the better directions.
  assert table[3] == '| better | **0.900** | **0.100** | 1.0 |'
  assert table[4] == '| worse | 0.700 | 0.300 | 1.0 |'


def test_bad_comparison_configs_are_refused_before_training(tmp_path):
  with pytest.raises(ValueError, match="'full', 'quick' or 'smoke'"):
    compare_digits.get_config('fast')
  config = compare_digits.get_config('smoke')
  config.tasks.classification.losses = ('softmax', 'circel')
  with pytest.raises(ValueError, match=r"losses must be names.*'circel'"):
    compare.plan(config, str(tmp_path))
  config = compare_digits.get_config('smoke')
  config.tasks.classification.experiment = 'configs.nope'
  with pytest.raises(ValueError, match="experiment must name.*'configs.nope'"):
    compare.plan(config, str(tmp_path))
  config = compare_digits.get_config('smoke')
  config.figure_task = 'retrieval'
  with pytest.raises(ValueError, match='figure_task'):
    compare.plan(config, str(tmp_path))


def test_reduced_comparison_end_to_end(tmp_path, monkeypatch):
  config = compare_digits.get_config('smoke')
  config.results_dir = str(tmp_path / 'results')
  for task in config.tasks.values():
    task.overrides.input.data_dir = str(tmp_path / 'tfds')
  workdir = str(tmp_path / 'runs')

  records = compare.run_all(config, workdir)
  paths = compare_report.write(config, records, workdir=workdir, jobs=1)
  assert len(records) == 6
  page_path, *figures = paths
  with open(page_path) as file:
    page = file.read()

  # Each cell is the mean ± std of the runs' own results.json.
  for task_name, task in config.tasks.items():
    for loss in task.losses:
      metrics = []
      for seed in config.seeds:
        path = os.path.join(workdir, task_name, loss, str(seed))
        with open(os.path.join(path, 'results.json')) as file:
          metrics.append(json.load(file)['metrics'])
      row = next(
        line for line in page.splitlines() if line.startswith(f'| {loss}')
      )
      for key in task.metrics:
        if key not in metrics[0]:
          continue  # e.g. no classifier accuracy for a pair-wise loss
        values = np.array([m[key] for m in metrics])
        assert np.all(np.isfinite(values)), (loss, key)
        cell = f'{values.mean():.3f} ± {values.std(ddof=1):.3f}'
        assert cell in row, (loss, key, cell, row)
  assert '| softmax (reference) |' in page
  assert '| circle_pairwise | n/a |' in page  # no classifier to score
  assert 'circle_pairwise (gamma=80.0, margin=0.4)' in page

  for figure in figures:
    with open(figure, 'rb') as file:
      assert file.read(8) == b'\x89PNG\r\n\x1a\n'
  assert [os.path.basename(f) for f in figures] == [
    'digits_features.png',
    'digits_geometry.png',
  ]

  # A rerun trains nothing: every run is finished.
  def fail(*args):
    raise AssertionError(f'retrained {args[1]}')

  monkeypatch.setattr(compare, '_train', fail)
  assert compare.run_all(config, workdir) == records

  monkeypatch.undo()

  # A changed experiment must not reuse the old runs' numbers.
  config.tasks.classification.overrides.num_train_steps = 5
  with pytest.raises(ValueError, match='different experiment config'):
    compare.run_all(config, workdir)


def test_failed_runs_are_reported_and_left_out_of_the_means():
  records = [
    _record('a', 'softmax', 0, 1.0, accuracy=0.8),
    _record('a', 'softmax', 1, 1.0, accuracy=0.6),
    {'task': 'a', 'loss': 'softmax', 'seed': 2, 'error': 'FloatingPointError'},
  ]
  table = compare_report.task_table(records, 'a', ('accuracy',))
  assert '| softmax (reference) | 0.700 ± 0.141 | 1.0 ± 0.0 |' in table
  assert 'Failed runs (not in the means): softmax seed 2: Floating' in table


def test_bold_needs_a_gain_beyond_the_seed_spread():
  records = [
    _record('a', 'softmax', 0, 1.0, accuracy=0.80),
    _record('a', 'softmax', 1, 1.0, accuracy=0.84),
    _record('a', 'noisy', 0, 1.0, accuracy=0.78),
    _record('a', 'noisy', 1, 1.0, accuracy=0.90),
    _record('a', 'clear', 0, 1.0, accuracy=0.90),
    _record('a', 'clear', 1, 1.0, accuracy=0.92),
  ]
  table = compare_report.task_table(records, 'a', ('accuracy',))
  # noisy: +0.02 on average, but the spreads combine to 0.09.
  assert '| noisy | 0.840 ± 0.085 |' in table
  # clear: +0.09 against a combined spread of 0.03.
  assert '| clear | **0.910 ± 0.014** |' in table


def test_each_data_set_is_prepared_once_before_the_workers(
  tmp_path, monkeypatch
):
  config = compare_digits.get_config('smoke')
  data_dir = str(tmp_path / 'tfds')
  for task in config.tasks.values():
    task.overrides.input.data_dir = data_dir
  events = []

  def prepare_input(config_input):
    events.append(('prepare', config_input.name, config_input.data_dir))
    return os.path.join(config_input.data_dir, config_input.name)

  def train_pending(config_json, pending, jobs):
    events.append(('train', len(pending), jobs))
    for run in pending:
      yield run, compare._failed(run, RuntimeError('not trained'))

  monkeypatch.setattr(compare.preparation, 'prepare_input', prepare_input)
  monkeypatch.setattr(compare, '_train_pending', train_pending)
  records = compare.run_all(config, str(tmp_path / 'runs'), jobs=2)
  assert len(records) == 6
  assert events == [
    ('prepare', 'digits', data_dir),
    ('prepare', 'digits_multilabel', data_dir),
    ('train', 6, 2),
  ]
