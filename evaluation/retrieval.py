"""Retrieval and clustering metrics of embeddings (deep metric learning).

Semantics follow pytorch-metric-learning's ``AccuracyCalculator`` and the
protocol of Musgrave et al., "A Metric Learning Reality Check" (ECCV 2020):

* By default the reference set is the query set itself and each query's own
  row is excluded from its neighbours (the row, by index, not "the nearest
  point", so duplicate embeddings are still counted). A separate reference
  set may be given instead; nothing is excluded then.
* For a query with label y, R is the number of references labelled y (other
  than itself). Queries with R = 0 have no correct answer and are excluded
  from every kNN metric (their label is a "lone" label); the metrics average
  over the remaining queries, each query counting once.
* Neighbours are ranked by cosine similarity (default) or Euclidean
  distance. Ties are broken by `jax.lax.top_k` (in practice, the lower
  reference index first); with continuous embeddings they do not occur.

Memory: queries are processed ``chunk_size`` rows at a time. Each chunk
builds one ``[chunk_size, n_ref]`` score block by matrix product and keeps
only its top k neighbours, with k = max(max(ks), max R, knn_k), so 100k
queries never
need an ``[n, n]`` matrix. The work runs in JAX (on the default device: the
accelerator when there is one), compiled once per (k, chunk shape). The
search itself is public as `top_k_neighbours` (the neighbours and their
scores), for searching with the features beyond the metrics.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import cluster
from sklearn import metrics as sklearn_metrics

import losses
from common import checks

_METRICS = ('cosine', 'euclidean')
# Restarts of k-means for NMI; the clustering with the lowest inertia is kept.
KMEANS_N_INIT = 4


def _check_ks(ks: Any) -> tuple[int, ...]:
  if isinstance(ks, (int, np.integer)) or not isinstance(ks, Sequence):
    raise TypeError(
      f'`ks` must be a non-empty sequence of positive ints, received {ks!r}'
    )
  if not ks:
    raise ValueError(
      '`ks` must be a non-empty sequence of positive ints, received an '
      'empty sequence'
    )
  for k in ks:
    checks.check_positive_int(k, 'ks')
  return tuple(int(k) for k in ks)


def _check_embeddings_and_labels(
  embeddings: Any, labels: Any, embeddings_name: str, labels_name: str
) -> None:
  checks.check_embeddings_and_labels(
    embeddings,
    labels,
    embeddings_name=embeddings_name,
    labels_name=labels_name,
  )
  checks.check_non_empty(embeddings, embeddings_name)


def _same_label_counts(
  query_codes: np.ndarray,
  reference_codes: np.ndarray,
  num_codes: int,
  exclude_self: bool,
) -> np.ndarray:
  """R of every query: its label's reference count, itself excluded."""
  reference_counts = np.bincount(reference_codes, minlength=num_codes)
  return reference_counts[query_codes] - int(exclude_self)


def _chunk_top_k(
  queries: jax.Array,
  references: jax.Array,
  start: jax.Array,
  *,
  chunk_size: int,
  k: int,
  metric: str,
  exclude_self: bool,
) -> tuple[jax.Array, jax.Array]:
  """The k best references of query rows ``[start, start + chunk_size)``.

  The one neighbour search of this module: `top_k_neighbours` returns it,
  `retrieval_metrics` scores it. Traced inside their compiled functions.

  Args:
    queries: ``[n_padded, dim]`` queries (normalised for cosine), padded to
      a multiple of `chunk_size`.
    references: ``[n_ref, dim]`` references (normalised for cosine).
    start: scalar int, the first query row of this chunk.
    chunk_size: rows per chunk.
    k: neighbours retrieved per query.
    metric: ``'cosine'`` or ``'euclidean'``.
    exclude_self: whether query row i is reference row i and must be
      skipped.

  Returns:
    ``(scores, neighbours)``, each ``[chunk_size, k]``, best first: the
    ranking scores (cosine similarity; for Euclidean ``2 q.x - |x|^2``,
    which is ``-|q - x|^2`` up to the per-query constant ``|q|^2``) and the
    reference rows.
  """
  chunk = jax.lax.dynamic_slice_in_dim(queries, start, chunk_size)
  scores = chunk @ references.T
  if metric == 'euclidean':
    # -|q - x|^2 up to the per-query constant -|q|^2, which cannot change a
    # query's ranking.
    squared_norms = jnp.sum(references * references, axis=-1)
    scores = 2.0 * scores - squared_norms[None, :]
  if exclude_self:
    rows = jnp.arange(chunk_size)
    # Padding rows point past the last reference; 'drop' ignores them.
    scores = scores.at[rows, start + rows].set(-jnp.inf, mode='drop')
  return jax.lax.top_k(scores, k)


