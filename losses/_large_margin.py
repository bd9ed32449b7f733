r"""Multiplicative angular margins: L-Softmax and SphereFace (A-Softmax).

Both replace the target logit's :math:`\cos\theta_y` by

.. math::
  \psi(\theta) = (-1)^k \cos(m\theta) - 2k, \qquad
  \theta \in \Big[\frac{k\pi}{m}, \frac{(k+1)\pi}{m}\Big],
  \; k \in \{0, \dots, m - 1\},

which is continuous and decreasing on :math:`[0, \pi]` and equals
:math:`\cos(m\theta)` on :math:`[0, \pi/m]`. :math:`\cos(m\theta)` is the
Chebyshev polynomial :math:`T_m(\cos\theta)` (the multiple-angle formula of
L-Softmax's Eq. 7), so no arccos is evaluated; :math:`k` counts the
thresholds :math:`\cos(j\pi/m)`, :math:`j = 1, \dots, m`, that
:math:`\cos\theta_y` is at or below (piecewise constant: no gradient).

The official Caffe layers mix the plain target logit back in with a weight
:math:`\lambda` that they anneal,
:math:`f_y = (\lambda \|W_y\|\|x\| \cos\theta_y + \|W_y\|\|x\|\psi(\theta_y))
/ (1 + \lambda)`, with :math:`\lambda = \max(\lambda_{min},
\mathrm{base} (1 + \gamma t)^{-\mathrm{power}})` at iteration :math:`t`;
these functions take the current :math:`\lambda` as ``lambda_``.
"""

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import _pairwise, checks
from losses._margin_softmax import _target_mask


def _multiple_angle_cosine(cosines: jax.Array, margin: int) -> jax.Array:
  r""":math:`\cos(m\theta) = T_m(\cos\theta)`, by the Chebyshev recurrence."""
  previous, current = jnp.ones_like(cosines), cosines
  for _ in range(margin - 1):
    previous, current = current, 2.0 * cosines * current - previous
  return current


def _psi(cosines: jax.Array, margin: int) -> jax.Array:
  r""":math:`\psi(\theta)` of the module docstring, from :math:`\cos\theta`."""
  k = jnp.zeros_like(cosines)
  for j in range(1, margin + 1):
    # theta >= j pi / m; the boundary's side does not matter, psi being
    # continuous there.
    k = k + (cosines <= math.cos(j * math.pi / margin)).astype(cosines.dtype)
  sign = 1.0 - 2.0 * jnp.mod(k, 2.0)
  return sign * _multiple_angle_cosine(cosines, margin) - 2.0 * k


def _margin_cross_entropy(x, w, labels, margin, lambda_, weight_norms):
  """Per-example CE of the L-Softmax logits; unit weights if not norms."""
  unit_x = _pairwise.l2_normalize(x)
  unit_w = _pairwise.l2_normalize(w)
  # safe_sqrt: a zero embedding has norm 0 with gradient 0, not NaN.
  x_norms = _pairwise.safe_sqrt(jnp.sum(x * x, axis=1))
  magnitudes = x_norms[:, None]
  if weight_norms:
    magnitudes = magnitudes * _pairwise.safe_sqrt(jnp.sum(w * w, axis=1))
  cosines = jnp.matmul(unit_x, unit_w.T)
  target = jnp.take_along_axis(cosines, labels[:, None], axis=1)[:, 0]
  target = (lambda_ * target + _psi(target, margin)) / (1.0 + lambda_)
  is_target = _target_mask(cosines.shape, labels)
  logits = magnitudes * jnp.where(is_target, target[:, None], cosines)
  target_logits = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
  return jax.nn.logsumexp(logits, axis=1) - target_logits


def _checked(embeddings, class_weights, labels, margin, lambda_):
  checks.check_positive_int(margin, 'margin')
  checks.check_non_negative(lambda_, 'lambda_')
  checks.check_class_inputs(embeddings, class_weights, labels, 'class_weights')
  dtype = checks.compute_dtype(embeddings, class_weights)
  return (
    jnp.asarray(embeddings, dtype),
    jnp.asarray(class_weights, dtype),
    jnp.asarray(labels).astype(jnp.int32),
    jnp.asarray(lambda_, dtype),
  )


