"""Pair-based baselines: contrastive, multi-similarity, lifted structure,
N-pair, triplet margin, angular, supervised contrastive and NT-Xent.

The losses the seed papers compare against (issue 18), each per anchor and
pair-wise, so through `_pairwise_objective`: no head, class-balanced
batches, the global batch as reference set and the cross-batch memory.
Defaults are the paper's where it states them, else
pytorch-metric-learning's (PML 2.9), named as such.
"""

import losses
from training.objectives.interface import Hyperparameter
from training.objectives.pairwise import _pairwise_objective


def _pml(name: str) -> str:
  return f"third-party code: pytorch-metric-learning's {name} default"


_NORMALIZE_PAPER = Hyperparameter(
  False,
  source='paper: the embeddings are used as given',
  doc='L2-normalise the embeddings first (PML does by default)',
)

OBJECTIVES = (
  _pairwise_objective(
    name='contrastive',
    paper='Hadsell et al. 2006',
    hyperparameters={
      'pos_margin': Hyperparameter(
        0.0,
        source='paper: Hadsell et al. 2006 (similar pairs cost D^2/2)',
        doc='distance below which a positive pair costs nothing',
      ),
      'neg_margin': Hyperparameter(
        1.0,
        source=_pml('ContrastiveLoss'),
        doc='distance beyond which a negative pair costs nothing',
      ),
      'power': Hyperparameter(
        2,
        source='paper: Hadsell et al. 2006 (squared hinges, halved)',
        doc='1: plain hinges (PML); 2: halved squared hinges (paper)',
      ),
      'normalize': _NORMALIZE_PAPER,
    },
    loss_fn=losses.contrastive_loss,
  ),
  _pairwise_objective(
    name='multi_similarity',
    paper='Wang et al. 2019',
    hyperparameters={
      'alpha': Hyperparameter(
        2.0,
        source='paper: Wang et al. 2019 (alpha = 2, beta = 50)',
        doc='alpha, the scale of the positives',
      ),
      'beta': Hyperparameter(
        50.0,
        source='paper: Wang et al. 2019 (alpha = 2, beta = 50)',
        doc='beta, the scale of the negatives',
      ),
      'base': Hyperparameter(
        0.5,
        source=_pml('MultiSimilarityLoss'),
        doc='lambda, the similarity margin',
      ),
    },
    loss_fn=losses.multi_similarity_loss,
  ),
  _pairwise_objective(
    name='lifted_structure',
    paper='Hermans et al. 2017 (generalised lifted structure)',
    hyperparameters={
      'neg_margin': Hyperparameter(
        1.0,
        source=_pml('GeneralizedLiftedStructureLoss'),
        doc='margin of the negatives',
      ),
      'pos_margin': Hyperparameter(
        0.0,
        source='paper: Hermans et al. 2017 (no positive margin)',
        doc="subtracted from the positives' distances",
      ),
      'normalize': _NORMALIZE_PAPER,
    },
    loss_fn=losses.lifted_structure_loss,
  ),
  _pairwise_objective(
    name='n_pairs',
    paper='Sohn 2016',
    hyperparameters={},
    loss_fn=losses.n_pairs_loss,
  ),
  _pairwise_objective(
    name='triplet_margin',
    paper='Schroff et al. 2015',
    hyperparameters={
      'margin': Hyperparameter(
        0.2,
        source='paper: Schroff et al. 2015 (alpha = 0.2)',
        doc='the distance margin',
      ),
      'triplets': Hyperparameter(
        'semihard',
        source='paper: Schroff et al. 2015 (semi-hard negatives)',
        doc="the triplets that count: 'all', 'semihard' or 'hard'",
      ),
      'squared': Hyperparameter(
        True,
        source='paper: Schroff et al. 2015 (squared L2 distance)',
        doc='use the squared Euclidean distance',
      ),
      'normalize': Hyperparameter(
        True,
        source='paper: Schroff et al. 2015 (on the unit hypersphere)',
        doc='L2-normalise the embeddings first',
      ),
    },
    loss_fn=losses.triplet_margin_loss,
  ),
  _pairwise_objective(
    name='angular',
    paper='Wang et al. 2017',
    hyperparameters={
      'alpha': Hyperparameter(
        40.0,
        source=_pml('AngularLoss'),
        doc='alpha, the angle bound in degrees',
      ),
    },
    loss_fn=losses.angular_loss,
  ),
  _pairwise_objective(
    name='supcon',
    paper='Khosla et al. 2020',
    hyperparameters={
      'temperature': Hyperparameter(
        0.1,
        source='paper: Khosla et al. 2020 (tau = 0.1)',
        doc='tau, the temperature',
      ),
    },
    loss_fn=losses.supcon_loss,
  ),
  _pairwise_objective(
    name='ntxent',
    paper='Chen et al. 2020 (label-defined pairs)',
    hyperparameters={
      'temperature': Hyperparameter(
        0.07,
        source=_pml('NTXentLoss'),
        doc='tau, the temperature',
      ),
    },
    loss_fn=losses.ntxent_loss,
  ),
)
