r"""Proxy baselines: ProxyNCA.

Each class is represented by learned proxies and every example is scored
against all of them, so, unlike Proxy-Anchor, these losses are per example
(a sum over the batch of terms that each involve one example).
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import _pairwise, checks
from losses._margin_softmax import _target_mask


def proxy_nca_loss(
  embeddings: ArrayLike,
  proxies: ArrayLike,
  labels: ArrayLike,
  *,
  softmax_scale: ArrayLike = 1.0,
  exclude_positive: bool = False,
) -> jax.Array:
  r"""ProxyNCA: NCA against one learned proxy per class, per example.

  With :math:`d_j = \|\hat x - \hat p_j\|^2` the squared distance between
  the L2-normalised embedding and the L2-normalised proxy of class
  :math:`j`, and :math:`s` the softmax scale:

  .. math::
    \ell = -\log \frac{e^{-s d_y}}{\sum_{j \in Z} e^{-s d_j}}, \qquad
    Z = \begin{cases}
      \{1, \dots, C\} & \text{exclude\_positive=False (PML)} \\
      \{j \ne y\} & \text{exclude\_positive=True (the paper)}
    \end{cases}

  The paper's Eq. leaves the positive proxy out of the denominator (the
  loss can then be negative); pytorch-metric-learning's ``ProxyNCALoss``
  and most reproductions keep it in, which makes the loss a softmax
  cross-entropy on :math:`-s d`. Norms are floored at 1e-12 (a zero
  vector stays zero and its squared distance to a unit vector is 1), and
  squared distances need no square root: gradients are finite everywhere.

  Args:
    embeddings: ``[batch, dim]`` floating features; L2-normalised here.
    proxies: ``[num_classes, dim]`` floating proxies; L2-normalised here.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    softmax_scale: :math:`s > 0`, multiplying the negated squared
      distances (pytorch-metric-learning's ``softmax_scale``, default 1).
    exclude_positive: leave the positive proxy out of the denominator, as
      the paper's Eq.; needs at least 2 classes.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes, a concrete non-positive
      `softmax_scale`, or a single class with `exclude_positive`.
    TypeError: on non-floating `embeddings`/`proxies`, non-integer
      `labels` or a non-bool `exclude_positive`.

  Examples:
    >>> import jax.numpy as jnp
    >>> proxies = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = proxy_nca_loss(x, proxies, jnp.array([0, 1]))
    >>> [round(float(value), 4) for value in loss]
    [0.1269, 0.6931]

  References:
    Movshovitz-Attias, Toshev, Leung, Ioffe and Singh, `No Fuss Distance
    Metric Learning using Proxies <https://arxiv.org/abs/1703.07464>`_,
    ICCV 2017.
  """
  checks.check_positive(softmax_scale, 'softmax_scale')
  checks.check_python_bool(exclude_positive, 'exclude_positive')
  checks.check_class_inputs(embeddings, proxies, labels, 'proxies')
  if exclude_positive and jnp.shape(proxies)[0] < 2:
    raise ValueError(
      '`exclude_positive=True` needs at least 2 proxies, received '
      f'{jnp.shape(proxies)[0]}'
    )
  dtype = checks.compute_dtype(embeddings, proxies)
  unit_x = _pairwise.l2_normalize(jnp.asarray(embeddings, dtype))
  unit_p = _pairwise.l2_normalize(jnp.asarray(proxies, dtype))
  labels = jnp.asarray(labels).astype(jnp.int32)
  logits = -jnp.asarray(softmax_scale, dtype) * (
    _pairwise.pairwise_squared_distance(unit_x, unit_p)
  )
  is_target = _target_mask(logits.shape, labels)
  target_logits = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
  if exclude_positive:
    # -inf drops the positive from the log-sum-exp; the select passes it no
    # gradient.
    logits = jnp.where(is_target, -jnp.inf, logits)
  return jax.nn.logsumexp(logits, axis=1) - target_logits
