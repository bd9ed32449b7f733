r"""Where Circle pair-wise forward+backward spends its time on XLA:CPU.

The loss at B = 4096, D = 128 (the batch as its own reference, dense
path) is timed whole, next to its GEMM skeleton (`benchmarks/losses.py`'s
``sum(r * (x @ x.T))`` and its gradient), and then pass by pass, each pass
jitted alone on materialised inputs as the fused program runs it:

- ``cosines``: the ``[B, B]`` GEMM (writes B^2 floats);
- ``maxima``: the masked logits' row maxima, positives and negatives
  (reads the cosines and the labels);
- ``exp-sums``: the masked, shifted exps and their row sums;
- ``slopes``: d loss / d cosine (an exp per pair; writes B^2 floats);
- ``slopes @ x`` and ``slopes.T @ x``: the two backward GEMMs.

Each pass is set against two floors measured on the same arrays: a plain
row sum of the cosines (the memory traffic of one read of B^2 floats) and
a plain ``[B, B] x [B, D]`` GEMM. A pass far above its floor is limited by
the code XLA:CPU generates for it, not by memory or arithmetic.

Then the whole loss once more under `jax.profiler` (a Perfetto trace, read
back here): the time of each XLA operation of the compiled program, the
fusions XLA:CPU made, per step.

Run: ``python -m benchmarks.pairwise_passes`` (about a minute on 2 cores).
"""

import collections
import functools
import glob
import gzip
import json
import os
import tempfile

import cpuinfo
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import losses
from benchmarks import timing

_BATCH = flags.DEFINE_integer('batch', 4096, 'B.')
_DIM = flags.DEFINE_integer('dim', 128, 'D.')
_REPS = flags.DEFINE_integer('reps', 11, 'Timed rounds.')
_PROFILE_STEPS = flags.DEFINE_integer(
  'profile_steps', 5, 'Steps traced for the per-operation table (0: none).'
)

_MARGIN, _GAMMA = 0.25, 256.0


def _masked_logits(cosines, labels):
  same = labels[:, None] == labels[None, :]
  keep = ~jnp.eye(cosines.shape[0], dtype=bool)
  m = _MARGIN
  alphas = jax.nn.relu(jnp.where(same, 1.0 + m - cosines, cosines + m))
  logits = _GAMMA * alphas * jnp.where(same, 1.0 - m - cosines, cosines - m)
  positive = jnp.where(same & keep, logits, -jnp.inf)
  negative = jnp.where(keep & ~same, logits, -jnp.inf)
  return same, alphas, positive, negative


def _maxima(cosines, labels):
  _, _, positive, negative = _masked_logits(cosines, labels)
  return jnp.max(positive, axis=1), jnp.max(negative, axis=1)


def _exp_sums(cosines, labels, max_positive, max_negative):
  _, _, positive, negative = _masked_logits(cosines, labels)
  return (
    jnp.sum(jnp.exp(positive - max_positive[:, None]), axis=1),
    jnp.sum(jnp.exp(negative - max_negative[:, None]), axis=1),
  )


def _slopes(cosines, labels, positive_offset, negative_offset):
  same, alphas, positive, negative = _masked_logits(cosines, labels)
  weights = jnp.exp(
    jnp.where(
      same,
      positive + positive_offset[:, None],
      negative + negative_offset[:, None],
    )
  )
  return _GAMMA * weights * jnp.where(same, -alphas, alphas)


def _shapes(jitted, *args):
  """The result shape of each instruction of the compiled program."""
  shapes = {}
  text = jitted.lower(*args).compile().as_text()
  for line in text[text.index('ENTRY') :].splitlines():
    line = line.strip().removeprefix('ROOT ')
    if line.startswith('%') and ' = ' in line:
      name, rest = line[1:].split(' = ', 1)
      shapes[name] = rest.split(' ', 1)[0].split('{')[0]
  return shapes


def _print_profile(jitted, *args, shapes_of):
  """Milliseconds per step of each XLA operation, from a Perfetto trace."""
  steps = _PROFILE_STEPS.value
  if not steps:
    return
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(jitted(*args))
    # The Perfetto trace; the directory also holds the XPlane protobuf.
    path = sorted(
      glob.glob(
        os.path.join(directory, '**', '*.trace.json.gz'), recursive=True
      )
    )[-1]
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  micros = collections.Counter()
  for event in events:
    if event.get('ph') == 'X' and event.get('name') in shapes_of:
      micros[event['name']] += event.get('dur', 0)
  total = sum(micros.values()) / steps / 1e3
  print(
    f'\nThe whole loss under jax.profiler, {steps} steps: XLA operations '
    f'taking {total:.1f} ms per step (those above 0.5 ms):\n'
  )
  print('| operation | result | ms per step |')
  print('|---|---|---|')
  for name, value in micros.most_common():
    if value / steps / 1e3 >= 0.5:
      print(f'| {name} | {shapes_of[name]} | {value / steps / 1e3:.1f} |')


