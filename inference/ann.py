"""Approximate cosine top-k through a faiss index (the ``ann`` extra).

The embeddings are L2-normalised and searched by inner product, so scores
are cosine similarities as in exact search. Any faiss index factory string
works; the default, HNSW with 32 links per node, needs no training. Search
parameters default by index family (`default_parameters`): ``efSearch=64``
for HNSW, ``nprobe=16`` for IVF, where synthetic features with tight
classes get a recall@10 of 0.99 and more (``python -m benchmarks.ann``,
benchmarks/README.md); features spread almost uniformly get far less, and
exact search is then the better choice.

Needs ``pip install -e '.[ann]'`` (faiss-cpu, about 66 MB installed).
"""

import numpy as np

from evaluation import retrieval

DEFAULT_FACTORY = 'HNSW32,Flat'
_DEFAULT_PARAMETERS = (('HNSW', 'efSearch=64'), ('IVF', 'nprobe=16'))


def default_parameters(factory: str) -> str:
  """The search parameters used for `factory` when none are given."""
  for prefix, parameters in _DEFAULT_PARAMETERS:
    if factory.startswith(prefix):
      return parameters
  return ''


def _faiss():
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
      "Approximate search needs faiss: pip install -e '.[ann]' (faiss-cpu)"
    ) from error
  return faiss


def _normalised(x: np.ndarray) -> np.ndarray:
  x = np.ascontiguousarray(x, np.float32)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  # As losses.l2_normalize: a zero row stays zero.
  return x / np.maximum(norms, 1e-12)


def build(gallery: np.ndarray, factory: str = DEFAULT_FACTORY):
  """A faiss index of the L2-normalised gallery, by inner product.

  Args:
    gallery: ``[m, dim]`` embeddings.
    factory: a faiss index factory string (``'HNSW32,Flat'``,
      ``'IVF1024,Flat'``, ``'Flat'``...). Indexes that need training
      (IVF, PQ) are trained on the gallery itself.

  Returns:
    The faiss index.
  """
  faiss = _faiss()
  vectors = _normalised(gallery)
  index = faiss.index_factory(
    vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT
  )
  if not index.is_trained:
    index.train(vectors)
  index.add(vectors)
  return index


def query(
  index, queries: np.ndarray, k: int, parameters: str
) -> tuple[np.ndarray, np.ndarray]:
  """``(indices, scores)``, each ``[n, k]``, from a `build` index.

  Args:
    index: the index.
    queries: ``[n, dim]`` embeddings.
    k: neighbours per query.
    parameters: faiss search parameters (``'efSearch=128'``,
      ``'nprobe=16'``); empty keeps the index's own (faiss's defaults).
  """
  faiss = _faiss()
  if parameters:
    faiss.ParameterSpace().set_index_parameters(index, parameters)
  scores, indices = index.search(_normalised(queries), k)
  return indices.astype(np.int64), scores


def search(
  queries: np.ndarray,
  gallery: np.ndarray | None,
  *,
  k: int,
  factory: str = DEFAULT_FACTORY,
  parameters: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Approximate cosine top-k: ``(indices, scores)``, each ``[n, k]``.

  Args:
    queries: ``[n, dim]`` query embeddings.
    gallery: ``[m, dim]`` gallery embeddings; None: the queries, each
      query's own row excluded.
    k: neighbours per query (at most the gallery size; fewer found are
      marked -1 by faiss).
    factory: the faiss index factory string.
    parameters: faiss search parameters; None: `default_parameters`.
  """
  if parameters is None:
    parameters = default_parameters(factory)
  exclude_self = gallery is None
  index = build(queries if exclude_self else gallery, factory)
  if not exclude_self:
    return query(index, queries, k, parameters)
  indices, scores = query(index, queries, k + 1, parameters)
  return retrieval.without_self(indices, scores, np.arange(len(queries)))
