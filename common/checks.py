"""Argument checks with one-line errors, shared by losses and evaluation.

Shape, dtype and value checks of arrays and hyperparameters. Every error
is one line that names the argument, what was expected and what was
received, e.g. ``ValueError: `labels` must have rank 1 ([n]), received
shape (4, 1)``. Wrong shapes and values raise ValueError; wrong dtypes and
wrong Python types raise TypeError.

The checks read static facts only (shapes, dtypes, Python scalars), so a
traced JAX array passes through at no cost inside a compiled function; a
scalar hyperparameter that arrives as a tracer (e.g. a scheduled margin)
cannot be checked and is let through.

Nothing here imports another package of discfeat.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _shape(x: Any) -> tuple[int, ...]:
  return tuple(jnp.shape(x))


def _concrete(value: Any, name: str) -> float | None:
  """The Python value of a scalar hyperparameter, or None when traced."""
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    array = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return None
  if array.shape != ():
    raise ValueError(
      f'`{name}`: expected a scalar, received shape {array.shape}'
    )
  return float(array)


# ---------------------------------------------------------------------------
# Arrays.
# ---------------------------------------------------------------------------


def check_rank(x: Any, rank: int, name: str, layout: str) -> None:
  """Raises ValueError unless `x` has `rank` dimensions.

  Args:
    x: the array to check.
    rank: the expected number of dimensions.
    name: the argument's name, for the message.
    layout: the expected layout, e.g. ``'[batch, dim]'``.
  """
  shape = _shape(x)
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
  """Raises TypeError unless `x` has an integer dtype (class ids)."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(
      f'`{name}` must hold integer class ids, received dtype {dtype}'
    )


def check_bool(x: Any, name: str) -> None:
  """Raises TypeError unless `x` is a bool array."""
  dtype = jnp.result_type(x)
  if dtype != np.bool_:
    raise TypeError(f'`{name}` must be a bool array, received dtype {dtype}')


def check_dim(
  actual: int, expected: int, name: str, axis: int, what: str
) -> None:
  """Raises ValueError when `name`'s size along `axis` differs.

  Args:
    actual: the size `name` has along `axis`.
    expected: the size it must have.
    name: the argument's name, for the message.
    axis: the axis, for the message.
    what: what the size must match, e.g. ``'dim of `embeddings`'``.
  """
  if actual != expected:
    raise ValueError(
      f'`{name}` must have size {expected} along axis {axis} ({what}), '
      f'received {actual}'
    )


def check_same_shape(x: Any, y: Any, x_name: str, y_name: str) -> None:
  """Raises ValueError unless `x` and `y` have equal shapes."""
  if _shape(x) != _shape(y):
    raise ValueError(
      f'`{x_name}` and `{y_name}` must have the same shape, received '
      f'{_shape(x)} and {_shape(y)}'
    )


def check_non_empty(x: Any, name: str, unit: str = 'row') -> None:
  """Raises ValueError when `x` has no entry along its first axis.

  Args:
    x: the array to check (rank >= 1).
    name: the argument's name, for the message.
    unit: what one entry along the first axis is, for the message.
  """
  if _shape(x)[0] == 0:
    raise ValueError(f'`{name}` must hold at least one {unit}, received 0')


def check_embeddings_and_labels(
  embeddings: Any,
  labels: Any,
  *,
  embeddings_name: str = 'embeddings',
  labels_name: str = 'labels',
  rows: str = 'n',
) -> None:
  """Validates ``[rows, dim]`` floating features and ``[rows]`` class ids.

  Args:
    embeddings: expected ``[rows, dim]`` with a floating dtype.
    labels: expected ``[rows]`` integer class ids, one per row of
      `embeddings`.
    embeddings_name: the name of `embeddings`, for the messages.
    labels_name: the name of `labels`, for the messages.
    rows: the name of the row axis in the messages' layouts, e.g.
      ``'batch'``.

  Raises:
    ValueError: on a wrong rank or a number of labels other than the number
      of rows.
    TypeError: on non-floating `embeddings` or non-integer `labels`.
  """
  check_rank(embeddings, 2, embeddings_name, f'[{rows}, dim]')
  check_floating(embeddings, embeddings_name)
  check_rank(labels, 1, labels_name, f'[{rows}]')
  check_integer(labels, labels_name)
  check_dim(
    _shape(labels)[0],
    _shape(embeddings)[0],
    labels_name,
    0,
    f'rows of `{embeddings_name}`',
  )


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


# ---------------------------------------------------------------------------
# Scalar hyperparameters and static settings.
# ---------------------------------------------------------------------------


def check_positive(value: Any, name: str) -> None:
  """Raises ValueError unless the scalar `value` is > 0 (when concrete).

  NaN is rejected as well; a non-scalar raises ValueError too.
  """
  concrete = _concrete(value, name)
  if concrete is not None and not concrete > 0:
    raise ValueError(f'`{name}` must be > 0, received {concrete}')


def check_non_negative(value: Any, name: str) -> None:
  """Raises ValueError unless the scalar `value` is >= 0 (when concrete)."""
  concrete = _concrete(value, name)
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
  concrete = _concrete(value, name)
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


def _is_int(value: Any) -> bool:
  return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_positive_int(value: Any, name: str) -> None:
  """Raises unless `value` is a Python (or NumPy) int >= 1.

  For static sizes such as ``num_classes``, which fix output shapes and so
  cannot be traced.

  Raises:
    TypeError: for anything but an int (a bool included).
    ValueError: for an int < 1.
  """
  if not _is_int(value):
    raise TypeError(
      f'`{name}` must be a static positive int, received {value!r}'
    )
  if value < 1:
    raise ValueError(f'`{name}` must be >= 1, received {value}')


def check_optional_positive_int(value: Any, name: str) -> None:
  """Raises unless `value` is None or a Python (or NumPy) int >= 1.

  Raises:
    TypeError: for anything but None or an int (a bool included).
    ValueError: for an int < 1.
  """
  if value is None:
    return
  if not _is_int(value):
    raise TypeError(
      f'`{name}` must be None or a positive int, received {value!r}'
    )
  if value <= 0:
    raise ValueError(
      f'`{name}` must be None or a positive int, received {value}'
    )


def check_python_bool(value: Any, name: str) -> None:
  """Raises TypeError unless `value` is a Python (or NumPy) bool."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f'`{name}` must be a Python bool, received {value!r}')
