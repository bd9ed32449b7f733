"""The seed papers' data sets as distributed, each trained end to end.

Tiny copies in NUS-WIDE's, MS-COCO 2014's and Tiny ImageNet's layouts
(tests/support.py writes them) are prepared and trained on for 2 steps
through ``train.train_and_evaluate`` with the real config file
(configs/nuswide.py, configs/coco2014.py, configs/image_folder.py), a
one-stage LeNet++ and 8-pixel images instead of the configs' ImageNet
ResNets; the final metrics each protocol reports must be there and in
[0, 1].
"""

import json

import pytest

import train
from configs import coco2014, common, image_folder, nuswide
from tests import support


def _small(config, tmp_path):
  """Overrides for size: the model, images, batches and run length."""
  # One stage of LeNet++ from scratch (no ImageNet weights, so pixels stay
  # in [0, 1]).
  common.set_model(config, 'lenet', embedding_dim=8, stage_filters=(4,))
  config.input.normalization = None
  config.input.image_size = 8
  config.input.data_dir = str(tmp_path / 'tfds')
  config.input.num_threads = 0
  config.num_train_steps = 2
  config.eval_every_steps = 1000  # Only the final evaluation.
  config.checkpoint_every_steps = 2
  config.log_every_steps = 1
  # 4 test devices: the evaluation batch is split over them.
  config.eval_batch_size = 8
  config.write_plots = False
  return config


def _results(config, workdir):
  results = train.train_and_evaluate(config, str(workdir))
  assert results['step'] == 2
  with open(workdir / 'results.json') as file:
    written = json.load(file)
  assert written['config']['input']['name'] == config.input.name
  return results


# The multi-label protocol's metrics (evaluation.multilabel_metrics): at
# threshold 0.5 and for each example's top 3 labels.
_MULTILABEL_KEYS = [
  f'{name}{suffix}'
  for name in ('cp', 'cr', 'cf1', 'op', 'or', 'of1')
  for suffix in ('', '@3')
] + ['map']


@pytest.mark.parametrize(
  ('config_module', 'write', 'root_field'),
  [
    (nuswide, support.write_nuswide, 'nuswide_root'),
    (coco2014, support.write_coco2014, 'coco2014_root'),
  ],
  ids=['nuswide', 'coco2014'],
)
def test_multilabel_layouts_train_and_report(
  config_module, write, root_field, tmp_path
):
  root = tmp_path / 'data'
  write(str(root), train_copies=2)  # 4 to 6 training images.
  config = _small(config_module.get_config(), tmp_path)
  assert config.loss.name == 'g_softmax_multilabel'
  config.input[root_field] = str(root)
  config.input.batch_size = 4
  results = _results(config, tmp_path / 'run')
  for key in _MULTILABEL_KEYS:
    assert 0 <= results[key] <= 1, (key, results[key])
  assert 'accuracy' not in results


def test_tiny_imagenet_layout_trains_and_reports(tmp_path):
  root = tmp_path / 'tiny-imagenet-200'
  # 6 classes: top-5 accuracy is reported beyond 5.
  wnids = tuple(f'n0{index}000000' for index in range(1, 7))
  support.write_tiny_imagenet(str(root), wnids=wnids, per_class=2)
  config = _small(image_folder.get_config('softmax'), tmp_path)
  config.input.image_folder = str(root)
  config.input.batch_size = 4
  results = _results(config, tmp_path / 'run')
  for key in (
    'accuracy',
    'top5_accuracy',
    'nearest_class_mean_accuracy',
    'knn_accuracy@1',
    'knn_accuracy@10',
    'recall@1',
  ):
    assert 0 <= results[key] <= 1, (key, results[key])
