"""A trained model loaded from its workdir, ready to embed images.

Everything is rebuilt the way ``train.py`` built it, from the run's own
config (``results.json``, or one given explicitly for a run that has not
finished): the same model (``train._build_model``), the same train state
(`steps.create_train_state`), restored by `checkpointing.Checkpointer` from
the newest checkpoint (which also checks that the checkpoint belongs to
that config), and the evaluation step of `steps.make_steps`. Nothing of the
training code is repeated here, so an embedding is what the evaluation
computes.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

import input_pipeline
import train
from inference import images as images_lib
from input_pipeline import sources
from training import checkpointing, objectives, optimizers
from training import steps as steps_lib

RESULTS_FILE = 'results.json'


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples the config held (hashable attributes)."""
  if isinstance(value, dict):
    return {key: _tuples(item) for key, item in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(item) for item in value)
  return value


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a finished run wrote to ``workdir/results.json``.

  Raises:
    FileNotFoundError: the run has not finished (or `workdir` is wrong);
      the message says to pass the config instead.
  """
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{path} does not exist: the run in {workdir!r} has not finished, or '
      'that is not a workdir. Pass the config it was trained with '
      '(--config=..., the same overrides).'
    )
  with open(path) as file:
    return ml_collections.ConfigDict(_tuples(json.load(file)['config']))


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A restored model and what it was trained on.

  Attributes:
    workdir: the run's workdir.
    config: the run's config.
    step: the step of the restored checkpoint.
    objective: the loss's registry entry.
    hparams: its resolved hyperparameters.
    dataset: the run's data set (its splits, class names, image shape).
    transform: how an image file becomes a model input, as the data set's
      evaluation images did.
    state: the restored train state, on the host.
    steps: the mapped steps; `evaluate` is the evaluation's own step.
    replicated_state: `state` placed as `steps.evaluate` takes it.
  """

  workdir: str
  config: ml_collections.ConfigDict
  step: int
  objective: objectives.Objective
  hparams: Any
  dataset: Any
  transform: images_lib.Transform
  state: steps_lib.TrainState
  steps: steps_lib.ParallelSteps
  replicated_state: Any

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.dataset.info.image_shape

  @property
  def batch_multiple(self) -> int:
    """Batches must hold a multiple of this many rows (the local devices)."""
    return jax.local_device_count()

  def embed_batch(self, images: np.ndarray) -> np.ndarray:
    """Embeddings ``[b, dim]`` of model inputs ``[b, H, W, C]``.

    `b` must be a multiple of `batch_multiple`; a fixed `b` compiles once.
    """
    info = self.dataset.info
    label_shape = (info.num_classes,) if info.multilabel else ()
    # Only the class scores read labels, and only their shape matters.
    labels = np.zeros((len(images), *label_shape), np.int32)
    outputs = self.steps.evaluate(
      self.replicated_state, {'image': images, 'label': labels}
    )
    return np.asarray(outputs['embeddings'])


def load(
  workdir: str, config: ml_collections.ConfigDict | None = None
) -> TrainedModel:
  """Restores the newest checkpoint of the run in `workdir`.

  Args:
    workdir: the run's workdir (``checkpoints/`` inside).
    config: the run's config; None reads ``workdir/results.json``.

  Returns:
    The model. Its data set is opened (prepared first where the training
    run would prepare it) for the class count, image shape and splits.

  Raises:
    FileNotFoundError: no config or no checkpoint in `workdir`.
    checkpointing.IncompatibleCheckpointError: the checkpoint was trained
      with a different model, loss or data set than `config` says.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise FileNotFoundError(
      f'{workdir!r} holds no checkpoints/: not the workdir of a training run'
    )
  if config is None:
    config = read_config(workdir)
  objective = objectives.get_objective(config.loss.name)
  hparams = objectives.resolve_hparams(objective, config.loss)
  dataset = input_pipeline.create_dataset(config.input, seed=config.seed)
  info = dataset.info
  # The spec completed from the prepared data (image folders: the stored
  # shape and the transform their size implies), as the pipeline uses it.
  spec = sources.open_set(config.input).spec
  transform = images_lib.Transform.of_data_set(
    spec,
    info.image_shape,
    config.input.get('image_size'),
    config.input.get('normalization'),
  )
  model = train._build_model(config, objective, hparams, info.num_classes)
  # The schedule's length does not shape the optimiser state that the
  # checkpoint is restored into.
  learning_rate_fn = optimizers.create_learning_rate_fn(
    config.optimizer, max(int(config.num_train_steps), 1)
  )
  tx = optimizers.create_optimizer(config.optimizer, learning_rate_fn)
  # The state's structure, shapes and dtypes only: nothing is initialised or
  # compiled (several seconds on a CPU) for values the checkpoint replaces.
  # Runs with a cross-batch memory checkpoint it in their state.
  memory = config.get('memory')
  abstract_state = jax.eval_shape(
    lambda: steps_lib.create_train_state(
      jax.random.key(config.seed),
      model,
      info.image_shape,
      tx,
      memory_size=memory.size if memory else 0,
    )
  )
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract_state = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
    abstract_state,
  )
  checkpointer = checkpointing.Checkpointer(
    workdir, config, max_to_keep=config.max_checkpoints_to_keep
  )
  try:
    restored = checkpointer.restore(abstract_state)
  finally:
    checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f'{checkpointer.directory} holds no checkpoint')
  steps = steps_lib.make_steps(
    objective,
    hparams,
    learning_rate_fn,
    info.num_classes,
    parallelism=config.parallelism,
    memory=memory,
  )
  return TrainedModel(
    workdir=workdir,
    config=config,
    step=int(restored.step),
    objective=objective,
    hparams=hparams,
    dataset=dataset,
    transform=transform,
    state=restored,
    steps=steps,
    replicated_state=steps.replicate(restored),
  )
