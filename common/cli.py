"""How the command lines parse their flags and report a user's error.

A bad config, name, value, path or workdir is said in one line and exits
non-zero (``--traceback`` shows where); anything else is a bug and keeps
its traceback. Shared by train.py, embed.py and search.py.
"""

import importlib.util
import logging as logging_lib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

# What a bad config, name, value, path or workdir raises.
USER_ERRORS: tuple[type[BaseException], ...] = (
  ValueError,
  TypeError,
  OSError,  # Missing or unreadable files and folders.
  TimeoutError,  # A lock held by another live process.
  FloatingPointError,  # A non-finite loss.
)


def define_traceback_flag() -> None:
  flags.DEFINE_bool(
    'traceback',
    False,
    'On a bad config, name, value or path, show the traceback as well as '
    'the one-line error.',
  )


def one_line(error: BaseException) -> str:
  """``program: ErrorType: message (--traceback shows where)``."""
  message = ' '.join(str(error).split()) or repr(error)
  return (
    f'{_program()}: {type(error).__name__}: {message} (--traceback shows where)'
  )


def _program() -> str:
  return os.path.basename(sys.argv[0])


def report_user_errors(
  run: Callable[[], Any],
  *,
  traceback: bool,
  errors: tuple[type[BaseException], ...] = USER_ERRORS,
) -> Any:
  """Calls `run`; an error of `errors` exits with `one_line` of it."""
  try:
    return run()
  except errors as error:
    if traceback:
      raise
    raise SystemExit(one_line(error)) from None


def _config_file_argument(argv: Sequence[str]) -> tuple[str, str] | None:
  for arg in argv:
    if arg.startswith('--config='):
      path, _, config_arg = arg[len('--config=') :].partition(':')
      return path, config_arg
  return None


def config_file_problem(argv: Sequence[str]) -> str | None:
  """Says what is wrong with the ``--config=PATH[:ARG]`` file, if anything.

  ml_collections names a missing file ``config_config`` and hides a file
  that fails to load behind its own message.
  """
  given = _config_file_argument(argv)
  if given is None:
    return None
  path, _ = given
  if not os.path.isfile(path):
    return f'--config: the config file {path!r} does not exist'
  return None


def _load_config(argv: Sequence[str]):
  """The config named by ``--config=PATH[:ARG]``, without overrides."""
  given = _config_file_argument(argv)
  if given is None:
    return None
  path, config_arg = given
  spec = importlib.util.spec_from_file_location('_config_file', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(config_arg) if config_arg else module.get_config()


def unknown_override_message(argv: Sequence[str]) -> str | None:
  """Names the ``--config.a.b`` override whose field does not exist, with
  the fields that do (config_flags says only ``AttributeError: 'b'``)."""
  config = _load_config(argv)
  if config is None:
    return None
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.') :].partition('=')[0].split('.')
    node = config
    for depth, key in enumerate(path):
      if not hasattr(node, 'keys') or key not in node:
        parent = '.'.join(['config', *path[:depth]])
        valid = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else ''
        return (
          f'{arg.partition("=")[0]}: {parent} has no field {key!r}; its '
          f'fields: {valid}'
        )
      node = node[key]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, as `app.run`'s flags_parser; errors in one line."""
  verbose = '--traceback' in argv
  problem = config_file_problem(argv)
  if problem is not None and not verbose:
    raise SystemExit(f'{_program()}: {problem}')
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    if verbose:
      raise
    # config_flags puts the traceback of a config that fails to load into
    # the message; its last line is the error itself.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else repr(error)
    raise SystemExit(
      f'{_program()}: {last} (--helpfull lists the flags; --traceback shows '
      'where)'
    ) from None
  except (AttributeError, KeyError):
    # config_flags says only "'gamma'" for a missing override field.
    message = unknown_override_message(argv)
    if message is None or verbose:
      raise
    raise SystemExit(f'{_program()}: {message}') from None
  except USER_ERRORS as error:
    # E.g. a config file that does not load.
    if verbose:
      raise
    raise SystemExit(one_line(error)) from None


class QuietLibraries(logging_lib.Filter):
  """Drops the INFO chatter of orbax, tfds, grain and faiss (every save,
  restore and file read) and JAX's search for backends that are not
  there; their warnings and errors still show."""

  _NOISY = (
    '/orbax/',
    '/tensorflow_datasets/',
    '/grain/',
    '/array_record/',
    '/faiss/',
    '/jax/_src/xla_bridge.py',
  )

  def filter(self, record: logging_lib.LogRecord) -> bool:
    if record.levelno >= logging_lib.WARNING:
      return True
    return not any(part in record.pathname for part in self._NOISY)
