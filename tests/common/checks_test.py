"""`common.checks`: each error is one line naming argument, expectation and
value received."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import checks

_X = np.zeros((4, 3), np.float32)
_Y = np.zeros(4, np.int32)


@pytest.mark.parametrize(
  'call, error, message',
  [
    (
      lambda: checks.check_rank(_X[0], 2, 'embeddings', '[n, dim]'),
      ValueError,
      '`embeddings` must have rank 2 ([n, dim]), received shape (3,)',
    ),
    (
      lambda: checks.check_floating(_Y, 'embeddings'),
      TypeError,
      '`embeddings` must have a floating dtype, received dtype int32',
    ),
    (
      lambda: checks.check_integer(_X, 'labels'),
      TypeError,
      '`labels` must hold integer class ids, received dtype float32',
    ),
    (
      lambda: checks.check_bool(_Y, 'valid'),
      TypeError,
      '`valid` must be a bool array, received dtype int32',
    ),
    (
      lambda: checks.check_dim(2, 3, 'y', 1, 'dim of `x`'),
      ValueError,
      '`y` must have size 3 along axis 1 (dim of `x`), received 2',
    ),
    (
      lambda: checks.check_same_shape(_X, _X[:2], 'mu', 'sigma'),
      ValueError,
      '`mu` and `sigma` must have the same shape, received (4, 3) and (2, 3)',
    ),
    (
      lambda: checks.check_non_empty(_X[:0], 'queries'),
      ValueError,
      '`queries` must hold at least one row, received 0',
    ),
    (
      lambda: checks.check_all_positive(np.array([1.0, 0.0]), 'sigma'),
      ValueError,
      '`sigma` must be > 0 everywhere, received 0.0 at index (1,) (shape (2,))',
    ),
    (
      lambda: checks.check_positive(0.0, 'gamma'),
      ValueError,
      '`gamma` must be > 0, received 0.0',
    ),
    (
      lambda: checks.check_positive(float('nan'), 'gamma'),
      ValueError,
      '`gamma` must be > 0, received nan',
    ),
    (
      lambda: checks.check_positive(np.ones(2), 'gamma'),
      ValueError,
      '`gamma`: expected a scalar, received shape (2,)',
    ),
    (
      lambda: checks.check_non_negative(-1.0, 'margin'),
      ValueError,
      '`margin` must be >= 0, received -1.0',
    ),
    (
      lambda: checks.check_in_range(
        1.0, 'margin', 0.0, 1.0, high_inclusive=False
      ),
      ValueError,
      '`margin` must lie in [0.0, 1.0), received 1.0',
    ),
    (
      lambda: checks.check_choice('l1', 'metric', ('euclidean', 'cosine')),
      ValueError,
      "`metric` must be one of ['cosine', 'euclidean'], received 'l1'",
    ),
    (
      lambda: checks.check_positive_int(2.0, 'num_classes'),
      TypeError,
      '`num_classes` must be a static positive int, received 2.0',
    ),
    (
      lambda: checks.check_positive_int(0, 'num_classes'),
      ValueError,
      '`num_classes` must be >= 1, received 0',
    ),
    (
      lambda: checks.check_optional_positive_int(True, 'block_size'),
      TypeError,
      '`block_size` must be None or a positive int, received True',
    ),
    (
      lambda: checks.check_optional_positive_int(-3, 'block_size'),
      ValueError,
      '`block_size` must be None or a positive int, received -3',
    ),
    (
      lambda: checks.check_python_bool('yes', 'normalize'),
      TypeError,
      "`normalize` must be a Python bool, received 'yes'",
    ),
  ],
)
def test_messages(call, error, message):
  with pytest.raises(error) as raised:
    call()
  assert str(raised.value) == message


@pytest.mark.parametrize(
  'embeddings, labels, error, message',
  [
    (
      _X[0],
      _Y,
      ValueError,
      '`queries` must have rank 2 ([batch, dim]), received shape (3,)',
    ),
    (
      _X.astype(np.int32),
      _Y,
      TypeError,
      '`queries` must have a floating dtype, received dtype int32',
    ),
    (
      _X,
      _Y[:, None],
      ValueError,
      '`ids` must have rank 1 ([batch]), received shape (4, 1)',
    ),
    (
      _X,
      _Y.astype(np.float32),
      TypeError,
      '`ids` must hold integer class ids, received dtype float32',
    ),
    (
      _X,
      _Y[:3],
      ValueError,
      '`ids` must have size 4 along axis 0 (rows of `queries`), received 3',
    ),
  ],
)
def test_embeddings_and_labels(embeddings, labels, error, message):
  with pytest.raises(error) as raised:
    checks.check_embeddings_and_labels(
      embeddings,
      labels,
      embeddings_name='queries',
      labels_name='ids',
      rows='batch',
    )
  assert str(raised.value) == message


def test_valid_inputs_pass():
  checks.check_embeddings_and_labels(_X.astype(jnp.bfloat16), _Y)
  checks.check_bool(np.ones(3, bool), 'valid')
  checks.check_positive(np.float32(2.0), 'gamma')
  checks.check_in_range(0.0, 'margin', 0.0, 1.0, high_inclusive=False)
  checks.check_positive_int(np.int64(3), 'k')
  checks.check_optional_positive_int(None, 'block_size')
  checks.check_python_bool(np.bool_(True), 'soft')


def test_traced_values_pass_and_shapes_are_still_checked():
  # Scalars that arrive as tracers cannot be checked; shapes and dtypes
  # are static and still are.
  @jax.jit
  def f(x, labels, gamma):
    checks.check_positive(gamma, 'gamma')
    checks.check_all_positive(x, 'x')
    checks.check_embeddings_and_labels(x, labels)
    return x

  f(_X, _Y, -1.0)
  with pytest.raises(ValueError, match='`labels` must have size 4'):
    f(_X, _Y[:2], 1.0)


def test_nothing_of_discfeat_is_imported():
  source = open(checks.__file__, encoding='utf-8').read()
  imports = [
    line.split()[1]
    for line in source.splitlines()
    if line.startswith(('import ', 'from '))
  ]
  assert set(imports) <= {
    'collections.abc',
    'typing',
    'jax',
    'jax.numpy',
    'numpy',
  }, imports
