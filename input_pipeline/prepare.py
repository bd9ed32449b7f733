r"""Prepares a data set as array_record so that training can read it.

Catalog sets (mnist, fashion_mnist, cifar10, cifar100, caltech_birds2011,
cars196, stanford_online_products, coco) are DOWNLOADED from their original
hosts and converted; this needs network access and disk (COCO: ~25 GiB).
Training never downloads unless config.input.download=True.

  python -m input_pipeline.prepare --dataset=cifar10 --data_dir=~/tfds

The embedded sets and image folders need no network (training prepares them
on first use anyway):

  python -m input_pipeline.prepare --dataset=digits --data_dir=/tmp/tfds
  python -m input_pipeline.prepare --dataset=image_folder \
      --image_folder=~/my_images --image_size=64 --data_dir=~/tfds
  python -m input_pipeline.prepare --dataset=reid_folder \
      --reid_root=~/Market-1501-v15.09.15 --reid_layout=market1501 \
      --image_size=256,128 --data_dir=~/tfds
  python -m input_pipeline.prepare --dataset=recordio \
      --recordio=~/faces_webface_112x112 --data_dir=~/tfds
  python -m input_pipeline.prepare --dataset=nuswide \
      --multilabel_root=~/NUS-WIDE --image_size=224 --data_dir=~/tfds
  python -m input_pipeline.prepare --dataset=coco2014 \
      --multilabel_root=~/coco2014 --image_size=224 --data_dir=~/tfds

Without --data_dir: $TFDS_DATA_DIR, else ~/tensorflow_datasets.
"""

from collections.abc import Sequence

from absl import app, flags

from input_pipeline import preparation
from input_pipeline.datasets import catalog, reid_folder

_DATASET = flags.DEFINE_enum(
  'dataset', None, list(catalog.NAMES), 'The data set to prepare.'
)
_DATA_DIR = flags.DEFINE_string(
  'data_dir',
  None,
  'TFDS data dir; default $TFDS_DATA_DIR, else ~/tensorflow_datasets.',
)
_IMAGE_FOLDER = flags.DEFINE_string(
  'image_folder', None, 'For --dataset=image_folder: ROOT with train/, test/.'
)
_IMAGE_SIZE = flags.DEFINE_list(
  'image_size',
  None,
  'For --dataset=image_folder, reid_folder, recordio, nuswide or coco2014: '
  'stored image side, or HEIGHT,WIDTH.',
)
_REID_ROOT = flags.DEFINE_string(
  'reid_root', None, 'For --dataset=reid_folder: the folder as distributed.'
)
_REID_LAYOUT = flags.DEFINE_enum(
  'reid_layout',
  'market1501',
  list(reid_folder.LAYOUTS),
  'For --dataset=reid_folder: its layout.',
)
_RECORDIO = flags.DEFINE_string(
  'recordio',
  None,
  'For --dataset=recordio: DIR holding train.rec and train.idx.',
)
_MULTILABEL_ROOT = flags.DEFINE_string(
  'multilabel_root',
  None,
  'For --dataset=nuswide or coco2014: the set as distributed.',
)
flags.mark_flag_as_required('dataset')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  sizes = tuple(int(side) for side in _IMAGE_SIZE.value or ())
  path = preparation.prepare(
    _DATASET.value,
    _DATA_DIR.value,
    image_folder_root=_IMAGE_FOLDER.value,
    image_size=sizes[0] if len(sizes) == 1 else (sizes or None),
    reid_root=_REID_ROOT.value,
    reid_layout=_REID_LAYOUT.value,
    recordio_root=_RECORDIO.value,
    multilabel_root=_MULTILABEL_ROOT.value,
  )
  print(f'{_DATASET.value} is prepared in {path}')


if __name__ == '__main__':
  app.run(main)
