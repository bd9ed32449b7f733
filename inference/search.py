"""Top-k neighbours of query embeddings in a gallery, by cosine similarity.

Exact search is the evaluation's own (`evaluation.retrieval.
top_k_neighbours`: queries in chunks against the whole gallery, in JAX);
`index='faiss'` uses an approximate faiss index (`inference.ann`) for
galleries past what exact search serves.
"""

import dataclasses

import numpy as np

from evaluation import retrieval
from inference import embeddings_file

INDEXES = ('exact', 'faiss')


@dataclasses.dataclass(frozen=True)
class Neighbours:
  """The k best gallery rows of every query, best first.

  Attributes:
    indices: int ``[n_queries, k]`` gallery rows.
    scores: float ``[n_queries, k]`` cosine similarities.
  """

  indices: np.ndarray
  scores: np.ndarray


def search(
  queries: np.ndarray,
  gallery: np.ndarray | None,
  *,
  k: int,
  index: str = 'exact',
  chunk_size: int = 1024,
  faiss_factory: str | None = None,
  faiss_parameters: str | None = None,
) -> Neighbours:
  """The k nearest gallery embeddings (cosine) of each query.

  Args:
    queries: ``[n, dim]`` floating query embeddings.
    gallery: ``[m, dim]`` floating gallery embeddings; None: the queries
      themselves, each query's own row excluded.
    k: neighbours per query.
    index: ``'exact'`` or ``'faiss'``.
    chunk_size: exact search: queries per score block (memory
      ``O(chunk_size * m)``).
    faiss_factory: faiss: the index factory string (`ann.DEFAULT_FACTORY`
      when None).
    faiss_parameters: faiss: search parameters, e.g. ``'efSearch=128'``;
      None: `ann.default_parameters` of the factory.

  Returns:
    The neighbours.

  Raises:
    ValueError: for an unknown index, a bad k or shapes that disagree.
    ImportError: ``index='faiss'`` without faiss (the ``ann`` extra).
  """
  if index not in INDEXES:
    raise ValueError(f'index must be one of {INDEXES}, received {index!r}')
  if index == 'faiss':
    # Imported only when asked for: faiss is an optional extra.
    from inference import ann  # pylint: disable=g-import-not-at-top

    indices, scores = ann.search(
      queries,
      gallery,
      k=k,
      factory=faiss_factory or ann.DEFAULT_FACTORY,
      parameters=faiss_parameters,
    )
    return Neighbours(indices=indices, scores=scores)
  scores, indices = retrieval.top_k_neighbours(
    queries, gallery, k=k, metric='cosine', chunk_size=chunk_size
  )
  return Neighbours(indices=indices, scores=scores)


def correct(
  queries: embeddings_file.Embeddings,
  gallery: embeddings_file.Embeddings,
  neighbours: Neighbours,
) -> np.ndarray | None:
  """bool ``[n, k]``: whether each neighbour has its query's class.

  Classes are compared by name where both files name them (a folder's
  ``5/`` is the class-disjoint test split's ``'5'``), else by id.

  Returns:
    The booleans, or None when either side has no labels.
  """
  query_names = queries.label_names()
  gallery_names = gallery.label_names()
  if query_names is None or gallery_names is None:
    return None
  query_names = np.asarray(query_names)
  gallery_names = np.asarray(gallery_names)
  return gallery_names[neighbours.indices] == query_names[:, None]