@functools.partial(
  jax.jit, static_argnames=('chunk_size', 'k', 'metric', 'exclude_self')
)
def _chunk_neighbours(
  queries: jax.Array,
  references: jax.Array,
  start: jax.Array,
  *,
  chunk_size: int,
  k: int,
  metric: str,
  exclude_self: bool,
) -> tuple[jax.Array, jax.Array]:
  """`_chunk_top_k` with Euclidean scores made ``-|q - x|^2``."""
  scores, neighbours = _chunk_top_k(
    queries,
    references,
    start,
    chunk_size=chunk_size,
    k=k,
    metric=metric,
    exclude_self=exclude_self,
  )
  if metric == 'euclidean':
    # Added after the ranking, so that rounding cannot reorder near ties.
    chunk = jax.lax.dynamic_slice_in_dim(queries, start, chunk_size)
    scores = scores - jnp.sum(chunk * chunk, axis=-1, keepdims=True)
  return scores, neighbours


@functools.partial(
  jax.jit,
  static_argnames=(
    'chunk_size',
    'k',
    'ks',
    'knn_k',
    'metric',
    'exclude_self',
  ),
)
def _chunk_metrics(
  queries: jax.Array,
  query_codes: jax.Array,
  same_label_counts: jax.Array,
  references: jax.Array,
  reference_codes: jax.Array,
  start: jax.Array,
  *,
  chunk_size: int,
  k: int,
  ks: tuple[int, ...],
  knn_k: int,
  metric: str,
  exclude_self: bool,
) -> tuple[jax.Array, ...]:
  """Per-query kNN metrics of rows ``[start, start + chunk_size)``.

  Args:
    queries: ``[n_padded, dim]`` queries (normalised for cosine), padded to
      a multiple of `chunk_size`.
    query_codes: ``[n_padded]`` label codes of the queries.
    same_label_counts: ``[n_padded]`` R of every query.
    references: ``[n_ref, dim]`` references (normalised for cosine).
    reference_codes: ``[n_ref]`` label codes of the references.
    start: scalar int, the first query row of this chunk.
    chunk_size: rows per chunk.
    k: neighbours retrieved per query.
    ks: the K of Recall@K (each <= k after capping).
    knn_k: the neighbours MRR and MAP@k look at (<= k).
    metric: ``'cosine'`` or ``'euclidean'``.
    exclude_self: whether query row i is reference row i and must be
      skipped.

  Returns:
    ``(hits, r_precision, map_at_r, reciprocal_rank, map_at_k)``:
    ``[chunk_size, len(ks)]`` booleans (a correct neighbour among the
    first K) and four ``[chunk_size]`` floats.
  """
  codes = jax.lax.dynamic_slice_in_dim(query_codes, start, chunk_size)
  r = jax.lax.dynamic_slice_in_dim(same_label_counts, start, chunk_size)
  _, neighbours = _chunk_top_k(
    queries,
    references,
    start,
    chunk_size=chunk_size,
    k=k,
    metric=metric,
    exclude_self=exclude_self,
  )
  relevant = reference_codes[neighbours] == codes[:, None]  # [chunk, k]
  hits = jnp.stack(
    [jnp.any(relevant[:, :cutoff], axis=1) for cutoff in ks], axis=1
  )
  ranks = jnp.arange(1, k + 1)
  relevant_within_r = relevant & (ranks[None, :] <= r[:, None])
  safe_r = jnp.maximum(r, 1).astype(queries.dtype)
  r_precision = jnp.sum(relevant_within_r, axis=1) / safe_r
  precision_at_rank = jnp.cumsum(relevant, axis=1) / ranks[None, :]
  map_at_r = (
    jnp.sum(jnp.where(relevant_within_r, precision_at_rank, 0.0), axis=1)
    / safe_r
  )
  relevant_within_k = relevant & (ranks[None, :] <= knn_k)
  first = jnp.argmax(relevant_within_k, axis=1)
  reciprocal_rank = jnp.where(
    jnp.any(relevant_within_k, axis=1), 1.0 / (first + 1.0), 0.0
  ).astype(queries.dtype)
  # PML's mean_average_precision: divided by the correct neighbours found
  # among the k (at least 1), not by R.
  found = jnp.maximum(jnp.sum(relevant_within_k, axis=1), 1)
  map_at_k = jnp.sum(
    jnp.where(relevant_within_k, precision_at_rank, 0.0), axis=1
  ) / found.astype(queries.dtype)
  return hits, r_precision, map_at_r, reciprocal_rank, map_at_k


