"""Runs the model over an evaluation split and computes every metric.

The metric definitions live in `evaluation/`; this module only collects the
embeddings (from every device and process) and decides which metrics apply
to the run: accuracy (top-1, and top-5 beyond 5 classes) where a classifier
exists, k-nearest-neighbour accuracy at the end, feature-space compactness
and separability, the objective's own extra metrics, retrieval and
clustering for single-label data, mAP and precision/recall/F1 (at a
threshold and for each example's top 3 labels) for multi-label data, and
for re-identification sets the query split ranked against the gallery
split (``reid/cmc@K``, ``reid/map``, ``reid/minp``) instead.
"""

import functools
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

import evaluation
from training import steps as steps_lib
from training import verification

# The k of the multi-label top-k metrics (cp@3 ... of1@3), the k of the
# multi-label papers' tables (G-softmax, ML-GCN, SRN).
MULTILABEL_TOP_K = 3
# Top-5 accuracy, reported where there are more than 5 classes (Virtual
# Softmax and vMF report top-1 and top-5).
TOP_K_ACCURACY = 5
# The k of the k-nearest-neighbour vote of the training features, by
# cosine (the final evaluation's "classifier on the learned features"):
# the nearest neighbour and a 10-vote majority.
KNN_KS = (1, 10)
# Re-identification: the CMC ranks reported (the re-id papers' tables give
# rank-1, -5 and -10), and the distance. Cosine ranks as the Bag-of-Tricks
# baseline's evaluation with its normalised features (Euclidean distance
# of unit vectors) and as Circle loss's cosine similarities.
REID_RANKS = (1, 5, 10)
REID_METRIC = 'cosine'


def collect(eval_step, state, dataset, split: str, batch_size: int):
  """Embeddings, labels and scores of a whole split, on every process.

  Returns:
    A dict of numpy arrays (``embeddings``, ``label`` and, where the
    objective has them, ``scores``; ``camera`` for re-id sets) over all
    examples of the split, padding removed.
  """
  parts: dict[str, list[np.ndarray]] = {}
  for batch in dataset.eval_batches(split, batch_size):
    outputs = eval_step(state, _model_inputs(batch))
    outputs['label'] = batch['label']
    if 'camera' in batch:
      outputs['camera'] = batch['camera']
    mask = batch['mask']
    for key, value in outputs.items():
      parts.setdefault(key, []).append(np.asarray(value)[mask])
  local = {key: np.concatenate(value) for key, value in parts.items()}
  if jax.process_count() == 1:
    return local
  # Shards differ in size by at most one example per process; pad to the
  # largest, gather, and drop the padding again.
  sizes = multihost_utils.process_allgather(np.array(len(local['label'])))
  largest = int(np.max(sizes))
  padded = {
    key: np.concatenate(
      [value, np.zeros((largest - len(value), *value.shape[1:]), value.dtype)]
    )
    for key, value in local.items()
  }
  gathered = multihost_utils.process_allgather(padded)
  return {
    key: np.concatenate([value[p, : sizes[p]] for p in range(len(sizes))])
    for key, value in gathered.items()
  }


def _model_inputs(batch):
  return {'image': batch['image']}


def evaluate_reid(state, *, eval_step, dataset, config) -> dict[str, Any]:
  """Query-against-gallery re-identification metrics
  (`evaluation.reid_metrics`, Market-1501 protocol), as ``reid/<metric>``."""
  query = collect(eval_step, state, dataset, 'query', config.eval_batch_size)
  gallery = collect(
    eval_step, state, dataset, 'gallery', config.eval_batch_size
  )
  metrics = evaluation.reid_metrics(
    query['embeddings'],
    query['label'],
    query['camera'],
    gallery['embeddings'],
    gallery['label'],
    gallery['camera'],
    ranks=REID_RANKS,
    metric=REID_METRIC,
  )
  return {f'reid/{key}': value for key, value in metrics.items()}


def evaluator(run, eval_step):
  """`evaluate` bound to a run (`experiment.Experiment`) and its step."""
  return functools.partial(
    evaluate,
    eval_step=eval_step,
    dataset=run.dataset,
    objective=run.objective,
    hparams=run.hparams,
    config=run.config,
  )


