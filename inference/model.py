"""A trained model loaded from its workdir, ready to embed images.

The run is rebuilt by `training.experiment.build` from its own config
(``results.json``, or one given explicitly for a run that has not
finished), as ``train.py`` built it; its state is restored by
`checkpointing.Checkpointer` from the newest checkpoint (which also checks
that the checkpoint belongs to that config), and images are embedded by
the evaluation's own step. So an embedding is what the evaluation computes.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from inference import images as images_lib
from training import checkpointing, objectives
from training import experiment as experiment_lib
from training import steps as steps_lib


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
  path = os.path.join(workdir, experiment_lib.RESULTS_FILE)
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
    outputs = self.steps.evaluate(self.replicated_state, {'image': images})
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
  experiment = experiment_lib.build(config)
  dataset = experiment.dataset
  transform = images_lib.Transform.of_data_set(
    dataset.spec,
    dataset.info.image_shape,
    config.input.get('image_size'),
    config.input.get('normalization'),
  )
  # The state's structure only: nothing is initialised or compiled for
  # values the checkpoint replaces.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  checkpointer = checkpointing.Checkpointer(
    workdir, config, max_to_keep=config.max_checkpoints_to_keep
  )
  try:
    restored = checkpointer.restore(experiment.abstract_state(device))
  finally:
    checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f'{checkpointer.directory} holds no checkpoint')
  steps = experiment.make_steps()
  return TrainedModel(
    workdir=workdir,
    config=config,
    step=int(restored.step),
    objective=experiment.objective,
    hparams=experiment.hparams,
    dataset=dataset,
    transform=transform,
    state=restored,
    steps=steps,
    replicated_state=steps.replicate(restored),
  )
