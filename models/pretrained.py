"""ImageNet weights for `models.ResNet`: torchvision and timm safetensors.

Deep-metric-learning papers fine-tune an ImageNet-pretrained backbone. This
module reads such weights from a safetensors file (NumPy only: no torch, no
pickle) into the variables of our `ResNet`, and writes our variables back
in torchvision's naming.

  params, batch_stats = pretrained.load_resnet(
      'resnet50.safetensors', params=params, batch_stats=batch_stats)
  pretrained.save_resnet_torchvision('ours.safetensors', params, batch_stats)

The naming is torchvision's ResNet ``state_dict``, which timm's ResNets
share (timm's hub files are safetensors already; a torchvision ``.pth``
converts with two lines of torch, see docs/retrieval_protocol.md):

====================================  =====================================
torchvision / timm                    `models.ResNet`
====================================  =====================================
``conv1.weight`` [O, I, H, W]         ``conv_init/kernel`` [H, W, I, O]
``bn1.weight``, ``bn1.bias``          ``bn_init/scale``, ``bn_init/bias``
``bn1.running_mean``, ``running_var`` batch_stats ``bn_init/mean``, ``var``
``layer{s}.{b}.conv{i}.weight``       ``stage{s}_block{b+1}/conv{i}/kernel``
``layer{s}.{b}.bn{i}.*``              ``stage{s}_block{b+1}/bn{i}/*``
``layer{s}.{b}.downsample.0.weight``  ``stage{s}_block{b+1}/shortcut_conv``
``layer{s}.{b}.downsample.1.*``       ``stage{s}_block{b+1}/shortcut_bn``
``fc.weight`` [E, C], ``fc.bias``     ``embedding/kernel`` [C, E], ``bias``
====================================  =====================================

Loading takes every convolution and BatchNorm (running statistics
included), drops the classifier ``fc.*`` (an ImageNet classifier is no
embedding) and leaves the embedding layer as it is in `params` (freshly
initialised); ``num_batches_tracked`` counters are ignored. A tensor the
model lacks, a model tensor the file lacks, or a shape that differs is an
error naming each one. The layers compute what torch's do (see
models/resnet.py); benchmarks/pretrained_parity.py measures the agreement
of the pooled features with torchvision's and timm's models.

The weights expect ImageNet-normalised RGB input:
``config.input.normalization='imagenet'`` (input_pipeline/augment.py).
"""

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy
from absl import logging

NAMING = 'torchvision'  # timm's ResNets use the same tensor names.

# The tensors of a torchvision/timm ResNet file that have no counterpart in
# the backbone and are skipped on loading.
_CLASSIFIER = ('fc.weight', 'fc.bias')
_IGNORED_SUFFIX = '.num_batches_tracked'

_BLOCK = re.compile(r'stage(\d+)_block(\d+)$')
_TORCH_BLOCK = re.compile(r'layer(\d+)\.(\d+)\.')
_BLOCK_LAYERS = {
  'conv1': 'conv1',
  'conv2': 'conv2',
  'conv3': 'conv3',
  'bn1': 'bn1',
  'bn2': 'bn2',
  'bn3': 'bn3',
  'shortcut_conv': 'downsample.0',
  'shortcut_bn': 'downsample.1',
}
# (collection, Flax leaf) -> torch tensor suffix.
_BN_LEAVES = {
  ('params', 'scale'): 'weight',
  ('params', 'bias'): 'bias',
  ('batch_stats', 'mean'): 'running_mean',
  ('batch_stats', 'var'): 'running_var',
}


def _conv_to_torch(kernel: np.ndarray) -> np.ndarray:
  return np.transpose(kernel, (3, 2, 0, 1))  # HWIO -> OIHW.


def _conv_from_torch(weight: np.ndarray) -> np.ndarray:
  return np.transpose(weight, (2, 3, 1, 0))  # OIHW -> HWIO.


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _check_resnet_variables(params: Mapping[str, Any]) -> None:
  keys = set(params) if isinstance(params, Mapping) else set()
  blocks = {key for key in keys if _BLOCK.match(key)}
  unknown = keys - blocks - {'conv_init', 'bn_init', 'embedding'}
  if not {'conv_init', 'bn_init'} <= keys or not blocks or unknown:
    raise ValueError(
      '`params` must be the variables of models.ResNet (conv_init, bn_init, '
      'stage1_block1, ..., embedding), received '
      f'{"top-level keys " + str(sorted(keys)) if keys else repr(params)[:80]}'
    )


