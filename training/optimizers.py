"""Optimisers and learning-rate schedules from ``config.optimizer``."""

import jax
import ml_collections
import optax

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


def create_optimizer(
  config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule
) -> optax.GradientTransformation:
  """SGD with (Nesterov) momentum or AdamW, with masked weight decay."""
  if config.name == 'sgd':
    return optax.chain(
      optax.add_decayed_weights(config.weight_decay, mask=_decay_mask),
      optax.sgd(
        learning_rate_fn,
        momentum=config.momentum or None,
        nesterov=config.nesterov,
      ),
    )
  if config.name == 'adamw':
    return optax.adamw(
      learning_rate_fn, weight_decay=config.weight_decay, mask=_decay_mask
    )
  raise ValueError(
    f'config.optimizer.name must be one of {OPTIMIZERS}, received '
    f'{config.name!r}'
  )
