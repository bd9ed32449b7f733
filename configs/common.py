"""Pieces shared by the experiment configs (big_vision's configs/common.py).

Every data-set config takes the loss as its argument, and ``config.loss``
then holds exactly that loss's hyperparameters at their defaults:

  python train.py --config=configs/cifar10.py:circle_pairwise \
    --config.loss.gamma=128 --workdir=...
"""

import ml_collections

import models
from training import objectives


def set_loss(
  config: ml_collections.ConfigDict, name: str | None
) -> ml_collections.ConfigDict:
  """Selects the loss (None: keep the config's); sets its sampler.

  ``config.loss`` becomes the loss's name and hyperparameters (registry
  defaults, with their sources in the README); losses that need several
  examples per class in a batch get the class-balanced sampler.
  """
  if name:
    config.loss = objectives.loss_config(name)
  objective = objectives.get_objective(config.loss.name)
  if objective.sampling == 'class_balanced':
    config.input.sampler = 'class_balanced'
  return config


def set_model(
  config: ml_collections.ConfigDict, name: str, **attributes
) -> ml_collections.ConfigDict:
  """Selects the backbone: ``config.model`` holds all its attributes.

  Args:
    config: the experiment config.
    name: a backbone of `models.MODEL_NAMES`.
    **attributes: values that differ from the backbone's defaults.
  """
  config.model = models.model_config(name)
  for key, value in attributes.items():
    config.model[key] = value
  return config
