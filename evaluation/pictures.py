"""Retrieval among a split as a picture: queries and their neighbours.

`evaluation.plots.plot_retrieval` draws the grid (neighbours framed green
when they share the query's class, red when not); this module picks the
queries and their neighbours. The images come from a callable, so that any
source (a data set's split, image files) can supply them.
"""

import os
from collections.abc import Callable, Sequence

import numpy as np

from evaluation import plots, retrieval

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


def write_split_retrieval(
  path: str | os.PathLike,
  embeddings: np.ndarray,
  labels: np.ndarray,
  *,
  read_images: Callable[[np.ndarray], dict[int, np.ndarray]],
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
    read_images: rows of the split -> {row: ``[H, W, C]`` image}.
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
  indices, scores = retrieval.without_self(indices, scores, rows)
  images = read_images(np.concatenate([rows, indices.ravel()]))
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
