"""Orbax checkpoints that resume exactly and never overwrite foreign work.

Each checkpoint holds the train state and the config fields that determine
the state's meaning (model, loss, data set...). A run pointed at a workdir
whose checkpoint came from an incompatible config stops before it writes
anything. Only orbax's array storage and JSON are read back: nothing is
unpickled or executed.
"""

import json
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp

from training import steps as steps_lib

# Config fields that change what a checkpoint's arrays mean; everything else
# (step counts, logging, evaluation) may differ between a run and its resume.
_IDENTITY_FIELDS = (
  'model',
  'loss.name',
  'input.name',
  'input.class_disjoint',
  'input.image_size',
  'input.normalization',
  'optimizer.name',
)
# Parts of the fields above that are not identity: where a new run's
# weights came from (a resumed run restores its own; the file may be gone).
_NOT_IDENTITY = {'model': ('init_from',)}
# Fields at the value they had before they existed: dropped from the
# identity, so that checkpoints written before then stay compatible.
_DEFAULT_AS_ABSENT = {'model': {'bnneck': False}}
# Values that mean the same as None: 'none' and None both keep pixels in
# [0, 1].
_SAME_AS_NONE = {'input.normalization': ('none',)}


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> Any:
  value = config
  for key in dotted.split('.'):
    value = value.get(key) if hasattr(value, 'get') else None
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
    for key in _NOT_IDENTITY.get(dotted, ()):
      value.pop(key, None)
    for key, default in _DEFAULT_AS_ABSENT.get(dotted, {}).items():
      if key in value and value[key] == default:
        del value[key]
  if value in _SAME_AS_NONE.get(dotted, ()):
    return None
  return value


def config_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields of `config` a checkpoint must agree with, JSON-ready."""
  return json.loads(
    json.dumps(
      {field: _lookup(config, field) for field in _IDENTITY_FIELDS},
      default=str,
    )
  )


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint of a different experiment."""


class Checkpointer:
  """Saves and restores the train state under ``workdir/checkpoints``.

  Saves are asynchronous (the step loop goes on while orbax writes) and keep
  the newest `max_to_keep`.
  """

  def __init__(
    self,
    workdir: str,
    config: ml_collections.ConfigDict,
    *,
    max_to_keep: int,
  ):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    self._identity = config_identity(config)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=True,
        create=True,
      ),
      item_names=('state', 'config'),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def check_compatible(self) -> None:
    """Raises IncompatibleCheckpointError on a foreign checkpoint."""
    step = self.latest_step()
    if step is None:
      return
    stored = self._manager.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
    )['config']
    differences = [
      f'{field}: checkpoint {stored.get(field)!r}, this run '
      f'{self._identity[field]!r}'
      for field in self._identity
      if stored.get(field) != self._identity[field]
    ]
    if differences:
      raise IncompatibleCheckpointError(
        f'{self.directory} holds a checkpoint (step {step}) of an '
        'incompatible config; refusing to overwrite it. Differences: '
        + '; '.join(differences)
        + '. Use another --workdir, or delete that directory to start '
        'over.'
      )

  def restore(self, abstract_state: Any) -> Any | None:
    """The newest checkpoint restored into `abstract_state`'s structure."""
    step = self.latest_step()
    if step is None:
      return None
    self.check_compatible()
    try:
      restored = self._manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
      )
    except (ValueError, KeyError) as error:
      raise IncompatibleCheckpointError(
        f'{self.directory}: the checkpoint at step {step} does not match '
        f"this run's model state ({error}). Use another --workdir."
      ) from error
    return restored['state']

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save of `state` at `step`.

    Multi-process runs must pass host-global or numpy arrays (orbax refuses
    host-local device arrays there); the state is fetched to the host first.
    """
    host_state = steps_lib.to_host(state)
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(host_state),
        config=ocp.args.JsonSave(self._identity),
      ),
      force=True,
    )

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