def _prepared(
  queries: Any,
  references: Any | None,
  metric: str,
  chunk_size: int,
) -> tuple[jax.Array, jax.Array, int, int]:
  """Queries and references as the chunk functions take them.

  Args:
    queries: ``[n, dim]`` floating queries.
    references: ``[m, dim]`` floating references, or None when the queries
      are their own references.
    metric: ``'cosine'`` (both sides L2-normalised) or ``'euclidean'``.
    chunk_size: the requested rows per chunk.

  Returns:
    ``(queries, references, chunk_size, padding)``: the queries padded with
    `padding` zero rows to a multiple of the chunk size actually used.
  """
  num_queries = np.shape(queries)[0]
  dtype = jax.dtypes.canonicalize_dtype(
    np.promote_types(
      np.result_type(
        np.asarray(queries),
        *(() if references is None else (np.asarray(references),)),
      ),
      np.float32,
    )
  )
  query_array = jnp.asarray(queries, dtype)
  reference_array = (
    query_array if references is None else jnp.asarray(references, dtype)
  )
  if metric == 'cosine':
    query_array = losses.l2_normalize(query_array)
    reference_array = (
      query_array
      if references is None
      else losses.l2_normalize(reference_array)
    )
  # One chunk shape for every chunk (the last one padded) compiles once;
  # small query sets are not padded up to the default chunk size.
  chunk_size = min(chunk_size, num_queries)
  padding = -num_queries % chunk_size
  query_array = jnp.pad(query_array, ((0, padding), (0, 0)))
  return query_array, reference_array, chunk_size, padding


