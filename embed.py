r"""Embeds images with a trained model: a folder, or a split of its data set.

  python embed.py --workdir=runs/default --images=DIR --output=F.npz
  python embed.py --workdir=runs/default --split=test --output=F.npz
  python embed.py --workdir=runs/default --export=runs/default/embed.jaxexport

DIR holds image files (PNG, JPEG), directly or in one folder per class
(then the file has labels too). The images are decoded and scaled as the
model's evaluation images were. The output (``inference/embeddings_file.py``
lists its arrays) is what ``search.py`` searches. ``--export`` writes the
embedding function as a `jax.export` file that JAX alone can call
(``inference/export.py``).

The model is the newest checkpoint in the workdir, rebuilt from the run's
``results.json``; for a run that has not finished, pass its config and
overrides as to train.py (``--config=configs/...``).
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from common import cli
from inference import embed as embed_lib
from inference import embeddings_file, export
from inference import model as model_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line of `python embed.py`."""
  flags.DEFINE_string('workdir', None, 'The trained run: its workdir.')
  config_flags.DEFINE_config_file(
    'config',
    None,
    "The run's config, for a run without results.json (default: the one "
    'in results.json).',
  )
  flags.DEFINE_string(
    'images',
    None,
    'A folder of images, directly or in one folder per class.',
  )
  flags.DEFINE_enum(
    'split',
    None,
    ['train', 'test', 'query', 'gallery'],
    "A split of the model's own data set instead of --images (test: the "
    'held-out classes of a class-disjoint run; query, gallery: re-id sets, '
    'whose file keeps camera ids).',
  )
  flags.DEFINE_string('output', None, 'The embeddings file to write (.npz).')
  flags.DEFINE_integer(
    'batch_size', None, 'Images per step (default: config.eval_batch_size).'
  )
  flags.DEFINE_bool('progress', True, 'Show a progress bar.')
  flags.DEFINE_string(
    'export',
    None,
    'Also write the embedding function here as a jax.export file (and '
    'FILE.json describing its input).',
  )
  flags.DEFINE_list(
    'export_platforms',
    None,
    'Platforms to export for, e.g. cpu,cuda (default: the current one).',
  )
  cli.define_traceback_flag()


# What a wrong path, name or file raises: said in one line.
USER_ERRORS = (*cli.USER_ERRORS, ImportError)


def run() -> None:
  if FLAGS.images is not None and FLAGS.split is not None:
    raise ValueError('Give --images or --split, not both')
  if FLAGS.images is None and FLAGS.split is None and FLAGS.export is None:
    raise ValueError('Give --images or --split (with --output), or --export')
  if (FLAGS.images is not None or FLAGS.split is not None) and not (
    FLAGS.output
  ):
    raise ValueError('--output=FILE.npz is needed with --images or --split')
  model = model_lib.load(FLAGS.workdir, FLAGS.config)
  logging.info(
    'Loaded %s (step %d, %s on %s, inputs %s).',
    model.workdir,
    model.step,
    model.config.loss.name,
    model.dataset.info.name,
    model.image_shape,
  )
  if FLAGS.images is not None or FLAGS.split is not None:
    if FLAGS.images is not None:
      embeddings = embed_lib.embed_folder(
        model,
        FLAGS.images,
        batch_size=FLAGS.batch_size,
        progress=FLAGS.progress,
      )
    else:
      embeddings = embed_lib.embed_split(
        model, FLAGS.split, batch_size=FLAGS.batch_size, progress=FLAGS.progress
      )
    embeddings_file.save(FLAGS.output, embeddings)
    logging.info(
      'Wrote %d embeddings of dimension %d (%s) to %s.',
      len(embeddings),
      embeddings.embeddings.shape[1],
      'with labels' if embeddings.labels is not None else 'no labels',
      FLAGS.output,
    )
  if FLAGS.export is not None:
    export.save(FLAGS.export, model, platforms=FLAGS.export_platforms)
    logging.info(
      'Wrote the embedding function to %s (input %s in %s).',
      FLAGS.export,
      ('b', *model.image_shape),
      FLAGS.export + export.METADATA_SUFFIX,
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  if jax.process_count() > 1:
    raise app.UsageError('embed.py runs in one process')
  cli.report_user_errors(run, traceback=FLAGS.traceback, errors=USER_ERRORS)


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir'])
  app.run(main, flags_parser=cli.parse_flags)
