"""Retrieval results as a picture: queries and their top-k neighbours.

`evaluation.plots.plot_retrieval` draws the grid (neighbours framed green
when they share the query's class, red when not); this module picks the
queries, finds their neighbours and fetches the images:

* `write_split_retrieval`: the end of a training run (``retrieval.png``),
  the test split searched among itself, as the retrieval metrics do;
* `write_search`: some queries of a search (``search.py --picture``), their
  images read back from the files or the split the embeddings came from.

It imports neither the model nor the training code, so that the training
loop can use it.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation import plots, retrieval
from inference import embeddings_file
from inference import images as images_lib
from inference import search as search_lib

NUM_QUERIES = 8
K = 8


def choose_queries(
  count: int, labels: np.ndarray | None, num_queries: int, seed: int
) -> np.ndarray:
  """Rows to show: one random member of each of the first `num_queries`
  classes (in class order), or without labels `num_queries` random rows.

  Args:
    count: the rows to choose from.
    labels: their ``[count]`` class ids, or None.
    num_queries: the most rows to choose.
    seed: the choice's random seed.

  Returns:
    int64 rows, sorted by class (without labels: by row).
  """
  rng = np.random.default_rng(seed)
  if labels is None:
    return np.sort(rng.choice(count, min(num_queries, count), replace=False))
  labels = np.asarray(labels)
  return np.asarray(
    [
      rng.choice(np.flatnonzero(labels == label))
      for label in np.unique(labels)[:num_queries]
    ],
    np.int64,
  )


def _captions(names: Sequence[str], rows: np.ndarray) -> list[str]:
  return [str(names[row]) for row in rows]


def write_split_retrieval(
  path: str | os.PathLike,
  embeddings: np.ndarray,
  labels: np.ndarray,
  *,
  dataset: Any,
  split: str,
  batch_size: int,
  class_names: Sequence[str] | None = None,
  title: str | None = None,
  seed: int = 0,
  num_queries: int = NUM_QUERIES,
  k: int = K,
) -> str:
  """Queries of a split and their nearest neighbours among the split.

  Each query's own row is excluded, as in the retrieval metrics (cosine).

  Args:
    path: the PNG to write.
    embeddings: ``[n, dim]`` embeddings of the split, in its order.
    labels: ``[n]`` their class ids.
    dataset: the `input_pipeline.Dataset` holding the split's images.
    split: ``'train'`` or ``'test'``.
    batch_size: rows per batch when reading the images.
    class_names: names of the class ids, for the captions.
    title: the picture's title.
    seed: picks the queries.
    num_queries: rows of the picture (one query per class, at most).
    k: neighbours per query (at most n - 1).

  Returns:
    `path`.
  """
  labels = np.asarray(labels)
  rows = choose_queries(len(labels), labels, num_queries, seed)
  k = min(k, len(labels) - 1)
  # k + 1 neighbours among all rows, then each query's own row dropped.
  scores, indices = retrieval.top_k_neighbours(
    np.asarray(embeddings)[rows], embeddings, k=k + 1
  )
  indices, scores = search_lib.without_self(indices, scores, rows)
  images = images_lib.split_images(
    dataset, split, np.concatenate([rows, indices.ravel()]), batch_size
  )
  names = (
    [str(name) for name in class_names]
    if class_names is not None
    else [str(label) for label in range(int(labels.max()) + 1)]
  )
  label_names = np.asarray(names)[labels]
  return plots.plot_retrieval(
    np.stack([images[row] for row in rows]),
    np.stack([[images[index] for index in row] for row in indices]),
    path,
    scores=scores,
    correct=labels[indices] == labels[rows][:, None],
    query_captions=list(label_names[rows]),
    neighbour_captions=[list(label_names[row]) for row in indices],
    title=title,
  )


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
  found = images_lib.split_images(
    dataset, embeddings.split, positions, batch_size
  )
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
  num_queries: int = NUM_QUERIES,
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
  rows = choose_queries(len(queries), queries.labels, num_queries, seed)
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
