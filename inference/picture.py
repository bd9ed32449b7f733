"""A search's results as a picture (``search.py --picture``).

Some queries and their top-k neighbours, their images read back from the
files or the split the embeddings came from; `evaluation.plots` draws the
grid (neighbours framed green when they share the query's class, red when
not).
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation import pictures, plots
from inference import embeddings_file
from inference import images as images_lib
from inference import search as search_lib


def _captions(names: Sequence[str], rows: np.ndarray) -> list[str]:
  return [str(names[row]) for row in rows]


def images_of(
  embeddings: embeddings_file.Embeddings,
  rows: Sequence[int],
  *,
  transform: images_lib.Transform,
  dataset: Any,
  batch_size: int,
) -> np.ndarray:
  """The model inputs ``[len(rows), H, W, C]`` behind rows of a file.

  Args:
    embeddings: an embeddings file's contents.
    rows: its rows.
    transform: decodes its image files (`TrainedModel.transform`).
    dataset: the data set of its split (`TrainedModel.dataset`).
    batch_size: rows per batch when reading a split.

  Raises:
    ValueError: the file has neither paths nor split positions, or its
      split is of another data set than `dataset`.
  """
  rows = [int(row) for row in rows]
  if embeddings.paths is not None:
    return transform.load([embeddings.paths[row] for row in rows])
  if embeddings.indices is None:
    raise ValueError('The embeddings file names neither files nor examples')
  if embeddings.dataset != dataset.info.name:
    raise ValueError(
      f'The embeddings are of {embeddings.dataset!r}, the model was trained '
      f'on {dataset.info.name!r}: cannot read their images'
    )
  positions = embeddings.indices[rows]
  found = dataset.images(embeddings.split, positions, batch_size)
  return np.stack([found[int(position)] for position in positions])


def write_search(
  path: str | os.PathLike,
  queries: embeddings_file.Embeddings,
  gallery: embeddings_file.Embeddings,
  neighbours: search_lib.Neighbours,
  *,
  transform: images_lib.Transform,
  dataset: Any,
  batch_size: int,
  num_queries: int = pictures.NUM_QUERIES,
  seed: int = 0,
  title: str | None = None,
) -> str:
  """Some queries of a search and their neighbours (`search.py --picture`).

  Args:
    path: the PNG to write.
    queries: the query embeddings file.
    gallery: the gallery embeddings file.
    neighbours: the search's result.
    transform: decodes image files (`TrainedModel.transform`).
    dataset: the data set of split rows (`TrainedModel.dataset`).
    batch_size: rows per batch when reading a split.
    num_queries: rows of the picture (one per query class, at most).
    seed: picks the queries.
    title: the picture's title.

  Returns:
    `path`.
  """
  rows = pictures.choose_queries(
    len(queries), queries.labels, num_queries, seed
  )
  indices = neighbours.indices[rows]
  scores = neighbours.scores[rows]
  correct = search_lib.correct(queries, gallery, neighbours)

  def load(embeddings, file_rows):
    return images_of(
      embeddings,
      file_rows,
      transform=transform,
      dataset=dataset,
      batch_size=batch_size,
    )

  neighbour_images = load(gallery, indices.ravel())
  query_names = queries.label_names()
  gallery_names = gallery.label_names()
  return plots.plot_retrieval(
    load(queries, rows),
    neighbour_images.reshape(*indices.shape, *neighbour_images.shape[1:]),
    path,
    scores=scores,
    correct=None if correct is None else correct[rows],
    query_captions=None
    if query_names is None
    else _captions(query_names, rows),
    neighbour_captions=None
    if gallery_names is None
    else [_captions(gallery_names, row) for row in indices],
    title=title,
  )
