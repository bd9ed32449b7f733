r"""Center loss: squared distance of each feature to its class centre.

Wen, Zhang, Li and Qiao (ECCV 2016) add to softmax cross-entropy a term that
pulls every deep feature towards a centre of its class. This module provides
only that term; the caller adds the softmax term and the weight
:math:`\lambda`::

  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  loss += lam * center_loss(embeddings, centers, labels)
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from losses import checks


def center_loss(
  embeddings: ArrayLike,
  centers: ArrayLike,
  labels: ArrayLike,
) -> jax.Array:
  r"""Half the squared Euclidean distance to the class centre, per example.

  .. math::
    \ell_i = \tfrac12 \left\| x_i - c_{y_i} \right\|_2^2

  The function is pure: gradients reach both `embeddings` and `centers`, so
  the centres can be learned with the network by the optimiser (the
  gradient for centre :math:`c` is :math:`-\sum_{i: y_i = c} (x_i - c)`,
  summed over its samples). The paper's own update instead moves each
  centre by the mean of its samples' differences with its own rate
  :math:`\alpha`; to get that, stop the gradient to `centers` here and update
  them outside the loss.

  Args:
    embeddings: ``[batch, dim]`` floating features :math:`x`.
    centers: ``[num_classes, dim]`` floating class centres :math:`c`.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
    TypeError: on non-floating `embeddings`/`centers` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> centers = jnp.array([[0., 0.], [1., 1.]])
    >>> x = jnp.array([[3., 4.], [1., 2.]])
    >>> center_loss(x, centers, jnp.array([0, 1]))
    Array([12.5,  0.5], dtype=float32)

  References:
    Wen, Zhang, Li and Qiao, `A Discriminative Feature Learning Approach for
    Deep Face Recognition
    <https://doi.org/10.1007/978-3-319-46478-7_31>`_, ECCV 2016.
  """
  checks.check_class_inputs(embeddings, centers, labels, 'centers')
  dtype = checks.compute_dtype(embeddings, centers)
  embeddings = jnp.asarray(embeddings, dtype)
  centers = jnp.asarray(centers, dtype)
  difference = embeddings - jnp.take(centers, jnp.asarray(labels), axis=0)
  return 0.5 * jnp.sum(difference * difference, axis=1)