def main(argv):
  del argv
  batch, dim = _BATCH.value, _DIM.value
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
  x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
  labels = jnp.asarray(rng.integers(0, batch // 8, batch), jnp.int32)
  r = jnp.asarray(rng.standard_normal((batch, batch)), jnp.float32)

  loss = jax.jit(
    jax.value_and_grad(
      lambda x_: jnp.mean(
        losses.circle_loss_pairwise(x_, labels, margin=_MARGIN, gamma=_GAMMA)
      )
    )
  )
  skeleton = jax.jit(
    jax.value_and_grad(lambda x_, r_: jnp.sum(r_ * (x_ @ x_.T)))
  )
  cosines = jax.jit(lambda a: a @ a.T)(x)
  max_p, max_n = jax.jit(_maxima)(cosines, labels)
  slopes = jax.jit(_slopes)(cosines, labels, -max_p, -max_n)
  cases = [
    ('whole loss, forward+backward', functools.partial(loss, x), None),
    ('GEMM skeleton, forward+backward', functools.partial(skeleton, x, r),
     None),
    ('cosines = x @ x.T', functools.partial(jax.jit(lambda a: a @ a.T), x),
     'gemm'),
    ('maxima', functools.partial(jax.jit(_maxima), cosines, labels), 'read'),
    ('exp-sums', functools.partial(jax.jit(_exp_sums), cosines, labels,
                                   max_p, max_n), 'read'),
    ('slopes', functools.partial(jax.jit(_slopes), cosines, labels, -max_p,
                                 -max_n), 'read+write'),
    ('slopes @ x', functools.partial(jax.jit(lambda s, a: s @ a), slopes, x),
     'gemm'),
    ('slopes.T @ x', functools.partial(jax.jit(lambda s, a: s.T @ a), slopes,
                                       x), 'gemm'),
    ('floor: row sum of B^2 floats',
     functools.partial(jax.jit(lambda c: jnp.sum(c, axis=1)), cosines), None),
    ('floor: 2 * (B^2 floats), read+write',
     functools.partial(jax.jit(lambda c: 2 * c), cosines), None),
  ]  # fmt: skip
  for _, run, _ in cases:
    jax.block_until_ready(run())
  seconds = timing.median_seconds_interleaved(
    [lambda run=run: jax.block_until_ready(run()) for _, run, _ in cases],
    _REPS.value,
  )
  ms = {name: 1e3 * s for (name, _, _), s in zip(cases, seconds, strict=True)}
  gigabytes = batch * batch * 4 / 1e9
  cpu = cpuinfo.get_cpu_info().get('brand_raw', '?')
  print(
    f'jax {jax.__version__}, {jax.default_backend()} ({cpu}, '
    f'{os.cpu_count()} cores); B={batch} D={dim}, margin {_MARGIN}, '
    f'gamma {_GAMMA}; median of {_REPS.value} interleaved rounds; load '
    f'average {os.getloadavg()[0]:.1f} at the end\n'
  )
  print('| pass | ms | B^2-float traffic | GB/s at that traffic |')
  print('|---|---|---|---|')
  traffic = {'read': 1, 'read+write': 2, 'gemm': None}
  for name, _, kind in cases:
    if kind is None:
      passes = {'floor: row sum of B^2 floats': 1}.get(name)
      if name.startswith('floor: 2'):
        passes = 2
    else:
      passes = traffic[kind]
    rate = f'{passes * gigabytes / (ms[name] / 1e3):.1f}' if passes else 'n/a'
    print(f'| {name} | {ms[name]:.1f} | {passes or "-"} | {rate} |')
  _print_profile(loss, x, shapes_of=_shapes(loss, x))
  parts = sum(ms[name] for name, _, kind in cases if kind is not None)
  whole = ms['whole loss, forward+backward']
  ratio = whole / ms['GEMM skeleton, forward+backward']
  print(
    f'\nSum of the passes: {parts:.1f} ms; the whole loss {whole:.1f} ms '
    f'= {ratio:.2f}x its skeleton.'
  )


if __name__ == '__main__':
  app.run(main)
