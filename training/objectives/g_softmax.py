"""G-softmax (Luo et al. 2019), single- and multi-label, and its baseline.

The head adds a learnable Gaussian (mu, sigma) per logit; the loss is the
softmax of ``z + lambda * Phi(z; mu, sigma)``, and so is the prediction.
The multi-label form has a "present" and an "absent" logit per label.
"""

import numpy as np

import evaluation
import losses
from models import heads
from training.objectives.interface import (
  Hyperparameter,
  Objective,
  per_example,
)

_PAPER = 'Luo et al. 2019'
# Luo et al.'s released code (Torch, G-softmax repository): the Gaussians
# start at mu 0, sigma 1 (its -gsm_mu / -gsm_sigma defaults).
_OFFICIAL = "official code: Luo et al.'s release, "
_GAUSSIANS = {
  'mu_init': Hyperparameter(
    0.0,
    source=_OFFICIAL + 'option -gsm_mu',
    doc='initial mean of every Gaussian',
  ),
  'sigma_init': Hyperparameter(
    1.0,
    source=_OFFICIAL + 'option -gsm_sigma',
    doc='initial standard deviation of every Gaussian',
  ),
}


def _gaussian_head(num_outputs, hparams):
  return heads.GaussianLogitsHead(
    num_outputs, mu_init=hparams.mu_init, sigma_init=hparams.sigma_init
  )


def _two_way_gaussian_head(num_labels, hparams):
  # One "present" and one "absent" logit (and Gaussian) per label.
  return _gaussian_head(2 * num_labels, hparams)


def _g_softmax(inputs, hparams):
  outputs = inputs.outputs
  return per_example(
    losses.g_softmax_cross_entropy(
      outputs['logits'],
      inputs.labels,
      mu=outputs['mu'],
      sigma=outputs['sigma'],
      scale=hparams.gaussian_scale,
    )
  )


def _g_softmax_logits(embeddings, outputs, hparams):
  del embeddings
  return losses.g_softmax_logits(
    outputs['logits'],
    mu=outputs['mu'],
    sigma=outputs['sigma'],
    scale=hparams.gaussian_scale,
  )


def _gaussian_measures(head_params, hparams):
  # Luo et al.'s compactness and separability from the learned Gaussians.
  del hparams
  return {
    'gaussian_compactness': float(
      np.mean(evaluation.gaussian_compactness(head_params['sigma']))
    ),
    'gaussian_separability': float(
      np.mean(
        evaluation.gaussian_separability(
          head_params['mu'], head_params['sigma']
        )
      )
    ),
  }


def _per_label(outputs, hparams):
  """Logits ``[batch, labels, 2]`` and the Gaussian keyword arguments."""
  # Two logits (absent, present) per label.
  num_labels = outputs['logits'].shape[-1] // 2
  logits = outputs['logits'].reshape(-1, num_labels, 2)
  if 'mu' not in outputs:
    # The softmax baseline: no Gaussian term (lambda 0).
    return logits, {'mu': 0.0, 'sigma': 1.0, 'scale': 0.0}
  return logits, {
    'mu': outputs['mu'].reshape(num_labels, 2),
    'sigma': outputs['sigma'].reshape(num_labels, 2),
    'scale': hparams.gaussian_scale,
  }


def _multilabel(inputs, hparams):
  logits, gaussians = _per_label(inputs.outputs, hparams)
  return per_example(
    losses.g_softmax_multilabel_cross_entropy(
      logits, inputs.labels, **gaussians
    )
  )


def _multilabel_probabilities(embeddings, outputs, hparams):
  del embeddings
  logits, gaussians = _per_label(outputs, hparams)
  return losses.g_softmax_multilabel_probabilities(logits, **gaussians)


def _gaussian_scale(default, source):
  return Hyperparameter(
    default,
    source=source,
    doc='lambda, the weight of the Gaussian CDF term added to each logit',
  )


OBJECTIVES = (
  Objective(
    name='g_softmax',
    paper=_PAPER,
    hyperparameters={
      'gaussian_scale': _gaussian_scale(
        0.1, _OFFICIAL + '-gsm_scale of its Tiny ImageNet script'
      ),
      **_GAUSSIANS,
    },
    make_head=_gaussian_head,
    loss=_g_softmax,
    scores=_g_softmax_logits,
    extra_metrics=_gaussian_measures,
  ),
  Objective(
    name='g_softmax_multilabel',
    paper=_PAPER,
    hyperparameters={
      # The official multi-label criterion is built without -gsm_scale, so
      # its runs used lambda = 1 whatever the README's command says.
      'gaussian_scale': _gaussian_scale(
        1.0,
        _OFFICIAL + 'multi-label criterion, built without -gsm_scale (so 1)',
      ),
      **_GAUSSIANS,
    },
    make_head=_two_way_gaussian_head,
    loss=_multilabel,
    scores=_multilabel_probabilities,
    multilabel=True,
  ),
  Objective(
    name='softmax_multilabel',
    paper='the baseline of Luo et al. 2019',
    # The same per-label two-way softmax with lambda = 0: no Gaussian term,
    # so it has no hyperparameter.
    hyperparameters={},
    make_head=lambda num_labels, hparams: heads.LogitsHead(2 * num_labels),
    loss=_multilabel,
    scores=_multilabel_probabilities,
    multilabel=True,
  ),
)
