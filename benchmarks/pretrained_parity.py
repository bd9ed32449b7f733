r"""torchvision's and timm's ResNets and ours, loaded from the same file.

For torchvision's resnet18, resnet50 and resnet101 and timm's resnet50
(``pretrained=False``: random weights, no download), every BatchNorm gets
random affine parameters and running statistics (measured on random images,
then perturbed: a swapped mean and variance, a wrong epsilon or a misplaced
tensor shows, and the features keep moderate scales), the ``state_dict``
goes to a safetensors file (``safetensors.torch.save_file``, as a user
converts a ``.pth``), `models.pretrained.load_resnet` places it into our
`ResNet` of the same name, and both compute the pooled features (what the
classifier ``fc`` sees: 512-D for ResNet-18, 2048-D otherwise) of the same
random images in evaluation mode, float32, at 224x224 and at an odd size,
97x113 (stride-2 layers on odd sizes: the padding must match torch's).

Errors: "max abs" is the largest ``|ours - torch|`` over all features;
"max rel" the largest over images of ``max_j |ours_j - torch_j| / max_j
|torch_j|`` (the error relative to the image's feature scale; features are
>= 0 after the last ReLU, many near 0, where an element-wise ratio means
nothing). "agree": max rel <= 1e-4.

Then the way back: `models.pretrained.save_resnet_torchvision` writes our
loaded variables (the embedding as ``fc``), a fresh torch model with
``num_classes=embedding_dim`` loads the file with ``strict=True``, and its
features must equal the original model's exactly ("export": "exact").

Torch is no dependency of discfeat: ``make bench-pretrained`` runs this in
``.venv-pml`` (the ``pml`` extra: torch, torchvision, timm).
``--models=torchvision:resnet18`` restricts the run.
"""

import ctypes
import importlib.util
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import models
from models import pretrained

_MODELS = flags.DEFINE_list(
  'models',
  [
    'torchvision:resnet18',
    'torchvision:resnet50',
    'torchvision:resnet101',
    'timm:resnet50',
  ],
  'SOURCE:NAME pairs to check (SOURCE is torchvision or timm).',
)
_BATCH = flags.DEFINE_integer('batch', 2, 'Images per input size.')
_THREADS = flags.DEFINE_integer('threads', 2, "torch's thread count.")
_FLOAT64 = flags.DEFINE_bool(
  'float64',
  False,
  'Compute both sides in float64 (JAX with x64): the differences left are '
  'the float32 rounding of the default run, not a mismatch of the layers.',
)

_SIZES = ((224, 224), (97, 113))
_EMBEDDING_DIM = 8
_TOLERANCE = 1e-4


def _import_torchvision():
  """torchvision, importable next to the CPU build of torch.

  PyPI's torchvision wheels are built against CUDA torch; with the CPU torch
  of the local wheel their compiled detection ops (``_C.so``: nms,
  roi_align, ...) cannot load, and torchvision 0.28's import then fails
  registering fake kernels for ``torchvision::nms`` and ``::qnms``, which no
  library defined. Defining those two schemas lets the import through;
  ResNets use none of the compiled ops (calling one would fail loudly).
  """
  import torch  # pylint: disable=g-import-not-at-top

  if 'torchvision' in sys.modules:
    return sys.modules['torchvision']
  spec = importlib.util.find_spec('torchvision')
  package = spec.submodule_search_locations[0]
  # torchvision 0.29 names its ops library _C_stable.so; with the torch it
  # was built for (the pml extra's pair) it loads and needs no shim.
  library = os.path.join(package, '_C_stable.so')
  if not os.path.exists(library):
    library = os.path.join(package, '_C.so')
  try:
    ctypes.CDLL(library)
  except OSError:
    shim = torch.library.Library('torchvision', 'DEF')
    for op in ('nms', 'qnms'):
      shim.define(f'{op}(Tensor dets, Tensor scores, float iou) -> Tensor')
    _import_torchvision.shim = shim  # Kept alive: it owns the schemas.
  import torchvision  # pylint: disable=g-import-not-at-top

  return torchvision


def _torch_model(source: str, name: str, num_classes: int = 1000):
  if source == 'torchvision':
    torchvision = _import_torchvision()
    return getattr(torchvision.models, name)(num_classes=num_classes)
  if source == 'timm':
    _import_torchvision()
    import timm  # pylint: disable=g-import-not-at-top

    return timm.create_model(name, pretrained=False, num_classes=num_classes)
  raise ValueError(f'SOURCE must be torchvision or timm, received {source!r}')


def _randomise_batch_norm(model, generator) -> None:
  """Random BatchNorm parameters and statistics of the right scale.

  Random affine parameters; running statistics measured on random images
  (training mode, cumulative average) as pretraining would leave them, so
  that the features keep moderate magnitudes through 100 layers, then
  perturbed (mean shifted by 0.1 standard deviation, variance scaled by
  exp(0.1 N(0, 1))): evaluation mode must use exactly the file's
  statistics.
  """
  import torch  # pylint: disable=g-import-not-at-top

  norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for norm in norms:
      n = norm.num_features
      norm.weight.copy_(0.5 + torch.rand(n, generator=generator))
      norm.bias.copy_(0.2 * torch.randn(n, generator=generator))
      norm.reset_running_stats()
      norm.momentum = None  # Cumulative average.
    model.train()(torch.randn(4, 3, 64, 64, generator=generator))
    for norm in norms:
      n = norm.num_features
      std = norm.running_var.sqrt()
      norm.running_mean.add_(0.1 * std * torch.randn(n, generator=generator))
      norm.running_var.mul_(
        torch.exp(0.1 * torch.randn(n, generator=generator))
      )
      norm.momentum = 0.1
  model.eval()