def large_margin_softmax_loss(
  embeddings: ArrayLike,
  class_weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: int = 4,
  lambda_: ArrayLike = 0.0,
) -> jax.Array:
  r"""L-Softmax: a multiplicative angular margin on the target, per example.

  Softmax cross-entropy over the bias-free logits
  :math:`W_j^\top x = \|W_j\|\|x\|\cos\theta_j`, with the target logit
  replaced by :math:`\|W_y\|\|x\|\psi(\theta_y)` (Eq. 6 of the paper;
  :math:`\psi` in the module docstring), mixed with the plain one as the
  official code does:

  .. math::
    f_y = \frac{\lambda \|W_y\|\|x\|\cos\theta_y
      + \|W_y\|\|x\|\psi(\theta_y)}{1 + \lambda}, \qquad
    \ell = -\log \frac{e^{f_y}}{e^{f_y} + \sum_{j \ne y} e^{W_j^\top x}}

  With ``margin=1`` it is plain softmax cross-entropy on :math:`W x`
  whatever :math:`\lambda`; :math:`\lambda \to \infty` approaches it for any
  margin. Norms are floored at 1e-12 and taken with a square root whose
  gradient is 0 at 0: zero embeddings or class weights give finite values
  and gradients.

  Args:
    embeddings: ``[batch, dim]`` floating features (not normalised).
    class_weights: ``[num_classes, dim]`` floating class weights (not
      normalised).
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    margin: the integer :math:`m \ge 1` (a static Python int); 4 in the
      paper's CIFAR and face experiments and the official code's
      ``QUADRUPLE``.
    lambda_: :math:`\lambda \ge 0`, the weight of the plain target logit.
      The official code anneals it, :math:`\lambda = \max(0, 1000 (1 +
      2.5 \cdot 10^{-5} t)^{-35})` at iteration :math:`t`; 0 (its floor,
      and pytorch-metric-learning's form) leaves :math:`\psi` alone.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes, a `margin` < 1 or a
      concrete negative `lambda_`.
    TypeError: on non-floating `embeddings`/`class_weights`, non-integer
      `labels` or a non-int `margin`.

  Examples:
    >>> import jax.numpy as jnp
    >>> weights = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = large_margin_softmax_loss(x, weights, jnp.array([0, 1]))
    >>> [round(float(value), 4) for value in loss]
    [0.1269, 2.4999]

  References:
    Liu, Wen, Yu and Yang, `Large-Margin Softmax Loss for Convolutional
    Neural Networks <https://arxiv.org/abs/1612.02295>`_, ICML 2016.
  """
  x, w, labels, lambda_ = _checked(
    embeddings, class_weights, labels, margin, lambda_
  )
  return _margin_cross_entropy(x, w, labels, margin, lambda_, True)


def sphereface_loss(
  embeddings: ArrayLike,
  class_weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: int = 4,
  lambda_: ArrayLike = 0.0,
) -> jax.Array:
  r"""SphereFace / A-Softmax: L-Softmax on unit class weights, per example.

  As `large_margin_softmax_loss` with :math:`\|W_j\| = 1` (the weights are
  L2-normalised here, and there is no bias): the logits are
  :math:`\|x\|\cos\theta_j`, the target's
  :math:`\|x\|(\lambda\cos\theta_y + \psi(\theta_y)) / (1 + \lambda)`
  (the paper's Eq. 7 with the official code's :math:`\lambda`).

  .. math::
    \ell = -\log \frac{e^{\|x\| \tilde\psi(\theta_y)}}
      {e^{\|x\| \tilde\psi(\theta_y)} + \sum_{j \ne y}
      e^{\|x\| \cos\theta_j}}, \qquad
    \tilde\psi = \frac{\lambda \cos\theta_y + \psi(\theta_y)}{1 + \lambda}

  Args:
    embeddings: ``[batch, dim]`` floating features (not normalised: their
      norm is the logits' scale).
    class_weights: ``[num_classes, dim]`` floating class weights;
      L2-normalised here.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    margin: the integer :math:`m \ge 1` (static); 4 in the paper.
    lambda_: :math:`\lambda \ge 0`. The official code anneals it,
      :math:`\lambda = \max(5, 1000 (1 + 0.12 t)^{-1})`, so from iteration
      ~1.7k on it is 5; 0 is pytorch-metric-learning's form.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes, a `margin` < 1 or a
      concrete negative `lambda_`.
    TypeError: on non-floating `embeddings`/`class_weights`, non-integer
      `labels` or a non-int `margin`.

  Examples:
    >>> import jax.numpy as jnp
    >>> weights = jnp.array([[2., 0.], [0., 3.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = sphereface_loss(x, weights, jnp.array([0, 1]), lambda_=5.)
    >>> [round(float(value), 4) for value in loss]
    [0.1269, 0.9144]

  References:
    Liu, Wen, Yu, Li, Raj and Song, `SphereFace: Deep Hypersphere Embedding
    for Face Recognition <https://arxiv.org/abs/1704.08063>`_, CVPR 2017.
  """
  x, w, labels, lambda_ = _checked(
    embeddings, class_weights, labels, margin, lambda_
  )
  return _margin_cross_entropy(x, w, labels, margin, lambda_, False)
