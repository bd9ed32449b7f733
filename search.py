r"""Searches a gallery of embeddings with query images or embeddings.

  python search.py --gallery=G.npz --queries=Q.npz --k=10
  python search.py --gallery=G.npz --queries=DIR --output=results.json \
    --picture=retrieval.png

G.npz and Q.npz are files of ``embed.py``; a folder DIR of query images is
embedded first with the gallery's model (or ``--workdir``). Without
``--queries`` every gallery row queries the others. Neighbours are ranked
by cosine similarity: exactly (the evaluation's chunked search) or, with
``--index=faiss``, through an approximate faiss index (``pip install -e
'.[ann]'``). Results are printed, and written as JSON or CSV by
``--output``'s extension; ``--picture`` draws some queries and their
neighbours, framed green / red when both sides have classes.
"""

import os
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from common import cli
from inference import embed as embed_lib
from inference import embeddings_file, picture, search_report
from inference import model as model_lib
from inference import search as search_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line of `python search.py`."""
  flags.DEFINE_string('gallery', None, 'The gallery embeddings file (.npz).')
  flags.DEFINE_string(
    'queries',
    None,
    'Query embeddings (.npz) or a folder of query images; default: the '
    'gallery itself, each row against the others.',
  )
  flags.DEFINE_string(
    'workdir',
    None,
    "The model for a folder of queries and the picture's images (default: "
    "the gallery's).",
  )
  config_flags.DEFINE_config_file(
    'config', None, "The model's config, for a run without results.json."
  )
  flags.DEFINE_integer('k', 10, 'Neighbours per query.')
  flags.DEFINE_enum(
    'index', 'exact', list(search_lib.INDEXES), 'Exact or faiss search.'
  )
  flags.DEFINE_string(
    'faiss_factory', None, 'faiss index factory string (default HNSW32,Flat).'
  )
  flags.DEFINE_string(
    'faiss_params',
    None,
    'faiss search parameters, e.g. efSearch=128 (default: efSearch=64 for '
    'HNSW, nprobe=16 for IVF).',
  )
  flags.DEFINE_integer(
    'chunk_size', 1024, 'Exact search: queries per score block.'
  )
  flags.DEFINE_string(
    'output', None, 'Write the results here: .json, or .csv (a row each).'
  )
  flags.DEFINE_integer('show', 10, 'Queries printed.')
  flags.DEFINE_string(
    'picture', None, 'Draw some queries and their neighbours here (.png).'
  )
  flags.DEFINE_integer('picture_queries', 8, 'Queries in the picture.')
  flags.DEFINE_integer(
    'batch_size', None, 'Images per step when embedding a query folder.'
  )
  cli.define_traceback_flag()


USER_ERRORS = (*cli.USER_ERRORS, ImportError)


def _same_model(
  queries: embeddings_file.Embeddings, gallery: embeddings_file.Embeddings
) -> None:
  if (queries.workdir, queries.step) != (gallery.workdir, gallery.step):
    logging.warning(
      'The queries come from %s (step %d), the gallery from %s (step %d): '
      'embeddings of different models are not comparable.',
      queries.workdir,
      queries.step,
      gallery.workdir,
      gallery.step,
    )


def run() -> None:
  gallery = embeddings_file.load(FLAGS.gallery)
  model = None

  def trained_model():
    nonlocal model
    if model is None:
      model = model_lib.load(FLAGS.workdir or gallery.workdir, FLAGS.config)
    return model

  self_search = FLAGS.queries is None or (
    os.path.isfile(FLAGS.queries)
    and os.path.samefile(FLAGS.queries, FLAGS.gallery)
  )
  if self_search:
    queries = gallery
  elif os.path.isdir(FLAGS.queries):
    queries = embed_lib.embed_folder(
      trained_model(), FLAGS.queries, batch_size=FLAGS.batch_size
    )
  else:
    queries = embeddings_file.load(FLAGS.queries)
  _same_model(queries, gallery)

  start = time.perf_counter()
  neighbours = search_lib.search(
    queries.embeddings,
    None if self_search else gallery.embeddings,
    k=FLAGS.k,
    index=FLAGS.index,
    chunk_size=FLAGS.chunk_size,
    faiss_factory=FLAGS.faiss_factory,
    faiss_parameters=FLAGS.faiss_params,
  )
  seconds = time.perf_counter() - start
  correct = search_lib.correct(queries, gallery, neighbours)
  results = search_report.records(queries, gallery, neighbours, correct)
  summary = (
    f'{len(queries)} queries against {len(gallery)} gallery embeddings'
    f'{" (each against the others)" if self_search else ""}, top {FLAGS.k} '
    f'by cosine, {FLAGS.index} search: {seconds:.2f} s'
  )
  if correct is not None:
    summary += (
      f'; precision@{FLAGS.k} {search_report.precision_at_k(correct):.4f}, '
      f'recall@1 {correct[:, 0].mean():.4f}'
    )
  print(summary)
  print(search_report.text(results, FLAGS.show))
  if FLAGS.output:
    search_report.write(
      FLAGS.output,
      results,
      {
        'gallery': os.path.abspath(FLAGS.gallery),
        'queries': os.path.abspath(FLAGS.queries or FLAGS.gallery),
        'k': FLAGS.k,
        'index': FLAGS.index,
        'similarity': 'cosine',
        'workdir': gallery.workdir,
        'step': gallery.step,
      },
    )
    logging.info('Wrote %s.', FLAGS.output)
  if FLAGS.picture:
    trained = trained_model()
    picture.write_search(
      FLAGS.picture,
      queries,
      gallery,
      neighbours,
      transform=trained.transform,
      dataset=trained.dataset,
      batch_size=trained.config.eval_batch_size,
      num_queries=FLAGS.picture_queries,
      title=(
        f'{trained.config.loss.name} on {trained.dataset.info.name}: '
        f'top {FLAGS.k} of {len(gallery)} by cosine'
      ),
    )
    logging.info('Wrote %s.', FLAGS.picture)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  if jax.process_count() > 1:
    raise app.UsageError('search.py runs in one process')
  cli.report_user_errors(run, traceback=FLAGS.traceback, errors=USER_ERRORS)


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['gallery'])
  app.run(main, flags_parser=cli.parse_flags)
