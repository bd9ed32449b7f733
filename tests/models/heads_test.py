"""BNNeck in `heads.EmbeddingModel`: which feature goes where, in numbers.

A one-Dense backbone stands for a network: the BatchNorm between its
embedding and the head is checked against its formula in training (batch
statistics, running ones updated) and in evaluation (running statistics),
and each loss of ``softmax+triplet`` against the feature it must see.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import losses
from models import heads
from training import objectives

_EPSILON = 1e-5  # The BNNeck's, torch's BatchNorm1d default.


class _Backbone(nn.Module):
  """A Dense layer: images [b, 2, 2, 1] -> embeddings [b, 4]."""

  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images, *, train):
    del train
    return nn.Dense(4, name='embedding')(images.reshape(images.shape[0], -1))


def _model(head):
  return heads.EmbeddingModel(
    backbone=_Backbone(), head=heads.without_classifier_bias(head), bnneck=True
  )


def _setup(head):
  """The model, its variables with non-trivial BatchNorm values, a batch
  and the backbone's features of it."""
  model = _model(head)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(6, 2, 2, 1)), jnp.float32)
  # Compiled, not run operation by operation (each would compile alone).
  init = jax.jit(functools.partial(model.init, train=False))
  variables = jax.tree.map(np.asarray, init(jax.random.key(0), images))
  variables['params']['bnneck']['scale'] = np.array([0.5, 2, 1, 3], np.float32)
  variables['batch_stats']['bnneck'] = {
    'mean': np.array([0.1, -0.2, 0.3, 0.0], np.float32),
    'var': np.array([2.0, 0.5, 1.0, 4.0], np.float32),
  }
  features = jax.jit(functools.partial(_Backbone().apply, train=False))(
    {'params': variables['params']['backbone']}, images
  )
  return model, variables, images, np.asarray(features, np.float64)


def test_bnneck_has_no_shift_and_the_classifier_no_bias():
  model, variables, _, _ = _setup(heads.LogitsHead(3))
  assert set(variables['params']['bnneck']) == {'scale'}
  assert set(variables['params']['head']['classifier']) == {'kernel'}
  assert set(variables['batch_stats']['bnneck']) == {'mean', 'var'}
  assert model.bnneck


def test_training_returns_the_feature_before_and_classifies_the_one_after():
  model, variables, images, features = _setup(heads.LogitsHead(3))
  (embeddings, outputs), updates = model.apply(
    variables, images, train=True, mutable=['batch_stats']
  )
  np.testing.assert_allclose(embeddings, features, rtol=1e-6)
  mean, var = features.mean(0), features.var(0)
  scale = variables['params']['bnneck']['scale']
  after = (features - mean) / np.sqrt(var + _EPSILON) * scale
  kernel = variables['params']['head']['classifier']['kernel']
  np.testing.assert_allclose(outputs['logits'], after @ kernel, atol=1e-5)
  # Running statistics decay by 0.9 towards the batch's (biased variance).
  stats = variables['batch_stats']['bnneck']
  new = updates['batch_stats']['bnneck']
  np.testing.assert_allclose(
    new['mean'], 0.9 * stats['mean'] + 0.1 * mean, rtol=1e-5
  )
  np.testing.assert_allclose(
    new['var'], 0.9 * stats['var'] + 0.1 * var, rtol=1e-5
  )


def test_evaluation_returns_the_feature_after_with_running_statistics():
  model, variables, images, features = _setup(heads.LogitsHead(3))
  embeddings, outputs = model.apply(variables, images, train=False)
  stats = variables['batch_stats']['bnneck']
  scale = variables['params']['bnneck']['scale']
  after = (features - stats['mean']) / np.sqrt(stats['var'] + _EPSILON)
  np.testing.assert_allclose(embeddings, after * scale, atol=1e-5)
  kernel = variables['params']['head']['classifier']['kernel']
  np.testing.assert_allclose(outputs['logits'], embeddings @ kernel, atol=1e-5)


def test_softmax_plus_triplet_each_term_sees_its_feature():
  objective = objectives.get_objective('softmax+triplet')
  hparams = objectives.resolve_hparams(
    objective, objectives.loss_config('softmax+triplet')
  )
  model, variables, images, features = _setup(objective.make_head(3, hparams))
  labels = jnp.array([0, 0, 1, 1, 2, 2])

  @jax.jit
  def terms(params):
    (embeddings, outputs), _ = model.apply(
      {**variables, 'params': params},
      images,
      train=True,
      mutable=['batch_stats'],
    )
    inputs = objectives.LossInputs(embeddings, labels, outputs)
    return objectives.batch_loss_terms(objective, hparams, inputs)[1]

  parts = terms(variables['params'])
  triplet = losses.batch_hard_triplet_loss(
    jnp.asarray(features), labels, margin=hparams.triplet.margin
  )
  np.testing.assert_allclose(parts['triplet'], np.mean(triplet), rtol=1e-5)
  scale = variables['params']['bnneck']['scale']
  after = (features - features.mean(0)) / np.sqrt(features.var(0) + _EPSILON)
  kernel = variables['params']['head']['softmax']['classifier']['kernel']
  softmax = optax.softmax_cross_entropy_with_integer_labels(
    jnp.asarray(after * scale @ kernel), labels
  )
  np.testing.assert_allclose(parts['softmax'], np.mean(softmax), rtol=1e-5)
  # The BatchNorm's scale learns from the classifier's loss alone.
  grads = jax.jit(jax.grad(lambda p: terms(p)['triplet']))(variables['params'])
  np.testing.assert_array_equal(grads['bnneck']['scale'], 0)
  grads = jax.jit(jax.grad(lambda p: terms(p)['softmax']))(variables['params'])
  assert np.all(np.abs(grads['bnneck']['scale']) > 0)


def test_heads_of_class_vectors_are_refused():
  assert isinstance(heads.without_classifier_bias(heads.NoHead()), heads.NoHead)
  for head in (
    heads.ClassWeightsHead(3),
    heads.MeanDirectionsHead(3),
    heads.CombinedHead(('a', 'b'), (heads.NoHead(), heads.ClassWeightsHead(3))),
  ):
    with pytest.raises(ValueError, match='--config.model.bnneck=False'):
      heads.without_classifier_bias(head)
