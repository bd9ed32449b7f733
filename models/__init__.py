"""Backbones mapping images to embeddings, and a registry to build them by name.

Every backbone is a Flax linen module called as
``model(images, train=...) -> [batch, embedding_dim]`` with the attributes
``embedding_dim``, ``bn_axis_name`` (pmap's axis name for cross-device
BatchNorm, or None) and ``dtype`` (computation dtype). Backbones know nothing
of losses or training: heads (models/heads.py) and the training loop add
what a loss needs.

  model = models.get_model('cifar_resnet20', embedding_dim=64,
                           bn_axis_name='batch')
"""

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn

from models.lenet import LeNetPlusPlus, PReLU
from models.resnet import BasicBlock, BottleneckBlock, CifarResNet, ResNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
  # Wen et al. 2016's MNIST network (2-D embeddings for feature plots).
  'lenet': LeNetPlusPlus,
  # He et al. 2016 §4.2, CIFAR-10 networks.
  'cifar_resnet20': functools.partial(CifarResNet, depth=20),
  'cifar_resnet32': functools.partial(CifarResNet, depth=32),
  'cifar_resnet56': functools.partial(CifarResNet, depth=56),
  # He et al. 2016 Table 1, ImageNet networks.
  'resnet18': functools.partial(ResNet, stage_sizes=(2, 2, 2, 2)),
  'resnet50': functools.partial(
    ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True
  ),
}

MODEL_NAMES = tuple(sorted(_REGISTRY))


def get_model(name: str, **kwargs) -> nn.Module:
  """Builds the backbone registered under `name`.

  Args:
    name: one of `MODEL_NAMES`.
    **kwargs: module attributes, e.g. ``embedding_dim`` (required),
      ``bn_axis_name``, ``dtype``.

  Returns:
    An unbound Flax module.

  Raises:
    ValueError: for an unknown `name`; the message lists the valid names.
  """
  if name not in _REGISTRY:
    raise ValueError(
      f'Unknown model `name` {name!r}; valid names: {", ".join(MODEL_NAMES)}'
    )
  return _REGISTRY[name](**kwargs)


def attribute_names(name: str) -> frozenset[str]:
  """The attributes the backbone `name` accepts (for shared configs)."""
  if name not in _REGISTRY:
    get_model(name)  # Raises the error listing the valid names.
  factory = _REGISTRY[name]
  module_class = getattr(factory, 'func', factory)
  return frozenset(
    field.name
    for field in dataclasses.fields(module_class)
    if field.name not in ('parent', 'name')
  )


__all__ = [
  'MODEL_NAMES',
  'BasicBlock',
  'BottleneckBlock',
  'CifarResNet',
  'LeNetPlusPlus',
  'PReLU',
  'ResNet',
  'attribute_names',
  'get_model',
]
