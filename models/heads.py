"""Heads: what each loss needs from the model besides the embedding.

A head maps ``embeddings [batch, dim]`` to a dict of named outputs: logits,
class weights (proxies), G-softmax's per-class Gaussians, vMF mean directions
or centres. Heads know nothing of the losses; the training objective picks
the head a loss needs and reads the outputs by name.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

# The variable collection of non-gradient head state (vMF mean directions):
# updated by the training loop from whole-split statistics, never by the
# optimiser.
HEAD_STATE = 'head_state'


class NoHead(nn.Module):
  """For losses on the embeddings alone (pair-wise Circle, LDMAT, triplet)."""

  @nn.compact
  def __call__(self, embeddings):
    del embeddings
    return {}


class LogitsHead(nn.Module):
  """A linear classifier: ``logits [batch, num_outputs]``.

  Attributes:
    num_outputs: number of logits (classes, or 2 * labels for the per-label
      two-way softmax of the multi-label losses).
    use_bias: the classifier has a bias (`without_classifier_bias` turns
      it off for BNNeck).
  """

  num_outputs: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, embeddings):
    classifier = nn.Dense(
      self.num_outputs, use_bias=self.use_bias, name='classifier'
    )
    return {'logits': classifier(embeddings)}


class GaussianLogitsHead(nn.Module):
  """Logits plus G-softmax's learnable per-output Gaussians ``mu, sigma``.

  Attributes:
    num_outputs: number of logits.
    mu_init: initial mean of every Gaussian (0 in the official code).
    sigma_init: initial standard deviation (1 in the official code); the
      loss floors sigma at 1e-6 so gradient steps cannot make it negative.
    use_bias: the classifier has a bias.
  """

  num_outputs: int
  mu_init: float = 0.0
  sigma_init: float = 1.0
  use_bias: bool = True

  @nn.compact
  def __call__(self, embeddings):
    logits = nn.Dense(
      self.num_outputs, use_bias=self.use_bias, name='classifier'
    )(embeddings)
    mu = self.param(
      'mu', nn.initializers.constant(self.mu_init), (self.num_outputs,)
    )
    sigma = self.param(
      'sigma', nn.initializers.constant(self.sigma_init), (self.num_outputs,)
    )
    return {'logits': logits, 'mu': mu, 'sigma': sigma}


class ClassWeightsHead(nn.Module):
  """Bias-free class weights (proxies) ``[num_classes, dim]``.

  Also returns ``logits = embeddings @ class_weights.T`` for prediction.

  Attributes:
    num_classes: number of classes.
  """

  num_classes: int

  @nn.compact
  def __call__(self, embeddings):
    class_weights = self.param(
      'class_weights',
      nn.initializers.lecun_normal(),
      (self.num_classes, embeddings.shape[-1]),
      jnp.float32,
    )
    return {
      'class_weights': class_weights,
      'logits': embeddings @ class_weights.T.astype(embeddings.dtype),
    }


class ClassCentersHead(nn.Module):
  """Several learned vectors per class ``[num_classes, per_class, dim]``.

  For losses that model a class by several vectors (sub-centres, centres).

  Attributes:
    num_classes: number of classes.
    per_class: vectors per class (K).
  """

  num_classes: int
  per_class: int

  @nn.compact
  def __call__(self, embeddings):
    # Fan-in over dim alone: the class and centre axes are batch-like.
    init = nn.initializers.variance_scaling(
      1.0, 'fan_in', 'truncated_normal', in_axis=-1, out_axis=-2, batch_axis=0
    )
    shape = (self.num_classes, self.per_class, embeddings.shape[-1])
    centers = self.param('class_centers', init, shape, jnp.float32)
    return {'class_centers': centers}


class CentersHead(nn.Module):
  """A linear classifier plus learnable class centres (centre loss).

  Attributes:
    num_classes: number of classes.
    use_bias: the classifier has a bias.
  """

  num_classes: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, embeddings):
    logits = nn.Dense(
      self.num_classes, use_bias=self.use_bias, name='classifier'
    )(embeddings)
    centers = self.param(
      'centers',
      nn.initializers.zeros,
      (self.num_classes, embeddings.shape[-1]),
      jnp.float32,
    )
    return {'logits': logits, 'centers': centers}


class MeanDirectionsHead(nn.Module):
  """vMF class mean directions: non-gradient state ``[num_classes, dim]``.

  The directions live in the `HEAD_STATE` collection, start at zero, and are
  re-estimated by the training loop from the whole training split (Zhe et
  al. 2018's alternating algorithm), never by the optimiser.

  Attributes:
    num_classes: number of classes.
  """

  num_classes: int

  @nn.compact
  def __call__(self, embeddings):
    mean_directions = self.variable(
      HEAD_STATE,
      'mean_directions',
      lambda: jnp.zeros((self.num_classes, embeddings.shape[-1])),
    )
    directions = jax.lax.stop_gradient(mean_directions.value)
    return {'mean_directions': directions}


class CombinedHead(nn.Module):
  """Several heads side by side, for a weighted sum of losses.

  Attributes:
    names: each head's name: its parameters live under it, and its
      outputs are ``outputs[name]``.
    parts: the heads, in the order of `names`.
  """

  names: tuple[str, ...]
  parts: tuple[nn.Module, ...]

  @nn.compact
  def __call__(self, embeddings):
    return {
      name: head.clone(name=name, parent=self)(embeddings)
      for name, head in zip(self.names, self.parts, strict=True)
    }


# The name of BNNeck's BatchNorm in `EmbeddingModel`'s params and
# batch_stats.
BNNECK = 'bnneck'

# Heads that `without_classifier_bias` accepts: none, or a linear
# classifier (with G-softmax's Gaussians or the centre loss's centres).
_CLASSIFIER_HEADS = (LogitsHead, GaussianLogitsHead, CentersHead)


def without_classifier_bias(head: nn.Module) -> nn.Module:
  """`head` with a bias-free classifier, for a model with BNNeck.

  The strong re-id baseline's classifier after its BNNeck has no bias
  (Luo et al. 2019; reid-strong-baseline's modeling/baseline.py,
  ``nn.Linear(..., bias=False)``). A `CombinedHead` has each part's
  classifier made bias-free; `NoHead` is returned as it is.

  Raises:
    ValueError: a head of class vectors compared with the embedding
      (class weights, sub-centres, vMF mean directions): their losses read
      the model's embedding, which BNNeck gives them from before the
      BatchNorm in training but from after it in evaluation.
  """
  if isinstance(head, CombinedHead):
    return head.clone(parts=tuple(map(without_classifier_bias, head.parts)))
  if isinstance(head, NoHead):
    return head
  if isinstance(head, _CLASSIFIER_HEADS):
    return head.clone(use_bias=False)
  raise ValueError(
    f'config.model.bnneck=True needs a loss whose head is a linear '
    f'classifier (softmax, g_softmax, center, ...) or none (the pair-wise '
    f'losses); its head is {type(head).__name__}, whose class vectors the '
    'loss compares with the embedding: BNNeck would train them on the '
    'feature before its BatchNorm and evaluate with the one after it. Set '
    '--config.model.bnneck=False'
  )


class EmbeddingModel(nn.Module):
  """A backbone producing embeddings, followed by a head.

  With `bnneck`, a BatchNorm without shift (Luo et al. 2019's BNNeck)
  sits between the embedding and the head, and what the model returns
  depends on `train`, as the strong re-id baseline's forward pass does
  (reid-strong-baseline's modeling/baseline.py, ``neck_feat='after'``):

  - in training, the embedding before the BatchNorm (what a loss reading
    ``embeddings`` sees: the pair-wise losses, the centre loss) and the
    head's outputs computed from the feature after it (the classifier);
  - in evaluation, the feature after the BatchNorm (running statistics),
    and the head's outputs from it: what evaluation, ``embed.py`` and the
    exported function embed.

  Attributes:
    backbone: maps ``(images, train=...)`` to ``[batch, dim]`` embeddings.
    head: one of the heads above.
    bnneck: the BNNeck: ``nn.BatchNorm`` named `BNNECK`, scale from 1 and
      no bias (the baseline's ``bias.requires_grad_(False)`` on a bias
      initialised to 0), running statistics decaying by 0.9 with epsilon
      1e-5 (torch's BatchNorm1d defaults, which the baseline uses),
      averaged over the backbone's ``bn_axis_name`` in training.
  """

  backbone: nn.Module
  head: nn.Module
  bnneck: bool = False

  @nn.compact
  def __call__(self, images, *, train: bool):
    # Heads and losses run in float32 whatever the backbone's dtype: the
    # losses' exponentials need the range.
    embeddings = self.backbone(images, train=train).astype(jnp.float32)
    if not self.bnneck:
      return embeddings, self.head(embeddings)
    neck = nn.BatchNorm(
      use_running_average=not train,
      use_bias=False,
      momentum=0.9,
      epsilon=1e-5,
      axis_name=getattr(self.backbone, 'bn_axis_name', None),
      name=BNNECK,
    )(embeddings)
    return (embeddings if train else neck), self.head(neck)
