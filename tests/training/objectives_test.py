"""The objective registry: config sections, resolution, provenance, README."""

import json
import os

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from training import objectives

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_README = os.path.join(_ROOT, 'README.md')
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
  assert config.built_for == name
  assert set(config) - {'name', 'built_for'} == set(objective.hyperparameters)
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
  with pytest.raises(ValueError) as error:
    objectives.get_objective('nope')
  assert str(error.value).endswith(
    f'valid names: {", ".join(objectives.names())}'
  )
  assert 'arcface, ' in str(error.value)


def _command_line_config(*argv):
  """The config train.py builds from `argv` (config_flags, locked)."""
  argv = ['train.py', *argv]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    'config',
    None,
    'Experiment config file.',
    flag_values,
    lock_config=True,
    sys_argv=argv,
  )
  flag_values(argv)
  return flag_values.config


# The one line train.py prints for
#   train.py --config=configs/digits.py:cosface --config.loss.name=arcface
# (tests/end_to_end/train_cli_test.py runs it).
_RENAMED_SECTION_LINE = (
  "train.py: ValueError: config.loss was built for the loss 'cosface', not "
  "for 'arcface' (config.loss.name): changing config.loss.name alone keeps "
  "cosface's section (scale=64.0, margin=0.35; arcface's defaults: "
  'scale=64.0, margin=0.5). Pick the loss with the config argument (e.g. '
  '--config=configs/digits.py:arcface) so that config.loss holds exactly its '
  'hyperparameters. (--traceback shows where)'
)


def test_renaming_the_loss_is_refused_as_the_command_line_builds_it():
  # CosFace's section has ArcFace's fields: only the record of the loss it
  # was built for tells that its margin 0.35 is CosFace's, not the user's.
  config = _command_line_config(
    f'--config={_ROOT}/configs/digits.py:cosface', '--config.loss.name=arcface'
  )
  assert config.loss.built_for == 'cosface'
  with pytest.raises(ValueError) as error:
    objectives.resolve_hparams(
      objectives.get_objective(config.loss.name), config.loss
    )
  prefix, suffix = 'train.py: ValueError: ', ' (--traceback shows where)'
  assert str(error.value) == _RENAMED_SECTION_LINE[len(prefix) : -len(suffix)]


def test_the_config_argument_picks_arcface_with_its_papers_margin():
  config = _command_line_config(f'--config={_ROOT}/configs/digits.py:arcface')
  objective = objectives.get_objective(config.loss.name)
  hparams = objectives.resolve_hparams(objective, config.loss)
  assert hparams.margin == 0.5
  described = objectives.describe_hparams(objective, hparams)
  assert described['margin'] == {
    'value': 0.5,
    'source': objective.hyperparameters['margin'].source,
  }
  assert described['margin']['source'].startswith('paper: ')


def test_a_section_built_for_another_loss_is_refused_whatever_its_fields():
  for built_for in objectives.names():
    for name in objectives.names():
      if name == built_for:
        continue
      config = objectives.loss_config(built_for)
      config.name = name
      objective = objectives.get_objective(name)
      with pytest.raises(ValueError) as error:
        objectives.resolve_hparams(objective, config)
      message = str(error.value)
      assert message.startswith(
        f'config.loss was built for the loss {built_for!r}, not for '
        f'{name!r} (config.loss.name)'
      ), message
      assert f'--config=configs/digits.py:{name})' in message


def test_overrides_of_a_renamed_section_are_refused_too():
  # Even a margin the user chose: the section (and the sampler the config
  # argument sets) is still the other loss's.
  config = _command_line_config(
    f'--config={_ROOT}/configs/digits.py:cosface',
    '--config.loss.name=arcface',
    '--config.loss.margin=0.5',
  )
  with pytest.raises(ValueError, match="built for the loss 'cosface'"):
    objectives.resolve_hparams(objectives.get_objective('arcface'), config.loss)


def test_built_for_survives_locking_and_results_json():
  config = ml_collections.ConfigDict(
    {'loss': objectives.loss_config('cosface')}
  )
  config.lock()
  config.loss.margin = 0.2
  restored = ml_collections.ConfigDict(json.loads(config.to_json()))
  assert restored.loss.built_for == 'cosface'
  objective = objectives.get_objective('cosface')
  hparams = objectives.resolve_hparams(objective, restored.loss)
  described = objectives.describe_hparams(objective, hparams)
  assert described['margin'] == {'value': 0.2, 'source': 'config'}
  restored.loss.name = 'arcface'
  with pytest.raises(ValueError, match="built for the loss 'cosface'"):
    objectives.resolve_hparams(
      objectives.get_objective('arcface'), restored.loss
    )


def test_a_section_built_by_other_means_still_resolves():
  # No built_for (a hand-made section, a results.json of an older run):
  # only its fields are checked.
  config = ml_collections.ConfigDict({'name': 'arcface', 'margin': 0.3})
  objective = objectives.get_objective('arcface')
  hparams = objectives.resolve_hparams(objective, config)
  assert hparams.margin == 0.3
  described = objectives.describe_hparams(objective, hparams)
  assert described['margin']['source'] == 'config'
  assert described['scale']['source'].startswith('paper: ')


def test_no_hyperparameter_is_named_like_a_bookkeeping_field():
  for objective in objectives.all_objectives():
    assert not {'name', objectives.BUILT_FOR} & set(objective.hyperparameters)


def test_a_sum_of_losses_has_a_section_per_term_with_its_weight():
  config = objectives.loss_config('circle_pairwise+softmax')
  assert set(config.keys()) == {
    'name',
    'built_for',
    'circle_pairwise',
    'softmax',
  }
  assert config.circle_pairwise.weight == config.softmax.weight == 1.0
  config.circle_pairwise.gamma = 128.0
  config.softmax.weight = 0.5
  objective = objectives.get_objective(config.name)
  assert objective.sampling == 'class_balanced'
  assert objective.reference == 'global_batch'
  assert objective.uses_memory
  hparams = objectives.resolve_hparams(objective, config)
  assert hparams.circle_pairwise.gamma == 128.0
  assert hparams.circle_pairwise.margin == 0.4
  assert hparams.softmax.weight == 0.5
  described = objectives.describe_hparams(objective, hparams)
  assert described['circle_pairwise.gamma']['source'] == 'config'
  assert described['softmax.weight'] == {'value': 0.5, 'source': 'config'}
  assert described['circle_pairwise.weight']['source'].startswith('chosen here')


@pytest.mark.parametrize(
  'name,message',
  [
    ('softmax+softmax', 'two or more different losses'),
    ('softmax+vmf', 'vmf refreshes its head state'),
    ('softmax+g_softmax_multilabel', 'mixes single- and multi-label'),
    ('softmax+nope', "Unknown loss name 'nope'"),
  ],
)
def test_sums_that_cannot_work_are_refused(name, message):
  with pytest.raises(ValueError, match=message):
    objectives.get_objective(name)


def test_a_sum_refuses_a_field_of_no_term():
  config = objectives.loss_config('triplet+softmax')
  config.margin = 0.3  # Belongs in config.loss.triplet.
  objective = objectives.get_objective(config.name)
  with pytest.raises(ValueError, match='config.loss has margin'):
    objectives.resolve_hparams(objective, config)
