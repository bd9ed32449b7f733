"""Every experiment config builds and names valid components."""

import glob
import importlib
import os
import pathlib

import pytest
from absl import flags
from ml_collections import config_flags

import input_pipeline
import models
from common import cli
from input_pipeline.datasets import catalog
from training import objectives

_CONFIG_DIR = os.path.join(
  os.path.dirname(os.path.dirname(__file__)), 'configs'
)
_MODULES = sorted(
  os.path.splitext(os.path.basename(path))[0]
  for path in glob.glob(os.path.join(_CONFIG_DIR, '*.py'))
  # The experiments; the rest (common.py, retrieval.py, multilabel.py) are
  # pieces they share.
  if 'def get_config(' in pathlib.Path(path).read_text()
)


def test_every_config_is_listed():
  assert {'default', 'tiny', 'digits', 'cifar10', 'cub200', 'sop'} <= set(
    _MODULES
  )


def _takes_loss(module_name):
  module = importlib.import_module(f'configs.{module_name}')
  return 'loss' in module.get_config.__code__.co_varnames


# Each config with its default, and each loss-taking config with every loss.
_CASES = [(name, None) for name in _MODULES] + [
  (name, loss)
  for name in _MODULES
  if _takes_loss(name)
  for loss in objectives.names()
]


@pytest.mark.parametrize(('module_name', 'loss'), _CASES)
def test_config_builds(module_name, loss):
  module = importlib.import_module(f'configs.{module_name}')
  config = module.get_config() if loss is None else module.get_config(loss)
  objective = objectives.get_objective(config.loss.name)
  assert config.input.name in input_pipeline.NAMES
  # config.model holds exactly the backbone's attributes, config.loss
  # exactly the loss's hyperparameters (and the loss it was built for).
  assert set(config.model) - {'name'} == models.attribute_names(
    config.model.name
  )
  assert set(config.loss) - {'name', 'built_for'} == set(
    objective.hyperparameters
  )
  assert config.loss.built_for == config.loss.name
  if loss is not None:
    assert config.loss.name == loss
  if objective.sampling == 'class_balanced':
    assert config.input.sampler == 'class_balanced'
  objectives.resolve_hparams(objective, config.loss)
  spec = catalog.get_spec(config.input.name)
  if objective.sampling == 'class_balanced' and spec.num_classes:
    # A class-balanced batch must find enough training classes.
    train_classes = spec.num_classes
    if config.input.class_disjoint:
      train_classes = spec.disjoint_boundary or spec.num_classes // 2
    classes_per_batch = (
      config.input.batch_size // config.input.samples_per_class
    )
    assert classes_per_batch <= train_classes, (
      classes_per_batch,
      train_classes,
    )


_COMPARISONS = sorted(
  os.path.splitext(os.path.basename(path))[0]
  for path in glob.glob(os.path.join(_CONFIG_DIR, 'compare', '*.py'))
  if not os.path.basename(path).startswith('_')
)


@pytest.mark.parametrize('module_name', _COMPARISONS)
@pytest.mark.parametrize('mode', ['full', 'quick', 'smoke'])
def test_comparison_config_plans_valid_runs(module_name, mode, tmp_path):
  # Imported here: the comparison runner is a benchmark, not a library.
  from benchmarks import compare

  module = importlib.import_module(f'configs.compare.{module_name}')
  config = module.get_config(mode)
  runs = compare.plan(config, str(tmp_path))
  assert len(runs) == sum(
    len(task.losses) * len(config.seeds) for task in config.tasks.values()
  )
  for run in runs:
    experiment = compare.experiment_config(
      config.tasks[run.task], run.loss, run.seed
    )
    assert experiment.loss.name == run.loss
    assert experiment.seed == run.seed
    objectives.resolve_hparams(
      objectives.get_objective(run.loss), experiment.loss
    )


def _parse(*argv):
  argv = ['train.py', *argv]
  flag_values = flags.FlagValues()
  # sys_argv: config_flags finds the override flags in it, as in train.py.
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


def test_command_line_picks_loss_and_overrides_hyperparameters():
  config = _parse(
    f'--config={_CONFIG_DIR}/default.py:cosface', '--config.loss.margin=0.2'
  )
  assert config.loss.name == 'cosface'
  assert config.loss.margin == 0.2
  assert config.loss.scale == 64.0
  assert config.loss.built_for == 'cosface'


def test_command_line_sets_a_none_default_hyperparameter():
  config = _parse(
    f'--config={_CONFIG_DIR}/default.py:circle_pairwise',
    '--config.loss.block_size=16',
  )
  assert config.loss.block_size == 16


def test_command_line_rejects_another_losss_hyperparameter():
  argv = [f'--config={_CONFIG_DIR}/default.py:cosface', '--config.loss.gamma=2']
  with pytest.raises(AttributeError):
    _parse(*argv)
  # What train.py prints instead of config_flags' bare "'gamma'".
  assert cli.unknown_override_message(argv) == (
    "--config.loss.gamma: config.loss has no field 'gamma'; its fields: "
    'built_for, margin, name, scale'
  )


def test_command_line_sets_any_backbone_attribute():
  config = _parse(
    f'--config={_CONFIG_DIR}/image_folder.py',
    '--config.model.stage_filters=(16,32,64)',
    '--config.model.dtype=bfloat16',
  )
  assert tuple(config.model.stage_filters) == (16, 32, 64)
  assert config.model.dtype == 'bfloat16'


def test_command_line_names_valid_backbone_attributes():
  argv = [
    f'--config={_CONFIG_DIR}/image_folder.py',
    '--config.model.stage_filterz=(16,32,64)',
  ]
  with pytest.raises(AttributeError):
    _parse(*argv)
  assert cli.unknown_override_message(argv) == (
    '--config.model.stage_filterz: config.model has no field '
    "'stage_filterz'; its fields: bn_momentum, bnneck, dtype, embedding_dim, "
    'freeze_batch_norm, init_from, name, stage_filters'
  )
