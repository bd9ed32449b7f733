r"""Any loss on the embedded digits (classification; 2-D features).

  python train.py --config=configs/digits.py:circle_class \
    --workdir=runs/digits_circle_class

The argument is a loss name (training/objectives/); default g_softmax.
"""

import ml_collections

from configs import common, default


def get_config(loss: str | None = None) -> ml_collections.ConfigDict:
  return common.set_loss(default.get_config(), loss)
