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

from training.objectives import composite
from training.objectives.interface import (
  GlobalBatch,
  HParams,
  Hyperparameter,
  LossInputs,
  Objective,
  Refresh,
  batch_level,
  batch_loss,
  batch_loss_terms,
  per_example,
)

_NOT_DEFINITIONS = ('interface', 'composite', '__main__')


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
  """The objective registered under `name`; the error lists valid names.

  ``'a+b'`` is the weighted sum of the registered objectives a and b
  (`composite.combine`).
  """
  if composite.SEPARATOR in name:
    return composite.combine(
      [get_objective(part) for part in name.split(composite.SEPARATOR)]
    )
  if name not in _OBJECTIVES:
    raise ValueError(
      f'Unknown loss name {name!r} (config.loss.name); valid names: '
      f'{", ".join(names())}'
    )
  return _OBJECTIVES[name]


# The field of ``config.loss`` that names the loss `loss_config` built the
# section for; `resolve_hparams` refuses a section built for another loss.
BUILT_FOR = 'built_for'
# Fields of ``config.loss`` that are not hyperparameters.
_NOT_HYPERPARAMETERS = ('name', BUILT_FOR)
_PICK_THE_LOSS = (
  'Pick the loss with the config argument (e.g. '
  '--config=configs/digits.py:{name}) so that config.loss holds exactly its '
  'hyperparameters.'
)


def loss_config(name: str) -> ml_collections.ConfigDict:
  """``config.loss`` for the loss `name`: its name and hyperparameters.

  Every hyperparameter is present with its default, so any of them can be
  overridden from the command line (``--config.loss.margin=0.3``) and no
  field of another loss exists. A default of None stays overridable with a
  value of the hyperparameter's type. ``built_for`` (`BUILT_FOR`) records
  the loss the section was built for: a later change of ``name`` alone
  (``--config.loss.name=arcface`` on a CosFace config) would keep another
  loss's values, and `resolve_hparams` refuses it.
  """
  objective = get_objective(name)
  config = ml_collections.ConfigDict()
  config.name = name
  config[BUILT_FOR] = name
  for term in objective.terms:
    # A sum of losses: each term's section, and its weight.
    section = loss_config(term.name)
    for field in _NOT_HYPERPARAMETERS:
      del section[field]
    section[composite.WEIGHT] = composite.WEIGHT_HYPERPARAMETER.default
    config[term.name] = section
  for key, hyperparameter in objective.hyperparameters.items():
    if hyperparameter.default is None:
      value = ml_collections.config_dict.placeholder(hyperparameter.type)
    else:
      value = hyperparameter.default
    config[key] = value
  return config


def _assignments(values: dict[str, Any]) -> str:
  return ', '.join(f'{key}={value!r}' for key, value in values.items())


def _unknown_fields_message(objective: Objective, unknown: list[str]) -> str:
  valid = ', '.join(objective.hyperparameters) or '(none)'
  return (
    f'config.loss has {", ".join(unknown)}, which the loss '
    f'{objective.name!r} does not have; its hyperparameters: {valid}.'
  )


def _other_loss_message(
  objective: Objective,
  built_for: str,
  given: dict[str, Any],
  unknown: list[str],
) -> str:
  name = objective.name
  message = (
    f'config.loss was built for the loss {built_for!r}, not for {name!r} '
    f"(config.loss.name): changing config.loss.name alone keeps {built_for}'s "
    'section'
  )
  if unknown:
    return f'{message}. {_unknown_fields_message(objective, unknown)}'
  values = {
    key: given[key] for key in objective.hyperparameters if key in given
  }
  defaults = {key: h.default for key, h in objective.hyperparameters.items()}
  return (
    f'{message} ({_assignments(values) or "no hyperparameters"}; '
    f"{name}'s defaults: {_assignments(defaults) or 'none'})."
  )


def resolve_hparams(
  objective: Objective, config: ml_collections.ConfigDict
) -> ml_collections.FrozenConfigDict:
  """The loss's hyperparameters from ``config.loss``, defaults filled in.

  Raises:
    ValueError: when ``config.loss`` was built (`loss_config`) for another
      loss, whatever its fields: after ``--config.loss.name=...`` it holds
      the other loss's values, which nobody chose for this one; or when it
      has a field that is not one of the loss's hyperparameters (a typo).
      The message names the losses, lists the valid hyperparameters and
      says how to pick the loss.
  """
  given = {
    key: value
    for key, value in config.items()
    if key not in _NOT_HYPERPARAMETERS
  }
  known = set(objective.hyperparameters) | {t.name for t in objective.terms}
  unknown = sorted(set(given) - known)
  # A section built by other means (a test, an old results.json) has no
  # BUILT_FOR: only its fields can be checked.
  built_for = config.get(BUILT_FOR)
  if built_for is not None and built_for != objective.name:
    raise ValueError(
      _other_loss_message(objective, built_for, given, unknown)
      + ' '
      + _PICK_THE_LOSS.format(name=objective.name)
    )
  if unknown:
    raise ValueError(
      _unknown_fields_message(objective, unknown)
      + ' '
      + _PICK_THE_LOSS.format(name=objective.name)
    )
  resolved = {}
  for term in objective.terms:
    section = given.get(term.name) or ml_collections.ConfigDict()
    section = ml_collections.ConfigDict(section.to_dict())
    weight = section.get(composite.WEIGHT)
    if composite.WEIGHT in section:
      del section[composite.WEIGHT]
    resolved[term.name] = {
      **resolve_hparams(term, section).as_configdict().to_dict(),
      composite.WEIGHT: composite.WEIGHT_HYPERPARAMETER.default
      if weight is None
      else float(weight),
    }
  for key, hyperparameter in objective.hyperparameters.items():
    value = given.get(key)
    resolved[key] = hyperparameter.default if value is None else value
  return ml_collections.FrozenConfigDict(resolved)


def describe_hparams(
  objective: Objective, hparams: HParams
) -> dict[str, dict[str, Any]]:
  """name -> {'value', 'source'} of the resolved hyperparameters.

  For the log and results.json. The source is the default's (paper,
  official code, ...) when the value is the default, else ``'config'``:
  the config file or a command-line override set it. `resolve_hparams`
  refuses a section built for another loss, so a value nobody set for this
  loss never reaches here to be reported as the config's.
  """
  described = {}
  for term in objective.terms:
    term_hparams = hparams[term.name]
    for key, value in describe_hparams(term, term_hparams).items():
      described[f'{term.name}.{key}'] = value
    weight = composite.WEIGHT_HYPERPARAMETER
    described[f'{term.name}.{composite.WEIGHT}'] = {
      'value': term_hparams[composite.WEIGHT],
      'source': weight.source
      if term_hparams[composite.WEIGHT] == weight.default
      else 'config',
    }
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
  'BUILT_FOR',
  'GlobalBatch',
  'HParams',
  'Hyperparameter',
  'LossInputs',
  'Objective',
  'Refresh',
  'all_objectives',
  'batch_level',
  'batch_loss',
  'batch_loss_terms',
  'describe_hparams',
  'get_objective',
  'loss_config',
  'markdown_table',
  'names',
  'per_example',
  'resolve_hparams',
]
