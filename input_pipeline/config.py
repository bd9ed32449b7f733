"""The input section of a training config, with its defaults."""

import ml_collections


def default_input_config() -> ml_collections.ConfigDict:
  """Every field `input_pipeline.create_dataset` reads, with its default.

  Returns:
    A ConfigDict meant to be ``config.input`` of a training config.
  """
  config = ml_collections.ConfigDict()
  # digits, digits_multilabel (embedded, offline); mnist, fashion_mnist,
  # cifar10, cifar100, caltech_birds2011, cars196, stanford_online_products,
  # coco (TFDS catalog: prepare first with `python -m input_pipeline.prepare
  # --dataset=NAME --data_dir=DIR`, which downloads); image_folder;
  # reid_folder; recordio; nuswide, coco2014 (multi-label, as distributed).
  config.name = 'digits'
  # TFDS data dir. None: $TFDS_DATA_DIR, else ~/tensorflow_datasets. The
  # embedded sets and image folders are prepared here on first use.
  config.data_dir = ml_collections.config_dict.placeholder(str)
  # Catalog sets only: download and prepare a missing set instead of failing
  # with the command that prepares it.
  config.download = False
  # Global batch size (all processes together); a multiple of the process
  # count.
  config.batch_size = 64
  # 'random': a fresh permutation per epoch, remainder dropped.
  # 'class_balanced': each batch is P = batch_size // samples_per_class
  # classes x samples_per_class examples (for pair-wise losses).
  config.sampler = 'random'
  config.samples_per_class = 4  # m, for 'class_balanced'.
  # Training augmentation: CIFAR-like sets pad-4 crop + flip, large-image sets
  # random resized crop + flip, digits/MNIST-like sets none.
  config.augment = False
  # Retrieval protocol: train on the first half of the classes, test on the
  # rest, labels re-based (CUB/Cars: all images of those classes; SOP: its
  # own class-disjoint splits).
  config.class_disjoint = False
  # Output size of images: a side (square) or a (height, width) pair, e.g.
  # --config.input.image_size=256,128 (re-id's people). Required shape for
  # sets whose images differ in size (CUB, Cars, SOP, COCO; None means 224);
  # resizes fixed-size sets when set; image folders and re-id folders are
  # stored at this size.
  config.image_size = ml_collections.config_dict.placeholder(object)
  # For name='image_folder': ROOT with ROOT/train/<class>/*.png|jpg|jpeg and
  # ROOT/test/<class>/*.
  config.image_folder = ml_collections.config_dict.placeholder(str)
  # For name='reid_folder': a person re-identification set as distributed
  # (input_pipeline/datasets/reid_folder.py): its ROOT and its layout,
  # 'market1501', 'dukemtmc' (Market-1501's layout) or 'msmt17' (list
  # files). Splits train, query and gallery; config.input.image_size is
  # required.
  config.reid_root = ml_collections.config_dict.placeholder(str)
  config.reid_layout = 'market1501'
  # For name='recordio': DIR holding an MXNet RecordIO face set as
  # insightface ships it, train.rec, train.idx and optionally property
  # (input_pipeline/datasets/recordio.py); read without MXNet, class ids
  # from the record headers.
  config.recordio = ml_collections.config_dict.placeholder(str)
  # For name='nuswide': ROOT of NUS-WIDE as released (Concepts81.txt,
  # ImageList/, Groundtruth/TrainTestLabels/, Flickr/); for
  # name='coco2014': ROOT holding annotations/instances_{train,val}2014.json,
  # train2014/ and val2014/ (input_pipeline/datasets/multilabel_folder.py).
  # config.input.image_size is required.
  config.nuswide_root = ml_collections.config_dict.placeholder(str)
  config.coco2014_root = ml_collections.config_dict.placeholder(str)
  # Pixel scaling after augmentation. None or 'none': pixel / white, in
  # [0, 1]. 'imagenet': what ImageNet-pretrained backbones expect (torchvision,
  # timm): grey images repeated to RGB, then per channel (x - mean) / std
  # with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
  # A run with config.model.init_from must set it: 'imagenet' for ImageNet
  # weights, 'none' for weights a run of this project exported.
  config.normalization = ml_collections.config_dict.placeholder(str)
  # Training sets whose decoded images fit this many MiB (and need no
  # per-image resize or crop) are decoded once and held in memory: digits,
  # MNIST (47 MiB), CIFAR (147 MiB). Chosen here; 0 reads every batch from
  # the records.
  config.in_memory_mb = 1024
  config.num_threads = 2  # grain threads building batches ahead.
  config.prefetch = 4  # Batches grain keeps ready (at least num_threads).
  return config
