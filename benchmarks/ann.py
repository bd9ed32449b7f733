r"""Approximate search (faiss) against exact search: recall@k and time.

Synthetic embeddings shaped like trained ones: ``--clusters`` classes, each
a direction on the unit sphere with its members spread around it,
L2-normalised; the queries are fresh draws of the same classes. Two
spreads (``--spreads``): 0.09, tight classes (cosine to their centre about
0.7 at dim 128), like the features of a well-trained model; 0.3, diffuse
(cosine about 0.3), close to uniform points, where every approximate index
has the hardest time.

Exact top-k is `evaluation.retrieval.top_k_neighbours` (the evaluation's
chunked search, in JAX, as ``search.py`` runs it); each faiss index
(``inference.ann``: cosine as inner product on normalised vectors) is
built once and searched at several search-time settings:

* ``Flat``: faiss's exact search, for reference;
* ``HNSW32,Flat``: the graph index of ``search.py --index=faiss`` (no
  training), ``efSearch`` = candidates kept while searching;
* ``IVF<nlist>,Flat``: an inverted file of k-means cells (trained on the
  gallery), ``nprobe`` = cells searched.

recall@k is the fraction of the exact top k that the index returns in its
top k, averaged over the queries. Times are wall-clock for all queries at
once (faiss on all cores through OpenMP).

Run: ``python -m benchmarks.ann`` (needs ``pip install -e '.[ann,bench]'``;
``--quick``: a 20k gallery).
"""

import time

import cpuinfo
import faiss
import jax
import numpy as np
from absl import app, flags

from evaluation import retrieval
from inference import ann

_GALLERY = flags.DEFINE_integer('gallery', 100_000, 'Gallery embeddings.')
_QUERIES = flags.DEFINE_integer('queries', 1_000, 'Query embeddings.')
_DIM = flags.DEFINE_integer('dim', 128, 'Embedding dimension.')
_CLUSTERS = flags.DEFINE_integer('clusters', 1_000, 'Classes (clusters).')
_SPREADS = flags.DEFINE_list(
  'spreads',
  ['0.09', '0.3'],
  'Per-coordinate standard deviations of a member around its class '
  'direction (cosine to it about 1 / sqrt(1 + dim * spread^2)), a table '
  'section each.',
)
_K = flags.DEFINE_integer('k', 10, 'Neighbours per query.')
_QUICK = flags.DEFINE_bool('quick', False, 'A 20k gallery, for a smoke run.')
_SEED = flags.DEFINE_integer('seed', 0, 'Data seed.')

# (factory, parameter name, values searched).
_INDEXES = (
  ('Flat', None, (None,)),
  ('HNSW32,Flat', 'efSearch', (16, 32, 64, 128, 256)),
  ('IVF{nlist},Flat', 'nprobe', (1, 4, 16, 64)),
)


def _embeddings(rng, centres, count, spread):
  labels = rng.integers(0, len(centres), count)
  points = centres[labels] + spread * rng.normal(size=(count, centres.shape[1]))
  points /= np.linalg.norm(points, axis=1, keepdims=True)
  return points.astype(np.float32)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
  k = exact.shape[1]
  return float(
    np.mean(
      [
        len(set(a.tolist()) & set(b.tolist())) / k
        for a, b in zip(found, exact, strict=True)
      ]
    )
  )


def _run(spread: float, gallery_size: int) -> None:
  """Prints the rows of one data set."""
  dim, k = _DIM.value, _K.value
  rng = np.random.default_rng(_SEED.value)
  centres = rng.normal(size=(_CLUSTERS.value, dim))
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  gallery = _embeddings(rng, centres, gallery_size, spread)
  queries = _embeddings(rng, centres, _QUERIES.value, spread)

  # Exact: once to compile, once timed.
  retrieval.top_k_neighbours(queries, gallery, k=k)
  start = time.perf_counter()
  _, exact = retrieval.top_k_neighbours(queries, gallery, k=k)
  exact_seconds = time.perf_counter() - start
  print(
    f'| {spread} | exact (JAX, `top_k_neighbours`) | chunk 1024 | – | '
    f'{exact_seconds:.3f} | 1.000 |',
    flush=True,
  )
  nlist = int(4 * np.sqrt(gallery_size))
  for factory, parameter, values in _INDEXES:
    factory = factory.format(nlist=nlist)
    start = time.perf_counter()
    index = ann.build(gallery, factory)
    build_seconds = time.perf_counter() - start
    for value in values:
      setting = '' if parameter is None else f'{parameter}={value}'
      start = time.perf_counter()
      found, _ = ann.query(index, queries, k, setting)
      seconds = time.perf_counter() - start
      print(
        f'| {spread} | faiss `{factory}` | {setting or "–"} | '
        f'{build_seconds:.1f} | {seconds:.3f} | {_recall(found, exact):.3f} |',
        flush=True,
      )


def main(argv):
  del argv
  gallery_size = 20_000 if _QUICK.value else _GALLERY.value
  print(
    f'jax {jax.__version__}, faiss {faiss.__version__}, '
    f'{cpuinfo.get_cpu_info()["brand_raw"]} ({faiss.omp_get_max_threads()} '
    f'threads); gallery {gallery_size:,} x {_DIM.value}, '
    f'{_QUERIES.value:,} queries, {_CLUSTERS.value:,} clusters, '
    f'k = {_K.value}'
  )
  print()
  header = ['spread', 'search', 'setting', 'build s', 'queries s']
  header.append(f'recall@{_K.value}')
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for spread in _SPREADS.value:
    _run(float(spread), gallery_size)


if __name__ == '__main__':
  app.run(main)