def evaluate(
  state,
  *,
  eval_step,
  dataset,
  objective,
  hparams,
  config,
  final: bool = False,
  workdir: str | None = None,
) -> dict[str, Any]:
  """Every metric that applies to this run, on the test split.

  Args:
    state: the train state.
    eval_step: `steps.ParallelSteps.evaluate`.
    dataset: the `input_pipeline.Dataset`.
    objective: the loss's registry entry.
    hparams: its resolved hyperparameters.
    config: the experiment config.
    final: also compute the end-of-run extras (nearest-class-mean and
      k-nearest-neighbour accuracy from the training split) and write the
      test features (``test_features.npz``) and plots to `workdir`
      (class-disjoint runs: also ``retrieval.png``, test queries and their
      neighbours).
    workdir: where features and plots go.

  Returns:
    A flat dict of metric name -> float (and per-class lists).
  """
  if dataset.info.reid:
    # Re-id sets have no test split of known classes: their metrics are
    # the query split's ranking of the gallery, and nothing else applies.
    return evaluate_reid(
      state, eval_step=eval_step, dataset=dataset, config=config
    )
  test = collect(eval_step, state, dataset, 'test', config.eval_batch_size)
  results: dict[str, Any] = {}
  # Face verification sets (config.verification): verify/<set>/<metric>,
  # and their ROC curves in roc.png at the end.
  draw = final and workdir and config.write_plots and jax.process_index() == 0
  results.update(
    verification.evaluate(
      state,
      config,
      eval_step=eval_step,
      collect=collect,
      image_shape=dataset.info.image_shape,
      roc_path=os.path.join(workdir, 'roc.png') if draw else None,
    )
  )
  if objective.multilabel:
    results.update(evaluation.multilabel_metrics(test['scores'], test['label']))
    # The papers' second set: each example's top 3 labels (ML-GCN's rule).
    results.update(
      evaluation.multilabel_metrics(
        test['scores'], test['label'], top_k=MULTILABEL_TOP_K
      )
    )
    return results

  embeddings, labels = test['embeddings'], test['label']
  if 'scores' in test and not config.input.class_disjoint:
    results['accuracy'] = evaluation.accuracy(test['scores'], labels)
    if test['scores'].shape[1] > TOP_K_ACCURACY:
      results[f'top{TOP_K_ACCURACY}_accuracy'] = evaluation.top_k_accuracy(
        test['scores'], labels, k=TOP_K_ACCURACY
      )
  results.update(evaluation.feature_geometry(embeddings, labels))
  if objective.extra_metrics is not None:
    head = steps_lib.to_host(state.params.get('head', {}))
    results.update(objective.extra_metrics(head, hparams))
  results.update(
    evaluation.retrieval_metrics(
      embeddings, labels, ks=tuple(config.retrieval_ks), seed=config.seed
    )
  )
  if final and not config.input.class_disjoint:
    train = collect(eval_step, state, dataset, 'train', config.eval_batch_size)
    results['nearest_class_mean_accuracy'] = (
      evaluation.nearest_class_mean_accuracy(
        train['embeddings'], train['label'], embeddings, labels
      )
    )
    for k in KNN_KS:
      results[f'knn_accuracy@{k}'] = evaluation.knn_accuracy(
        train['embeddings'],
        train['label'],
        embeddings,
        labels,
        k=min(k, len(train['label'])),
      )
  # The test split's classes by its own labels (class-disjoint runs: the
  # held-out classes, labelled from 0).
  names = dataset.info.test_class_names
  if final and workdir and config.write_features and jax.process_index() == 0:
    # The test features themselves, for figures across runs (e.g. the
    # comparison's grid) without re-running the model.
    np.savez_compressed(
      os.path.join(workdir, 'test_features.npz'),
      embeddings=embeddings,
      labels=labels,
      class_names=np.asarray(
        names if names else [str(i) for i in range(int(labels.max()) + 1)]
      ),
    )
  if final and workdir and config.write_plots and jax.process_index() == 0:
    evaluation.plot_features(
      embeddings,
      labels,
      os.path.join(workdir, 'features.png'),
      title=f'{config.loss.name} on {config.input.name} (test)',
      class_names=names,
    )
    evaluation.plot_class_geometry(
      evaluation.intra_class_compactness(embeddings, labels).per_class,
      evaluation.inter_class_separability(embeddings, labels).per_class,
      os.path.join(workdir, 'class_geometry.png'),
      title=f'{config.loss.name}: per-class compactness / separability',
      class_names=names,
    )
    # What retrieval among unseen classes looks like: queries and their
    # nearest test images, right or wrong. The images are read from this
    # process's shard of the split, the whole split in a 1-process run.
    if config.input.class_disjoint and jax.process_count() == 1:
      evaluation.write_split_retrieval(
        os.path.join(workdir, 'retrieval.png'),
        embeddings,
        labels,
        read_images=lambda rows: dataset.images(
          'test', rows, config.eval_batch_size
        ),
        class_names=names,
        title=f'{config.loss.name} on {config.input.name}: unseen classes',
        seed=config.seed,
      )
  return results


def summary(results: dict[str, Any]) -> str:
  """One readable line of the headline metrics."""
  keys = (
    'accuracy',
    'nearest_class_mean_accuracy',
    'compactness',
    'separability',
    'recall@1',
    'map@r',
    'nmi',
    'map',
    'cf1',
    'of1',
    'reid/cmc@1',
    'reid/map',
    'reid/minp',
  )
  return ' | '.join(
    f'{key} {results[key]:.4f}' for key in keys if key in results
  )
