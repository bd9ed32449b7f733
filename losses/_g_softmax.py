r"""G-softmax: softmax cross-entropy with a per-class Gaussian CDF term.

Luo, Wong, Kankanhalli and Zhao (TNNLS 2020, arXiv 1904.04317) add to every
logit :math:`z_k` the Gaussian cumulative distribution of that logit under a
per-class Gaussian :math:`\mathcal{N}(\mu_k, \sigma_k^2)`, weighted by
:math:`\lambda`, before the softmax. The single-label loss is softmax
cross-entropy on the shifted logits; the multi-label loss applies the same
shift to a two-way ("present" / "absent") softmax per label.

Where this module departs from the official Torch7 code (luoyan407/gsoftmax,
docs/losses.md §2.3), deliberately:

- Gradients with respect to ``mu`` and ``sigma`` come from autodiff and have
  the correct sign. The official ``updateParameters`` adds
  :math:`+\lambda \mathcal{N}(z; \mu, \sigma)(p - t)` as the ``mu`` gradient,
  whereas :math:`\partial \Phi / \partial \mu = -\mathcal{N}(z; \mu, \sigma)`,
  so its SGD step moves ``mu`` uphill on the loss. Whether ``mu`` and
  ``sigma`` are learned or held fixed (the official single-label script
  never updates them) is the caller's choice: pass them as parameters, or
  wrap them in ``jax.lax.stop_gradient``.
- The multi-label criterion of the official code is always built with
  :math:`\lambda = 1` (``main_multi.lua`` does not pass ``gsm_scale``), and
  its network gradient is ``batch`` times the gradient of the loss it
  reports. Here ``scale`` is honoured, and the gradient is the exact
  gradient of the returned per-example losses.
"""

import math

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from losses import checks

# The third-party PyTorch ports clamp sigma here (the official code does
# not); it keeps 1 / sigma finite when a learned sigma is driven to (or
# through) zero.
_SIGMA_FLOOR = 1e-6


def _check_gaussian_parameter(
  value: ArrayLike, name: str, shape: tuple[int, ...], layout: str
) -> None:
  """`value` must be a float scalar or have exactly `shape`."""
  if not isinstance(value, (int, float)):
    checks.check_floating(value, name)
  value_shape = jnp.shape(value)
  if value_shape not in ((), shape):
    raise ValueError(
      f'`{name}` must be a scalar or have shape {layout} = {shape}, '
      f'received shape {value_shape}'
    )


def _check_hyperparameters(
  mu: ArrayLike,
  sigma: ArrayLike,
  scale: ArrayLike,
  shape: tuple[int, ...],
  layout: str,
) -> None:
  _check_gaussian_parameter(mu, 'mu', shape, layout)
  _check_gaussian_parameter(sigma, 'sigma', shape, layout)
  checks.check_all_positive(sigma, 'sigma')
  checks.check_non_negative(scale, 'scale')


def _shifted_logits(
  logits: jax.Array, mu: ArrayLike, sigma: ArrayLike, scale: ArrayLike
) -> jax.Array:
  """:math:`z + \\lambda \\Phi((z - \\mu) / \\sigma)`, elementwise."""
  dtype = logits.dtype
  mu = jnp.asarray(mu, dtype)
  sigma = jnp.maximum(jnp.asarray(sigma, dtype), _SIGMA_FLOOR)
  # One reciprocal per class instead of one division per logit; the erf is
  # the only transcendental per logit (its derivative costs one exp).
  inverse_width = 1.0 / (sigma * math.sqrt(2.0))
  cdf = 0.5 + 0.5 * jax.scipy.special.erf((logits - mu) * inverse_width)
  return logits + jnp.asarray(scale, dtype) * cdf


