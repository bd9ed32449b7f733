r"""vMF loss with mean directions re-estimated periodically, not learned.

Zhe, Chen and Yan (Pattern Recognition 2019, arXiv 1802.09662) model each
class as a von Mises-Fisher distribution :math:`\mathrm{vMF}(\mu_c, \kappa)`
on the unit hypersphere of L2-normalised embeddings. With equal priors and a
shared concentration :math:`\kappa` the normalising constants cancel and the
class posterior is a softmax over :math:`\kappa \mu_c^\top \hat x`.

The mean directions are not trained by gradient descent: the paper
"periodically updat[es] the class centers" from the features of the whole
training set, to "capture the global structure of the embedding space". The
helpers here compute that maximum-likelihood estimate,
:math:`\mu_c = \sum_{i: y_i = c} \hat x_i / \|\sum_{i: y_i = c} \hat x_i\|`,
from per-class sums that can be accumulated over batches and devices::

  sums, counts = zeros, zeros
  for batch in training_set:           # the network in eval mode
    s, n = vmf_direction_sums(embed(batch.x), batch.y, num_classes)
    sums, counts = sums + s, counts + n   # inside shard_map: psum them
  mean_directions = vmf_mean_directions_from_sums(
      sums, counts, previous=mean_directions)
"""

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from losses import _pairwise, checks


def vmf_cross_entropy(
  embeddings: ArrayLike,
  mean_directions: ArrayLike,
  labels: ArrayLike,
  *,
  kappa: ArrayLike,
) -> jax.Array:
  r"""vMF posterior cross-entropy against fixed mean directions, per example.

  .. math::
    \ell = -\log \frac{\exp(\kappa \, \mu_y^\top \hat x)}
      {\sum_c \exp(\kappa \, \mu_c^\top \hat x)}, \qquad
    \hat x = \frac{x}{\max(\|x\|, 10^{-12})}

  The mean directions are used as given (unit vectors, or zero for a class
  without an estimate, whose logit is then 0) and are wrapped in
  ``jax.lax.stop_gradient``: in the paper they are state, re-estimated
  periodically from the training set (`vmf_mean_directions`) rather than
  learned, and a gradient step on them would break their
  maximum-likelihood meaning. Gradients flow to `embeddings` only. With
  unit (or zero) mean directions this equals
  `normalized_softmax_cross_entropy` with ``class_weights=mean_directions``
  and ``scale=kappa``.

  Args:
    embeddings: ``[batch, dim]`` floating features (normalised inside).
    mean_directions: ``[num_classes, dim]`` unit (or zero) mean directions.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    kappa: concentration :math:`\kappa > 0`, shared by all classes.

  Returns:
    ``[batch]`` losses, in at least float32 (bfloat16 in, float32 out).

  Raises:
    ValueError: on wrong ranks, mismatched shapes or a concrete
      non-positive `kappa`.
    TypeError: on non-floating `embeddings`/`mean_directions` or non-integer
      `labels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> directions = jnp.array([[1., 0.], [0., 1.]])
    >>> x = jnp.array([[2., 0.], [1., 1.]])
    >>> loss = vmf_cross_entropy(x, directions, jnp.array([0, 1]), kappa=4.)
    >>> jnp.round(loss, 4)
    Array([0.0181, 0.6931], dtype=float32)

  References:
    Zhe, Chen and Yan, `Directional Statistics-based Deep Metric Learning
    for Image Classification and Retrieval
    <https://arxiv.org/abs/1802.09662>`_, Pattern Recognition 93, 2019.
  """
  checks.check_class_inputs(
    embeddings, mean_directions, labels, 'mean_directions'
  )
  checks.check_positive(kappa, 'kappa')
  dtype = checks.compute_dtype(embeddings, mean_directions)
  unit_embeddings = _pairwise.l2_normalize(jnp.asarray(embeddings, dtype))
  mean_directions = jax.lax.stop_gradient(jnp.asarray(mean_directions, dtype))
  # kappa scales the [batch, dim] factor, not the [batch, C] product.
  logits = jnp.matmul(
    jnp.asarray(kappa, dtype) * unit_embeddings, mean_directions.T
  )
  return optax.softmax_cross_entropy_with_integer_labels(
    logits, jnp.asarray(labels)
  )


def vmf_direction_sums(
  embeddings: ArrayLike, labels: ArrayLike, num_classes: int
) -> tuple[jax.Array, jax.Array]:
  r"""Per-class sums of L2-normalised embeddings, and per-class counts.

  .. math::
    S_c = \sum_{i: y_i = c} \frac{x_i}{\max(\|x_i\|, 10^{-12})}, \qquad
    n_c = |\{i : y_i = c\}|

  Both are sums, so partial results over batches (or devices, with
  ``jax.lax.psum``) add up to the result over their union; finish with
  `vmf_mean_directions_from_sums`. Labels outside ``[0, num_classes)`` are
  dropped.

  Args:
    embeddings: ``[batch, dim]`` floating features.
    labels: ``[batch]`` integer class ids.
    num_classes: static number of classes.

  Returns:
    ``(sums, counts)``: ``[num_classes, dim]`` sums in at least float32, and
    ``[num_classes]`` int32 counts.

  Raises:
    ValueError: on wrong ranks, mismatched shapes or `num_classes` < 1.
    TypeError: on non-floating `embeddings`, non-integer `labels` or a
      non-int `num_classes`.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[3., 4.], [0., 2.], [5., 0.]])
    >>> sums, counts = vmf_direction_sums(x, jnp.array([0, 0, 2]), 3)
    >>> sums
    Array([[0.6, 1.8],
           [0. , 0. ],
           [1. , 0. ]], dtype=float32)
    >>> counts
    Array([2, 0, 1], dtype=int32)

  References:
    Zhe, Chen and Yan, `Directional Statistics-based Deep Metric Learning
    for Image Classification and Retrieval
    <https://arxiv.org/abs/1802.09662>`_, Pattern Recognition 93, 2019.
  """
  checks.check_embeddings_and_labels(embeddings, labels, rows='batch')
  checks.check_positive_int(num_classes, 'num_classes')
  dtype = checks.compute_dtype(embeddings)
  unit_embeddings = _pairwise.l2_normalize(jnp.asarray(embeddings, dtype))
  labels = jnp.asarray(labels)
  sums = jax.ops.segment_sum(unit_embeddings, labels, num_segments=num_classes)
  counts = jax.ops.segment_sum(
    jnp.ones(labels.shape, jnp.int32), labels, num_segments=num_classes
  )
  return sums, counts


