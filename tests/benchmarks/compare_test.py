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
  # Two seeds each (bold needs a spread), the same numbers for both.
  records = [
    _record('a', loss, seed, 1.0, accuracy=acc, cosine_compactness=comp)
    for loss, acc, comp in (
      ('softmax', 0.8, 0.2),
      ('better', 0.9, 0.1),
      ('worse', 0.7, 0.3),
    )
    for seed in (0, 1)
  ]
  table = compare_report.task_table(
    records, 'a', ('accuracy', 'cosine_compactness')
  ).splitlines()
  assert table[0].startswith('| loss | accuracy ↑ | cos. compactness ↓')
  assert table[2] == (
    '| softmax (reference) | 0.800 ± 0.000 | 0.200 ± 0.000 | 1.0 ± 0.0 |'
  )
  # Higher accuracy and lower compactness are the better directions.
  assert table[3] == (
    '| better | **0.900 ± 0.000** | **0.100 ± 0.000** | 1.0 ± 0.0 |'
  )
  assert table[4] == '| worse | 0.700 ± 0.000 | 0.300 ± 0.000 | 1.0 ± 0.0 |'


def _one_seed_records():
  # As the quick comparison wrote them: one seed per loss, softmax
  # undertrained, Proxy-Anchor collapsed to one point (compactness 0).
  return [
    _record(
      'classification',
      'softmax',
      0,
      9.0,
      accuracy=0.577,
      cosine_compactness=0.076,
    ),
    _record(
      'classification',
      'g_softmax',
      0,
      9.0,
      accuracy=0.612,
      cosine_compactness=0.073,
    ),
    _record(
      'classification',
      'proxy_anchor',
      0,
      9.0,
      accuracy=0.097,
      cosine_compactness=0.0,
    ),
  ]


def test_one_seed_marks_no_cell():
  table = compare_report.task_table(
    _one_seed_records(), 'classification', ('accuracy', 'cosine_compactness')
  )
  assert '**' not in table
  assert '| g_softmax | 0.612 | 0.073 | 9.0 |' in table
  assert '| proxy_anchor | 0.097 | 0.000 | 9.0 |' in table
  # Two seeds of a loss against one of the reference: still no spread.
  records = [
    *_one_seed_records(),
    _record('classification', 'g_softmax', 1, 9.0, accuracy=0.9),
  ]
  assert '**' not in compare_report.task_table(
    records, 'classification', ('accuracy',)
  )


def test_quick_report_says_it_is_a_smoke_test_and_why_nothing_is_bold():
  config = compare_digits.get_config('quick')
  records = _one_seed_records()
  config.tasks.classification.metrics = ('accuracy', 'cosine_compactness')
  del config.tasks['multilabel']
  page = compare_report.markdown(config, records, jobs=2)
  lines = page.splitlines()
  assert lines[0] == '# Loss comparison: digits (quick mode)'
  assert lines[2].startswith('> Quick mode: a smoke test of ')
  assert 'not a result' in lines[2]
  assert f'One seed of {compare_digits.QUICK_EPOCHS} epochs' in lines[2]
  assert 'No cell is bold: one seed gives no spread' in page
  assert 'mean ± sample standard deviation' not in page
  assert '**0.' not in page
  # The full comparison's page keeps its rule and has no caveat.
  full = compare_report.markdown(
    compare_digits.get_config('full'), [], jobs=2
  ).splitlines()
  assert full[0] == '# Loss comparison: digits'
  assert not any(line.startswith('>') for line in full)
  assert any('Bold: better than the softmax' in line for line in full)


def test_makefile_states_the_quick_modes_length():
  makefile = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), 'Makefile'
  )
  with open(makefile) as file:
    text = ' '.join(file.read().split())
  assert f'{compare_digits.QUICK_EPOCHS} epochs' in text
  assert 'QUICK=1: a smoke test of the comparison machinery, not a result' in (
    text.replace('# ', '')
  )
  for task in compare_digits.get_config('quick').tasks.values():
    assert task.overrides.num_epochs == compare_digits.QUICK_EPOCHS


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


def test_reduced_comparison_end_to_end(tmp_path, monkeypatch, digits_data_dir):
  config = compare_digits.get_config('smoke')
  config.results_dir = str(tmp_path / 'results')
  for task in config.tasks.values():
    task.overrides.input.data_dir = digits_data_dir  # + digits_multilabel
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


def test_a_record_from_before_built_for_is_still_finished(tmp_path):
  # comparison_run.json written before config.loss named the loss it was
  # built for: the same experiment, so its numbers are reused.
  config = compare_digits.get_config('smoke')
  run = compare.plan(config, str(tmp_path))[0]
  experiment = compare.experiment_config(
    config.tasks[run.task], run.loss, run.seed
  )
  recorded = json.loads(experiment.to_json())
  del recorded['loss']['built_for']
  os.makedirs(run.workdir)
  with open(os.path.join(run.workdir, 'comparison_run.json'), 'w') as file:
    json.dump({'config': recorded, 'metrics': {}}, file)
  assert compare.finished_record(run, config) == {
    'config': recorded,
    'metrics': {},
  }
  recorded['loss']['margin'] = 0.1
  with open(os.path.join(run.workdir, 'comparison_run.json'), 'w') as file:
    json.dump({'config': recorded, 'metrics': {}}, file)
  with pytest.raises(ValueError, match='different experiment config'):
    compare.finished_record(run, config)