def g_softmax_logits(
  logits: ArrayLike,
  *,
  mu: ArrayLike,
  sigma: ArrayLike,
  scale: ArrayLike,
) -> jax.Array:
  r"""The G-softmax logits: each logit plus its weighted Gaussian CDF.

  The softmax of these logits is the G-softmax class distribution, so their
  argmax is the G-softmax prediction. (With one ``mu`` and ``sigma`` shared
  by all classes the shift is the same increasing map for every class and
  the argmax equals that of the raw logits.)

  .. math::
    \tilde z_k = z_k + \lambda \, \Phi\!\left(\frac{z_k - \mu_k}{\sigma_k}
    \right), \qquad \Phi(u) = \tfrac12 \left(1 + \operatorname{erf}
    (u / \sqrt 2)\right)

  Args:
    logits: ``[..., num_classes]`` floating logits :math:`z`.
    mu: ``[num_classes]`` Gaussian means, or a scalar shared by all classes.
    sigma: ``[num_classes]`` Gaussian standard deviations (> 0), or a
      scalar; floored at 1e-6 inside.
    scale: :math:`\lambda \ge 0`, the weight of the CDF term.

  Returns:
    ``[..., num_classes]`` shifted logits, in at least float32.

  Raises:
    ValueError: on a rank-0 `logits`, a `mu`/`sigma` of the wrong shape, a
      concrete non-positive `sigma` entry or a negative `scale`.
    TypeError: on non-floating `logits`, `mu` or `sigma`.

  Examples:
    >>> import jax.numpy as jnp
    >>> shifted = g_softmax_logits(
    ...     jnp.array([[0., 1.]]), mu=0., sigma=1., scale=1.)
    >>> jnp.round(shifted, 4)
    Array([[0.5   , 1.8413]], dtype=float32)

  References:
    Luo et al., `G-softmax: Improving Intraclass Compactness and Interclass
    Separability of Features <https://arxiv.org/abs/1904.04317>`_, IEEE
    TNNLS 31(2), 2020.
  """
  checks.check_floating(logits, 'logits')
  shape = jnp.shape(logits)
  if not shape:
    raise ValueError(
      '`logits` must have rank >= 1 ([..., num_classes]), received shape ()'
    )
  _check_hyperparameters(mu, sigma, scale, shape[-1:], '[num_classes]')
  logits = jnp.asarray(logits, checks.compute_dtype(logits, mu, sigma))
  return _shifted_logits(logits, mu, sigma, scale)


def g_softmax_cross_entropy(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  mu: ArrayLike,
  sigma: ArrayLike,
  scale: ArrayLike,
) -> jax.Array:
  r"""Single-label G-softmax cross-entropy, per example.

  Softmax cross-entropy on the G-softmax logits (see `g_softmax_logits`):
  every class :math:`k` has a scalar Gaussian :math:`\mathcal{N}(\mu_k,
  \sigma_k^2)` over its own logit, and the CDF of the logit under it,
  weighted by :math:`\lambda`, is added before the softmax. With
  :math:`\lambda = 0` this is plain softmax cross-entropy.

  .. math::
    \ell = -\log \frac{\exp \tilde z_y}{\sum_k \exp \tilde z_k}, \qquad
    \tilde z_k = z_k + \lambda \, \Phi\!\left(\frac{z_k - \mu_k}{\sigma_k}
    \right)

  The gradient with respect to the logits is :math:`(p_k - t_k)(1 + \lambda
  \mathcal{N}(z_k; \mu_k, \sigma_k))`. Gradients reach `mu` and `sigma`
  through autodiff with the correct sign (the official code flips the sign
  of the ``mu`` gradient; see the module docstring). The official code
  starts from :math:`\mu = 0`, :math:`\sigma = 1` (its option defaults)
  and its single-label (Tiny ImageNet) script uses :math:`\lambda = 0.1`;
  they come from the code, not from the paper (docs/losses.md §1).

  Args:
    logits: ``[batch, num_classes]`` floating logits (no bias is implied).
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    mu: ``[num_classes]`` Gaussian means, or a scalar shared by all classes.
    sigma: ``[num_classes]`` Gaussian standard deviations (> 0), or a
      scalar; floored at 1e-6 inside.
    scale: :math:`\lambda \ge 0`, the weight of the CDF term.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks or mismatched shapes, a concrete
      non-positive `sigma` entry or a negative `scale`.
    TypeError: on non-floating `logits`/`mu`/`sigma` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2., 0., -1.], [0., 1., 0.5]])
    >>> labels = jnp.array([0, 1])
    >>> loss = g_softmax_cross_entropy(
    ...     logits, labels, mu=0., sigma=1., scale=0.1)
    >>> jnp.round(loss, 4)
    Array([0.1612, 0.6694], dtype=float32)

  References:
    Luo et al., `G-softmax: Improving Intraclass Compactness and Interclass
    Separability of Features <https://arxiv.org/abs/1904.04317>`_, IEEE
    TNNLS 31(2), 2020.
  """
  checks.check_rank(logits, 2, 'logits', '[batch, num_classes]')
  checks.check_floating(logits, 'logits')
  checks.check_rank(labels, 1, 'labels', '[batch]')
  checks.check_integer(labels, 'labels')
  batch, num_classes = jnp.shape(logits)
  checks.check_dim(
    jnp.shape(labels)[0], batch, 'labels', 0, 'batch of `logits`'
  )
  _check_hyperparameters(mu, sigma, scale, (num_classes,), '[num_classes]')
  dtype = checks.compute_dtype(logits, mu, sigma)
  return _cross_entropy(
    jnp.asarray(logits, dtype),
    jnp.asarray(labels),
    jnp.asarray(mu, dtype),
    jnp.asarray(sigma, dtype),
    jnp.asarray(scale, dtype),
  )


