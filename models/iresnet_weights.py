"""arcface_torch weights for `models.IResNet`, from safetensors files.

insightface's arcface_torch releases its IResNets as torch ``state_dict``
files (``backbone.pth``). Converted once to safetensors (two lines of
torch, see docs/faces.md), they load here with NumPy only: no torch, no
pickle.

  params, batch_stats = iresnet_weights.load_iresnet(
      'ms1mv3_arcface_r50.safetensors', params=params,
      batch_stats=batch_stats)

====================================  =====================================
arcface_torch                         `models.IResNet`
====================================  =====================================
``conv1.weight`` [O, I, H, W]         ``conv_init/kernel`` [H, W, I, O]
``bn1.*``, ``prelu.weight``           ``bn_init/*``, ``prelu_init``
``layer{s}.{b}.bn{i}.*``              ``stage{s}_block{b+1}/bn{i}/*``
``layer{s}.{b}.conv{i}.weight``       ``stage{s}_block{b+1}/conv{i}/kernel``
``layer{s}.{b}.prelu.weight``         ``stage{s}_block{b+1}/prelu``
``layer{s}.{b}.downsample.0.weight``  ``stage{s}_block{b+1}/shortcut_conv``
``layer{s}.{b}.downsample.1.*``       ``stage{s}_block{b+1}/shortcut_bn``
``bn2.*``                             ``bn_final/*``
``fc.weight`` [E, C·H·W], ``fc.bias`` ``embedding/kernel`` [C·H·W, E], bias
``features.bias``, running stats      ``features/bias``, batch_stats
====================================  =====================================

BatchNorm ``weight``/``bias`` are ``scale``/``bias`` and ``running_mean``/
``running_var`` the batch_stats ``mean``/``var``; PReLU's ``weight`` is
``negative_slope``. ``features.weight`` is fixed at 1 in arcface_torch (our
feature BatchNorm has no scale): it must be all ones. ``num_batches_tracked``
counters are ignored. The whole network loads, the 512-d feature head
included (it is the face embedding). A tensor the model lacks, a model
tensor the file lacks, or a differing shape is an error naming each one.

arcface_torch feeds its networks RGB faces scaled to [-1, 1]
(``(x / 255 - 0.5) / 0.5``): ``config.input.normalization='arcface'``
(input_pipeline/augment.py).
"""

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import safetensors.numpy

_MODULES = {
  'conv_init': 'conv1',
  'bn_init': 'bn1',
  'prelu_init': 'prelu',
  'bn_final': 'bn2',
  'embedding': 'fc',
  'features': 'features',
  'shortcut_conv': 'downsample.0',
  'shortcut_bn': 'downsample.1',
}
_LEAVES = {
  ('params', 'kernel'): 'weight',
  ('params', 'scale'): 'weight',
  ('params', 'bias'): 'bias',
  ('params', 'negative_slope'): 'weight',
  ('batch_stats', 'mean'): 'running_mean',
  ('batch_stats', 'var'): 'running_var',
}
_BLOCK = re.compile(r'stage(\d+)_block(\d+)$')
_IGNORED_SUFFIX = '.num_batches_tracked'
_FIXED_ONES = 'features.weight'


def torch_name(collection: str, path: tuple[str, ...]) -> str:
  """arcface_torch's name of our variable ``collection/path``."""
  parts = []
  for module in path[:-1]:
    block = _BLOCK.match(module)
    if block:
      parts.append(f'layer{block[1]}.{int(block[2]) - 1}')
    else:
      parts.append(_MODULES.get(module, module))
  return '.'.join([*parts, _LEAVES[collection, path[-1]]])