def _entries(
  params: Mapping[str, Any],
) -> Iterator[tuple[str, str, tuple[str, ...], str]]:
  """``(torch name, collection, Flax path, kind)`` of every backbone tensor.

  `kind` is 'conv' (a kernel to transpose) or 'bn' (a vector). The
  embedding layer is not included.
  """
  _check_resnet_variables(params)

  def module(flax_path, torch_prefix):
    if 'conv' in flax_path[-1]:  # conv_init, conv1..3, shortcut_conv.
      kernel = _get(params, flax_path)
      if set(kernel) != {'kernel'}:
        raise ValueError(
          f'`params` {"/".join(flax_path)} must hold only a kernel (a '
          f'convolution without bias), received {sorted(kernel)}'
        )
      yield f'{torch_prefix}.weight', 'params', (*flax_path, 'kernel'), 'conv'
    else:
      for (collection, leaf), suffix in _BN_LEAVES.items():
        yield f'{torch_prefix}.{suffix}', collection, (*flax_path, leaf), 'bn'

  yield from module(('conv_init',), 'conv1')
  yield from module(('bn_init',), 'bn1')
  blocks = sorted(
    (key for key in params if _BLOCK.match(key)),
    key=lambda key: tuple(int(g) for g in _BLOCK.match(key).groups()),
  )
  for block in blocks:
    stage, index = (int(g) for g in _BLOCK.match(block).groups())
    for layer in sorted(params[block]):
      if layer not in _BLOCK_LAYERS:
        raise ValueError(
          f'`params` {block}/{layer}: not a layer of a ResNet block '
          f'(expected one of {sorted(_BLOCK_LAYERS)})'
        )
      prefix = f'layer{stage}.{index - 1}.{_BLOCK_LAYERS[layer]}'
      yield from module((block, layer), prefix)


