r"""Multi-label G-softmax on composed digits (two digits side by side).

  python train.py --config=configs/digits_multilabel.py \
    --workdir=runs/digits_multilabel
  python train.py --config=configs/digits_multilabel.py:softmax_multilabel \
    --workdir=runs/digits_multilabel_softmax   # the baseline
"""

import ml_collections

from configs import common, default


def get_config(
  loss: str | None = 'g_softmax_multilabel',
) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.input.name = 'digits_multilabel'
  config.model.embedding_dim = 64
  return common.set_loss(config, loss)
