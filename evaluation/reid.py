"""Person re-identification metrics: CMC, mAP and mINP (Market-1501 protocol).

Semantics follow ``eval_market1501`` of torchreid
(``torchreid/metrics/rank.py``, K. Zhou, "deep-person-reid"), which
fast-reid's and the Bag-of-Tricks baseline's (Luo et al. 2019) evaluations
copy; mINP is the one fast-reid adds there, Ye et al.'s definition
("Deep learning for person re-identification: a survey and outlook",
TPAMI 2021):

* Each query ranks the whole gallery by distance, nearest first.
* Gallery images of the query's identity taken by the query's camera are
  removed from that query's ranking (they would be near-duplicates of the
  same track).
* Gallery images with identity -1 are junk: removed from every ranking.
  torchreid drops them when it reads Market-1501 / DukeMTMC-reID (its
  ranking never sees them) and the original Market-1501 MATLAB evaluation
  marks them junk; both give these values. Distractors (identity 0 in
  Market-1501) are ordinary gallery images that match no query.
* A query with no match left (its identity absent from the gallery, or
  only taken by its own camera) is skipped and counted in
  ``num_skipped_queries``; torchreid skips them silently. A query with
  identity -1 is skipped as well (no gallery image may match it).

Known differences: torchreid sorts with ``np.argsort``'s quicksort, whose
order among tied distances is unspecified; here ties go to the lower
gallery row. torchreid caps the largest CMC rank at the gallery size and
fails on a query with fewer remaining gallery images than that rank; here
``cmc@K`` for such a query is 1 once its first match is ranked.

Memory: queries are processed ``chunk_size`` rows at a time; each chunk
sorts one ``[chunk_size, n_gallery]`` distance block (the metrics need the
rank of every match, not only the first few), so a 20k x 80k evaluation
never holds more than a few such blocks. The work runs in JAX on the
default device, compiled once per chunk shape.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common import checks
from evaluation import retrieval

_METRICS = ('cosine', 'euclidean')
JUNK_ID = -1


def _check_ranks(ranks: Any) -> tuple[int, ...]:
  if isinstance(ranks, (int, np.integer)) or not isinstance(ranks, Sequence):
    raise TypeError(
      f'`ranks` must be a non-empty sequence of positive ints, received '
      f'{ranks!r}'
    )
  if not ranks:
    raise ValueError(
      '`ranks` must be a non-empty sequence of positive ints, received an '
      'empty sequence'
    )
  for rank in ranks:
    checks.check_positive_int(rank, 'ranks')
  return tuple(int(rank) for rank in ranks)


def _check_side(embeddings, ids, cameras, side: str) -> None:
  checks.check_embeddings_and_labels(
    embeddings,
    ids,
    embeddings_name=f'{side}_embeddings',
    labels_name=f'{side}_ids',
  )
  checks.check_non_empty(embeddings, f'{side}_embeddings')
  checks.check_rank(cameras, 1, f'{side}_cameras', '[n]')
  checks.check_integer(cameras, f'{side}_cameras')
  checks.check_dim(
    np.shape(cameras)[0],
    np.shape(ids)[0],
    f'{side}_cameras',
    0,
    f'length of `{side}_ids`',
  )


@functools.partial(jax.jit, static_argnames=('chunk_size', 'ranks', 'metric'))
def _chunk_metrics(
  queries: jax.Array,
  query_ids: jax.Array,
  query_cameras: jax.Array,
  gallery: jax.Array,
  gallery_ids: jax.Array,
  gallery_cameras: jax.Array,
  gallery_valid: jax.Array,
  start: jax.Array,
  *,
  chunk_size: int,
  ranks: tuple[int, ...],
  metric: str,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Per-query re-id metrics of query rows ``[start, start + chunk_size)``.

  Args:
    queries: ``[n_padded, dim]`` queries (normalised for cosine), padded to
      a multiple of `chunk_size`.
    query_ids: ``[n_padded]`` identity codes of the queries.
    query_cameras: ``[n_padded]`` camera codes of the queries.
    gallery: ``[m, dim]`` gallery (normalised for cosine).
    gallery_ids: ``[m]`` identity codes of the gallery.
    gallery_cameras: ``[m]`` camera codes of the gallery.
    gallery_valid: ``[m]`` False for junk gallery rows.
    start: scalar int, the first query row of this chunk.
    chunk_size: rows per chunk.
    ranks: the K of CMC@K.
    metric: ``'cosine'`` or ``'euclidean'``.

  Returns:
    ``(hits, average_precision, inverse_negative_penalty, valid)``:
    ``[chunk_size, len(ranks)]`` booleans (a match among the first K),
    ``[chunk_size]`` floats, ``[chunk_size]`` floats and ``[chunk_size]``
    booleans (the query has a match left).
  """
  chunk = jax.lax.dynamic_slice_in_dim(queries, start, chunk_size)
  ids = jax.lax.dynamic_slice_in_dim(query_ids, start, chunk_size)
  cameras = jax.lax.dynamic_slice_in_dim(query_cameras, start, chunk_size)
  scores = chunk @ gallery.T
  if metric == 'euclidean':
    # -|q - x|^2 up to the per-query constant -|q|^2, which cannot change a
    # query's ranking.
    scores = 2.0 * scores - jnp.sum(gallery * gallery, axis=-1)[None, :]
  # Stable: among tied scores the lower gallery row comes first.
  order = jnp.argsort(-scores, axis=1, stable=True)
  same_id = gallery_ids[order] == ids[:, None]
  same_camera = gallery_cameras[order] == cameras[:, None]
  keep = gallery_valid[order] & ~(same_id & same_camera)
  match = same_id & keep
  # Rank of each kept gallery image in the query's ranking, from 1.
  kept_rank = jnp.cumsum(keep, axis=1, dtype=jnp.int32)
  num_matches = jnp.sum(match, axis=1, dtype=jnp.int32)
  valid = num_matches > 0
  dtype = queries.dtype
  precision = jnp.cumsum(match, axis=1, dtype=jnp.int32) / jnp.maximum(
    kept_rank, 1
  ).astype(dtype)
  safe_matches = jnp.maximum(num_matches, 1).astype(dtype)
  average_precision = (
    jnp.sum(jnp.where(match, precision, 0.0), axis=1) / safe_matches
  )
  largest = jnp.iinfo(jnp.int32).max
  first = jnp.min(jnp.where(match, kept_rank, largest), axis=1)
  last = jnp.max(jnp.where(match, kept_rank, 0), axis=1)
  hits = first[:, None] <= jnp.asarray(ranks)[None, :]
  inverse_negative_penalty = num_matches / jnp.maximum(last, 1).astype(dtype)
  return hits, average_precision, inverse_negative_penalty, valid


