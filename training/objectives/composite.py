"""A weighted sum of objectives trained on the same embedding.

``config.loss.name = 'circle_pairwise+softmax'`` trains
``w_1 * L_circle_pairwise + w_2 * L_softmax`` (pytorch-metric-learning's
``MultipleLosses``): each term keeps its own head, hyperparameters and
reduction (`interface.batch_loss`), and ``config.loss.<term>`` holds its
hyperparameters and its ``weight`` (1.0 unless set). The sum samples
class-balanced batches and scores the global batch when any term needs
to, predicts with the first term that has class scores, and passes the
cross-batch memory to the terms that use one.
"""

from collections.abc import Sequence

from models import heads
from training.objectives.interface import (
  Hyperparameter,
  LossInputs,
  Objective,
)

SEPARATOR = '+'
WEIGHT = 'weight'
# The weight's provenance: nothing to cite.
WEIGHT_HYPERPARAMETER = Hyperparameter(
  1.0,
  source='chosen here: terms weigh equally unless the config says',
  doc="the term's weight in the sum",
)


def combine(terms: Sequence[Objective]) -> Objective:
  """The objective ``sum_t weight_t * terms[t]``, named ``a+b+...``.

  Raises:
    ValueError: fewer than two terms, a term twice, single- and
      multi-label terms together, or a term whose head state is refreshed
      outside the step (vMF), which the sum does not support.
  """
  names = [term.name for term in terms]
  name = SEPARATOR.join(names)
  if len(terms) < 2 or len(set(names)) != len(names):
    raise ValueError(
      f'config.loss.name={name!r}: a sum needs two or more different '
      'losses joined by "+"'
    )
  if len({term.multilabel for term in terms}) > 1:
    raise ValueError(
      f'config.loss.name={name!r} mixes single- and multi-label losses'
    )
  refreshed = [term.name for term in terms if term.refresh is not None]
  if refreshed:
    raise ValueError(
      f'config.loss.name={name!r}: {", ".join(refreshed)} refreshes its head '
      'state from the whole training split, which a sum of losses does not '
      'support; train it alone'
    )
  scoring = next((term for term in terms if term.scores is not None), None)

  def make_head(num_classes, hparams):
    return heads.CombinedHead(
      names=tuple(names),
      parts=tuple(
        term.make_head(num_classes, hparams[term.name]) for term in terms
      ),
    )

  def loss(inputs: LossInputs, hparams):
    del inputs, hparams
    raise TypeError(
      f'{name!r} is a sum of losses, each with its own reduction: compute '
      'it with objectives.batch_loss'
    )

  def scores(embeddings, outputs, hparams):
    return scoring.scores(
      embeddings, outputs[scoring.name], hparams[scoring.name]
    )

  def extra_metrics(head_params, hparams):
    metrics = {}
    for term in terms:
      if term.extra_metrics is not None:
        found = term.extra_metrics(
          head_params.get(term.name, {}), hparams[term.name]
        )
        metrics.update(
          {f'{term.name}/{key}': value for key, value in found.items()}
        )
    return metrics

  return Objective(
    name=name,
    paper=' + '.join(term.paper for term in terms),
    hyperparameters={},
    make_head=make_head,
    loss=loss,
    scores=None if scoring is None else scores,
    multilabel=terms[0].multilabel,
    sampling='class_balanced'
    if any(term.sampling == 'class_balanced' for term in terms)
    else 'random',
    reference='global_batch'
    if any(term.reference == 'global_batch' for term in terms)
    else 'local',
    uses_memory=any(term.uses_memory for term in terms),
    extra_metrics=extra_metrics
    if any(term.extra_metrics is not None for term in terms)
    else None,
    terms=tuple(terms),
  )
