"""The objective registry: config sections, resolution, provenance, README."""

import os

import ml_collections
import pytest

from training import objectives

_README = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(__file__))), 'README.md'
)
_SOURCE_KINDS = (
  'paper: ',
  'official code: ',
  'another paper: ',
  'third-party code: ',
  'chosen here: ',
)


def test_readme_table_is_the_registrys():
  with open(_README) as file:
    readme = file.read()
  begin = '<!-- objectives table: begin -->\n'
  end = '\n<!-- objectives table: end -->'
  table = readme[readme.index(begin) + len(begin) : readme.index(end)]
  assert table == objectives.markdown_table(), (
    'README.md is stale: paste `python -m training.objectives` between the '
    'objectives table markers'
  )


@pytest.mark.parametrize('name', objectives.names())
def test_every_default_names_its_source(name):
  objective = objectives.get_objective(name)
  for key, hyperparameter in objective.hyperparameters.items():
    assert hyperparameter.source.startswith(_SOURCE_KINDS), (
      key,
      hyperparameter,
    )
    assert hyperparameter.doc, key


@pytest.mark.parametrize('name', objectives.names())
def test_loss_config_holds_exactly_the_hyperparameters(name):
  objective = objectives.get_objective(name)
  config = objectives.loss_config(name)
  assert config.name == name
  assert set(config) - {'name'} == set(objective.hyperparameters)
  hparams = objectives.resolve_hparams(objective, config)
  for key, hyperparameter in objective.hyperparameters.items():
    assert hparams[key] == hyperparameter.default
  described = objectives.describe_hparams(objective, hparams)
  assert {key: d['source'] for key, d in described.items()} == {
    key: h.source for key, h in objective.hyperparameters.items()
  }


def test_overridden_value_is_described_as_from_the_config():
  objective = objectives.get_objective('cosface')
  config = objectives.loss_config('cosface')
  config.margin = 0.2
  hparams = objectives.resolve_hparams(objective, config)
  assert hparams.margin == 0.2 and hparams.scale == 64.0
  described = objectives.describe_hparams(objective, hparams)
  assert described['margin'] == {'value': 0.2, 'source': 'config'}
  assert described['scale']['source'].startswith('paper: ')


def test_a_none_default_is_overridable_with_its_type():
  config = objectives.loss_config('circle_pairwise')
  config.block_size = 64
  hparams = objectives.resolve_hparams(
    objectives.get_objective('circle_pairwise'), config
  )
  assert hparams.block_size == 64
  with pytest.raises(TypeError):
    config.block_size = 'many'


def test_unknown_hyperparameter_lists_the_valid_ones():
  config = ml_collections.ConfigDict({'name': 'triplet', 'gamma': 3.0})
  with pytest.raises(
    ValueError,
    match=r"gamma, which the loss 'triplet' does not have; its "
    r'hyperparameters: margin, block_size',
  ):
    objectives.resolve_hparams(objectives.get_objective('triplet'), config)


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match='valid names: arcface, center, '):
    objectives.get_objective('nope')
