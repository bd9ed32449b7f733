r"""Virtual Softmax: cross-entropy with one extra, sample-specific negative.

Chen, Deng and Shen (NeurIPS 2018, arXiv 1811.12611) add to the ``C`` class
logits of each sample a "virtual" negative class whose weight is the sample's
own direction scaled to the norm of its target class weight. Its logit
:math:`\|W_y\| \|x\|` bounds every real logit from above, so the target can
only win by aligning :math:`x` with :math:`W_y` more tightly than plain
softmax requires. The virtual class is used in training only; predictions are
the argmax of the real logits :math:`W_j^\top x`.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import checks

# The squared norm is floored here before the square root, so that a zero
# vector has norm ~1e-12 with a zero (finite) gradient instead of
# 0 * d sqrt(0) = NaN.
_SQUARED_NORM_FLOOR = 1e-24


def _norm(x: jax.Array) -> jax.Array:
  """Row-wise L2 norm whose gradient is finite (zero) at the zero vector."""
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1), _SQUARED_NORM_FLOOR))


def virtual_softmax_cross_entropy(
  embeddings: ArrayLike,
  class_weights: ArrayLike,
  labels: ArrayLike,
) -> jax.Array:
  r"""Virtual Softmax cross-entropy, per example.

  Softmax cross-entropy over ``num_classes + 1`` logits: the bias-free
  class logits :math:`W_j^\top x` and the virtual logit
  :math:`\|W_y\|\,\|x\|`, the logit of the virtual weight
  :math:`W_{\mathrm{virt}} = \|W_y\| \, x / \|x\|`. The label stays ``y``.

  .. math::
    \ell = -\log \frac{\exp(W_y^\top x)}
      {\sum_{j=1}^{C} \exp(W_j^\top x) + \exp(\|W_y\| \, \|x\|)}

  As in the paper, the virtual logit is neither clipped nor detached: its
  gradient reaches both `embeddings` and the target row of `class_weights`
  (third-party ports clip it at 15, which zeroes that gradient whenever the
  product exceeds 15). The extra logit enters a log-sum-exp, so no clipping
  is needed for stability. Norms are floored at 1e-12, so a zero embedding
  (or class weight) gives finite values and gradients.

  Args:
    embeddings: ``[batch, dim]`` floating features :math:`x`.
    class_weights: ``[num_classes, dim]`` floating class weights :math:`W`
      (no bias).
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
    TypeError: on non-floating `embeddings`/`class_weights` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> weights = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = virtual_softmax_cross_entropy(x, weights, jnp.array([0, 1]))
    >>> jnp.round(loss, 4)
    Array([0.7586, 1.2565], dtype=float32)

  References:
    Chen, Deng and Shen, `Virtual Class Enhanced Discriminative Embedding
    Learning <https://arxiv.org/abs/1811.12611>`_, NeurIPS 2018.
  """
  checks.check_class_inputs(embeddings, class_weights, labels, 'class_weights')
  dtype = checks.compute_dtype(embeddings, class_weights)
  embeddings = jnp.asarray(embeddings, dtype)
  class_weights = jnp.asarray(class_weights, dtype)
  labels = jnp.asarray(labels)
  logits = jnp.matmul(embeddings, class_weights.T)
  target_logits = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  # Norms of the C class weights first, then a gather: O(C * dim) instead of
  # gathering a [batch, dim] copy of the target weights.
  virtual_logits = _norm(class_weights)[labels] * _norm(embeddings)
  # log-sum-exp over the C + 1 logits without concatenating a [batch, C + 1]
  # copy: the virtual logit joins the C-way log-sum-exp via logaddexp.
  log_normalizers = jnp.logaddexp(
    jax.nn.logsumexp(logits, axis=1), virtual_logits
  )
  return log_normalizers - target_logits
