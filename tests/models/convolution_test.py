"""models/convolution.py: the shifted-windows form equals lax's convolution.

Values and both derivatives (input and kernel) against
`lax.conv_general_dilated` in float64, `check_grads` on the custom VJP, and
the dispatch: the matrix form only on maps smaller than the kernel, lax's
convolution for everything else.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from models import convolution

_DIMS = ('NHWC', 'HWIO', 'NHWC')

# (input [n, h, w, c], kernel [kh, kw, c, o], padding): maps smaller than
# the kernel (LeNet++'s 5x5 on 4x4 and 2x2, a 3x3 on 1x1 and 2x2), uneven
# and asymmetric padding, a rectangular kernel.
_CASES = [
  ((3, 4, 4, 5), (5, 5, 5, 6), ((2, 2), (2, 2))),
  ((2, 2, 2, 4), (5, 5, 4, 3), ((2, 2), (2, 2))),
  ((2, 1, 1, 3), (3, 3, 3, 2), ((1, 1), (1, 1))),
  ((2, 2, 3, 3), (3, 3, 3, 2), ((0, 2), (1, 0))),
  ((2, 3, 2, 2), (5, 3, 2, 4), ((4, 0), (1, 1))),
]


def _lax(x, w, padding):
  return lax.conv_general_dilated(
    x, w, (1, 1), padding, dimension_numbers=_DIMS
  )


def _arrays(x_shape, w_shape, seed=0):
  rng = np.random.default_rng(seed)
  return rng.standard_normal(x_shape), rng.standard_normal(w_shape)


@pytest.mark.parametrize('x_shape,w_shape,padding', _CASES)
def test_values_and_derivatives_equal_lax_in_float64(x_shape, w_shape, padding):
  x, w = _arrays(x_shape, w_shape)
  got = jax.jit(convolution.shifted_windows_conv, static_argnums=(2,))(
    x, w, padding
  )
  want = _lax(x, w, padding)
  assert got.shape == want.shape and got.dtype == np.float64
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

  cotangent = np.random.default_rng(1).standard_normal(want.shape)

  def vjp(fn):
    return jax.jit(
      jax.grad(lambda x_, w_: jnp.sum(cotangent * fn(x_, w_)), argnums=(0, 1))
    )(x, w)

  got_dx, got_dw = vjp(
    lambda x_, w_: convolution.shifted_windows_conv(x_, w_, padding)
  )
  want_dx, want_dw = vjp(lambda x_, w_: _lax(x_, w_, padding))
  np.testing.assert_allclose(got_dx, want_dx, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(got_dw, want_dw, rtol=1e-12, atol=1e-12)


def test_custom_vjp_passes_check_grads():
  x, w = _arrays((2, 3, 3, 2), (5, 5, 2, 3))
  padding = ((2, 2), (2, 2))
  check_grads(
    jax.jit(lambda x_, w_: convolution.shifted_windows_conv(x_, w_, padding)),
    (x, w),
    order=1,
    modes=('rev',),
  )


def test_float32_and_bfloat16_keep_their_dtype():
  x, w = _arrays((2, 4, 4, 3), (5, 5, 3, 2))
  padding = ((2, 2), (2, 2))
  for dtype, rtol in ((jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)):
    got = convolution.conv_general_dilated(
      x.astype(dtype),
      w.astype(dtype),
      (1, 1),
      padding,
      dimension_numbers=convolution._CHANNELS_LAST,
    )
    assert got.dtype == dtype
    np.testing.assert_allclose(
      np.asarray(got, np.float64), _lax(x, w, padding), rtol=rtol, atol=rtol
    )


@pytest.mark.parametrize(
  'x_shape,kwargs,matmul',
  [
    ((2, 4, 4, 3), {}, True),  # Map below the kernel: the matrix form.
    ((2, 5, 5, 3), {}, False),  # Map of the kernel's size: lax.
    ((2, 4, 8, 3), {}, True),  # One side below is enough.
    ((2, 4, 4, 3), {'window_strides': (2, 2)}, False),
    ((2, 4, 4, 3), {'rhs_dilation': (2, 2)}, False),
    ((2, 4, 4, 3), {'padding': 'SAME'}, False),
    ((2, 4, 4, 3), {'padding': ((5, 5), (2, 2))}, False),  # pad >= kernel.
  ],
)
def test_dispatch(monkeypatch, x_shape, kwargs, matmul):
  calls = []
  original = convolution.shifted_windows_conv
  monkeypatch.setattr(
    convolution,
    'shifted_windows_conv',
    lambda *a: calls.append(a) or original(*a),
  )
  x, w = _arrays(x_shape, (5, 5, 3, 2))
  arguments = {
    'window_strides': (1, 1),
    'padding': ((2, 2), (2, 2)),
    'dimension_numbers': convolution._CHANNELS_LAST,
    **kwargs,
  }
  got = convolution.conv_general_dilated(x, w, **arguments)
  want = lax.conv_general_dilated(x, w, **arguments)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  assert bool(calls) == matmul


def test_flax_conv_uses_it_with_the_same_parameters():
  x, _ = _arrays((2, 4, 4, 3), (5, 5, 3, 2))
  ours = nn.Conv(
    2,
    (5, 5),
    padding=2,
    conv_general_dilated=convolution.conv_general_dilated,
  )
  library = nn.Conv(2, (5, 5), padding=2)
  variables = ours.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape, library.init(jax.random.key(0), x)
  )
  np.testing.assert_allclose(
    ours.apply(variables, x),
    library.apply(variables, x),
    rtol=1e-12,
    atol=1e-12,
  )