def reid_metrics(
  query_embeddings: Any,
  query_ids: Any,
  query_cameras: Any,
  gallery_embeddings: Any,
  gallery_ids: Any,
  gallery_cameras: Any,
  *,
  ranks: Sequence[int] = (1, 5, 10),
  metric: str = 'euclidean',
  chunk_size: int = 256,
) -> dict[str, float]:
  r"""CMC@K, mAP and mINP of query-against-gallery re-identification.

  For a query (see the module docstring for the images removed from its
  ranking) with G matches left among the gallery images left, let
  :math:`\mathrm{rel}(i) \in \{0, 1\}` say whether the i-th nearest of
  them has the query's identity, :math:`P(i) = \frac{1}{i}\sum_{j \le i}
  \mathrm{rel}(j)`, and :math:`R_\mathrm{hard}` be the rank of its last
  (hardest) match:

  * ``cmc@K`` = 1 if a match is among the K nearest, else 0.
  * ``map``: the average precision
    :math:`\frac{1}{G}\sum_i P(i)\,\mathrm{rel}(i)` over the whole ranking.
  * ``minp``: the inverse negative penalty
    :math:`G / R_\mathrm{hard}` (Ye et al. 2021), 1 when every match
    precedes every non-match.

  Each is averaged over the valid queries (those with G >= 1), NaN when
  there is none; ``num_valid_queries`` and ``num_skipped_queries`` count
  them.

  Example:
    >>> x = np.array([[0.0], [1.0], [5.0]])
    >>> reid_metrics(x[:1], np.array([1]), np.array([0]),
    ...              x[1:], np.array([1, 2]), np.array([1, 1]))['map']
    1.0

  Args:
    query_embeddings: ``[n, dim]`` floating query features.
    query_ids: ``[n]`` integer identities.
    query_cameras: ``[n]`` integer camera ids.
    gallery_embeddings: ``[m, dim]`` floating gallery features.
    gallery_ids: ``[m]`` integer identities; -1 marks junk images.
    gallery_cameras: ``[m]`` integer camera ids.
    ranks: the K of CMC@K, each a positive int.
    metric: ``'euclidean'`` (rank by Euclidean distance, torchreid's
      default) or ``'cosine'`` (by cosine distance).
    chunk_size: queries per distance block; memory is
      ``O(chunk_size * m)``.

  Returns:
    ``{'cmc@K' for K in ranks, 'map', 'minp'}`` as Python floats in
    ``[0, 1]`` (fractions, not percentages), plus ``'num_valid_queries'``
    and ``'num_skipped_queries'`` as ints.

  Raises:
    ValueError: on wrong ranks or lengths, empty inputs, dims that differ,
      a non-positive rank or `chunk_size`, or an unknown `metric`.
    TypeError: on non-floating embeddings, non-integer ids or cameras, or
      non-int `ranks` / `chunk_size`.
  """
  _check_side(query_embeddings, query_ids, query_cameras, 'query')
  _check_side(gallery_embeddings, gallery_ids, gallery_cameras, 'gallery')
  checks.check_dim(
    np.shape(gallery_embeddings)[1],
    np.shape(query_embeddings)[1],
    'gallery_embeddings',
    1,
    'dim of `query_embeddings`',
  )
  ranks = _check_ranks(ranks)
  checks.check_choice(metric, 'metric', _METRICS)
  checks.check_positive_int(chunk_size, 'chunk_size')

  num_queries = np.shape(query_ids)[0]
  # Codes shared by both sides: comparisons stay exact whatever the id
  # dtype (JAX would truncate int64 without x64).
  _, id_codes = np.unique(
    np.concatenate([np.asarray(query_ids), np.asarray(gallery_ids)]),
    return_inverse=True,
  )
  _, camera_codes = np.unique(
    np.concatenate([np.asarray(query_cameras), np.asarray(gallery_cameras)]),
    return_inverse=True,
  )
  gallery_valid = np.asarray(gallery_ids) != JUNK_ID

  queries, gallery, chunk_size, padding = retrieval._prepared(
    query_embeddings, gallery_embeddings, metric, chunk_size
  )

  def padded(codes: np.ndarray) -> jax.Array:
    return jnp.asarray(np.pad(codes, (0, padding)), jnp.int32)

  arguments = (
    queries,
    padded(id_codes[:num_queries]),
    padded(camera_codes[:num_queries]),
    gallery,
    jnp.asarray(id_codes[num_queries:], jnp.int32),
    jnp.asarray(camera_codes[num_queries:], jnp.int32),
    jnp.asarray(gallery_valid),
  )
  parts = ([], [], [], [])
  for start in range(0, num_queries + padding, chunk_size):
    chunk = _chunk_metrics(
      *arguments,
      jnp.asarray(start, jnp.int32),
      chunk_size=chunk_size,
      ranks=ranks,
      metric=metric,
    )
    for results, value in zip(parts, chunk, strict=True):
      results.append(np.asarray(value))
  hits, average_precision, inverse_negative_penalty, valid = (
    np.concatenate(part)[:num_queries] for part in parts
  )

  def mean(values: np.ndarray) -> float:
    values = values[valid]
    return float(np.mean(values, dtype=np.float64)) if len(values) else np.nan

  result = {f'cmc@{rank}': mean(hits[:, i]) for i, rank in enumerate(ranks)}
  result['map'] = mean(average_precision)
  result['minp'] = mean(inverse_negative_penalty)
  result['num_valid_queries'] = int(np.sum(valid))
  result['num_skipped_queries'] = int(num_queries - np.sum(valid))
  return result
