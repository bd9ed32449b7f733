"""The evaluation loop's files and figures name classes as the data does."""

import numpy as np

import evaluation
import input_pipeline
from configs import digits_retrieval
from training import evaluation_loop, objectives


def _random_eval_step(state, batch):
  # Stands for the model: the files and figures, not the metrics, are
  # under test.
  del state
  rng = np.random.default_rng(int(batch['image'].sum() * 1000) % 2**32)
  return {'embeddings': rng.standard_normal((len(batch['image']), 4))}


def test_class_disjoint_outputs_name_the_test_classes(tmp_path, monkeypatch):
  config = digits_retrieval.get_config('circle_pairwise')
  config.input.data_dir = str(tmp_path / 'tfds')
  config.write_plots = True
  config.write_features = True
  dataset = input_pipeline.create_dataset(config.input, seed=0)
  plotted = {}
  for name in ('plot_features', 'plot_class_geometry'):
    plot = getattr(evaluation, name)

    def spy(*args, _plot=plot, _name=name, **kwargs):
      plotted[_name] = kwargs['class_names']
      return _plot(*args, **kwargs)

    monkeypatch.setattr(evaluation, name, spy)
  objective = objectives.get_objective(config.loss.name)
  evaluation_loop.evaluate(
    None,
    eval_step=_random_eval_step,
    dataset=dataset,
    objective=objective,
    hparams=objectives.resolve_hparams(objective, config.loss),
    config=config,
    final=True,
    workdir=str(tmp_path),
  )
  # Digits 0-4 train the model; the test split holds 5-9, labelled 0-4.
  unseen = ('5', '6', '7', '8', '9')
  assert dataset.info.test_class_names == unseen
  assert plotted == {'plot_features': unseen, 'plot_class_geometry': unseen}
  with np.load(tmp_path / 'test_features.npz') as features:
    assert tuple(features['class_names']) == unseen
    assert set(features['labels']) == {0, 1, 2, 3, 4}
  assert (tmp_path / 'retrieval.png').stat().st_size > 0
