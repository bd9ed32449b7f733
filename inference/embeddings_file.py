"""The ``.npz`` file of embeddings that ``embed.py`` writes and ``search.py``
reads.

Arrays (``np.load(path)`` reads them; nothing is pickled):

* ``embeddings``: float32 ``[n, dim]``.
* ``labels``: int64 ``[n]`` class ids and ``class_names``: str ``[C]``,
  when the images have classes (class folders, or a single-label split).
* ``paths``: str ``[n]`` absolute file paths (images of a folder), or
  ``indices``: int64 ``[n]`` example positions (a split of the model's data
  set, see ``dataset`` and ``split``).
* ``cameras``: int64 ``[n]`` camera ids, for a split of a re-id set
  (``query``, ``gallery``; its ``labels`` are then identities).
* ``folder`` (the images' folder) or ``dataset`` and ``split``.
* ``workdir`` and ``step``: the model and checkpoint they came from.

Absent fields are simply missing from the file.
"""

import dataclasses
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class Embeddings:
  """Embeddings of images and where they came from.

  Attributes:
    embeddings: float32 ``[n, dim]``.
    workdir: the trained model's workdir.
    step: its checkpoint's step.
    labels: int64 ``[n]`` class ids, or None.
    class_names: names of the class ids, or None.
    paths: the images' files, or None.
    indices: the examples' positions in `split` of `dataset`, or None.
    folder: the folder the files were listed from, or None.
    dataset: ``config.input.name`` of the split's data set, or None.
    split: ``'train'`` or ``'test'`` (re-id sets also ``'query'``,
      ``'gallery'``), or None.
    cameras: int64 ``[n]`` camera ids (re-id sets), or None.
  """

  embeddings: np.ndarray
  workdir: str
  step: int
  labels: np.ndarray | None = None
  class_names: tuple[str, ...] | None = None
  paths: tuple[str, ...] | None = None
  indices: np.ndarray | None = None
  folder: str | None = None
  dataset: str | None = None
  split: str | None = None
  cameras: np.ndarray | None = None

  def __post_init__(self):
    n = len(self.embeddings)
    for name in ('labels', 'paths', 'indices', 'cameras'):
      value = getattr(self, name)
      if value is not None and len(value) != n:
        raise ValueError(
          f'{name} must hold one entry per embedding ({n}), received '
          f'{len(value)}'
        )

  def __len__(self) -> int:
    return len(self.embeddings)

  def names(self) -> list[str]:
    """One name per row: its file, or ``SPLIT[POSITION]``."""
    if self.paths is not None:
      return list(self.paths)
    if self.indices is not None:
      return [f'{self.split}[{int(i)}]' for i in self.indices]
    return [f'row {i}' for i in range(len(self))]

  def label_names(self) -> list[str] | None:
    """Each row's class name (its id where names are unknown), or None."""
    if self.labels is None:
      return None
    if self.class_names is None:
      return [str(int(label)) for label in self.labels]
    return [self.class_names[int(label)] for label in self.labels]


def save(path: str | os.PathLike, embeddings: Embeddings) -> str:
  """Writes `embeddings` to `path` (``.npz``; folders are created)."""
  path = os.fspath(path)
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  arrays = {
    'embeddings': np.asarray(embeddings.embeddings, np.float32),
    'workdir': np.asarray(embeddings.workdir),
    'step': np.asarray(embeddings.step, np.int64),
  }
  optional = {
    'labels': (embeddings.labels, np.int64),
    'class_names': (embeddings.class_names, np.str_),
    'paths': (embeddings.paths, np.str_),
    'indices': (embeddings.indices, np.int64),
    'folder': (embeddings.folder, np.str_),
    'dataset': (embeddings.dataset, np.str_),
    'split': (embeddings.split, np.str_),
    'cameras': (embeddings.cameras, np.int64),
  }
  for key, (value, dtype) in optional.items():
    if value is not None:
      arrays[key] = np.asarray(value, dtype)
  # np.savez appends .npz to a name without it; open the file ourselves so
  # that the file is exactly `path`.
  with open(path, 'wb') as file:
    np.savez(file, **arrays)
  return path


def load(path: str | os.PathLike) -> Embeddings:
  """Reads a file written by `save`.

  Raises:
    ValueError: the file lacks ``embeddings``, ``workdir`` or ``step``.
  """
  with np.load(os.fspath(path), allow_pickle=False) as data:
    missing = {'embeddings', 'workdir', 'step'} - set(data.files)
    if missing:
      raise ValueError(
        f'{os.fspath(path)!r} is not an embeddings file (no '
        f'{", ".join(sorted(missing))}); write one with embed.py'
      )

    def get(key, convert):
      return convert(data[key]) if key in data.files else None

    def strings(array):
      return tuple(str(item) for item in array)

    return Embeddings(
      embeddings=data['embeddings'],
      workdir=str(data['workdir']),
      step=int(data['step']),
      labels=get('labels', np.asarray),
      class_names=get('class_names', strings),
      paths=get('paths', strings),
      indices=get('indices', np.asarray),
      folder=get('folder', str),
      dataset=get('dataset', str),
      split=get('split', str),
      cameras=get('cameras', np.asarray),
    )
