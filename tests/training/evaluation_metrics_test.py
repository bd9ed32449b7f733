"""The metrics the evaluation loop computes for each kind of run."""

import numpy as np

import input_pipeline
from configs import digits, digits_multilabel
from training import evaluation_loop, objectives


def _random_eval_step(num_scores, probabilities):
  # Stands for the model: which metrics are computed is under test, not
  # their values.
  def step(state, batch):
    del state
    rng = np.random.default_rng(int(batch['image'].sum() * 1000) % 2**32)
    n = len(batch['image'])
    scores = rng.random((n, num_scores))
    return {
      'embeddings': rng.standard_normal((n, 4)),
      'scores': scores if probabilities else np.log(scores),
    }

  return step


def _evaluate(config, eval_step, **kwargs):
  dataset = input_pipeline.create_dataset(config.input, seed=0)
  objective = objectives.get_objective(config.loss.name)
  return evaluation_loop.evaluate(
    None,
    eval_step=eval_step,
    dataset=dataset,
    objective=objective,
    hparams=objectives.resolve_hparams(objective, config.loss),
    config=config,
    **kwargs,
  )


def test_multilabel_runs_get_thresholded_and_top_3_metrics(tmp_path):
  config = digits_multilabel.get_config()
  config.input.data_dir = str(tmp_path / 'tfds')
  results = _evaluate(config, _random_eval_step(10, probabilities=True))
  names = ('cp', 'cr', 'cf1', 'op', 'or', 'of1')
  assert set(results) == {'map', *names, *(f'{n}@3' for n in names)}
  for key, value in results.items():
    assert 0.0 <= value <= 1.0, key
  # Random scores: about 5 of 10 labels pass 0.5, at most 3 of them are kept.
  assert results['op@3'] != results['op']


def test_single_label_runs_get_top_5_and_knn_accuracy(tmp_path):
  config = digits.get_config('softmax')
  config.input.data_dir = str(tmp_path / 'tfds')
  step = _random_eval_step(10, probabilities=False)
  periodic = _evaluate(config, step)
  assert 0.0 <= periodic['top5_accuracy'] <= 1.0
  assert periodic['top5_accuracy'] >= periodic['accuracy']
  assert not any(key.startswith('knn') for key in periodic)
  final = _evaluate(config, step, final=True)
  for k in evaluation_loop.KNN_KS:
    assert 0.0 <= final[f'knn_accuracy@{k}'] <= 1.0