def _torch_features(model, images: np.ndarray) -> np.ndarray:
  """Pooled features (fc's input) of NCHW `images`, evaluation mode."""
  import torch  # pylint: disable=g-import-not-at-top

  fc = model.fc
  model.fc = torch.nn.Identity()
  try:
    with torch.no_grad():
      return model.eval()(torch.from_numpy(images)).numpy()
  finally:
    model.fc = fc


def _errors(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
  diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
  scale = np.max(np.abs(reference), axis=1)
  return float(diff.max()), float(np.max(diff.max(axis=1) / scale))


def _check(source: str, name: str, directory: str) -> dict:
  import safetensors.torch  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  generator = torch.Generator().manual_seed(0)
  torch.manual_seed(0)
  reference = _torch_model(source, name)
  _randomise_batch_norm(reference, generator)
  path = os.path.join(directory, f'{source}_{name}.safetensors')
  safetensors.torch.save_file(reference.state_dict(), path)

  dtype = np.float64 if _FLOAT64.value else np.float32
  if _FLOAT64.value:
    reference = reference.double()
  model = models.get_model(name, embedding_dim=_EMBEDDING_DIM, dtype=dtype)
  abstract = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False
    )
  )
  # load_resnet gives each tensor the dtype of the variable it replaces.
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, dtype), abstract)
  start = time.perf_counter()
  params, batch_stats = pretrained.load_resnet(
    path, params=variables['params'], batch_stats=variables['batch_stats']
  )
  load_seconds = time.perf_counter() - start
  features = jax.jit(
    lambda v, x: model.apply(v, x, train=False, return_pooled=True)
  )
  rng = np.random.default_rng(0)
  max_abs = max_rel = scale = 0.0
  for height, width in _SIZES:
    images = rng.normal(size=(_BATCH.value, 3, height, width))
    images = images.astype(dtype)
    want = _torch_features(reference, images)
    got = np.asarray(
      features(
        {'params': params, 'batch_stats': batch_stats},
        jnp.asarray(images.transpose(0, 2, 3, 1)),
      )
    )
    if got.shape != want.shape:
      raise AssertionError(f'{name}: shapes {got.shape} vs {want.shape}')
    abs_error, rel_error = _errors(got, want)
    max_abs, max_rel = max(max_abs, abs_error), max(max_rel, rel_error)
    scale = max(scale, float(np.abs(want).max()))

  # The way back: our variables, exported, load strictly into torch.
  exported = os.path.join(directory, f'{source}_{name}_exported.safetensors')
  pretrained.save_resnet_torchvision(exported, params, batch_stats)
  back = _torch_model(source, name, num_classes=_EMBEDDING_DIM)
  back.load_state_dict(safetensors.torch.load_file(exported), strict=True)
  if _FLOAT64.value:
    back = back.double()  # The file is float32, as the weights were.
  images = rng.normal(size=(_BATCH.value, 3, 224, 224)).astype(dtype)
  same = np.array_equal(
    _torch_features(back, images), _torch_features(reference, images)
  )
  return {
    'source': source,
    'name': name,
    'dim': int(want.shape[1]),
    'tensors': len(
      pretrained.torchvision_state(params, batch_stats, include_embedding=False)
    ),
    'load_s': load_seconds,
    'max_abs': max_abs,
    'max_rel': max_rel,
    'scale': scale,
    'agree': max_rel <= _TOLERANCE,
    'export': 'exact' if same else 'DIFFERS',
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(_THREADS.value)
  if _FLOAT64.value:
    jax.config.update('jax_enable_x64', True)
  torchvision = _import_torchvision()  # Before timm, which imports it.
  import timm  # pylint: disable=g-import-not-at-top

  print(
    f'jax {jax.__version__}, torch {torch.__version__}, torchvision '
    f'{torchvision.__version__}, timm {timm.__version__}; '
    f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores; '
    f'{"float64" if _FLOAT64.value else "float32"}, evaluation mode, '
    f'{_BATCH.value} random N(0, 1) images at '
    f'each of {", ".join(f"{h}x{w}" for h, w in _SIZES)}; "agree": max rel '
    f'<= {_TOLERANCE:g}\n'
  )
  print(
    '| source | model | tensors loaded | features | max abs | max rel | '
    'max feature | check | export -> torch strict load | load s |'
  )
  print('|---|---|---|---|---|---|---|---|---|---|')
  failed = False
  with tempfile.TemporaryDirectory() as directory:
    for entry in _MODELS.value:
      source, _, name = entry.partition(':')
      row = _check(source, name, directory)
      failed |= not row['agree'] or row['export'] != 'exact'
      print(
        f'| {row["source"]} | {row["name"]} | {row["tensors"]} | '
        f'{row["dim"]} | {row["max_abs"]:.1e} | {row["max_rel"]:.1e} | '
        f'{row["scale"]:.3g} | {"agree" if row["agree"] else "DIFFER"} | '
        f'{row["export"]} | {row["load_s"]:.2f} |',
        flush=True,
      )
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
