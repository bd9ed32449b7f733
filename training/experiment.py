"""A run assembled from its config: the one place that builds a run.

Everything that trains, restores, benchmarks or tests a run builds it here,
so that all of them build the same thing::

  experiment = experiment_lib.build(config)   # every check, no compilation
  state = experiment.initial_state()          # pretrained weights loaded
  steps = experiment.make_steps()             # pmap or shard_map
  state = steps.replicate(state)
  state, metrics = steps.train(state, experiment.dataset.train_batch(0))

`build` checks everything that can be wrong with a config (the loss and
its hyperparameters, the data set and the sampler it needs, the model and
its weights, the cross-batch memory) before anything is compiled, and in
an order that refuses a bad setting before data is prepared.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

import input_pipeline
import models
from models import heads, iresnet_weights, pretrained
from training import objectives, optimizers
from training import steps as steps_lib

# What a finished run writes to its workdir: the final metrics, the config
# and the resolved hyperparameters with their sources.
RESULTS_FILE = 'results.json'


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What one run is made of.

  Attributes:
    config: the experiment config.
    objective: the loss's registry entry.
    hparams: its resolved hyperparameters.
    dataset: the opened `input_pipeline.Dataset`.
    model: the `heads.EmbeddingModel` (backbone, embedding, head).
    learning_rate_fn: the schedule over `num_train_steps`.
    tx: the optimiser.
    num_train_steps: the run's length in steps.
  """

  config: ml_collections.ConfigDict
  objective: objectives.Objective
  hparams: objectives.HParams
  dataset: Any
  model: heads.EmbeddingModel
  learning_rate_fn: optax.Schedule
  tx: optax.GradientTransformation
  num_train_steps: int

  @property
  def steps_per_epoch(self) -> int:
    return self.dataset.steps_per_epoch

  @property
  def eval_every_steps(self) -> int:
    return self.config.eval_every_steps or self.steps_per_epoch

  @property
  def refresh_every_steps(self) -> int:
    """Steps between refreshes of the head state; 0 without a refresh."""
    if self.objective.refresh is None:
      return 0
    return self.objective.refresh.period(self.hparams, self.steps_per_epoch)

  def described_hparams(self) -> dict[str, dict[str, Any]]:
    """name -> {'value', 'source'}: for the log and results.json."""
    return objectives.describe_hparams(self.objective, self.hparams)

  def _fresh_state(self) -> steps_lib.TrainState:
    return steps_lib.create_train_state(
      jax.random.key(self.config.seed),
      self.model,
      self.dataset.info.image_shape,
      self.tx,
      memory_size=self.config.memory.size,
    )

  def abstract_state(self, sharding=None) -> steps_lib.TrainState:
    """The state's structure, shapes and dtypes: what a restore fills in.

    Nothing is initialised or compiled. `sharding`, if given, is set on
    every leaf (e.g. one device, for restoring on the host's first device).
    """
    abstract = jax.eval_shape(self._fresh_state)
    if sharding is None:
      return abstract
    return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      abstract,
    )

  def initial_state(self) -> steps_lib.TrainState:
    """A new run's state: initialised from the seed, then the backbone
    loaded from ``config.model.init_from`` if set."""
    state = self._fresh_state()
    path = self.config.model.get('init_from')
    if path:
      # The embedding and the head stay freshly initialised.
      if isinstance(self.model.backbone, models.IResNet):
        state = iresnet_weights.load_backbone(state, path)
      else:
        state = pretrained.load_backbone(state, path)
      logging.info(
        'Backbone initialised from %s (config.model.init_from).', path
      )
    return state

  def make_steps(self, devices=None) -> steps_lib.ParallelSteps:
    """The train, evaluation and refresh steps over `devices` (default:
    all devices of all processes), with ``config.parallelism``."""
    return steps_lib.make_steps(
      self.objective,
      self.hparams,
      self.learning_rate_fn,
      self.dataset.info.num_classes,
      parallelism=self.config.parallelism,
      devices=devices,
      memory=self.config.memory,
    )

  def refresh(self, state, steps: steps_lib.ParallelSteps):
    """The objective's head state recomputed from the whole training split
    (vMF's mean directions); `state` as `steps` take it."""
    total = None
    for batch in self.dataset.eval_batches(
      'train', self.config.eval_batch_size
    ):
      statistics = steps.refresh_statistics(state, batch)
      total = (
        statistics
        if total is None
        else jax.tree.map(jnp.add, total, statistics)
      )
    head_state = self.objective.refresh.update(
      steps_lib.to_host(state.head_state),
      steps_lib.to_host(total),
      self.hparams,
    )
    return steps.replicate(state.replace(head_state=head_state))