# The derivative is written by hand, as a JVP (so forward and reverse mode
# both work). On CPU each [batch, num_classes] pass costs about as much as
# the arithmetic in it. The rule keeps the shifted logits (written once in
# the forward pass, where the max and the exp-sum read them) and the per-row
# log-sum-exp; the backward pass recomputes the softmax from them and the
# Gaussian density from one exp(-u^2 / 2), which gives the slopes with
# respect to the logits, mu and sigma at once: no erf, and no derivative of
# one, in the backward pass. (Recomputing the shift there instead, as an
# earlier version did, was slower and needed 78 MiB of temporaries against
# 47 MiB in the benchmark's head, B = 4096, C = 1000.)
@jax.custom_jvp
def _cross_entropy(logits, labels, mu, sigma, scale):
  """``[batch]`` G-softmax cross-entropy of `logits` in the compute dtype."""
  shifted = _shifted_logits(logits, mu, sigma, scale)
  return optax.softmax_cross_entropy_with_integer_labels(shifted, labels)


def _cross_entropy_tangent(
  logits, labels, shifted, lse, mu, sigma, scale, tangents
):
  """``[batch]`` tangent of the losses; None tangents are zero."""
  d_logits, d_mu, d_sigma, d_scale = tangents
  # int32 columns: a narrow label dtype (uint8) could not count the classes.
  columns = jax.lax.broadcasted_iota(jnp.int32, logits.shape, 1)
  is_target = columns == labels.astype(jnp.int32)[:, None]
  probabilities = jnp.exp(shifted - lse[:, None])
  # d loss / d shifted logit = softmax - one-hot, as one select.
  weights = jnp.where(is_target, probabilities - 1.0, probabilities)
  floored = jnp.maximum(sigma, _SIGMA_FLOOR)
  inverse_sigma = 1.0 / floored
  u = (logits - mu) * inverse_sigma
  # lambda * N(z; mu, sigma) = lambda * phi(u) / sigma: the slope of the
  # CDF term, + with respect to the logit, - with respect to mu, - u times
  # it with respect to sigma.
  density = jnp.exp(-0.5 * u * u) * (
    scale * inverse_sigma * (1.0 / math.sqrt(2.0 * math.pi))
  )
  # The tangent of the shifted logits, then the loss: sum_k weights * it.
  d_cdf = None
  if d_logits is not None:
    d_cdf = d_logits
  if d_mu is not None:
    d_cdf = -d_mu if d_cdf is None else d_cdf - d_mu
  if d_sigma is not None:
    # sigma's floor: no gradient below it (jnp.maximum's rule).
    _, d_floored = jax.jvp(
      lambda s: jnp.maximum(s, _SIGMA_FLOOR), (sigma,), (d_sigma,)
    )
    term = u * d_floored
    d_cdf = -term if d_cdf is None else d_cdf - term
  d_shifted = None if d_cdf is None else density * d_cdf
  if d_logits is not None:
    d_shifted = d_shifted + d_logits
  if d_scale is not None:
    cdf = 0.5 + 0.5 * jax.scipy.special.erf(u * (1.0 / math.sqrt(2.0)))
    term = cdf * d_scale
    d_shifted = term if d_shifted is None else d_shifted + term
  return jnp.sum(weights * d_shifted, axis=1)


