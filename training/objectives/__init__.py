"""The objective registry: ``config.loss.name`` -> `Objective`.

Each module of this package defines a tuple ``OBJECTIVES`` of `Objective`s
(interface.py says what one holds); the registry collects them all, so
adding a loss is one module here (plus the loss itself in `losses/`).
Everything that lists losses (configs, the comparison, the benchmarks, the
tests, the README tables) asks this registry.
"""

import importlib
import pkgutil
from typing import Any

import ml_collections

from training.objectives.interface import (
  GlobalBatch,
  HParams,
  Hyperparameter,
  LossInputs,
  Objective,
  Refresh,
  batch_level,
  per_example,
)

_NOT_DEFINITIONS = ('interface', '__main__')


def _collect() -> dict[str, Objective]:
  found: dict[str, Objective] = {}
  for module_info in pkgutil.iter_modules(__path__):
    if module_info.name in _NOT_DEFINITIONS:
      continue
    module = importlib.import_module(f'{__name__}.{module_info.name}')
    for objective in getattr(module, 'OBJECTIVES', ()):
      if objective.name in found:
        raise ValueError(f'Two objectives are named {objective.name!r}')
      found[objective.name] = objective
  return found


_OBJECTIVES = _collect()


def names() -> list[str]:
  """The valid ``config.loss.name`` values, sorted."""
  return sorted(_OBJECTIVES)


def all_objectives() -> list[Objective]:
  """Every registered objective, sorted by name."""
  return [_OBJECTIVES[name] for name in names()]


def get_objective(name: str) -> Objective:
  """The objective registered under `name`; the error lists valid names."""
  if name not in _OBJECTIVES:
    raise ValueError(
      f'Unknown loss name {name!r} (config.loss.name); valid names: '
      f'{", ".join(names())}'
    )
  return _OBJECTIVES[name]


def loss_config(name: str) -> ml_collections.ConfigDict:
  """``config.loss`` for the loss `name`: its name and hyperparameters.

  Every hyperparameter is present with its default, so any of them can be
  overridden from the command line (``--config.loss.margin=0.3``) and no
  field of another loss exists. A default of None stays overridable with a
  value of the hyperparameter's type.
  """
  objective = get_objective(name)
  config = ml_collections.ConfigDict()
  config.name = name
  for key, hyperparameter in objective.hyperparameters.items():
    if hyperparameter.default is None:
      value = ml_collections.config_dict.placeholder(hyperparameter.type)
    else:
      value = hyperparameter.default
    config[key] = value
  return config


def resolve_hparams(
  objective: Objective, config: ml_collections.ConfigDict
) -> ml_collections.FrozenConfigDict:
  """The loss's hyperparameters from ``config.loss``, defaults filled in.

  Raises:
    ValueError: when ``config.loss`` has a field that is not one of the
      loss's hyperparameters (a typo, or the section of another loss after
      ``--config.loss.name=...``); the message lists the valid ones.
  """
  given = {key: value for key, value in config.items() if key != 'name'}
  unknown = sorted(set(given) - set(objective.hyperparameters))
  if unknown:
    valid = ', '.join(objective.hyperparameters) or '(none)'
    raise ValueError(
      f'config.loss has {", ".join(unknown)}, which the loss '
      f'{objective.name!r} does not have; its hyperparameters: {valid}. '
      'Pick the loss with the config argument (e.g. '
      f'--config=configs/digits.py:{objective.name}) so that config.loss '
      'holds exactly its hyperparameters.'
    )
  resolved = {}
  for key, hyperparameter in objective.hyperparameters.items():
    value = given.get(key)
    resolved[key] = hyperparameter.default if value is None else value
  return ml_collections.FrozenConfigDict(resolved)


def describe_hparams(
  objective: Objective, hparams: HParams
) -> dict[str, dict[str, Any]]:
  """name -> {'value', 'source'} of the resolved hyperparameters.

  The source is the default's (paper, official code, ...) when the value
  is the default, else ``'config'``: for the log and results.json.
  """
  described = {}
  for key, hyperparameter in objective.hyperparameters.items():
    value = hparams[key]
    source = (
      hyperparameter.source if value == hyperparameter.default else 'config'
    )
    described[key] = {'value': value, 'source': source}
  return described


def markdown_table() -> str:
  """The README's table of losses and hyperparameters, from the registry."""
  rows = [
    '| loss | paper | hyperparameter | default | source of the default |',
    '|---|---|---|---|---|',
  ]
  for objective in all_objectives():
    items = list(objective.hyperparameters.items()) or [(None, None)]
    for index, (key, hyperparameter) in enumerate(items):
      first = index == 0
      loss = f'`{objective.name}`' if first else ''
      paper = objective.paper if first else ''
      if hyperparameter is None:
        rows.append(f'| {loss} | {paper} | – | – | – |')
        continue
      rows.append(
        f'| {loss} | {paper} | `{key}`: {hyperparameter.doc} | '
        f'`{hyperparameter.default!r}` | {hyperparameter.source} |'
      )
  return '\n'.join(rows)


__all__ = [
  'GlobalBatch',
  'HParams',
  'Hyperparameter',
  'LossInputs',
  'Objective',
  'Refresh',
  'all_objectives',
  'batch_level',
  'describe_hparams',
  'get_objective',
  'loss_config',
  'markdown_table',
  'names',
  'per_example',
  'resolve_hparams',
]