def _to_torch(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
  if path[-1] == 'kernel' and value.ndim == 4:
    return np.transpose(value, (3, 2, 0, 1))  # HWIO -> OIHW.
  if path[-1] == 'kernel':
    return value.T
  return value


def _from_torch(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
  if path[-1] == 'kernel' and value.ndim == 4:
    return np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO.
  if path[-1] == 'kernel':
    return value.T
  return value


def _leaves(
  tree: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
  for key, value in tree.items():
    if isinstance(value, Mapping):
      yield from _leaves(value, (*prefix, key))
    else:
      yield (*prefix, key), value


def _rebuilt(tree: Mapping[str, Any], values: dict) -> dict[str, Any]:
  def rebuild(node, prefix):
    return {
      key: rebuild(value, (*prefix, key))
      if isinstance(value, Mapping)
      else values[(*prefix, key)]
      for key, value in node.items()
    }

  return rebuild(tree, ())


def iresnet_torch_state(
  params: Mapping[str, Any], batch_stats: Mapping[str, Any]
) -> dict[str, np.ndarray]:
  """Our IResNet's variables in arcface_torch's ``state_dict`` naming
  (``features.weight`` as ones), float32."""
  state = {}
  for collection, tree in (('params', params), ('batch_stats', batch_stats)):
    for path, value in _leaves(tree):
      state[torch_name(collection, path)] = np.ascontiguousarray(
        _to_torch(path, np.asarray(value, np.float32))
      )
  state[_FIXED_ONES] = np.ones_like(state['features.bias'])
  return state


def save_iresnet_torch(path: str | os.PathLike, params, batch_stats) -> str:
  """Writes `iresnet_torch_state` to a safetensors file; returns `path`."""
  path = os.fspath(path)
  safetensors.numpy.save_file(iresnet_torch_state(params, batch_stats), path)
  return path


def load_iresnet(
  path: str | os.PathLike,
  *,
  params: Mapping[str, Any],
  batch_stats: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
  """arcface_torch IResNet weights from a safetensors file.

  Args:
    path: the safetensors file, in arcface_torch's naming (table above).
    params: our IResNet's params (their structure and shapes are checked;
      the values are replaced).
    batch_stats: its batch_stats.

  Returns:
    ``(params, batch_stats)`` with every value from the file (float32).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: names missing on either side, differing shapes, or a
      ``features.weight`` that is not all ones; each named.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No IResNet weights file at {path!r}')
  tensors = {
    name: value
    for name, value in safetensors.numpy.load_file(path).items()
    if not name.endswith(_IGNORED_SUFFIX)
  }
  fixed = tensors.pop(_FIXED_ONES, None)
  if fixed is not None and not np.all(fixed == 1):
    raise ValueError(
      f'{path}: {_FIXED_ONES} must be all ones (arcface_torch fixes it; '
      'our feature BatchNorm has no scale)'
    )
  expected = {}
  for collection, tree in (('params', params), ('batch_stats', batch_stats)):
    for leaf_path, value in _leaves(tree):
      expected[torch_name(collection, leaf_path)] = (
        collection,
        leaf_path,
        value,
      )
  missing = sorted(set(expected) - set(tensors))
  unexpected = sorted(set(tensors) - set(expected))
  if missing or unexpected:
    raise ValueError(
      f'{path} does not match this IResNet: missing {missing[:6]}'
      f'{" ..." if len(missing) > 6 else ""} ({len(missing)}), unexpected '
      f'{unexpected[:6]}{" ..." if len(unexpected) > 6 else ""} '
      f'({len(unexpected)}); is the depth (iresnet18/34/50/100) or the image '
      'size (112x112 gives fc.weight [512, 25088]) different?'
    )
  values = {'params': {}, 'batch_stats': {}}
  wrong = []
  for name, (collection, leaf_path, value) in expected.items():
    loaded = _from_torch(leaf_path, tensors[name].astype(np.float32))
    if loaded.shape != np.shape(value):
      wrong.append(f'{name} {tensors[name].shape} for {np.shape(value)}')
    values[collection][leaf_path] = loaded
  if wrong:
    raise ValueError(f'{path}: shapes differ: {"; ".join(wrong[:6])}')
  return (
    _rebuilt(params, values['params']),
    _rebuilt(batch_stats, values['batch_stats']),
  )


def load_backbone(state: Any, path: str | os.PathLike) -> Any:
  """A new run's train state with its IResNet backbone loaded from `path`
  (the head as it was; the optimiser state initialised afresh)."""
  backbone, backbone_stats = load_iresnet(
    path,
    params=state.params['backbone'],
    batch_stats=state.batch_stats['backbone'],
  )
  params = {**state.params, 'backbone': backbone}
  return state.replace(
    params=params,
    batch_stats={**state.batch_stats, 'backbone': backbone_stats},
    opt_state=state.tx.init(params),
  )
