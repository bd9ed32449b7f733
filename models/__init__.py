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
import jax.numpy as jnp
import ml_collections

from models import iresnet, pretrained
from models.iresnet import IResNet
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
  'resnet18': functools.partial(
    ResNet, stage_sizes=(2, 2, 2, 2), bottleneck=False
  ),
  'resnet50': functools.partial(
    ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True
  ),
  'resnet101': functools.partial(
    ResNet, stage_sizes=(3, 4, 23, 3), bottleneck=True
  ),
  # insightface's face ResNets (Deng et al. 2019, arcface_torch).
  **{
    name: functools.partial(iresnet.IResNet, stage_sizes=sizes)
    for name, sizes in iresnet.STAGE_SIZES.items()
  },
}

MODEL_NAMES = tuple(sorted(_REGISTRY))


# Set by the training system, not by configs.
_SET_BY_TRAINING = ('bn_axis_name',)

# Fields of config.model that are not backbone attributes: the training
# system reads them (training/experiment.py) and does not pass them to
# `get_model`.
CONFIG_ONLY_FIELDS = ('init_from', 'bnneck')


def get_model(name: str, **kwargs) -> nn.Module:
  """Builds the backbone registered under `name`.

  Args:
    name: one of `MODEL_NAMES`.
    **kwargs: module attributes, e.g. ``embedding_dim`` (required),
      ``bn_axis_name``, ``dtype`` (a dtype or its name, e.g.
      ``'bfloat16'``).

  Returns:
    An unbound Flax module.

  Raises:
    ValueError: for an unknown `name` or attribute; the message lists the
      valid ones.
  """
  if name not in _REGISTRY:
    raise ValueError(
      f'Unknown model `name` {name!r}; valid names: {", ".join(MODEL_NAMES)}'
    )
  unknown = set(kwargs) - _fields(name) - set(_SET_BY_TRAINING)
  if unknown:
    raise ValueError(
      f'The backbone {name!r} has no attribute {", ".join(sorted(unknown))} '
      f'(config.model); its attributes: {", ".join(sorted(_fields(name)))}'
    )
  if isinstance(kwargs.get('dtype'), str):
    kwargs['dtype'] = jnp.dtype(kwargs['dtype'])
  return _REGISTRY[name](**kwargs)


def _module_class(name: str) -> type[nn.Module]:
  factory = _REGISTRY[name]
  return getattr(factory, 'func', factory)


def _fields(name: str) -> set[str]:
  # A registered name fixes some attributes (ResNet-50's stage sizes):
  # those are what the name means, not settings.
  fixed = set(getattr(_REGISTRY[name], 'keywords', {}))
  return {
    field.name
    for field in dataclasses.fields(_module_class(name))
    if field.name not in ('parent', 'name', *_SET_BY_TRAINING)
    and field.name not in fixed
  }


def attribute_names(name: str) -> frozenset[str]:
  """The fields of ``config.model`` for backbone `name` besides ``name``.

  The backbone's attributes a config may set, and `CONFIG_ONLY_FIELDS`
  (``init_from``, ``bnneck``).
  """
  if name not in _REGISTRY:
    get_model(name)  # Raises the error listing the valid names.
  return frozenset(_fields(name)) | frozenset(CONFIG_ONLY_FIELDS)


def model_config(name: str) -> ml_collections.ConfigDict:
  """``config.model`` for backbone `name`: every attribute, at its default.

  With every attribute present, each can be overridden from the command
  line (``--config.model.stage_filters='(16,32,64)'``), and a name the
  backbone does not have is refused by the locked config, which lists the
  valid ones. ``embedding_dim`` has no default: configs set it. Dtypes are
  given by name (``'float32'``, ``'bfloat16'``).

  ``init_from`` (None by default) is the path of a safetensors file of
  ImageNet weights in torchvision's or timm's naming (ResNets only; see
  models/pretrained.py): a new run starts its backbone from it, every
  convolution and BatchNorm with its running statistics; the classifier
  ``fc`` is dropped and the embedding layer freshly initialised. A resumed
  run restores its checkpoint instead. The input must then be scaled as
  the weights expect: ``config.input.normalization`` (input_pipeline/
  config.py).

  ``bnneck`` (False by default) puts Luo et al. 2019's BNNeck, a
  BatchNorm without shift, between the embedding and the loss's head
  (`heads.EmbeddingModel`): losses reading the embedding see it before
  the BatchNorm, the head's classifier (made bias-free) after it, and
  evaluation embeds the feature after it.
  """
  if name not in _REGISTRY:
    get_model(name)
  config = ml_collections.ConfigDict()
  config.name = name
  for field in sorted(
    dataclasses.fields(_module_class(name)), key=lambda f: f.name
  ):
    if field.name not in _fields(name):
      continue
    if field.default is dataclasses.MISSING:
      config[field.name] = ml_collections.config_dict.placeholder(int)
    elif field.name == 'dtype':
      config[field.name] = jnp.dtype(field.default).name
    else:
      config[field.name] = field.default
  config.init_from = ml_collections.config_dict.placeholder(str)
  config.bnneck = False
  return config


__all__ = [
  'CONFIG_ONLY_FIELDS',
  'MODEL_NAMES',
  'BasicBlock',
  'BottleneckBlock',
  'CifarResNet',
  'IResNet',
  'LeNetPlusPlus',
  'PReLU',
  'ResNet',
  'attribute_names',
  'get_model',
  'model_config',
  'pretrained',
]