def build(config: ml_collections.ConfigDict, *, dataset=None) -> Experiment:
  """Checks `config` and assembles its run; nothing is compiled.

  Args:
    config: an experiment config (configs/default.py lists the fields).
    dataset: the opened data set, if the caller has it already; default:
      ``input_pipeline.create_dataset(config.input, seed=config.seed)``.

  Raises:
    ValueError: for any setting that cannot work, naming it.
    input_pipeline.DataNotPreparedError: the data set is not prepared.
  """
  objective = objectives.get_objective(config.loss.name)
  hparams = objectives.resolve_hparams(objective, config.loss)
  _check_fit(config, objective)
  bnneck = bool(config.model.get('bnneck', False))
  if bnneck:
    # Refuses a head BNNeck cannot sit before, before data is prepared.
    heads.without_classifier_bias(objective.make_head(1, hparams))
  backbone = _backbone(config)
  _check_weights(config, backbone)
  if dataset is None:
    dataset = input_pipeline.create_dataset(config.input, seed=config.seed)
  info = dataset.info
  if info.multilabel != objective.multilabel:
    kinds = {True: 'multi', False: 'single'}
    raise ValueError(
      f'config.loss.name={config.loss.name!r} is a '
      f'{kinds[objective.multilabel]}-label loss but config.input.name='
      f'{config.input.name!r} is {kinds[info.multilabel]}-label'
    )
  num_train_steps = config.num_train_steps or (
    config.num_epochs * dataset.steps_per_epoch
  )
  learning_rate_fn = optimizers.create_learning_rate_fn(
    config.optimizer, num_train_steps
  )
  experiment = Experiment(
    config=config,
    objective=objective,
    hparams=hparams,
    dataset=dataset,
    model=_model(
      backbone, objective.make_head(info.num_classes, hparams), bnneck
    ),
    learning_rate_fn=learning_rate_fn,
    tx=optimizers.create_optimizer(
      config.optimizer,
      learning_rate_fn,
      steps_per_epoch=dataset.steps_per_epoch,
    ),
    num_train_steps=num_train_steps,
  )
  _check_loss_call(experiment)
  return experiment


def _check_fit(config, objective: objectives.Objective) -> None:
  """The sampler and the reference set the objective needs."""
  sampler = config.input.get('sampler', 'random')
  if objective.sampling == 'class_balanced' and sampler != 'class_balanced':
    raise ValueError(
      f'The loss {objective.name!r} compares examples of the same class in '
      "a batch: it needs config.input.sampler='class_balanced' (the "
      'configs set it with the loss: --config=CONFIG.py:LOSS), received '
      f'{sampler!r}'
    )
  memory = config.get('memory')
  if memory is None or not memory.size:
    return
  steps_lib.memory_settings(memory, objective)  # Raises for a bad memory.
  if memory.size < config.input.batch_size:
    raise ValueError(
      f'config.memory.size ({memory.size}) must be at least the global '
      f'batch (config.input.batch_size={config.input.batch_size}): the '
      'memory holds whole batches'
    )


def _check_weights(config, backbone) -> None:
  """``config.model.init_from`` against the backbone and the input scale;
  before the data set is opened (an image folder may be prepared)."""
  name = config.model.name
  if config.model.get('init_from'):
    if not isinstance(backbone, (models.ResNet, models.IResNet)):
      raise ValueError(
        'config.model.init_from loads torchvision/timm ResNet weights into '
        'resnet18, resnet50 or resnet101, or arcface_torch weights into '
        f'iresnet18/34/50/100; received config.model.name={name!r}'
      )
    if config.input.get('normalization') is None:
      raise ValueError(
        'config.model.init_from is set: config.input.normalization must say '
        "how the weights expect their input, 'imagenet' for ImageNet weights "
        "(torchvision, timm) or 'none' for weights exported from a run of "
        'this project; received None'
      )
  elif config.input.get('normalization') == 'imagenet':
    # The retrieval protocol's configs fine-tune ImageNet weights: without
    # them a run would train from scratch and report incomparable numbers.
    raise ValueError(
      "config.input.normalization='imagenet' scales images for ImageNet "
      'weights, but config.model.init_from is not set: give them with '
      '--config.model.init_from=PATH (a safetensors file; docs/'
      'retrieval_protocol.md), or set --config.input.normalization=none to '
      'train from scratch'
    )


def _backbone(config):
  attributes = dict(config.model.items())
  for field in models.CONFIG_ONLY_FIELDS:  # Read by the run.
    attributes.pop(field, None)
  return models.get_model(
    attributes.pop('name'), bn_axis_name=steps_lib.AXIS_NAME, **attributes
  )


def _model(backbone, head, bnneck: bool) -> heads.EmbeddingModel:
  """The model; with BNNeck, the classifier after it is bias-free (the
  strong re-id baseline's, modeling/baseline.py)."""
  if bnneck:
    head = heads.without_classifier_bias(head)
  return heads.EmbeddingModel(backbone=backbone, head=head, bnneck=bnneck)


def _check_loss_call(experiment: Experiment) -> None:
  """Runs the loss's argument checks abstractly, before any compilation."""
  info = experiment.dataset.info
  images = jax.ShapeDtypeStruct((2, *info.image_shape), jnp.float32)
  label_shape = (2, info.num_classes) if info.multilabel else (2,)
  labels = jax.ShapeDtypeStruct(label_shape, jnp.int32)

  def loss(state, images, labels):
    embeddings, outputs = state.apply_fn(
      {
        'params': state.params,
        'batch_stats': state.batch_stats,
        heads.HEAD_STATE: state.head_state,
      },
      images,
      train=False,
    )
    inputs = objectives.LossInputs(embeddings, labels, outputs)
    return objectives.batch_loss(
      experiment.objective, experiment.hparams, inputs
    )

  jax.eval_shape(loss, experiment.abstract_state(), images, labels)
