"""Optimisers and learning-rate schedules from ``config.optimizer``."""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from models import heads

OPTIMIZERS = ('sgd', 'adamw')
SCHEDULES = ('constant', 'cosine', 'step')


def create_learning_rate_fn(
  config: ml_collections.ConfigDict, num_train_steps: int
) -> optax.Schedule:
  """Linear warm-up, then a constant, cosine or step schedule.

  Args:
    config: ``config.optimizer`` with ``learning_rate``, ``schedule``,
      ``warmup_steps`` and, for 'step', ``decay_boundaries`` (fractions of
      the run) and ``decay_factor``.
    num_train_steps: the run's length; cosine decays to 0 at its end.

  Returns:
    An optax schedule: step -> learning rate.
  """
  if config.schedule not in SCHEDULES:
    raise ValueError(
      f'config.optimizer.schedule must be one of {SCHEDULES}, received '
      f'{config.schedule!r}'
    )
  warmup_steps = min(config.warmup_steps, num_train_steps)
  base = config.learning_rate
  decay_steps = max(num_train_steps - warmup_steps, 1)
  if config.schedule == 'constant':
    after = optax.constant_schedule(base)
  elif config.schedule == 'cosine':
    after = optax.cosine_decay_schedule(base, decay_steps)
  else:
    after = optax.piecewise_constant_schedule(
      base,
      {
        int(fraction * decay_steps): config.decay_factor
        for fraction in config.decay_boundaries
      },
    )
  if warmup_steps == 0:
    return after
  warmup = optax.linear_schedule(0.0, base, warmup_steps)
  return optax.join_schedules([warmup, after], [warmup_steps])


def _decay_mask(params):
  # Weight decay on matrices and kernels only: biases, BatchNorm scales and
  # G-softmax's mu/sigma are 1-D and must not be pulled towards 0.
  return jax.tree.map(lambda p: p.ndim > 1, params)


# Parameter groups, each with its own learning-rate multiplier
# (config.optimizer.lr_multipliers): the pretrained backbone, the new
# embedding layer at its end (and the BNNeck after it, as new), the loss's
# head (class weights, proxies, ...) and, within it, G-softmax's Gaussians
# (their means and deviations: the official multi-label scripts give them
# their own weight).
PARAM_GROUPS = ('backbone', 'embedding', 'head', 'gaussians')
_GAUSSIAN_PARAMS = ('mu', 'sigma')


def param_group(path: tuple[str, ...]) -> str:
  """The group of the parameter at `path` in `EmbeddingModel`'s params."""
  if path[0] == 'head':
    return 'gaussians' if path[-1] in _GAUSSIAN_PARAMS else 'head'
  if path[:2] == ('backbone', 'embedding') or path[0] == heads.BNNECK:
    return 'embedding'
  return 'backbone'


def _labels(params):
  return jax.tree_util.tree_map_with_path(
    lambda path, _: param_group(tuple(key.key for key in path)), params
  )


def _base_optimizer(config, learning_rate):
  if config.name == 'sgd':
    return optax.chain(
      optax.add_decayed_weights(config.weight_decay, mask=_decay_mask),
      optax.sgd(
        learning_rate,
        momentum=config.momentum or None,
        nesterov=config.nesterov,
      ),
    )
  if config.name == 'adamw':
    return optax.adamw(
      learning_rate, weight_decay=config.weight_decay, mask=_decay_mask
    )
  raise ValueError(
    f'config.optimizer.name must be one of {OPTIMIZERS}, received '
    f'{config.name!r}'
  )


def _check_groups(config):
  multipliers = dict(config.get('lr_multipliers') or {})
  unknown = set(multipliers) - set(PARAM_GROUPS)
  if unknown:
    raise ValueError(
      f'config.optimizer.lr_multipliers has no group '
      f'{", ".join(sorted(unknown))}; its groups: {", ".join(PARAM_GROUPS)}'
    )
  for group, value in multipliers.items():
    if not isinstance(value, (int, float)) or value < 0:
      raise ValueError(
        f'config.optimizer.lr_multipliers.{group} must be a number >= 0, '
        f'received {value!r}'
      )
  frozen = config.get('backbone_frozen_epochs', 0)
  if not isinstance(frozen, (int, float)) or frozen < 0:
    raise ValueError(
      'config.optimizer.backbone_frozen_epochs must be a number >= 0, '
      f'received {frozen!r}'
    )
  return {group: float(multipliers.get(group, 1.0)) for group in PARAM_GROUPS}


def create_optimizer(
  config: ml_collections.ConfigDict,
  learning_rate_fn: optax.Schedule,
  *,
  steps_per_epoch: int = 1,
) -> optax.GradientTransformation:
  """SGD with (Nesterov) momentum or AdamW, with masked weight decay.

  Fine-tuning gives the parameter groups of `PARAM_GROUPS` their own
  learning rates (optax.multi_transform): group ``g`` learns at
  ``learning_rate_fn(step) * config.lr_multipliers[g]``, and the backbone
  not at all during its first ``config.backbone_frozen_epochs`` epochs (the
  new layers learn alone while they are random; AdamW's moments of the
  backbone still follow its gradients then, where torch's
  ``requires_grad=False`` leaves them unset). With every multiplier 1
  and no frozen steps it is the plain optimiser, one state for all
  parameters.

  Args:
    config: ``config.optimizer``: ``name`` ('sgd' or 'adamw'),
      ``weight_decay``, SGD's ``momentum`` and ``nesterov``, and optionally
      ``lr_multipliers`` (a mapping from group to factor, 1 for a group it
      omits) and ``backbone_frozen_epochs``.
    learning_rate_fn: the schedule of the backbone's learning rate.
    steps_per_epoch: converts ``backbone_frozen_epochs`` to steps.

  Returns:
    The optax transformation.

  Raises:
    ValueError: for an unknown optimiser or group, a negative multiplier or
      frozen-epoch count.
  """
  multipliers = _check_groups(config)
  frozen_steps = round(
    config.get('backbone_frozen_epochs', 0) * steps_per_epoch
  )
  if frozen_steps == 0 and all(m == 1.0 for m in multipliers.values()):
    return _base_optimizer(config, learning_rate_fn)

  def schedule(group):
    multiplier = multipliers[group]
    if group == 'backbone' and frozen_steps:
      return lambda step: jnp.where(
        step < frozen_steps, 0.0, multiplier * learning_rate_fn(step)
      )
    return lambda step: multiplier * learning_rate_fn(step)

  return optax.multi_transform(
    {group: _base_optimizer(config, schedule(group)) for group in PARAM_GROUPS},
    _labels,
  )
