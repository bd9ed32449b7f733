r"""Images/s of a JPEG folder's input pipelines: discfeat's, torchvision's.

The same synthetic JPEG folder (written once, then reused) is read by

- **discfeat**: ``input_pipeline.create_dataset`` with
  ``config.input.name='image_folder'``, ``image_size=224``,
  ``augment=True``, ``normalization='imagenet'`` and
  ``num_threads`` = the worker count: the path `configs/image_folder.py`
  and `configs/image_folder_finetune.py` take. Training batches are
  ``dataset.train_batches()``, evaluation batches
  ``dataset.eval_batches('train', ...)`` (the same images);
- **torchvision**: ``ImageFolder`` + ``DataLoader(num_workers=1|2,
  persistent_workers=True)`` with the reference transforms: training
  ``RandomResizedCrop(224)``, ``RandomHorizontalFlip()``, ``ToTensor()``,
  ``Normalize(mean, std)``; evaluation ``Resize(256)``, ``CenterCrop(224)``,
  ``ToTensor()``, ``Normalize(mean, std)``.

Both give float32 batches normalised with ImageNet's mean and std, ready
for the device (discfeat NHWC, torchvision NCHW). Each measurement runs in
a fresh process (discfeat in ``--discfeat_python``, torchvision in
``--torchvision_python``, the ``.venv-pml`` of ``make bench-pml``), drops
``--warmup`` batches (process and worker start-up, the first reads) and
times the next ``--batches``; the measurements alternate (discfeat,
torchvision, discfeat, ...) over ``--reps`` rounds and the table gives the
median and the range. The load average is read before each measurement.

discfeat prepares an image folder once (every image decoded and resized to
the stored size, then read as raw uint8 records); that one-time cost is
timed separately, into a fresh data dir, and printed below the table.

Run: ``make bench-jpeg`` or ``python -m benchmarks.jpeg_pipeline``
(``--framework=discfeat`` or ``torchvision`` for one side only). About 3
minutes on 2 cores; the folder is written under ``--root``
(default ``runs/jpeg_pipeline``).
"""

import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time

import numpy as np
from absl import app, flags

_FRAMEWORK = flags.DEFINE_enum(
  'framework',
  'both',
  ['both', 'discfeat', 'torchvision'],
  'Which pipelines to measure.',
)
_ROOT = flags.DEFINE_string(
  'root', 'runs/jpeg_pipeline', 'Where the JPEG folder and data dir live.'
)
_CLASSES = flags.DEFINE_integer('classes', 10, 'Class folders.')
_PER_CLASS = flags.DEFINE_integer(
  'per_class', 64, 'Training images per class (a tenth of it for test/).'
)
_QUALITY = flags.DEFINE_integer('quality', 90, 'JPEG quality.')
_WORKERS = flags.DEFINE_list(
  'workers', ['1', '2'], 'Worker counts (threads or processes).'
)
_TRANSFORMS = flags.DEFINE_list(
  'transforms', ['train', 'eval'], 'Transforms to measure.'
)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Images per batch.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed batches first.')
_BATCHES = flags.DEFINE_integer('batches', 16, 'Timed batches.')
_REPS = flags.DEFINE_integer('reps', 3, 'Rounds of alternating measurements.')
_DISCFEAT_PYTHON = flags.DEFINE_string(
  'discfeat_python', '.venv/bin/python', 'Python of the discfeat venv.'
)
_TORCHVISION_PYTHON = flags.DEFINE_string(
  'torchvision_python', '.venv-pml/bin/python', 'Python with torchvision.'
)
_PREPARE = flags.DEFINE_bool(
  'prepare', True, "Time discfeat's one-time preparation of the folder."
)
# A child process's job (set by the driver): 'discfeat', 'torchvision' or
# 'prepare'; it prints one JSON line.
_MEASURE = flags.DEFINE_string('measure', None, 'Internal: one measurement.')
_TRANSFORM = flags.DEFINE_string('transform', 'train', 'Internal.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Internal.')

