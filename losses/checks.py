"""The argument checks of `losses` (public).

The generic checks (ranks, dtypes, sizes, scalar hyperparameters) live in
`common.checks` and are re-exported here, so that ``from losses import
checks`` keeps working: e.g. ``checks.check_rank(x, 2, 'embeddings',
'[n, dim]')``. This module adds what only the losses need: the compute
dtype, ``block_size``, the reference set of the pair-wise losses and the
features / class rows / labels triple of the classification losses.

Checks run at trace time on static facts (shapes, dtypes, Python scalars), so
they cost nothing inside a compiled step. A hyperparameter that arrives as a
tracer (e.g. a scheduled margin) cannot be checked and is let through.
Every message names the argument, what was expected and what was received.
"""

from typing import Any

import jax.numpy as jnp

from common.checks import (
  check_all_positive,
  check_bool,
  check_choice,
  check_dim,
  check_embeddings_and_labels,
  check_floating,
  check_in_range,
  check_integer,
  check_non_empty,
  check_non_negative,
  check_optional_positive_int,
  check_positive,
  check_positive_int,
  check_python_bool,
  check_rank,
  check_same_shape,
)

__all__ = [
  'check_all_positive',
  'check_block_size',
  'check_bool',
  'check_choice',
  'check_class_inputs',
  'check_dim',
  'check_embeddings_and_labels',
  'check_floating',
  'check_in_range',
  'check_integer',
  'check_non_empty',
  'check_non_negative',
  'check_optional_positive_int',
  'check_positive',
  'check_positive_int',
  'check_python_bool',
  'check_rank',
  'check_same_shape',
  'compute_dtype',
]


def check_block_size(block_size: int | None) -> None:
  """Raises unless `block_size` is None or a positive int.

  Raises:
    TypeError: for anything but None or an int.
    ValueError: for an int <= 0.
  """
  check_optional_positive_int(block_size, 'block_size')


def compute_dtype(*arrays: Any) -> jnp.dtype:
  """The dtype losses compute in: the inputs' dtype, at least float32.

  Low-precision inputs (bfloat16, float16) are upcast because the
  exponentials and log-sum-exps of these losses lose too much in 8 bits of
  mantissa; float64 inputs stay float64.
  """
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


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
  check_embeddings_and_labels(embeddings, labels, rows='batch')
  check_rank(class_rows, 2, rows_name, rows_layout)
  check_floating(class_rows, rows_name)
  check_dim(
    jnp.shape(class_rows)[1],
    jnp.shape(embeddings)[1],
    rows_name,
    1,
    'dim of `embeddings`',
  )