def vmf_mean_directions_from_sums(
  sums: ArrayLike,
  counts: ArrayLike,
  *,
  previous: ArrayLike | None = None,
) -> jax.Array:
  r"""Maximum-likelihood vMF mean directions from accumulated sums.

  .. math::
    \mu_c = \begin{cases}
      S_c / \max(\|S_c\|, 10^{-12}) & n_c > 0 \\
      \mu^{\mathrm{prev}}_c \text{ (or } 0) & n_c = 0
    \end{cases}

  A class that was not seen keeps its previous direction when `previous` is
  given and gets the zero vector otherwise; a zero direction gives that
  class logit 0 in `vmf_cross_entropy`. (A seen class whose normalised
  features cancel exactly also gets the zero vector.)

  Args:
    sums: ``[num_classes, dim]`` floating sums from `vmf_direction_sums`.
    counts: ``[num_classes]`` integer counts from `vmf_direction_sums`.
    previous: ``[num_classes, dim]`` floating directions to keep for unseen
      classes, or None.

  Returns:
    ``[num_classes, dim]`` unit (or zero) directions, in at least float32.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
    TypeError: on non-floating `sums`/`previous` or non-integer `counts`.

  Examples:
    >>> import jax.numpy as jnp
    >>> sums = jnp.array([[0.6, 1.8], [0., 0.], [1., 0.]])
    >>> vmf_mean_directions_from_sums(sums, jnp.array([2, 0, 1]))
    Array([[0.31622776, 0.94868326],
           [0.        , 0.        ],
           [1.        , 0.        ]], dtype=float32)

  References:
    Zhe, Chen and Yan, `Directional Statistics-based Deep Metric Learning
    for Image Classification and Retrieval
    <https://arxiv.org/abs/1802.09662>`_, Pattern Recognition 93, 2019.
  """
  checks.check_rank(sums, 2, 'sums', '[num_classes, dim]')
  checks.check_floating(sums, 'sums')
  checks.check_rank(counts, 1, 'counts', '[num_classes]')
  checks.check_integer(counts, 'counts')
  checks.check_dim(
    jnp.shape(counts)[0],
    jnp.shape(sums)[0],
    'counts',
    0,
    'num_classes of `sums`',
  )
  if previous is not None:
    checks.check_floating(previous, 'previous')
    checks.check_same_shape(previous, sums, 'previous', 'sums')
    dtype = checks.compute_dtype(sums, previous)
  else:
    dtype = checks.compute_dtype(sums)
  directions = _pairwise.l2_normalize(jnp.asarray(sums, dtype))
  fallback = (
    jnp.zeros_like(directions)
    if previous is None
    else jnp.asarray(previous, dtype)
  )
  seen = jnp.asarray(counts)[:, None] > 0
  return jnp.where(seen, directions, fallback)


def vmf_mean_directions(
  embeddings: ArrayLike,
  labels: ArrayLike,
  num_classes: int,
  *,
  previous: ArrayLike | None = None,
) -> jax.Array:
  r"""Maximum-likelihood vMF mean directions of one set of embeddings.

  `vmf_direction_sums` followed by `vmf_mean_directions_from_sums`; for a
  training set too large for one call, accumulate the sums instead.

  .. math::
    \mu_c = \frac{\sum_{i: y_i = c} \hat x_i}
      {\left\|\sum_{i: y_i = c} \hat x_i\right\|}

  Args:
    embeddings: ``[batch, dim]`` floating features.
    labels: ``[batch]`` integer class ids.
    num_classes: static number of classes.
    previous: ``[num_classes, dim]`` directions kept for classes absent
      from `labels`, or None (zero vectors).

  Returns:
    ``[num_classes, dim]`` unit (or zero) directions, in at least float32.

  Raises:
    ValueError: on wrong ranks, mismatched shapes or `num_classes` < 1.
    TypeError: on non-floating `embeddings`/`previous`, non-integer
      `labels` or a non-int `num_classes`.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[3., 4.], [0., 2.], [5., 0.]])
    >>> vmf_mean_directions(x, jnp.array([0, 0, 2]), 3)
    Array([[0.31622776, 0.94868326],
           [0.        , 0.        ],
           [1.        , 0.        ]], dtype=float32)

  References:
    Zhe, Chen and Yan, `Directional Statistics-based Deep Metric Learning
    for Image Classification and Retrieval
    <https://arxiv.org/abs/1802.09662>`_, Pattern Recognition 93, 2019.
  """
  sums, counts = vmf_direction_sums(embeddings, labels, num_classes)
  return vmf_mean_directions_from_sums(sums, counts, previous=previous)
