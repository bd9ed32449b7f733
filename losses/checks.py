"""The shared argument checks of `losses` and `evaluation` (public).

Shape, dtype and value validation used by every loss and every evaluation
metric, public so that other code validates its inputs the same way and
raises the same messages: ``from losses import checks`` then, e.g.,
``checks.check_rank(x, 2, 'embeddings', '[n, dim]')``.

Checks run at trace time on static facts (shapes, dtypes, Python scalars), so
they cost nothing inside a compiled step. A hyperparameter that arrives as a
tracer (e.g. a scheduled margin) cannot be checked and is let through.
Every message names the argument, what was expected and what was received.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(value: Any) -> float | None:
  """The Python value of a scalar hyperparameter, or None when traced."""
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    array = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return None
  if array.shape != ():
    raise ValueError(f'expected a scalar, received shape {array.shape}')
  return float(array)


def check_rank(x: Any, rank: int, name: str, layout: str) -> None:
  """Raises ValueError unless `x` has `rank` dimensions.

  Args:
    x: the array to check.
    rank: the expected number of dimensions.
    name: the argument's name, for the message.
    layout: the expected layout, e.g. ``'[batch, dim]'``.
  """
  shape = jnp.shape(x)
  if len(shape) != rank:
    raise ValueError(
      f'`{name}` must have rank {rank} ({layout}), received shape {shape}'
    )


def check_floating(x: Any, name: str) -> None:
  """Raises TypeError unless `x` has a floating dtype."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
      f'`{name}` must have a floating dtype, received dtype {dtype}'
    )


def check_integer(x: Any, name: str) -> None:
  """Raises TypeError unless `x` has an integer dtype."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(
      f'`{name}` must hold integer class ids, received dtype {dtype}'
    )


def check_dim(
  actual: int, expected: int, name: str, axis: int, what: str
) -> None:
  """Raises ValueError when `name`'s size along `axis` differs."""
  if actual != expected:
    raise ValueError(
      f'`{name}` must have size {expected} along axis {axis} ({what}), '
      f'received {actual}'
    )


def check_same_shape(x: Any, y: Any, x_name: str, y_name: str) -> None:
  """Raises ValueError unless `x` and `y` have equal shapes."""
  if jnp.shape(x) != jnp.shape(y):
    raise ValueError(
      f'`{x_name}` and `{y_name}` must have the same shape, received '
      f'{jnp.shape(x)} and {jnp.shape(y)}'
    )


def check_positive(value: Any, name: str) -> None:
  """Raises ValueError unless the scalar `value` is > 0 (when concrete)."""
  concrete = _scalar(value, name)
  if concrete is not None and not concrete > 0:
    raise ValueError(f'`{name}` must be > 0, received {concrete}')


def check_non_negative(value: Any, name: str) -> None:
  """Raises ValueError unless the scalar `value` is >= 0 (when concrete)."""
  concrete = _scalar(value, name)
  if concrete is not None and not concrete >= 0:
    raise ValueError(f'`{name}` must be >= 0, received {concrete}')


def check_in_range(
  value: Any,
  name: str,
  low: float,
  high: float,
  *,
  low_inclusive: bool = True,
  high_inclusive: bool = True,
) -> None:
  """Raises ValueError unless `value` lies in the interval (when concrete)."""
  concrete = _scalar(value, name)
  if concrete is None:
    return
  above = concrete >= low if low_inclusive else concrete > low
  below = concrete <= high if high_inclusive else concrete < high
  if not (above and below):
    left = '[' if low_inclusive else '('
    right = ']' if high_inclusive else ')'
    raise ValueError(
      f'`{name}` must lie in {left}{low}, {high}{right}, received {concrete}'
    )


def check_choice(value: str, name: str, choices: Sequence[str]) -> None:
  """Raises ValueError unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(
      f'`{name}` must be one of {sorted(choices)}, received {value!r}'
    )


def check_block_size(block_size: int | None) -> None:
  """Raises ValueError unless `block_size` is None or a positive int."""
  if block_size is None:
    return
  if isinstance(block_size, bool) or not isinstance(
    block_size, (int, np.integer)
  ):
    raise TypeError(
      f'`block_size` must be None or a positive int, received {block_size!r}'
    )
  if block_size <= 0:
    raise ValueError(
      f'`block_size` must be None or a positive int, received {block_size}'
    )


def compute_dtype(*arrays: Any) -> jnp.dtype:
  """The dtype losses compute in: the inputs' dtype, at least float32.

  Low-precision inputs (bfloat16, float16) are upcast because the
  exponentials and log-sum-exps of these losses lose too much in 8 bits of
  mantissa; float64 inputs stay float64.
  """
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _scalar(value: Any, name: str) -> float | None:
  try:
    return _concrete(value)
  except ValueError as error:
    raise ValueError(f'`{name}`: {error}') from None


def check_all_positive(x: Any, name: str) -> None:
  """Raises ValueError unless every entry of `x` is > 0 (when concrete).

  Unlike `check_positive` this accepts an array of any shape (e.g. a
  per-class scale); a traced array cannot be checked and is let through.
  """
  if isinstance(x, jax.core.Tracer):
    return
  try:
    array = np.asarray(x, dtype=np.float64)
  except Exception:  # pylint: disable=broad-except
    return
  if array.size and not np.all(array > 0):
    index = tuple(int(i) for i in np.argwhere(~(array > 0))[0])
    raise ValueError(
      f'`{name}` must be > 0 everywhere, received {array[index]} at index '
      f'{index} (shape {array.shape})'
    )


def check_positive_int(value: Any, name: str) -> None:
  """Raises unless `value` is a Python (or NumPy) int >= 1.

  For static sizes such as ``num_classes``, which fix output shapes and so
  cannot be traced.
  """
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(
      f'`{name}` must be a static positive int, received {value!r}'
    )
  if value < 1:
    raise ValueError(f'`{name}` must be >= 1, received {value}')


def check_class_inputs(
  embeddings: Any,
  class_rows: Any,
  labels: Any,
  rows_name: str,
  rows_layout: str = '[num_classes, dim]',
) -> None:
  """Validates ``[batch, dim]`` features, per-class rows and ``[batch]`` ids.

  Args:
    embeddings: expected ``[batch, dim]`` floating.
    class_rows: expected ``[num_classes, dim]`` floating (class weights,
      centres or mean directions).
    labels: expected ``[batch]`` integer class ids.
    rows_name: the name of `class_rows`, for the messages.
    rows_layout: the expected layout of `class_rows`, for the messages.
  """
  check_rank(embeddings, 2, 'embeddings', '[batch, dim]')
  check_floating(embeddings, 'embeddings')
  check_rank(class_rows, 2, rows_name, rows_layout)
  check_floating(class_rows, rows_name)
  check_dim(
    jnp.shape(class_rows)[1],
    jnp.shape(embeddings)[1],
    rows_name,
    1,
    'dim of `embeddings`',
  )
  check_rank(labels, 1, 'labels', '[batch]')
  check_integer(labels, 'labels')
  check_dim(
    jnp.shape(labels)[0],
    jnp.shape(embeddings)[0],
    'labels',
    0,
    'batch of `embeddings`',
  )