def _copy(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {key: _copy(value) for key, value in tree.items()}
  return tree


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
  for key in path[:-1]:
    tree = tree[key]
  tree[path[-1]] = value


def _torch_shape(kind: str, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  if kind == 'conv':
    h, w, i, o = flax_shape
    return (o, i, h, w)
  return tuple(flax_shape)


def _read(path: str) -> dict[str, np.ndarray]:
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'`path` must be a safetensors file, received {path!r} (no such file)'
    )
  try:
    with safetensors.safe_open(path, framework='np') as file:
      dtypes = {name: file.get_slice(name).get_dtype() for name in file.keys()}
  except Exception as error:  # safetensors raises its own error types.
    raise ValueError(
      f'{path!r} is not a safetensors file ({error}). A torch checkpoint '
      '(.pth) converts with torch and safetensors: safetensors.torch.'
      'save_file(torch.load(PATH, weights_only=True), OUT) (see docs/'
      'retrieval_protocol.md).'
    ) from error
  unreadable = sorted(
    f'{name} ({dtype})'
    for name, dtype in dtypes.items()
    if dtype not in ('F64', 'F32', 'F16', 'I64', 'I32')
  )
  if unreadable:
    raise ValueError(
      f'{path!r}: NumPy reads float64/32/16 tensors, received '
      f'{", ".join(unreadable[:5])}{" ..." if len(unreadable) > 5 else ""}; '
      'save them as float32 (in torch: {k: v.float() for k, v in '
      'state_dict.items()})'
    )
  return safetensors.numpy.load_file(path)


def _stage_sizes(names) -> tuple[tuple[int, ...], bool]:
  """Blocks per stage and whether blocks are bottlenecks, from torch names."""
  blocks: dict[int, set[int]] = {}
  bottleneck = False
  for name in names:
    match = _TORCH_BLOCK.match(name)
    if match:
      stage, block = int(match.group(1)), int(match.group(2))
      blocks.setdefault(stage, set()).add(block)
      bottleneck |= name.endswith('.conv3.weight')
  sizes = tuple(len(blocks[s]) for s in sorted(blocks))
  return sizes, bottleneck


def _describe(sizes: tuple[int, ...], bottleneck: bool) -> str:
  kind = 'bottleneck' if bottleneck else 'basic'
  return f'stage sizes {sizes} with {kind} blocks'


def _detect_naming(path: str, names: set[str]) -> str:
  """The prefix to strip ('' for plain torchvision/timm names).

  Raises:
    ValueError: when the file is not a torchvision/timm ResNet.
  """
  markers = ('conv1.weight', 'layer1.0.conv1.weight')
  if all(marker in names for marker in markers):
    return ''
  if 'conv1.0.weight' in names and 'layer1.0.conv1.weight' in names:
    raise ValueError(
      f"{path!r} is a ResNet with a deep stem (timm's resnet50d & co.: "
      'conv1.0, conv1.1, ... instead of one 7x7 conv1); models.ResNet has '
      "torchvision's 7x7 stem: use a plain ResNet's weights (torchvision "
      "resnet18/50/101, timm's resnet18/50/101)"
    )
  prefixes = {
    name[: -len(markers[1])]
    for name in names
    if name.endswith('.' + markers[1])
  }
  for prefix in sorted(prefixes):
    if prefix + markers[0] in names and all(
      name.startswith(prefix) for name in names
    ):
      return prefix
  if prefixes:
    outside = sorted(
      name for name in names if not any(map(name.startswith, prefixes))
    )
    raise ValueError(
      f'{path!r} holds a torchvision/timm ResNet under the prefix '
      f'{sorted(prefixes)[0]!r} next to other tensors (e.g. {outside[:3]}); '
      "save the ResNet's own state_dict"
    )
  example = sorted(names)[:5]
  raise ValueError(
    f"{path!r}: unknown tensor naming; expected torchvision's ResNet names "
    "(timm's ResNets use the same), e.g. 'conv1.weight', 'bn1.running_mean', "
    f"'layer1.0.conv1.weight', 'fc.weight'; the file has {len(names)} "
    f'tensors, e.g. {example}'
  )


def _listed(names: list[str], limit: int = 8) -> str:
  more = f', ... ({len(names)} in all)' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def load_resnet(
  path: str | os.PathLike,
  *,
  params: Mapping[str, Any],
  batch_stats: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Places a torchvision/timm ResNet checkpoint into `ResNet` variables.

  Args:
    path: a safetensors file of a torchvision or timm ResNet ``state_dict``
      (e.g. timm's hub ``model.safetensors``); a prefix common to every
      tensor name (``module.`` of DataParallel) is stripped.
    params: the ``'params'`` of a `models.ResNet` (from ``model.init``),
      whose architecture matches the checkpoint's; their embedding layer
      is kept as it is.
    batch_stats: its ``'batch_stats'``.

  Returns:
    New ``(params, batch_stats)`` (nested dicts; the arguments are not
    modified): every convolution kernel (OIHW -> HWIO) and BatchNorm
    scale, bias, mean and variance from the file, in the dtype of the
    variable it replaces; the embedding as given.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: `path` is not a safetensors file, holds dtypes NumPy cannot
      read (bfloat16), is not a torchvision/timm ResNet (the message says
      which naming was expected), or does not fit the model: every missing,
      unexpected or mis-shaped tensor is named.
  """
  path = os.fspath(path)
  tensors = _read(path)
  names = set(tensors)
  prefix = _detect_naming(path, names)
  if prefix:
    logging.info('%s: stripping the prefix %r of every tensor.', path, prefix)
    tensors = {name[len(prefix) :]: value for name, value in tensors.items()}
  entries = list(_entries(params))
  expected = {name for name, *_ in entries}
  present = {
    name
    for name in tensors
    if not name.endswith(_IGNORED_SUFFIX) and name not in _CLASSIFIER
  }
  collections = {'params': params, 'batch_stats': batch_stats}
  missing = sorted(expected - present)
  unexpected = sorted(present - expected)
  misshaped = []
  for name, collection, flax_path, kind in entries:
    if name not in tensors:
      continue
    try:
      leaf = _get(collections[collection], flax_path)
    except (KeyError, TypeError) as error:
      raise ValueError(
        f'`{collection}` has no {"/".join(flax_path)}, which `params` '
        'implies: pass the params and batch_stats of the same ResNet'
      ) from error
    want = _torch_shape(kind, tuple(leaf.shape))
    if tuple(tensors[name].shape) != want:
      misshaped.append(
        f"{name}: expected {want} (the model's {'/'.join(flax_path)}), "
        f'received {tuple(tensors[name].shape)}'
      )
  if missing or unexpected or misshaped:
    problems = []
    if missing:
      problems.append(f'missing tensors: {_listed(missing)}')
    if unexpected:
      problems.append(f'unexpected tensors: {_listed(unexpected)}')
    if misshaped:
      problems.append(f'mis-shaped tensors: {_listed(misshaped, 4)}')
    hints = []
    file_sizes = _stage_sizes(present)
    model_sizes = _stage_sizes(expected)
    if file_sizes != model_sizes:
      hints.append(
        f'the file is a ResNet of {_describe(*file_sizes)}, the model of '
        f'{_describe(*model_sizes)} (resnet18: (2, 2, 2, 2) basic, '
        'resnet50: (3, 4, 6, 3), resnet101: (3, 4, 23, 3) bottleneck)'
      )
    stem = tensors.get('conv1.weight')
    if stem is not None and stem.ndim == 4:
      model_in = _get(params, ('conv_init', 'kernel')).shape[2]
      if stem.shape[1] != model_in:
        hints.append(
          f'the checkpoint takes {stem.shape[1]}-channel images, the model '
          f"{model_in}: config.input.normalization='imagenet' repeats grey "
          'images to RGB'
        )
    raise ValueError(
      f'{path!r} does not fit the model ({NAMING}/timm naming): '
      + '; '.join(problems)
      + ''.join(f'. Note: {hint}' for hint in hints)
    )

  new = {'params': _copy(params), 'batch_stats': _copy(batch_stats)}
  for name, collection, flax_path, kind in entries:
    value = np.asarray(tensors[name])
    if kind == 'conv':
      value = _conv_from_torch(value)
    leaf = _get(collections[collection], flax_path)
    _set(new[collection], flax_path, jnp.asarray(value, dtype=leaf.dtype))
  dropped = sorted(names & {prefix + n for n in _CLASSIFIER})
  logging.info(
    'Loaded %d tensors (%s/timm naming) from %s into the ResNet%s; the '
    'embedding layer keeps its fresh initialisation.',
    len(entries),
    NAMING,
    path,
    f'; dropped the classifier {", ".join(dropped)}' if dropped else '',
  )
  return new['params'], new['batch_stats']


def load_backbone(state: Any, path: str | os.PathLike) -> Any:
  """A new run's train state with its ResNet backbone loaded from `path`.

  Args:
    state: a flax ``TrainState`` (with ``batch_stats``) of a
      `models.heads.EmbeddingModel` whose backbone is a `models.ResNet`.
    path: see `load_resnet`.

  Returns:
    `state` with ``params['backbone']`` and ``batch_stats['backbone']``
    from `load_resnet` (the embedding and the head as they were) and the
    optimiser state initialised afresh for the new parameters.
  """
  backbone, backbone_stats = load_resnet(
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


def torchvision_state(
  params: Mapping[str, Any],
  batch_stats: Mapping[str, Any],
  *,
  include_embedding: bool = True,
) -> dict[str, np.ndarray]:
  """Our ResNet variables as a torchvision ``state_dict`` of NumPy arrays.

  Args:
    params: the ``'params'`` of a `models.ResNet`.
    batch_stats: its ``'batch_stats'``.
    include_embedding: write the embedding layer as the classifier
      (``fc.weight`` [embedding_dim, C], ``fc.bias``), so that torchvision's
      model with ``num_classes=embedding_dim`` loads the file strictly.

  Returns:
    ``{torch name: float32 array}`` in torch's layouts.
  """
  collections = {'params': params, 'batch_stats': batch_stats}
  state = {}
  for name, collection, flax_path, kind in _entries(params):
    value = np.asarray(_get(collections[collection], flax_path), np.float32)
    if kind == 'conv':
      value = _conv_to_torch(value)
    state[name] = np.ascontiguousarray(value)
  if include_embedding and 'embedding' in params:
    embedding = params['embedding']
    state['fc.weight'] = np.ascontiguousarray(
      np.asarray(embedding['kernel'], np.float32).T
    )
    state['fc.bias'] = np.asarray(embedding['bias'], np.float32)
  return state


def save_resnet_torchvision(
  path: str | os.PathLike,
  params: Mapping[str, Any],
  batch_stats: Mapping[str, Any],
  *,
  include_embedding: bool = True,
) -> None:
  """Writes our ResNet variables as a torchvision-named safetensors file.

  `load_resnet` reads it back (dropping ``fc.*``); torch reads it with
  ``safetensors.torch.load_file`` and torchvision's ``resnet*`` (same
  stage sizes and widths) loads it with ``load_state_dict``.

  Args:
    path: the file to write.
    params: the ``'params'`` of a `models.ResNet`.
    batch_stats: its ``'batch_stats'``.
    include_embedding: see `torchvision_state`.
  """
  state = torchvision_state(
    params, batch_stats, include_embedding=include_embedding
  )
  safetensors.numpy.save_file(
    state,
    os.fspath(path),
    metadata={'format': 'pt', 'written_by': 'discfeat models.pretrained'},
  )