IMAGE_SIZE = 224
# ImageNet's typical shapes (width, height): most are 500 x 375 or 375 x 500.
_SHAPES = ((500, 375), (500, 375), (375, 500), (500, 333), (500, 400))
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _textured_image(rng: np.random.Generator, width: int, height: int):
  """A photo-like RGB image: smooth colour fields, edges and grain.

  Flat colours would make the JPEGs (and their decoding) unrealistically
  cheap; the grain brings the files near ImageNet's average (about 110 KB)
  at quality 90.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
  base = np.asarray(
    Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC),
    np.float32,
  )
  mid = rng.uniform(-40, 40, (height // 16 + 1, width // 16 + 1, 3))
  mid = np.asarray(
    Image.fromarray(((mid + 40) * 3.1875).astype(np.uint8)).resize(
      (width, height), Image.Resampling.BILINEAR
    ),
    np.float32,
  )
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  angle, period = rng.uniform(0, np.pi), rng.uniform(6, 30)
  stripes = 25 * np.sin(
    (x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period
  )
  grain = rng.normal(0, 18, (height, width, 3))
  pixels = 0.6 * base + 0.4 * mid + stripes[..., None] + grain
  return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_folder(root: str, classes: int, per_class: int, quality: int):
  """Writes ``root/{train,test}/<class>/*.jpg`` unless already complete.

  Returns:
    (train images, test images, mean file size in bytes).
  """
  marker = os.path.join(root, f'.complete_v2_{classes}_{per_class}_{quality}')
  counts = {'train': per_class, 'test': max(1, per_class // 10)}
  if not os.path.exists(marker):
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for split, count in counts.items():
      for c in range(classes):
        directory = os.path.join(root, split, f'class_{c:02d}')
        os.makedirs(directory, exist_ok=True)
        for i in range(count):
          width, height = _SHAPES[rng.integers(len(_SHAPES))]
          image = _textured_image(rng, width, height)
          image.save(os.path.join(directory, f'{i:04d}.jpg'), quality=quality)
    open(marker, 'w').close()
  sizes = [
    entry.stat().st_size
    for directory, _, files in os.walk(os.path.join(root, 'train'))
    for entry in os.scandir(directory)
    if entry.name.endswith('.jpg')
  ]
  return classes * counts['train'], classes * counts['test'], np.mean(sizes)


def _discfeat_config(root, data_dir, workers):
  import input_pipeline  # pylint: disable=g-import-not-at-top

  config = input_pipeline.default_input_config()
  config.name = 'image_folder'
  config.image_folder = os.path.abspath(root)
  config.data_dir = os.path.abspath(data_dir)
  config.image_size = IMAGE_SIZE
  config.augment = True
  config.normalization = 'imagenet'
  config.batch_size = _BATCH_SIZE.value
  config.num_threads = workers
  return config


def _cpu_seconds(pids: tuple[int, ...]) -> float:
  """CPU seconds (user + system) used so far by this process, all its
  threads, and the processes `pids` (Linux /proc; 0 for a pid not there)."""
  total = time.process_time()
  tick = os.sysconf('SC_CLK_TCK')
  for pid in pids:
    try:
      with open(f'/proc/{pid}/stat') as file:
        # Fields after the command name (which may hold spaces): utime and
        # stime are the 12th and 13th.
        fields = file.read().rsplit(')', 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / tick
    except OSError:
      pass
  return total


def _time_batches(iterator, pids=lambda: ()) -> dict[str, float]:
  """Images/s and images per CPU second over `_BATCHES` batches, after
  `_WARMUP` untimed ones; `pids` gives the worker processes to count."""
  for _ in range(_WARMUP.value):
    next(iterator)
  cpu, start = _cpu_seconds(pids()), time.perf_counter()
  for _ in range(_BATCHES.value):
    next(iterator)
  seconds = time.perf_counter() - start
  cpu = _cpu_seconds(pids()) - cpu
  images = _BATCHES.value * _BATCH_SIZE.value
  return {'images_per_s': images / seconds, 'images_per_cpu_s': images / cpu}


def measure_discfeat(root, data_dir, transform, workers) -> dict[str, float]:
  """discfeat's images/s (float32 normalised batches)."""
  import input_pipeline  # pylint: disable=g-import-not-at-top

  dataset = input_pipeline.create_dataset(
    _discfeat_config(root, data_dir, workers),
    seed=0,
    process_index=0,
    process_count=1,
  )
  if transform == 'train':
    batches = dataset.train_batches()
  else:
    batches = dataset.eval_batches('train', _BATCH_SIZE.value)
  return _time_batches(batches)


def measure_torchvision(root, transform, workers) -> dict[str, float]:
  """torchvision's images/s (float32 normalised batches)."""
  # pylint: disable=g-import-not-at-top
  import torch
  from torchvision import datasets
  from torchvision import transforms as T

  if transform == 'train':
    steps = [T.RandomResizedCrop(IMAGE_SIZE), T.RandomHorizontalFlip()]
  else:
    steps = [T.Resize(256), T.CenterCrop(IMAGE_SIZE)]
  pipeline = T.Compose([*steps, T.ToTensor(), T.Normalize(_MEAN, _STD)])
  folder = datasets.ImageFolder(os.path.join(root, 'train'), pipeline)
  loader = torch.utils.data.DataLoader(
    folder,
    batch_size=_BATCH_SIZE.value,
    shuffle=transform == 'train',
    num_workers=workers,
    drop_last=True,
    persistent_workers=True,
  )
  iterators = []

  def endless():
    while True:
      iterators.append(iter(loader))
      yield from iterators[-1]

  def worker_pids():
    # pylint: disable-next=protected-access
    return tuple(w.pid for w in getattr(iterators[-1], '_workers', ()))

  return _time_batches(endless(), worker_pids)


def _child(python: str, **flags_) -> dict:
  """Runs one measurement in a fresh `python` process; its JSON result."""
  command = [python, '-m', 'benchmarks.jpeg_pipeline']
  command += [f'--{name}={value}' for name, value in flags_.items()]
  for name in ('batch_size', 'warmup', 'batches', 'root'):
    command.append(f'--{name}={flags.FLAGS[name].value}')
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(
      f'{" ".join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}'
    )
  return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main() -> None:
  root = os.path.join(_ROOT.value, 'images')
  transform, workers = _TRANSFORM.value, int(_WORKERS.value[0])
  if _MEASURE.value == 'prepare':
    start = time.perf_counter()
    import input_pipeline  # pylint: disable=g-import-not-at-top

    input_pipeline.create_dataset(
      _discfeat_config(root, _DATA_DIR.value, 1),
      seed=0,
      process_index=0,
      process_count=1,
    )
    result = {'seconds': time.perf_counter() - start}
  elif _MEASURE.value == 'discfeat':
    result = measure_discfeat(root, _DATA_DIR.value, transform, workers)
  elif _MEASURE.value == 'torchvision':
    result = measure_torchvision(root, transform, workers)
  else:
    raise ValueError(f'unknown --measure={_MEASURE.value!r}')
  print(json.dumps(result))


def _versions(python: str, modules: tuple[str, ...]) -> str:
  code = (
    'import importlib; print(", ".join(m + " " + importlib.import_module(m)'
    f'.__version__ for m in {modules!r}))'
  )
  done = subprocess.run(
    [python, '-c', code], capture_output=True, text=True, check=False
  )
  return done.stdout.strip() or f'({python}: {done.stderr.strip()[-200:]})'


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as file:
      for line in file:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _spread(values: list[float]) -> str:
  """The median and the range of `values`."""
  median, low, high = statistics.median(values), min(values), max(values)
  return f'{median:.0f} ({low:.0f}–{high:.0f})'


def _print_table(results, metric: str, frameworks: tuple[str, ...]) -> None:
  """One Markdown row per (transform, workers): each framework's median
  (range) of `metric`, and their ratio."""
  header = ['transform', 'workers', *frameworks]
  if len(frameworks) == 2:
    header.append('discfeat / torchvision')
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for transform in _TRANSFORMS.value:
    for workers in _WORKERS.value:
      row = [transform, workers]
      medians = []
      for framework in frameworks:
        values = [
          m[metric] for m in results[(transform, int(workers), framework)]
        ]
        row.append(_spread(values))
        medians.append(statistics.median(values))
      if len(frameworks) == 2:
        row.append(f'{medians[0] / medians[1]:.2f}')
      print('| ' + ' | '.join(row) + ' |')


def main(argv):
  del argv
  if _MEASURE.value:
    _child_main()
    return
  root = os.path.join(_ROOT.value, 'images')
  data_dir = os.path.join(_ROOT.value, 'tfds')
  frameworks = (
    ('discfeat', 'torchvision')
    if _FRAMEWORK.value == 'both'
    else (_FRAMEWORK.value,)
  )
  pythons = {
    'discfeat': _DISCFEAT_PYTHON.value,
    'torchvision': _TORCHVISION_PYTHON.value,
  }
  start = time.perf_counter()
  train_count, test_count, mean_bytes = write_folder(
    root, _CLASSES.value, _PER_CLASS.value, _QUALITY.value
  )
  shapes = ', '.join(f'{w}x{h}' for w, h in sorted(set(_SHAPES)))
  print(
    f'# JPEG folder {root}: {train_count} train + {test_count} test images '
    f'in {_CLASSES.value} classes, {shapes} px, quality {_QUALITY.value}, '
    f'{mean_bytes / 1024:.0f} KiB per file on average (written in '
    f'{time.perf_counter() - start:.0f} s or cached)',
    flush=True,
  )
  if 'discfeat' in frameworks:
    # Prepared once here (and cached) so that no measurement includes it.
    _child(pythons['discfeat'], measure='prepare', data_dir=data_dir)
  results = {}  # (transform, workers, framework) -> [measurement dicts]
  loads = []
  for _ in range(_REPS.value):
    for transform in _TRANSFORMS.value:
      for workers in _WORKERS.value:
        for framework in frameworks:
          loads.append(os.getloadavg()[0])
          measured = _child(
            pythons[framework],
            measure=framework,
            transform=transform,
            workers=workers,
            data_dir=data_dir,
          )
          key = (transform, int(workers), framework)
          results.setdefault(key, []).append(measured)
          print(
            f'# {transform} workers={workers} {framework}: '
            f'{measured["images_per_s"]:.0f} images/s, '
            f'{measured["images_per_cpu_s"]:.0f} per CPU s '
            f'(load {loads[-1]:.2f})',
            flush=True,
          )
  loads.append(os.getloadavg()[0])
  modules = {
    'discfeat': ('PIL', 'numpy', 'grain'),
    'torchvision': ('PIL', 'torch', 'torchvision'),
  }
  versions = '; '.join(
    f'{f}: {_versions(pythons[f], modules[f])}' for f in frameworks
  )
  print()
  print(
    f'{time.strftime("%Y-%m-%d")}, {_cpu_name()}, {os.cpu_count()} cores, '
    f'load average (1 min) {min(loads):.2f}–{max(loads):.2f} during the '
    f'run; {versions}; batch {_BATCH_SIZE.value}, {_WARMUP.value} warm-up + '
    f'{_BATCHES.value} timed batches per measurement, median (range) of '
    f'{_REPS.value} alternating rounds'
  )
  for metric, title in (
    ('images_per_s', 'images/s (wall clock)'),
    (
      'images_per_cpu_s',
      'images per CPU second (user + system time of the process, its '
      'threads and its DataLoader workers)',
    ),
  ):
    print()
    print(title + ':')
    print()
    _print_table(results, metric, frameworks)
  if 'discfeat' in frameworks and _PREPARE.value:
    fresh = tempfile.mkdtemp(prefix='jpeg_pipeline_tfds_')
    try:
      load = os.getloadavg()[0]
      prepared = _child(pythons['discfeat'], measure='prepare', data_dir=fresh)
    finally:
      shutil.rmtree(fresh, ignore_errors=True)
    count = train_count + test_count
    print()
    print(
      f"discfeat's one-time preparation (create_dataset into a fresh data "
      f'dir, process start-up excluded: decode, resize to {IMAGE_SIZE}, '
      f'write): {count} images in {prepared["seconds"]:.1f} s, '
      f'{count / prepared["seconds"]:.0f} images/s on 1 core '
      f'(load {load:.2f})'
    )


if __name__ == '__main__':
  app.run(main)