def _cross_entropy_jvp(primals, tangents):
  logits, labels, mu, sigma, scale = primals
  shifted = _shifted_logits(logits, mu, sigma, scale)
  lse = jax.nn.logsumexp(shifted, axis=1)
  target = jnp.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]
  losses = lse - target
  d_logits, _, d_mu, d_sigma, d_scale = tangents
  tangents = tuple(
    None if _is_zero(t) else t for t in (d_logits, d_mu, d_sigma, d_scale)
  )
  if all(t is None for t in tangents):
    return losses, jnp.zeros_like(losses)
  # Under jax.checkpoint the backward pass recomputes the softmax and the
  # Gaussian density from the shifted logits and `lse`.
  tangent = jax.checkpoint(_cross_entropy_tangent)(
    logits, labels, shifted, lse, mu, sigma, scale, tangents
  )
  return losses, tangent


_cross_entropy.defjvp(_cross_entropy_jvp, symbolic_zeros=True)


def _is_zero(tangent) -> bool:
  return isinstance(tangent, jax.custom_derivatives.SymbolicZero)


def _check_multilabel_inputs(
  logits: ArrayLike,
  labels: ArrayLike | None,
  mu: ArrayLike,
  sigma: ArrayLike,
  scale: ArrayLike,
) -> jnp.dtype:
  """Validates the multi-label arguments; returns the compute dtype."""
  checks.check_rank(logits, 3, 'logits', '[batch, num_labels, 2]')
  checks.check_floating(logits, 'logits')
  batch, num_labels, slots = jnp.shape(logits)
  checks.check_dim(slots, 2, 'logits', 2, '"present" and "absent" slots')
  if labels is not None:
    checks.check_rank(labels, 2, 'labels', '[batch, num_labels]')
    labels_dtype = jnp.result_type(labels)
    if not (
      jnp.issubdtype(labels_dtype, jnp.integer)
      or jnp.issubdtype(labels_dtype, jnp.floating)
      or labels_dtype == jnp.bool_
    ):
      raise TypeError(
        '`labels` must hold 0/1 targets (integer, bool or floating), '
        f'received dtype {labels_dtype}'
      )
    if jnp.shape(labels) != (batch, num_labels):
      raise ValueError(
        '`labels` must have shape [batch, num_labels] = '
        f'{(batch, num_labels)} to match `logits`, received shape '
        f'{jnp.shape(labels)}'
      )
  _check_hyperparameters(mu, sigma, scale, (num_labels, 2), '[num_labels, 2]')
  return checks.compute_dtype(logits, mu, sigma)


