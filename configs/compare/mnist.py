r"""Every loss against softmax on MNIST: the digits comparison at full size.

Prepare the data once (downloads), then run:

  python -m input_pipeline.prepare --dataset=mnist --data_dir=$TFDS_DATA_DIR
  python -m benchmarks.compare --config=configs/compare/mnist.py \
    --workdir=runs/compare_mnist

Classification with 2-D features (the papers' MNIST figure) and
class-disjoint retrieval (train on 0-4, retrieve among 5-9). Expect hours
on a CPU; on a GPU use --jobs=1. For Fashion-MNIST add
--config.tasks.classification.overrides.input.name=fashion_mnist (and the
same for retrieval).
"""

import ml_collections

from configs.compare import digits


def get_config(mode: str = 'full') -> ml_collections.ConfigDict:
  """`mode`: 'full' (3 seeds), 'quick' (1 seed, 2 epochs) or 'smoke'."""
  config = digits.new_comparison('mnist', mode)
  config.tasks.classification = digits.make_task(
    'configs.mnist', digits.SINGLE_LABEL_LOSSES, digits.CLASSIFICATION_METRICS
  )
  config.tasks.retrieval = digits.make_task(
    'configs.mnist',
    digits.SINGLE_LABEL_LOSSES,
    digits.RETRIEVAL_METRICS,
    input={'class_disjoint': True, 'samples_per_class': 32},
    model={'embedding_dim': 32},
  )
  if mode == 'quick':
    config.seeds = (0,)
    config.results_dir = 'runs/compare_mnist_quick'
    for task in config.tasks.values():
      task.overrides.num_epochs = 2
    config.caveat = (
      'Quick mode: a smoke test of the comparison machinery on MNIST, not a '
      'result: one seed of 2 epochs leaves the models undertrained and no '
      'row can be told from seed noise.'
    )
  elif mode == 'smoke':
    config.seeds = (0,)
    config.results_dir = 'runs/compare_mnist_smoke'
    for task in config.tasks.values():
      task.losses = ('softmax', 'circle_pairwise')
      task.overrides.num_train_steps = 4
    config.caveat = 'Smoke mode: 4 steps of two losses; not a result.'
  return config