def top_k_neighbours(
  queries: Any,
  references: Any = None,
  *,
  k: int,
  metric: str = 'cosine',
  chunk_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
  """Exact k nearest references of every query, best first.

  The search `retrieval_metrics` scores, on its own: queries go through
  ``chunk_size`` rows at a time against all references (memory
  ``O(chunk_size * m)``), compiled once per (k, chunk shape).

  Args:
    queries: ``[n, dim]`` floating queries.
    references: ``[m, dim]`` floating references; None: the queries
      themselves, each query's own row excluded.
    k: neighbours per query, at most the references available.
    metric: ``'cosine'`` or ``'euclidean'``.
    chunk_size: queries per score block.

  Returns:
    ``(scores, indices)``, each ``[n, k]``: cosine similarities (for
    ``'euclidean'``: negated squared distances, so higher is nearer in both)
    in the dtype of the inputs (at least float32), and int32 reference rows.
    Ties go to the lower reference row (`jax.lax.top_k`).

  Raises:
    ValueError: on wrong ranks, dims that differ, empty inputs, an unknown
      `metric`, or k outside [1, available references].
    TypeError: on non-floating inputs or a non-int `k` / `chunk_size`.
  """
  checks.check_rank(queries, 2, 'queries', '[n, dim]')
  checks.check_floating(queries, 'queries')
  checks.check_choice(metric, 'metric', _METRICS)
  checks.check_positive_int(k, 'k')
  checks.check_positive_int(chunk_size, 'chunk_size')
  exclude_self = references is None
  if not exclude_self:
    checks.check_rank(references, 2, 'references', '[m, dim]')
    checks.check_floating(references, 'references')
    checks.check_dim(
      np.shape(references)[1],
      np.shape(queries)[1],
      'references',
      1,
      'dim of `queries`',
    )
  checks.check_non_empty(queries, 'queries')
  num_queries = np.shape(queries)[0]
  available = num_queries - 1 if exclude_self else np.shape(references)[0]
  if k > available:
    raise ValueError(
      f'`k` must be at most the {available} references available'
      + (' (the queries less the self-match)' if exclude_self else '')
      + f', received {k}'
    )
  query_array, reference_array, chunk_size, padding = _prepared(
    queries, references, metric, chunk_size
  )
  scores, indices = [], []
  for start in range(0, num_queries + padding, chunk_size):
    chunk_scores, chunk_indices = _chunk_neighbours(
      query_array,
      reference_array,
      jnp.asarray(start, jnp.int32),
      chunk_size=chunk_size,
      k=k,
      metric=metric,
      exclude_self=exclude_self,
    )
    scores.append(np.asarray(chunk_scores))
    indices.append(np.asarray(chunk_indices))
  return (
    np.concatenate(scores)[:num_queries],
    np.concatenate(indices)[:num_queries],
  )


def kmeans_nmi(
  embeddings: Any, labels: Any, *, metric: str = 'cosine', seed: int = 0
) -> float:
  """NMI between the labels and a k-means clustering of the embeddings.

  Runs scikit-learn ``KMeans(n_clusters=<number of distinct labels>,
  n_init=KMEANS_N_INIT, random_state=seed)`` and scores its assignment with
  ``sklearn.metrics.normalized_mutual_info_score`` (arithmetic-mean
  normalisation). With ``metric='cosine'`` the embeddings are L2-normalised
  first, so the clustering sees the geometry the retrieval metrics rank by.

  Args:
    embeddings: ``[n, dim]`` floating embeddings.
    labels: ``[n]`` integer class ids.
    metric: ``'cosine'`` or ``'euclidean'``.
    seed: the k-means random state.

  Returns:
    NMI in ``[0, 1]``, as a Python float.

  Raises:
    ValueError: on wrong ranks, mismatched lengths, empty inputs or an
      unknown `metric`.
    TypeError: on non-floating `embeddings` or non-integer `labels`.
  """
  _check_embeddings_and_labels(embeddings, labels, 'embeddings', 'labels')
  checks.check_choice(metric, 'metric', _METRICS)
  labels = np.asarray(labels)
  assignment = _kmeans_assignment(embeddings, labels, metric, seed)
  return float(sklearn_metrics.normalized_mutual_info_score(labels, assignment))


def _kmeans_assignment(
  embeddings: Any, labels: np.ndarray, metric: str, seed: int
) -> np.ndarray:
  """`kmeans_nmi`'s clustering: one cluster per distinct label."""
  x = np.asarray(embeddings)
  x = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
  if metric == 'cosine':
    # x64 on for this call only, so that float64 features stay float64.
    with jax.enable_x64(True):
      x = np.asarray(losses.l2_normalize(x))
  num_clusters = len(np.unique(labels))
  return cluster.KMeans(
    n_clusters=num_clusters, n_init=KMEANS_N_INIT, random_state=seed
  ).fit_predict(x)


def retrieval_metrics(
  embeddings: Any,
  labels: Any,
  *,
  ks: Sequence[int] = (1, 2, 4, 8),
  metric: str = 'cosine',
  reference_embeddings: Any = None,
  reference_labels: Any = None,
  knn_k: int | None = None,
  average_per_class: bool = False,
  chunk_size: int = 1024,
  with_nmi: bool = True,
  seed: int = 0,
) -> dict[str, float]:
  r"""Recall@K, precision@1, R-precision, MAP@R, MRR, MAP@k, NMI and AMI.

  For an included query (see the module docstring) with R same-label
  references, let :math:`\mathrm{rel}(i) \in \{0, 1\}` say whether its i-th
  nearest reference shares its label, and
  :math:`P(i) = \frac{1}{i}\sum_{j \le i} \mathrm{rel}(j)`:

  * ``recall@K`` = 1 if any of the K nearest references shares the label,
    else 0 (the deep metric learning Recall@K of Oh Song et al., CVPR 2016,
    not the information-retrieval recall). K larger than the number of
    references available is capped to it.
  * ``precision@1`` = rel(1) (equal to ``recall@1``; reported under both
    names as the two literatures do).
  * ``r_precision`` = :math:`\frac{1}{R}\sum_{i \le R} \mathrm{rel}(i)`.
  * ``map@r`` = :math:`\frac{1}{R}\sum_{i \le R} P(i)\,\mathrm{rel}(i)`
    (Musgrave et al. 2020).
  * ``mrr`` = 1 / the rank of the first correct neighbour among the k
    nearest, 0 when none of them is correct (PML's
    ``mean_reciprocal_rank``).
  * ``map@k`` = :math:`\frac{1}{F}\sum_{i \le k} P(i)\,\mathrm{rel}(i)`,
    with F the correct neighbours among the k nearest, 0 when F = 0
    (PML's ``mean_average_precision``, which divides by F, not by R).

  Here k is `knn_k`, by default PML's default (``k=None``, "max bin
  count"): the count of the most frequent reference label, the query's own
  row included when the queries are their own references; capped at the
  references available.

  Each is averaged over the included queries, or, with
  `average_per_class`, averaged per query label first and then over the
  labels (PML's ``avg_of_avgs``); they are NaN when no query is included
  (every label occurs once; PML returns 0). ``nmi`` is `kmeans_nmi` of the
  query embeddings and labels (all queries, lone labels included) and
  ``ami`` scikit-learn's ``adjusted_mutual_info_score`` of the same
  clustering (PML's ``AMI``; its clustering is faiss k-means, ours
  scikit-learn's).

  Args:
    embeddings: ``[n, dim]`` floating query embeddings.
    labels: ``[n]`` integer query labels.
    ks: the K of Recall@K, each a positive int.
    metric: ``'cosine'`` (rank by cosine similarity) or ``'euclidean'``
      (rank by Euclidean distance).
    reference_embeddings: optional ``[m, dim]`` floating reference
      embeddings; defaults to the queries, with self-matches excluded.
    reference_labels: ``[m]`` integer reference labels; required exactly
      when `reference_embeddings` is given.
    knn_k: the neighbours MRR and MAP@k look at, a positive int; None:
      PML's default above.
    average_per_class: average each kNN metric per label first.
    chunk_size: queries per score block; memory is
      ``O(chunk_size * m)``.
    with_nmi: whether to run k-means and report ``'nmi'`` and ``'ami'``.
    seed: the k-means random state.

  Returns:
    ``{'recall@K' for K in ks, 'precision@1', 'r_precision', 'map@r',
    'mrr', 'map@k'}`` plus ``'nmi'`` and ``'ami'`` when `with_nmi`, as
    Python floats in ``[0, 1]`` (AMI can fall below 0).

  Raises:
    ValueError: on wrong ranks or lengths, a non-positive K or
      `chunk_size`, an unknown `metric`, only one of the reference
      arguments, or no reference left to retrieve.
    TypeError: on non-floating embeddings, non-integer labels or non-int
      `ks` / `chunk_size`.
  """
  _check_embeddings_and_labels(embeddings, labels, 'embeddings', 'labels')
  ks = _check_ks(ks)
  checks.check_choice(metric, 'metric', _METRICS)
  checks.check_positive_int(chunk_size, 'chunk_size')
  checks.check_optional_positive_int(knn_k, 'knn_k')
  checks.check_python_bool(average_per_class, 'average_per_class')
  if (reference_embeddings is None) != (reference_labels is None):
    raise ValueError(
      '`reference_embeddings` and `reference_labels` must be given '
      'together, received only '
      + (
        '`reference_embeddings`'
        if reference_labels is None
        else '`reference_labels`'
      )
    )
  exclude_self = reference_embeddings is None
  if exclude_self:
    reference_embeddings, reference_labels = embeddings, labels
  else:
    _check_embeddings_and_labels(
      reference_embeddings,
      reference_labels,
      'reference_embeddings',
      'reference_labels',
    )
    checks.check_dim(
      np.shape(reference_embeddings)[1],
      np.shape(embeddings)[1],
      'reference_embeddings',
      1,
      'dim of `embeddings`',
    )

  num_queries = np.shape(labels)[0]
  num_references = np.shape(reference_labels)[0]
  available = num_references - int(exclude_self)
  if available < 1:
    raise ValueError(
      '`embeddings` must hold at least 2 rows when the queries are their '
      f'own references (one is excluded as the self-match), received '
      f'{num_queries}'
    )

  # Codes 0..U-1 shared by queries and references: comparisons stay exact
  # whatever the label dtype (JAX would truncate int64 without x64).
  query_labels = np.asarray(labels)
  uniques, codes = np.unique(
    np.concatenate([query_labels, np.asarray(reference_labels)]),
    return_inverse=True,
  )
  query_codes, reference_codes = codes[:num_queries], codes[num_queries:]
  r = _same_label_counts(
    query_codes, reference_codes, len(uniques), exclude_self
  )
  included = r > 0
  if knn_k is None:
    knn_k = int(np.bincount(reference_codes).max())
  knn_k = min(knn_k, available)
  k = min(max(max(ks), int(r.max()), knn_k), available)

  queries, references, chunk_size, padding = _prepared(
    embeddings,
    None if exclude_self else reference_embeddings,
    metric,
    chunk_size,
  )
  padded_codes = jnp.asarray(np.pad(query_codes, (0, padding)), jnp.int32)
  padded_r = jnp.asarray(np.pad(r, (0, padding)), jnp.int32)
  reference_codes = jnp.asarray(reference_codes, jnp.int32)

  parts = ([], [], [], [], [])
  for start in range(0, num_queries + padding, chunk_size):
    chunk = _chunk_metrics(
      queries,
      padded_codes,
      padded_r,
      references,
      reference_codes,
      jnp.asarray(start, jnp.int32),
      chunk_size=chunk_size,
      k=k,
      # The last column is precision@1, whatever `ks` holds.
      ks=tuple(min(cutoff, k) for cutoff in ks) + (1,),
      knn_k=knn_k,
      metric=metric,
      exclude_self=exclude_self,
    )
    for results, value in zip(parts, chunk, strict=True):
      results.append(np.asarray(value))
  hits, r_precision, map_at_r, reciprocal_rank, map_at_k = (
    np.concatenate(part)[:num_queries][included] for part in parts
  )
  included_codes = query_codes[included]

  def mean(values: np.ndarray) -> float:
    if not len(values):
      return np.nan
    values = values.astype(np.float64)
    if not average_per_class:
      return float(np.mean(values))
    _, per_label = np.unique(included_codes, return_inverse=True)
    sums = np.bincount(per_label, weights=values)
    return float(np.mean(sums / np.bincount(per_label)))

  result = {f'recall@{cutoff}': mean(hits[:, i]) for i, cutoff in enumerate(ks)}
  result['precision@1'] = mean(hits[:, -1])
  result['r_precision'] = mean(r_precision)
  result['map@r'] = mean(map_at_r)
  result['mrr'] = mean(reciprocal_rank)
  result['map@k'] = mean(map_at_k)
  if with_nmi:
    assignment = _kmeans_assignment(embeddings, query_labels, metric, seed)
    result['nmi'] = float(
      sklearn_metrics.normalized_mutual_info_score(query_labels, assignment)
    )
    result['ami'] = float(
      sklearn_metrics.adjusted_mutual_info_score(query_labels, assignment)
    )
  return result


def without_self(
  indices: np.ndarray, scores: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Drops each query's own gallery row from its k + 1 neighbours.

  Args:
    indices: ``[n, k + 1]`` gallery rows found for queries that are
      themselves gallery rows.
    scores: their ``[n, k + 1]`` scores.
    rows: ``[n]`` each query's own gallery row.

  Returns:
    ``(indices, scores)``, each ``[n, k]``: without the own row, or, where
    it was not found (a duplicate scored first, an approximate search
    missed it), without the last neighbour.
  """
  n, k_plus_one = indices.shape
  own = indices == np.asarray(rows)[:, None]
  drop = np.where(own.any(axis=1), own.argmax(axis=1), k_plus_one - 1)
  keep = np.ones_like(own)
  keep[np.arange(n), drop] = False
  return (
    indices[keep].reshape(n, k_plus_one - 1),
    scores[keep].reshape(n, k_plus_one - 1),
  )