def g_softmax_multilabel_cross_entropy(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  mu: ArrayLike,
  sigma: ArrayLike,
  scale: ArrayLike,
) -> jax.Array:
  r"""Multi-label G-softmax loss: a two-way G-softmax per label, summed.

  Every label :math:`l` has two logits, "present" (slot 0) and "absent"
  (slot 1), each with its own Gaussian. After the G-softmax shift the two
  are normalised by a two-way softmax, and the binary cross-entropy of the
  "present" probability :math:`q_l` is summed over the labels. Without the
  CDF term (:math:`\lambda = 0`) this is a sigmoid cross-entropy on the
  logit difference :math:`z_{l,0} - z_{l,1}`.

  .. math::
    \tilde z_{l,s} = z_{l,s} + \lambda \, \Phi\!\left(
      \frac{z_{l,s} - \mu_{l,s}}{\sigma_{l,s}}\right), \qquad
    q_l = \frac{\exp \tilde z_{l,0}}{\exp \tilde z_{l,0} + \exp \tilde z_{l,1}}

    \ell = -\sum_{l} \left[ t_l \log q_l + (1 - t_l) \log(1 - q_l) \right]

  The logs come from a log-softmax over the two slots, so no epsilon is
  needed inside them (the official code adds :math:`2^{-51}`). Unlike the
  official multi-label code, which always uses :math:`\lambda = 1` and
  whose gradient is ``batch`` times that of its reported loss, `scale` is
  honoured and gradients (also for `mu` and `sigma`) are those of the
  returned losses.

  Args:
    logits: ``[batch, num_labels, 2]`` floating logits, slot 0 "present",
      slot 1 "absent" (e.g. a ``2 * num_labels`` output reshaped).
    labels: ``[batch, num_labels]`` targets in {0, 1} (integer, bool or
      floating; floating values in ``[0, 1]`` act as soft targets).
    mu: ``[num_labels, 2]`` Gaussian means, or a scalar.
    sigma: ``[num_labels, 2]`` Gaussian standard deviations (> 0), or a
      scalar; floored at 1e-6 inside.
    scale: :math:`\lambda \ge 0`, the weight of the CDF term.

  Returns:
    ``[batch]`` losses summed over labels, in at least float32.

  Raises:
    ValueError: on wrong ranks or shapes, a concrete non-positive `sigma`
      entry or a negative `scale`.
    TypeError: on non-floating `logits`/`mu`/`sigma` or non-numeric
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[[1., -1.], [0., 0.]]])
    >>> labels = jnp.array([[1, 0]])
    >>> loss = g_softmax_multilabel_cross_entropy(
    ...     logits, labels, mu=0., sigma=1., scale=1.)
    >>> jnp.round(loss, 4)
    Array([0.7593], dtype=float32)

  References:
    Luo et al., `G-softmax: Improving Intraclass Compactness and Interclass
    Separability of Features <https://arxiv.org/abs/1904.04317>`_, IEEE
    TNNLS 31(2), 2020.
  """
  dtype = _check_multilabel_inputs(logits, labels, mu, sigma, scale)
  shifted = _shifted_logits(jnp.asarray(logits, dtype), mu, sigma, scale)
  log_q = jax.nn.log_softmax(shifted, axis=-1)
  targets = jnp.asarray(labels, dtype)
  per_label = targets * log_q[..., 0] + (1.0 - targets) * log_q[..., 1]
  return -jnp.sum(per_label, axis=-1)


def g_softmax_multilabel_probabilities(
  logits: ArrayLike,
  *,
  mu: ArrayLike,
  sigma: ArrayLike,
  scale: ArrayLike,
) -> jax.Array:
  r"""The "present" probability :math:`q_l` of each label (for mAP).

  .. math::
    q_l = \frac{\exp \tilde z_{l,0}}{\exp \tilde z_{l,0} + \exp \tilde
    z_{l,1}} = \operatorname{sigmoid}(\tilde z_{l,0} - \tilde z_{l,1})

  with :math:`\tilde z` as in `g_softmax_multilabel_cross_entropy`. A label
  is predicted present when :math:`q_l \ge 0.5`.

  Args:
    logits: ``[batch, num_labels, 2]`` floating logits, slot 0 "present",
      slot 1 "absent".
    mu: ``[num_labels, 2]`` Gaussian means, or a scalar.
    sigma: ``[num_labels, 2]`` Gaussian standard deviations (> 0), or a
      scalar.
    scale: :math:`\lambda \ge 0`.

  Returns:
    ``[batch, num_labels]`` probabilities in ``[0, 1]``, in at least
    float32.

  Raises:
    ValueError: on a wrong rank or shape, a concrete non-positive `sigma`
      entry or a negative `scale`.
    TypeError: on non-floating `logits`, `mu` or `sigma`.

  Examples:
    >>> import jax.numpy as jnp
    >>> q = g_softmax_multilabel_probabilities(
    ...     jnp.array([[[1., -1.], [0., 0.]]]), mu=0., sigma=1., scale=1.)
    >>> jnp.round(q, 4)
    Array([[0.936, 0.5  ]], dtype=float32)

  References:
    Luo et al., `G-softmax: Improving Intraclass Compactness and Interclass
    Separability of Features <https://arxiv.org/abs/1904.04317>`_, IEEE
    TNNLS 31(2), 2020.
  """
  dtype = _check_multilabel_inputs(logits, None, mu, sigma, scale)
  shifted = _shifted_logits(jnp.asarray(logits, dtype), mu, sigma, scale)
  return jax.nn.sigmoid(shifted[..., 0] - shifted[..., 1])
