"""Search results as records, and those written as JSON, CSV or text.

One record per query: its name (file or ``split[position]``), its class
where known, and its neighbours best first, each with its gallery name,
class, cosine score and, when both sides have classes, whether it is
correct.
"""

import csv
import json
import os
from typing import Any

import numpy as np

from inference import embeddings_file
from inference import search as search_lib

FORMATS = ('.json', '.csv')


def records(
  queries: embeddings_file.Embeddings,
  gallery: embeddings_file.Embeddings,
  neighbours: search_lib.Neighbours,
  correct: np.ndarray | None,
) -> list[dict[str, Any]]:
  """The search's results, one JSON-ready dict per query."""
  query_names = queries.names()
  query_labels = queries.label_names()
  gallery_names = gallery.names()
  gallery_labels = gallery.label_names()
  results = []
  for row, query_name in enumerate(query_names):
    found = []
    for rank, (index, score) in enumerate(
      zip(neighbours.indices[row], neighbours.scores[row], strict=True)
    ):
      if index < 0:  # faiss found fewer than k.
        continue
      neighbour = {
        'rank': rank + 1,
        'gallery': gallery_names[index],
        'gallery_row': int(index),
        'score': float(score),
      }
      if gallery_labels is not None:
        neighbour['label'] = gallery_labels[index]
      if correct is not None:
        neighbour['correct'] = bool(correct[row, rank])
      found.append(neighbour)
    record = {'query': query_name, 'query_row': row}
    if query_labels is not None:
      record['label'] = query_labels[row]
    record['neighbours'] = found
    results.append(record)
  return results


def precision_at_k(correct: np.ndarray) -> float:
  """The mean fraction of correct neighbours over queries and ranks."""
  return float(np.mean(correct, dtype=np.float64))


def write(
  path: str | os.PathLike,
  results: list[dict[str, Any]],
  metadata: dict[str, Any],
) -> str:
  """Writes `results` as JSON (with `metadata`) or CSV (a row per
  neighbour), by the extension of `path`.

  Raises:
    ValueError: for an extension other than ``.json`` or ``.csv``.
  """
  path = os.fspath(path)
  extension = os.path.splitext(path)[1].lower()
  if extension not in FORMATS:
    raise ValueError(
      f'The results file must end in {" or ".join(FORMATS)}, received {path!r}'
    )
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  if extension == '.json':
    with open(path, 'w') as file:
      json.dump({**metadata, 'results': results}, file, indent=2)
    return path
  columns = [
    'query',
    'query_row',
    'query_label',
    'rank',
    'gallery',
    'gallery_row',
    'label',
    'score',
    'correct',
  ]
  with open(path, 'w', newline='') as file:
    writer = csv.DictWriter(file, fieldnames=columns, extrasaction='ignore')
    writer.writeheader()
    for record in results:
      for neighbour in record['neighbours']:
        writer.writerow(
          {
            'query': record['query'],
            'query_row': record['query_row'],
            'query_label': record.get('label', ''),
            **neighbour,
          }
        )
  return path


def _shown(name: str) -> str:
  """A file below the current directory relative to it, else as is."""
  if os.path.isabs(name):
    relative = os.path.relpath(name)
    if not relative.startswith(os.pardir):
      return relative
  return name


def text(results: list[dict[str, Any]], max_queries: int) -> str:
  """The first `max_queries` queries and their neighbours, readable."""
  lines = []
  for record in results[:max_queries]:
    label = f' [{record["label"]}]' if 'label' in record else ''
    lines.append(f'{_shown(record["query"])}{label}')
    for neighbour in record['neighbours']:
      mark = ''
      if 'correct' in neighbour:
        mark = '  ok' if neighbour['correct'] else '  WRONG'
      neighbour_label = (
        f' [{neighbour["label"]}]' if 'label' in neighbour else ''
      )
      lines.append(
        f'  {neighbour["rank"]:>3}  {neighbour["score"]:+.4f}  '
        f'{_shown(neighbour["gallery"])}{neighbour_label}{mark}'
      )
  if len(results) > max_queries:
    lines.append(f'... and {len(results) - max_queries} more queries')
  return '\n'.join(lines)
