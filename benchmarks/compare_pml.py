r"""discfeat's losses against pytorch-metric-learning (PML): values and speed.

For every loss both libraries have, the same float32 inputs go through
discfeat (JAX) and PML (PyTorch, CPU) with the same hyperparameters (PML's
defaults, mapped to our conventions) and the same class weights:

- `circle_loss_pairwise` against `losses.CircleLoss`;
- `batch_hard_triplet_loss` on L2-normalised embeddings against
  `losses.TripletMarginLoss` on the triplets of `miners.BatchHardMiner`;
- `normalized_softmax_cross_entropy` against `losses.NormalizedSoftmaxLoss`;
- `cosface_loss` against `losses.CosFaceLoss`;
- `arcface_loss` against `losses.ArcFaceLoss`;
- `proxy_anchor_loss` against `losses.ProxyAnchorLoss`.

The pair-based baselines (contrastive, multi-similarity, generalised lifted
structure, N-pair, triplet margin, angular, SupCon, NT-Xent) are checked
first, value and gradients in float64 at PML's defaults and one other
setting (`pair_parity_rows`, ``--nopair_parity`` skips it). So are
L-Softmax, SphereFace, sub-centre ArcFace, ProxyNCA and SoftTriple, with
gradients w.r.t. the class weights too (`class_parity_rows`,
``--noclass_parity`` skips it); ``--notiming`` prints the parity tables
only. All of them are then timed as the losses above (`_baseline_cases`:
PML's defaults, with the parity rows' miners and reducers): the pair-based
ones at B = 1024, D = 128 (8 per class; NT-Xent at B = 256, where PML's
O(B^4) matrix fits; angular with ``block_size``, as its dense form holds
``[B, B, B]``), the others at B = 4096, D = 512, C = 1000. The three
triplet margin rows are ``triplet_margin_loss:all``, ``:semihard`` and
``:hard``; ``--losses=triplet_margin_loss`` selects all three.

Each row first checks that the two agree: the relative difference of the
reduced loss and of the gradients w.r.t. the embeddings and, for the proxy
losses, w.r.t. the class weights; "agree" means all three are below 1e-4.
Then it times forward + backward of the two, alternating, at the same shapes
and thread count: ``jax.jit(jax.value_and_grad(reduced loss))`` against
PML's ``loss(...).backward()``. The reduction on our side is PML's: the mean
for the softmax proxy losses (``MeanReducer``), the mean over the anchors
with a non-zero loss for Circle and triplet (``AvgNonZeroReducer``). Our
Proxy-Anchor loss is already the batch's scalar (the paper's Eq. 4), and so
is PML's: its ``DivisorReducer`` sums the per-proxy positive terms divided by
the number of proxies with a positive in the batch, plus the per-proxy
negative terms divided by the number of classes, which is Eq. 4 exactly.

Conventions mapped (PML 2.9.0):

- ``ArcFaceLoss(margin=...)`` is in degrees (default 28.6); ours is in
  radians.
- ``NormalizedSoftmaxLoss(temperature=t)`` divides the cosines by ``t``; our
  ``scale`` is ``1 / t``.
- PML keeps the class weights of its softmax losses as ``W`` of shape
  ``[dim, num_classes]``; ours are ``[num_classes, dim]``, so PML gets the
  transpose and its gradient is transposed back before comparing.
  ``ProxyAnchorLoss.proxies`` is ``[num_classes, dim]`` as ours and is
  copied as is.
- ``ProxyAnchorLoss`` measures ``CosineSimilarity``, which L2-normalises the
  embeddings and the proxies (norms floored at 1e-12, as ours), with the
  paper's defaults ``margin=0.1`` and ``alpha=32``.
- PML's miners and ``TripletMarginLoss`` use ``LpDistance`` with
  ``normalize_embeddings=True`` (the Euclidean distance of L2-normalised
  embeddings) and the hinge (``smooth_loss=False``), so our triplet loss gets
  ``l2_normalize``\ d embeddings and ``soft=False``.

Memory: "discfeat temp MiB" is XLA's compiled temporary allocation; "PML peak
MiB" is the growth of the resident set during one PML forward + backward,
measured in a fresh process after a warm-up step (``/proc/self/clear_refs``
and glibc's ``malloc_trim``: Linux only, else "n/a"). The
last row runs our blocked Circle loss at a batch where PML's ``[B, B]``
matrices do not fit: PML is not run there; its need is the measured peak of
the dense row scaled by ``(B_huge / B)**2``.

Torch is installed in its own venv (it is not a dependency of discfeat):
``make bench-pml`` builds ``.venv-pml`` with the ``pml`` extra and runs this
module; ``.venv-pml/bin/python -m benchmarks.compare_pml --quick`` is a smoke
run of under a minute. ``--threads N`` sets torch's thread count and pins the
process to N cores, so both libraries get the same cores; ``--losses``
restricts the run to some of our functions (e.g.
``--losses=proxy_anchor_loss --nohuge``).
"""

import ctypes
import ctypes.util
import dataclasses
import functools
import gc
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable

import cpuinfo
import jax
import jax.numpy as jnp
import numpy as np
import pytorch_metric_learning
import torch
from absl import app, flags
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import regularizers as pml_regularizers

import losses
from benchmarks import timing

_QUICK = flags.DEFINE_bool(
  'quick', False, 'Small sizes (B=512), no huge row: a smoke run.'
)
_REPS = flags.DEFINE_integer(
  'reps', None, 'Timed repetitions per row; default 7, 3 with --quick.'
)
_THREADS = flags.DEFINE_integer(
  'threads',
  None,
  'Threads for both libraries (torch.set_num_threads and the cores the '
  'process may run on); default: every core.',
)
_HUGE = flags.DEFINE_bool(
  'huge',
  True,
  'Add the row where only the blocked loss fits (~75 s on 2 cores); '
  'ignored with --quick.',
)
_HUGE_BATCH = flags.DEFINE_integer(
  'huge_batch', 65536, 'Batch of the huge Circle row.'
)
_BLOCK = flags.DEFINE_integer(
  'block_size', 1024, 'Rows per block of our loss in the huge row.'
)
_PML_MAX_GIB = flags.DEFINE_float(
  'pml_max_gib',
  20.0,
  'PML is not run where its estimated peak memory exceeds this (or 80% of '
  'the available memory).',
)
_LOSSES = flags.DEFINE_list(
  'losses',
  None,
  'Our functions to compare (comma-separated, e.g. proxy_anchor_loss or '
  'triplet_margin_loss:hard; a function name selects all its rows); '
  'default: all. The huge row runs only with circle_loss_pairwise.',
)
_PML_MEMORY = flags.DEFINE_bool(
  'pml_memory',
  True,
  "Measure PML's peak memory per row in a fresh process (a few seconds "
  'each). Without it the huge row has no estimate and PML is not run there.',
)

_PAIR_PARITY = flags.DEFINE_bool(
  'pair_parity',
  True,
  'First print the pair-based baselines against their PML classes (value '
  'and gradients, float64, a few seconds).',
)

_CLASS_PARITY = flags.DEFINE_bool(
  'class_parity',
  True,
  'Print the classification-style and proxy baselines against their PML '
  'classes (value and gradients, float64, a few seconds).',
)
_TIMING = flags.DEFINE_bool(
  'timing',
  True,
  'Run the timed rows; --notiming prints the parity tables only.',
)

_AGREE_TOLERANCE = 1e-4
_SAMPLES_PER_CLASS = 8
_MIB = 2**20
_GIB = 2**30

# PML's defaults, in its conventions.
_CIRCLE_M = 0.4
_CIRCLE_GAMMA = 80.0
_TRIPLET_MARGIN = 0.05
_NORMFACE_TEMPERATURE = 0.05
_COSFACE_MARGIN = 0.35
_COSFACE_SCALE = 64.0
_ARCFACE_MARGIN_DEGREES = 28.6
_ARCFACE_SCALE = 64.0
# Also the paper's (Kim et al., CVPR 2020, implementation details).
_PROXY_ANCHOR_MARGIN = 0.1
_PROXY_ANCHOR_ALPHA = 32.0

# The reductions on our side (the "reduction" column): PML's reducer of each
# loss.
_MEAN = 'mean'
_NONZERO_MEAN = 'mean over non-zero'
_BATCH = 'batch scalar (Eq. 4)'
_SUM = 'sum (SumReducer)'

# PML's class-weight layouts (`_Case.pml_layout`).
_TRANSPOSED, _SAME, _CENTERS = 'transposed', 'same', 'centers'


def _circle(x, y, *, block_size=None):
  return losses.circle_loss_pairwise(
    x, y, margin=_CIRCLE_M, gamma=_CIRCLE_GAMMA, block_size=block_size
  )


def _triplet(x, y, *, block_size=None):
  # PML's LpDistance normalises the embeddings before measuring distances;
  # ours takes them as given.
  return losses.batch_hard_triplet_loss(
    losses.l2_normalize(x),
    y,
    margin=_TRIPLET_MARGIN,
    block_size=block_size,
  )


def _normface(x, w, y):
  return losses.normalized_softmax_cross_entropy(
    x, w, y, scale=1.0 / _NORMFACE_TEMPERATURE
  )


def _cosface(x, w, y):
  return losses.cosface_loss(
    x, w, y, scale=_COSFACE_SCALE, margin=_COSFACE_MARGIN
  )


def _arcface(x, w, y):
  return losses.arcface_loss(
    x,
    w,
    y,
    scale=_ARCFACE_SCALE,
    margin=math.radians(_ARCFACE_MARGIN_DEGREES),
  )


def _proxy_anchor(x, w, y):
  return losses.proxy_anchor_loss(
    x, w, y, margin=_PROXY_ANCHOR_MARGIN, alpha=_PROXY_ANCHOR_ALPHA
  )


def _pml_circle(num_classes, dim):
  del num_classes, dim
  return pml_losses.CircleLoss(m=_CIRCLE_M, gamma=_CIRCLE_GAMMA), []


def _pml_triplet(num_classes, dim):
  del num_classes, dim
  miner = pml_miners.BatchHardMiner()
  loss = pml_losses.TripletMarginLoss(margin=_TRIPLET_MARGIN)
  return (lambda x, y: loss(x, y, miner(x, y))), []


def _pml_proxy(loss_class, **hyperparameters):
  def make(num_classes, dim):
    loss = loss_class(
      num_classes=num_classes, embedding_size=dim, **hyperparameters
    )
    return loss, [loss.W]

  return make


def _pml_proxy_anchor(num_classes, dim):
  loss = pml_losses.ProxyAnchorLoss(
    num_classes=num_classes,
    embedding_size=dim,
    margin=_PROXY_ANCHOR_MARGIN,
    alpha=_PROXY_ANCHOR_ALPHA,
  )
  return loss, [loss.proxies]


@dataclasses.dataclass(frozen=True)
class _Case:
  """One loss in both libraries.

  Attributes:
    name: our function.
    pml: PML's counterpart.
    hyperparameters: what both get, in words.
    proxy: whether the loss has class weights (``x, w, y`` arguments; else
      ``x, y``).
    jax_loss: per-example losses, ``[batch]`` (the batch's scalar for
      `_BATCH`); pairwise ones take a keyword-only ``block_size``.
    reduction: `_MEAN`, `_NONZERO_MEAN` (as PML's ``AvgNonZeroReducer``) or
      `_BATCH` (none: `jax_loss` is already the batch's loss).
    make_pml: ``(num_classes, dim) -> (fn(x, y) -> loss, class weights)``;
      the weights list is empty for pairwise losses.
    pml_layout: PML's class weights against ours: `_TRANSPOSED` (``W``,
      ``[dim, num_classes]``), `_SAME` (``[num_classes, dim]``) or
      `_CENTERS` (``[dim, num_classes * K]``, class-major, against our
      ``[num_classes, K, dim]``).
    centers_per_class: K of our ``[num_classes, K, dim]`` class weights; 0
      for ``[num_classes, dim]``.
    small_batch: a pair-based baseline, timed at the smaller pair batch
      (PML's triplet and angular losses list every (anchor, positive,
      negative) index).
    max_batch: the row's batch at most this (where PML cannot hold the
      larger one), or None.
    block_size: of our loss in every row, or None.
    unit_inputs: the embeddings are L2-normalised before both libraries see
      them, and the embeddings' gradients are compared on the sphere's
      tangent space (`_UNIT_TANGENT`).
    takes_num_classes: `jax_loss` takes a keyword-only ``num_classes``
      (the labels being ``0 .. num_classes - 1``).
  """

  name: str
  pml: str
  hyperparameters: str
  proxy: bool
  jax_loss: Callable
  reduction: str
  make_pml: Callable
  pml_layout: str = _TRANSPOSED
  centers_per_class: int = 0
  small_batch: bool = False
  max_batch: int | None = None
  block_size: int | None = None
  unit_inputs: bool = False
  takes_num_classes: bool = False


_CASES = {
  case.name: case
  for case in (
    _Case(
      'circle_loss_pairwise',
      'CircleLoss',
      f'm={_CIRCLE_M} gamma={_CIRCLE_GAMMA:g}',
      False,
      _circle,
      _NONZERO_MEAN,
      _pml_circle,
    ),
    _Case(
      'batch_hard_triplet_loss',
      'TripletMarginLoss + BatchHardMiner',
      f'margin={_TRIPLET_MARGIN}, hinge, unit embeddings',
      False,
      _triplet,
      _NONZERO_MEAN,
      _pml_triplet,
    ),
    _Case(
      'normalized_softmax_cross_entropy',
      'NormalizedSoftmaxLoss',
      f'scale={1 / _NORMFACE_TEMPERATURE:g} '
      f'(temperature={_NORMFACE_TEMPERATURE})',
      True,
      _normface,
      _MEAN,
      _pml_proxy(
        pml_losses.NormalizedSoftmaxLoss, temperature=_NORMFACE_TEMPERATURE
      ),
    ),
    _Case(
      'cosface_loss',
      'CosFaceLoss',
      f'margin={_COSFACE_MARGIN} scale={_COSFACE_SCALE:g}',
      True,
      _cosface,
      _MEAN,
      _pml_proxy(
        pml_losses.CosFaceLoss, margin=_COSFACE_MARGIN, scale=_COSFACE_SCALE
      ),
    ),
    _Case(
      'arcface_loss',
      'ArcFaceLoss',
      f'margin={math.radians(_ARCFACE_MARGIN_DEGREES):.4f} rad '
      f'(PML: {_ARCFACE_MARGIN_DEGREES} deg) scale={_ARCFACE_SCALE:g}',
      True,
      _arcface,
      _MEAN,
      _pml_proxy(
        pml_losses.ArcFaceLoss,
        margin=_ARCFACE_MARGIN_DEGREES,
        scale=_ARCFACE_SCALE,
      ),
    ),
    _Case(
      'proxy_anchor_loss',
      'ProxyAnchorLoss',
      f'margin={_PROXY_ANCHOR_MARGIN} alpha={_PROXY_ANCHOR_ALPHA:g}',
      True,
      _proxy_anchor,
      _BATCH,
      _pml_proxy_anchor,
      pml_layout=_SAME,
    ),
  )
}


def _inputs(case: _Case, batch: int, dim: int, num_classes: int):
  """Random inputs of one row, the same for both libraries.

  Args:
    case: the loss.
    batch, dim, num_classes: the shape.

  Returns:
    ``(x, w, y)``: ``[batch, dim]`` float32 embeddings (of unit norm for
    `_Case.unit_inputs`), ``[num_classes, dim]`` (or ``[num_classes, K,
    dim]``) float32 class weights (None for pairwise losses) and
    ``[batch]`` integer labels.
  """
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, dim)).astype(np.float32)
  if case.unit_inputs:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
  if case.proxy:
    centers = (case.centers_per_class,) if case.centers_per_class else ()
    w = rng.standard_normal((num_classes, *centers, dim)) * 0.05
    return x, w.astype(np.float32), rng.integers(0, num_classes, batch)
  # Equal-sized classes: every anchor has positives and negatives.
  return x, None, rng.permutation(np.arange(batch) % num_classes)


def _jax_step(case, x, w, y, block_size=None):
  """Compiled value-and-gradient of the reduced loss, its runner and memory.

  Args:
    case: the loss.
    x: ``[batch, dim]`` float32 embeddings.
    w: ``[num_classes, dim]`` (or ``[num_classes, K, dim]``) float32 class
      weights, or None (pairwise).
    y: ``[batch]`` integer labels.
    block_size: of a pairwise loss, or None (then the case's own).

  Returns:
    ``(run, temp_bytes)``: ``run()`` returns ``(value, grads)`` with
    ``grads`` a tuple (embeddings[, class weights]), finished computing.
  """
  loss_fn = case.jax_loss
  block_size = block_size or case.block_size
  if block_size is not None:
    loss_fn = functools.partial(loss_fn, block_size=block_size)
  if case.takes_num_classes:
    # Static: the N-pair batch has one anchor per class.
    loss_fn = functools.partial(loss_fn, num_classes=int(np.max(y)) + 1)

  def objective(*args):
    per_example = loss_fn(*args)
    if case.reduction == _BATCH:
      return per_example  # Already the batch's scalar.
    if case.reduction == _NONZERO_MEAN:
      count = jnp.sum(per_example > 0)
      return jnp.sum(per_example) / jnp.maximum(count, 1)
    if case.reduction == _SUM:
      return jnp.sum(per_example)
    return jnp.mean(per_example)

  differentiated = (x, w) if case.proxy else (x,)
  argnums = tuple(range(len(differentiated)))
  args = (*map(jnp.asarray, differentiated), jnp.asarray(y, jnp.int32))
  compiled = (
    jax.jit(jax.value_and_grad(objective, argnums=argnums))
    .lower(*args)
    .compile()
  )
  memory = compiled.memory_analysis()
  temp = None if memory is None else memory.temp_size_in_bytes
  return lambda: jax.block_until_ready(compiled(*args)), temp


def _pml_step(case, x, w, y):
  """PML forward + backward as ``run() -> (value, grads)``.

  Args:
    case: the loss.
    x: ``[batch, dim]`` float32 embeddings.
    w: ``[num_classes, dim]`` (or ``[num_classes, K, dim]``) float32 class
      weights, or None (pairwise); PML gets them in its layout
      (`_Case.pml_layout`).
    y: ``[batch]`` integer labels.

  Returns:
    ``run``; its ``grads`` are NumPy arrays in our layout (embeddings, then
    class weights).
  """
  fn, weights = case.make_pml(None if w is None else w.shape[0], x.shape[1])

  def theirs(array):  # Our class-weight layout -> PML's.
    if case.pml_layout == _CENTERS:
      return array.reshape(-1, array.shape[-1]).T
    return array.T if case.pml_layout == _TRANSPOSED else array

  def ours(array):  # PML's class-weight layout -> ours.
    if case.pml_layout == _CENTERS:
      return array.T.reshape(*w.shape)
    return array.T if case.pml_layout == _TRANSPOSED else array

  if weights:
    with torch.no_grad():
      weights[0].copy_(torch.from_numpy(np.ascontiguousarray(theirs(w))))
  x_torch = torch.from_numpy(x.copy()).requires_grad_()
  y_torch = torch.from_numpy(np.asarray(y, np.int64))
  leaves = [x_torch, *weights]

  def run():
    for leaf in leaves:
      leaf.grad = None
    loss = fn(x_torch, y_torch)
    loss.backward()
    grads = [x_torch.grad.numpy()] + [ours(wt.grad.numpy()) for wt in weights]
    return loss.item(), grads

  return run


def _relative_difference(ours, theirs) -> float:
  ours = [np.asarray(a, np.float64).ravel() for a in ours]
  theirs = [np.asarray(a, np.float64).ravel() for a in theirs]
  error = math.sqrt(
    sum(np.sum((a - b) ** 2) for a, b in zip(ours, theirs, strict=True))
  )
  scale = math.sqrt(sum(np.sum(b**2) for b in theirs))
  return error / scale


def _proc_status_bytes(field: str) -> int:
  with open('/proc/self/status') as status:
    for line in status:
      if line.startswith(field + ':'):
        return int(line.split()[1]) * 1024
  raise KeyError(field)


def _print_pml_peaks(specs, threads):
  """Child process: prints the resident-set growth of one PML step per spec.

  Args:
    specs: ``(case name, batch, dim, num_classes)`` tuples.
    threads: torch threads.
  """
  torch.set_num_threads(threads)
  trim = ctypes.CDLL(ctypes.util.find_library('c')).malloc_trim
  for name, batch, dim, num_classes in specs:
    case = _CASES[name]
    run = _pml_step(case, *_inputs(case, batch, dim, num_classes))
    # The first step also pays torch's one-off set-up (thread pools, lazily
    # loaded kernels); the measured one starts from a heap handed back to
    # the system, so it cannot hide in memory a previous step left cached.
    run()
    trim(0)
    before = _proc_status_bytes('VmRSS')
    # Resets the high-water mark to the current resident set (Linux >= 4.0).
    with open('/proc/self/clear_refs', 'w') as clear_refs:
      clear_refs.write('5')
    run()
    print(_proc_status_bytes('VmHWM') - before, flush=True)
    del run
    gc.collect()
    trim(0)


def _pml_peaks(specs, threads) -> list[int | None]:
  """PML's peak memory for one step of each spec, in a fresh process."""
  if not _PML_MEMORY.value or not os.path.exists('/proc/self/clear_refs'):
    # Linux only (and glibc, for malloc_trim).
    return [None] * len(specs)
  code = (
    'from benchmarks import compare_pml; '
    f'compare_pml._print_pml_peaks({specs!r}, {threads})'
  )
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  child = subprocess.run(
    [sys.executable, '-c', code],
    cwd=repo,
    capture_output=True,
    text=True,
    check=False,
  )
  if child.returncode != 0:
    print(f'PML memory not measured:\n{child.stderr[-2000:]}', file=sys.stderr)
    return [None] * len(specs)
  return [int(line) for line in child.stdout.split()]


def _format(value, spec='.1f'):
  return 'n/a' if value is None else format(value, spec)


def _shape(batch, dim, num_classes, proxy, block_size=None, centers=0):
  shape = f'B={batch} D={dim}' + (f' C={num_classes}' if proxy else '')
  shape += f' K={centers}' if centers else ''
  return shape + (f' block={block_size}' if block_size else '')


def _compare(case, batch, dim, num_classes, reps, pml_memory, block_size=None):
  """One row: agreement, interleaved timing, memory of both.

  Args:
    case: the loss.
    batch, dim, num_classes: the shape.
    reps: timed runs of each library.
    pml_memory: the "PML peak MiB" cell.
    block_size: of our loss (pairwise only), or None.
  """
  x, w, y = _inputs(case, batch, dim, num_classes)
  jax_run, temp = _jax_step(case, x, w, y, block_size)
  pml_run = _pml_step(case, x, w, y)
  block_size = block_size or case.block_size
  # The agreement check doubles as the warm-up of both.
  jax_value, jax_grads = jax_run()
  pml_value, pml_grads = pml_run()
  if case.unit_inputs:
    # Only the tangent components are defined alike (`_UNIT_TANGENT`).
    jax_grads, pml_grads = (
      [_tangent(grads[0], x), *grads[1:]] for grads in (jax_grads, pml_grads)
    )
  value_difference = abs(float(jax_value) - pml_value) / abs(pml_value)
  # Embeddings, then (proxy losses) class weights.
  grad_differences = [
    _relative_difference([ours], [theirs])
    for ours, theirs in zip(jax_grads, pml_grads, strict=True)
  ]
  agree = max(value_difference, *grad_differences) < _AGREE_TOLERANCE
  jax_seconds, pml_seconds = timing.median_seconds_interleaved(
    [jax_run, pml_run], reps
  )
  return (
    case.name,
    case.pml,
    _shape(
      batch, dim, num_classes, case.proxy, block_size, case.centers_per_class
    ),
    case.hyperparameters,
    case.reduction,
    f'{value_difference:.1e}',
    f'{grad_differences[0]:.1e}',
    f'{grad_differences[1]:.1e}' if case.proxy else 'n/a',
    'agree' if agree else 'DIFFER',
    _format(jax_seconds * 1e3),
    _format(pml_seconds * 1e3),
    _format(pml_seconds / jax_seconds, '.1f'),
    _format(None if temp is None else temp / _MIB),
    pml_memory,
  )


def _tangent(grad, x):
  """`grad`'s components tangent to the unit sphere at the rows of `x`."""
  grad = np.asarray(grad, np.float64)
  return grad - np.sum(grad * x, axis=1, keepdims=True) * x


def _huge_circle(batch, dim, block_size, pml_estimate):
  """Our blocked Circle loss where PML's dense matrices would not fit.

  PML is not run: `pml_estimate` (bytes, or None) is the dense row's
  measured peak scaled quadratically, the ``[B, B]`` arrays dominating it.
  """
  case = _CASES['circle_loss_pairwise']
  x, w, y = _inputs(case, batch, dim, batch // _SAMPLES_PER_CLASS)
  jax_run, temp = _jax_step(case, x, w, y, block_size=block_size)
  # Compiled ahead of time, so one run without warm-up measures execution.
  start = time.perf_counter()
  jax_run()
  jax_seconds = time.perf_counter() - start
  if pml_estimate is None:
    pml = 'not run (no estimate)'
  else:
    pml = f'not run (needs ~{pml_estimate / _GIB:.0f} GiB)'
  return (
    case.name,
    case.pml,
    _shape(batch, dim, None, False, block_size),
    case.hyperparameters,
    case.reduction,
    'n/a',
    'n/a',
    'n/a',
    'n/a',
    _format(jax_seconds * 1e3),
    pml,
    'n/a',
    _format(None if temp is None else temp / _MIB),
    'n/a' if pml_estimate is None else f'~{pml_estimate / _MIB:.0f} (est.)',
  )


def _pml_budget_bytes() -> float:
  """--pml_max_gib, or less if the machine has less memory available."""
  budget = _PML_MAX_GIB.value * _GIB
  try:
    with open('/proc/meminfo') as meminfo:
      for line in meminfo:
        if line.startswith('MemAvailable:'):
          # Headroom for this process's own arrays and the other programs.
          budget = min(budget, 0.8 * int(line.split()[1]) * 1024)
  except OSError:
    pass
  return budget


def _set_threads(threads: int) -> None:
  """Same cores for both libraries; before JAX starts its thread pool."""
  cores = sorted(os.sched_getaffinity(0))
  if threads < len(cores):
    os.sched_setaffinity(0, cores[:threads])
  torch.set_num_threads(threads)


# ---------------------------------------------------------------------------
# Pair-based baselines (issue 18): value and gradient parity, no timing.
# ---------------------------------------------------------------------------

# A small class-balanced batch: every anchor has the same numbers of
# positives and negatives, so our mean over anchors equals PML's mean over
# pairs (``MeanReducer``), which PML is given explicitly for every row.
_PARITY_BATCH, _PARITY_CLASSES, _PARITY_DIM = 32, 8, 16


def _n_pair_batch(x, y):
  """PML's N-pair batch: the first two samples of each class (in order)."""
  firsts, seconds = [], []
  for label in np.unique(y):
    rows = np.flatnonzero(y == label)
    firsts.append(rows[0])
    seconds.append(rows[1])
  return np.array(firsts), np.array(seconds)


def _ours_n_pairs(normalize):
  def loss(x, y):
    firsts, seconds = _n_pair_batch(np.asarray(y), np.asarray(y))
    if normalize:
      x = losses.l2_normalize(x)
    return losses.n_pairs_loss(
      x[firsts],
      y[firsts],
      reference=losses.ReferenceSet(x[seconds], y[seconds]),
    ).mean()

  return loss


def _mean_of(fn, **kwargs):
  return lambda x, y: fn(x, y, **kwargs).mean()


def _pml_loss(loss_class, *, miner=None, **kwargs):
  from pytorch_metric_learning import distances, reducers

  distance = kwargs.pop('distance', None)
  if distance is not None:
    kwargs['distance'] = getattr(distances, distance[0])(**distance[1])
  reducer = kwargs.pop('reducer', 'MeanReducer')
  loss = loss_class(reducer=getattr(reducers, reducer)(), **kwargs)
  if miner is None:
    return loss
  return lambda x, y: loss(x, y, miner(x, y))


# A row's option: unit-norm inputs, gradients compared on the sphere's
# tangent space (their radial components dropped).
_UNIT_TANGENT = 'unit inputs, tangent gradients'


def _parity_cases():
  """(our call, PML's class and setting, ours, PML's[, option]) per row."""
  unnormalized = ('LpDistance', {'normalize_embeddings': False})
  semihard = pml_miners.TripletMarginMiner(
    margin=0.2, type_of_triplets='semihard'
  )
  # Ours, summed, over PML's SumReducer: per anchor the semi-hard hinges
  # are divided by the anchor's |P| |N| = 3 * 28 triplets.
  triplets_per_anchor = 3 * (_PARITY_BATCH - _PARITY_BATCH // _PARITY_CLASSES)
  return [
    (
      'contrastive_loss(power=1, normalize=True)',
      'ContrastiveLoss() (defaults)',
      _mean_of(losses.contrastive_loss, power=1, normalize=True),
      _pml_loss(pml_losses.ContrastiveLoss),
    ),
    (
      'contrastive_loss(pos_margin=0.1, neg_margin=2, power=1)',
      'ContrastiveLoss(0.1, 2), unnormalised LpDistance',
      _mean_of(
        losses.contrastive_loss, pos_margin=0.1, neg_margin=2.0, power=1
      ),
      _pml_loss(
        pml_losses.ContrastiveLoss,
        pos_margin=0.1,
        neg_margin=2.0,
        distance=unnormalized,
      ),
    ),
    (
      'multi_similarity_loss()',
      'MultiSimilarityLoss() (defaults)',
      _mean_of(losses.multi_similarity_loss),
      _pml_loss(pml_losses.MultiSimilarityLoss),
    ),
    (
      'multi_similarity_loss(alpha=1, beta=20, base=0.3)',
      'MultiSimilarityLoss(1, 20, 0.3)',
      _mean_of(losses.multi_similarity_loss, alpha=1.0, beta=20.0, base=0.3),
      _pml_loss(pml_losses.MultiSimilarityLoss, alpha=1, beta=20, base=0.3),
    ),
    (
      'lifted_structure_loss(normalize=True)',
      'GeneralizedLiftedStructureLoss() (defaults)',
      _mean_of(losses.lifted_structure_loss, normalize=True),
      _pml_loss(pml_losses.GeneralizedLiftedStructureLoss),
    ),
    (
      'lifted_structure_loss(neg_margin=2, pos_margin=0.2)',
      'GeneralizedLiftedStructureLoss(2, 0.2), unnormalised LpDistance',
      _mean_of(losses.lifted_structure_loss, neg_margin=2.0, pos_margin=0.2),
      _pml_loss(
        pml_losses.GeneralizedLiftedStructureLoss,
        neg_margin=2.0,
        pos_margin=0.2,
        distance=unnormalized,
      ),
    ),
    (
      'n_pairs_loss on unit embeddings, first two of each class',
      'NPairsLoss() (defaults: normalised DotProductSimilarity)',
      _ours_n_pairs(normalize=True),
      _pml_loss(pml_losses.NPairsLoss),
    ),
    (
      'n_pairs_loss on the first two of each class (the paper)',
      'NPairsLoss(DotProductSimilarity(normalize_embeddings=False))',
      _ours_n_pairs(normalize=False),
      _pml_loss(
        pml_losses.NPairsLoss,
        distance=('DotProductSimilarity', {'normalize_embeddings': False}),
      ),
    ),
    (
      "triplet_margin_loss(margin=0.05, triplets='all', normalize=True)",
      'TripletMarginLoss() (defaults)',
      _mean_of(
        losses.triplet_margin_loss, margin=0.05, triplets='all', normalize=True
      ),
      _pml_loss(pml_losses.TripletMarginLoss),
    ),
    (
      "triplet_margin_loss(margin=0.2, triplets='semihard', normalize=True),"
      ' summed x P·N',
      'TripletMarginLoss(0.2) + TripletMarginMiner(semihard), SumReducer',
      lambda x, y: (
        triplets_per_anchor
        * losses.triplet_margin_loss(
          x, y, margin=0.2, triplets='semihard', normalize=True
        ).sum()
      ),
      _pml_loss(
        pml_losses.TripletMarginLoss,
        margin=0.2,
        reducer='SumReducer',
        miner=semihard,
      ),
    ),
    # PML's hard miner keeps d_an <= d_ap (its margin, 0.2, is then moot);
    # the loss's margin is its default, 0.05.
    (
      "triplet_margin_loss(margin=0.05, triplets='hard', normalize=True),"
      ' summed x P·N',
      'TripletMarginLoss() + TripletMarginMiner(hard), SumReducer',
      lambda x, y: (
        triplets_per_anchor
        * losses.triplet_margin_loss(
          x, y, margin=0.05, triplets='hard', normalize=True
        ).sum()
      ),
      _pml_loss(
        pml_losses.TripletMarginLoss,
        reducer='SumReducer',
        miner=pml_miners.TripletMarginMiner(type_of_triplets='hard'),
      ),
    ),
    # PML's AngularLoss normalises the anchors and positives but not the
    # negatives x_n (ref_emb): on unit-norm inputs the values agree and so
    # do the gradients' components tangent to the sphere (compared here);
    # their radial components differ (docs/losses.md).
    (
      'angular_loss() on unit inputs, tangent gradient',
      'AngularLoss() (defaults)',
      _mean_of(losses.angular_loss),
      _pml_loss(pml_losses.AngularLoss),
      _UNIT_TANGENT,
    ),
    (
      'angular_loss(alpha=45) on unit inputs, tangent gradient',
      'AngularLoss(45)',
      _mean_of(losses.angular_loss, alpha=45.0),
      _pml_loss(pml_losses.AngularLoss, alpha=45),
      _UNIT_TANGENT,
    ),
    (
      'supcon_loss()',
      'SupConLoss() (defaults)',
      _mean_of(losses.supcon_loss),
      _pml_loss(pml_losses.SupConLoss),
    ),
    (
      'supcon_loss(temperature=0.5)',
      'SupConLoss(0.5)',
      _mean_of(losses.supcon_loss, temperature=0.5),
      _pml_loss(pml_losses.SupConLoss, temperature=0.5),
    ),
    (
      'ntxent_loss()',
      'NTXentLoss() (defaults)',
      _mean_of(losses.ntxent_loss),
      _pml_loss(pml_losses.NTXentLoss),
    ),
    (
      'ntxent_loss(temperature=0.5)',
      'NTXentLoss(0.5)',
      _mean_of(losses.ntxent_loss, temperature=0.5),
      _pml_loss(pml_losses.NTXentLoss, temperature=0.5),
    ),
  ]


def _relative(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def pair_parity_rows(seed: int = 0) -> list[tuple[str, ...]]:
  """Our pair-based losses against PML's classes: value and gradient.

  float64 on both sides, so the differences are the formulas', not
  round-off; PML's default reducers are replaced by ``MeanReducer`` (or
  ``SumReducer`` where stated), the reduction of our per-anchor values.
  """
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((_PARITY_BATCH, _PARITY_DIM))
  y = np.repeat(
    np.arange(_PARITY_CLASSES), _PARITY_BATCH // _PARITY_CLASSES
  ).astype(np.int64)
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  rows = []
  try:
    for ours_name, pml_name, ours, pml, *option in _parity_cases():
      inputs = x
      if option == [_UNIT_TANGENT]:
        inputs = x / np.linalg.norm(x, axis=1, keepdims=True)
      value, grad = jax.value_and_grad(ours)(
        jnp.asarray(inputs), jnp.asarray(y)
      )
      x_torch = torch.tensor(inputs, dtype=torch.float64, requires_grad=True)
      pml_value = pml(x_torch, torch.tensor(y))
      pml_value.backward()
      grad, pml_grad = np.asarray(grad), x_torch.grad.numpy()
      if option == [_UNIT_TANGENT]:
        grad, pml_grad = (
          g - np.sum(g * inputs, axis=1, keepdims=True) * inputs
          for g in (grad, pml_grad)
        )
      value_diff = _relative(value, pml_value.item())
      grad_diff = _relative(grad, pml_grad)
      agree = max(value_diff, grad_diff) < 1e-9
      rows.append(
        (
          f'`{ours_name}`',
          f'`{pml_name}`',
          f'{float(value):.6f}',
          f'{pml_value.item():.6f}',
          f'{value_diff:.1e}',
          f'{grad_diff:.1e}',
          'agree' if agree else 'DIFFER',
        )
      )
  finally:
    jax.config.update('jax_enable_x64', previous)
  return rows


def print_pair_parity() -> None:
  header = (
    'discfeat',
    'PML 2.9',
    'discfeat value',
    'PML value',
    'value rel diff',
    'grad rel diff',
    'check (< 1e-9)',
  )
  print(
    f'Pair-based baselines, B={_PARITY_BATCH} ({_PARITY_CLASSES} classes x '
    f'{_PARITY_BATCH // _PARITY_CLASSES}), dim={_PARITY_DIM}, float64:\n'
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in pair_parity_rows():
    print('| ' + ' | '.join(row) + ' |')
  print()


# ---------------------------------------------------------------------------
# Classification-style and proxy baselines (issue 18): value and gradients
# w.r.t. the embeddings and the class weights, no timing.
# ---------------------------------------------------------------------------


def _pml_weights(loss):
  """PML's class-weight parameter of a loss (W, proxies or fc)."""
  for name in ('W', 'proxies', 'fc'):
    if hasattr(loss, name):
      return getattr(loss, name)
  raise ValueError(f'No class weights in {type(loss).__name__}')


def _columns(num_classes):
  """PML's ``[dim, C]`` (or ``[dim, C * K]``, class-major) -> ours."""
  return lambda w: w.T.reshape(num_classes, -1, w.shape[0]).squeeze(1)


def _centers(num_classes):
  return lambda w: w.T.reshape(num_classes, -1, w.shape[0])


def _class_parity_cases():
  """(ours, PML's, our mean loss, PML's loss, PML weights -> ours)."""
  c = _PARITY_CLASSES
  regularizers = pml_regularizers

  def mean(fn, **kwargs):
    return lambda x, w, y: fn(x, w, y, **kwargs).mean()

  def pml(loss_class, **kwargs):
    return lambda: loss_class(
      num_classes=c, embedding_size=_PARITY_DIM, **kwargs
    )

  return [
    (
      'large_margin_softmax_loss(margin=4)',
      'LargeMarginSoftmaxLoss() (defaults: margin 4, scale 1)',
      mean(losses.large_margin_softmax_loss, margin=4),
      pml(pml_losses.LargeMarginSoftmaxLoss),
      _columns(c),
    ),
    (
      'large_margin_softmax_loss(margin=2)',
      'LargeMarginSoftmaxLoss(margin=2)',
      mean(losses.large_margin_softmax_loss, margin=2),
      pml(pml_losses.LargeMarginSoftmaxLoss, margin=2),
      _columns(c),
    ),
    (
      'sphereface_loss(margin=4)',
      'SphereFaceLoss() (defaults: margin 4, scale 1)',
      mean(losses.sphereface_loss, margin=4),
      pml(pml_losses.SphereFaceLoss),
      _columns(c),
    ),
    (
      'sphereface_loss(margin=3)',
      'SphereFaceLoss(margin=3)',
      mean(losses.sphereface_loss, margin=3),
      pml(pml_losses.SphereFaceLoss, margin=3),
      _columns(c),
    ),
    (
      'subcenter_arcface_loss(scale=64, margin=0.4992), K = 3',
      'SubCenterArcFaceLoss() (defaults: 28.6°, 64, 3 sub-centres)',
      mean(
        losses.subcenter_arcface_loss, scale=64.0, margin=math.radians(28.6)
      ),
      pml(pml_losses.SubCenterArcFaceLoss),
      _centers(c),
    ),
    (
      'subcenter_arcface_loss(scale=30, margin=0.3491), K = 2',
      'SubCenterArcFaceLoss(margin=20, scale=30, sub_centers=2)',
      mean(losses.subcenter_arcface_loss, scale=30.0, margin=math.radians(20)),
      pml(pml_losses.SubCenterArcFaceLoss, margin=20, scale=30, sub_centers=2),
      _centers(c),
    ),
    (
      'proxy_nca_loss()',
      'ProxyNCALoss() (defaults: softmax_scale 1)',
      mean(losses.proxy_nca_loss),
      pml(pml_losses.ProxyNCALoss),
      lambda w: w,
    ),
    (
      'proxy_nca_loss(softmax_scale=9)',
      'ProxyNCALoss(softmax_scale=9)',
      mean(losses.proxy_nca_loss, softmax_scale=9.0),
      pml(pml_losses.ProxyNCALoss, softmax_scale=9),
      lambda w: w,
    ),
    (
      'soft_triple_loss(tau=0), K = 10',
      'SoftTripleLoss() (defaults: 10 centres, la 20, gamma 0.1, margin '
      '0.01; no regulariser)',
      mean(losses.soft_triple_loss, tau=0.0),
      pml(pml_losses.SoftTripleLoss),
      _centers(c),
    ),
    (
      'soft_triple_loss(la=10, gamma=0.2, margin=0.05, tau=0.2), K = 3',
      'SoftTripleLoss(3, 10, 0.2, 0.05) + SparseCentersRegularizer, weight 0.2',
      mean(losses.soft_triple_loss, la=10.0, gamma=0.2, margin=0.05, tau=0.2),
      pml(
        pml_losses.SoftTripleLoss,
        centers_per_class=3,
        la=10,
        gamma=0.2,
        margin=0.05,
        weight_regularizer=regularizers.SparseCentersRegularizer(c, 3),
        weight_reg_weight=0.2,
      ),
      _centers(c),
    ),
  ]


def class_parity_rows(seed: int = 0) -> list[tuple[str, ...]]:
  """Our classification-style and proxy losses against PML's classes.

  float64 on both sides, PML's default reducer (``MeanReducer``, our mean
  over the batch); PML's randomly initialised class weights are copied into
  our layout, and both gradients (embeddings, class weights) compared.
  """
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((_PARITY_BATCH, _PARITY_DIM))
  y = np.repeat(
    np.arange(_PARITY_CLASSES), _PARITY_BATCH // _PARITY_CLASSES
  ).astype(np.int64)
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  rows = []
  try:
    for ours_name, pml_name, ours, make_pml, layout in _class_parity_cases():
      torch.manual_seed(seed)
      pml = make_pml().to(torch.float64)
      weights = _pml_weights(pml)
      x_torch = torch.tensor(x, dtype=torch.float64, requires_grad=True)
      pml_value = pml(x_torch, torch.tensor(y))
      pml_value.backward()
      w = layout(weights.detach().numpy())
      value, (grad_x, grad_w) = jax.value_and_grad(ours, argnums=(0, 1))(
        jnp.asarray(x), jnp.asarray(w), jnp.asarray(y)
      )
      value_diff = _relative(value, pml_value.item())
      x_diff = _relative(grad_x, x_torch.grad.numpy())
      w_diff = _relative(grad_w, layout(weights.grad.numpy()))
      agree = max(value_diff, x_diff, w_diff) < 1e-9
      rows.append(
        (
          f'`{ours_name}`',
          f'`{pml_name}`',
          f'{float(value):.6f}',
          f'{pml_value.item():.6f}',
          f'{value_diff:.1e}',
          f'{x_diff:.1e}',
          f'{w_diff:.1e}',
          'agree' if agree else 'DIFFER',
        )
      )
  finally:
    jax.config.update('jax_enable_x64', previous)
  return rows


def print_class_parity() -> None:
  header = (
    'discfeat',
    'PML 2.9',
    'discfeat value',
    'PML value',
    'value rel diff',
    'embeddings grad rel diff',
    'class weights grad rel diff',
    'check (< 1e-9)',
  )
  print(
    f'Classification-style and proxy baselines, B={_PARITY_BATCH} '
    f'({_PARITY_CLASSES} classes x {_PARITY_BATCH // _PARITY_CLASSES}), '
    f'dim={_PARITY_DIM}, float64, PML weights copied:\n'
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in class_parity_rows():
    print('| ' + ' | '.join(row) + ' |')
  print()


# ---------------------------------------------------------------------------
# The issue 18 baselines, timed: PML's class of the same name at its
# defaults, with the miners and reducers of the parity rows above.
# ---------------------------------------------------------------------------

# PML's TripletMarginMiner default (also the semi-hard row's loss margin:
# ours has one margin for selection and hinge, as in the parity rows).
_SEMIHARD_MARGIN = 0.2
_ANGULAR_BLOCK = 128
# PML's NTXentLoss masks a [positive pairs, negative pairs] matrix, O(B^4):
# at B = 1024 (8 per class) each float32 copy is 7168 x 1040384 x 4 bytes =
# 28 GiB.
_NTXENT_BATCH = 256


def _n_pairs_timed(x, y, *, num_classes):
  """PML's N-pair batch (the first two of each class) on unit embeddings.

  Traced, as PML picks its pairs inside the loss call; the labels must be
  ``0 .. num_classes - 1``, each with two samples or more.
  """
  rows = jnp.arange(y.shape[0])
  firsts = jnp.full(num_classes, y.shape[0]).at[y].min(rows)
  rest = jnp.where(rows == firsts[y], y.shape[0], rows)
  seconds = jnp.full(num_classes, y.shape[0]).at[y].min(rest)
  x = losses.l2_normalize(x)
  classes = jnp.arange(num_classes)
  return losses.n_pairs_loss(
    x[firsts], classes, reference=losses.ReferenceSet(x[seconds], classes)
  )


def _triplets_summed(triplets, margin):
  """Per-anchor sums of the selected triplets' hinges (PML's SumReducer)."""

  def loss(x, y, *, block_size=None):
    per_anchor = losses.triplet_margin_loss(
      x,
      y,
      margin=margin,
      triplets=triplets,
      normalize=True,
      block_size=block_size,
    )
    # Ours divides each anchor's sum by its |P| |N| triplets; labels are
    # below the batch size here.
    sizes = jnp.zeros(y.shape[0], per_anchor.dtype).at[y].add(1.0)[y]
    return per_anchor * (sizes - 1.0) * (y.shape[0] - sizes)

  return loss


def _pml_pair(loss_class, **kwargs):
  """``make_pml`` of a pair-based loss: `_pml_loss` (``MeanReducer``)."""
  return lambda num_classes, dim: (_pml_loss(loss_class, **kwargs), [])


def _pml_class(loss_class, **kwargs):
  """``make_pml`` of a loss with class weights (W, proxies or fc)."""

  def make(num_classes, dim):
    loss = loss_class(num_classes=num_classes, embedding_size=dim, **kwargs)
    return loss, [_pml_weights(loss)]

  return make


def _baseline_cases():
  partial = functools.partial
  pair = dict(proxy=False, reduction=_MEAN, small_batch=True)
  return (
    _Case(
      'contrastive_loss',
      'ContrastiveLoss, MeanReducer',
      'pos_margin=0 neg_margin=1 power=1, unit embeddings',
      jax_loss=partial(losses.contrastive_loss, power=1, normalize=True),
      make_pml=_pml_pair(pml_losses.ContrastiveLoss),
      **pair,
    ),
    _Case(
      'multi_similarity_loss',
      'MultiSimilarityLoss, MeanReducer',
      'alpha=2 beta=50 base=0.5',
      jax_loss=losses.multi_similarity_loss,
      make_pml=_pml_pair(pml_losses.MultiSimilarityLoss),
      **pair,
    ),
    _Case(
      'lifted_structure_loss',
      'GeneralizedLiftedStructureLoss, MeanReducer',
      'neg_margin=1 pos_margin=0, unit embeddings',
      jax_loss=partial(losses.lifted_structure_loss, normalize=True),
      make_pml=_pml_pair(pml_losses.GeneralizedLiftedStructureLoss),
      **pair,
    ),
    _Case(
      'n_pairs_loss',
      'NPairsLoss, MeanReducer',
      'first two of each class, unit embeddings',
      jax_loss=_n_pairs_timed,
      make_pml=_pml_pair(pml_losses.NPairsLoss),
      takes_num_classes=True,
      **pair,
    ),
    _Case(
      'triplet_margin_loss:all',
      'TripletMarginLoss, MeanReducer',
      f"margin={_TRIPLET_MARGIN} triplets='all', unit embeddings",
      jax_loss=partial(
        losses.triplet_margin_loss,
        margin=_TRIPLET_MARGIN,
        triplets='all',
        normalize=True,
      ),
      make_pml=_pml_pair(pml_losses.TripletMarginLoss),
      **pair,
    ),
    _Case(
      'triplet_margin_loss:semihard',
      f'TripletMarginLoss({_SEMIHARD_MARGIN}) + TripletMarginMiner'
      '(semihard), SumReducer',
      f"margin={_SEMIHARD_MARGIN} triplets='semihard', unit embeddings, x P·N",
      jax_loss=_triplets_summed('semihard', _SEMIHARD_MARGIN),
      make_pml=_pml_pair(
        pml_losses.TripletMarginLoss,
        margin=_SEMIHARD_MARGIN,
        reducer='SumReducer',
        miner=pml_miners.TripletMarginMiner(type_of_triplets='semihard'),
      ),
      **{**pair, 'reduction': _SUM},
    ),
    _Case(
      'triplet_margin_loss:hard',
      'TripletMarginLoss + TripletMarginMiner(hard), SumReducer',
      f"margin={_TRIPLET_MARGIN} triplets='hard', unit embeddings, x P·N",
      jax_loss=_triplets_summed('hard', _TRIPLET_MARGIN),
      make_pml=_pml_pair(
        pml_losses.TripletMarginLoss,
        reducer='SumReducer',
        miner=pml_miners.TripletMarginMiner(type_of_triplets='hard'),
      ),
      **{**pair, 'reduction': _SUM},
    ),
    # Without block_size ours holds all [B, B, B] (anchor, positive,
    # negative) terms at once.
    _Case(
      'angular_loss',
      'AngularLoss, MeanReducer',
      'alpha=40, unit inputs, tangent gradient',
      jax_loss=losses.angular_loss,
      make_pml=_pml_pair(pml_losses.AngularLoss),
      block_size=_ANGULAR_BLOCK,
      unit_inputs=True,
      **pair,
    ),
    _Case(
      'supcon_loss',
      'SupConLoss, MeanReducer',
      'temperature=0.1',
      jax_loss=losses.supcon_loss,
      make_pml=_pml_pair(pml_losses.SupConLoss),
      **pair,
    ),
    _Case(
      'ntxent_loss',
      'NTXentLoss, MeanReducer',
      'temperature=0.07',
      jax_loss=losses.ntxent_loss,
      make_pml=_pml_pair(pml_losses.NTXentLoss),
      max_batch=_NTXENT_BATCH,
      **pair,
    ),
    _Case(
      'large_margin_softmax_loss',
      'LargeMarginSoftmaxLoss',
      'margin=4 (scale 1, lambda 0)',
      True,
      partial(losses.large_margin_softmax_loss, margin=4),
      _MEAN,
      _pml_class(pml_losses.LargeMarginSoftmaxLoss),
    ),
    _Case(
      'sphereface_loss',
      'SphereFaceLoss',
      'margin=4 (scale 1, lambda 0)',
      True,
      partial(losses.sphereface_loss, margin=4),
      _MEAN,
      _pml_class(pml_losses.SphereFaceLoss),
    ),
    _Case(
      'subcenter_arcface_loss',
      'SubCenterArcFaceLoss',
      f'margin={math.radians(_ARCFACE_MARGIN_DEGREES):.4f} rad '
      f'(PML: {_ARCFACE_MARGIN_DEGREES} deg) scale={_ARCFACE_SCALE:g}',
      True,
      partial(
        losses.subcenter_arcface_loss,
        scale=_ARCFACE_SCALE,
        margin=math.radians(_ARCFACE_MARGIN_DEGREES),
      ),
      _MEAN,
      _pml_class(pml_losses.SubCenterArcFaceLoss),
      pml_layout=_CENTERS,
      centers_per_class=3,
    ),
    _Case(
      'proxy_nca_loss',
      'ProxyNCALoss',
      'softmax_scale=1',
      True,
      losses.proxy_nca_loss,
      _MEAN,
      _pml_class(pml_losses.ProxyNCALoss),
      pml_layout=_SAME,
    ),
    _Case(
      'soft_triple_loss',
      'SoftTripleLoss (no regulariser)',
      'la=20 gamma=0.1 margin=0.01 tau=0',
      True,
      partial(losses.soft_triple_loss, tau=0.0),
      _MEAN,
      _pml_class(pml_losses.SoftTripleLoss),
      pml_layout=_CENTERS,
      centers_per_class=10,
    ),
  )


_CASES.update((case.name, case) for case in _baseline_cases())


def main(argv):
  del argv
  if _PAIR_PARITY.value:
    print_pair_parity()
  if _CLASS_PARITY.value:
    print_class_parity()
  if not _TIMING.value:
    return
  threads = _THREADS.value or os.cpu_count()
  _set_threads(threads)
  reps = _REPS.value or (3 if _QUICK.value else 7)
  if _QUICK.value:
    pairwise_batch, proxy_batch, proxy_dim, num_classes = 512, 512, 128, 100
    pair_baseline_batch = 256
  else:
    pairwise_batch, proxy_batch, proxy_dim, num_classes = 4096, 4096, 512, 1000
    pair_baseline_batch = 1024
  pairwise_dim = 128
  selected = _LOSSES.value or list(_CASES)
  # A function's name selects all its rows ('triplet_margin_loss' its
  # 'triplet_margin_loss:...' ones).
  cases = {
    name: case
    for name, case in _CASES.items()
    if name in selected or name.split(':')[0] in selected
  }
  known = set(_CASES) | {name.split(':')[0] for name in _CASES}
  unknown = sorted(set(selected) - known)
  if unknown:
    raise app.UsageError(
      f'--losses: unknown {unknown}; choose from {sorted(known)}'
    )

  def shape(case):
    if case.proxy:
      return proxy_batch, proxy_dim, num_classes
    batch = pair_baseline_batch if case.small_batch else pairwise_batch
    batch = min(batch, case.max_batch or batch)
    return batch, pairwise_dim, batch // _SAMPLES_PER_CLASS

  shapes = {name: shape(case) for name, case in cases.items()}
  peaks = dict(
    zip(
      shapes,
      _pml_peaks([(name, *shape) for name, shape in shapes.items()], threads),
      strict=True,
    )
  )
  rows = []
  for name, case in cases.items():
    peak = _format(None if peaks[name] is None else peaks[name] / _MIB)
    rows.append(_compare(case, *shapes[name], reps, peak))
    print(f'done: {name} {rows[-1][2]}', file=sys.stderr, flush=True)
  huge = _HUGE.value and not _QUICK.value and 'circle_loss_pairwise' in cases
  if huge:
    dense_peak = peaks['circle_loss_pairwise']
    estimate = (
      None
      if dense_peak is None
      else dense_peak * (_HUGE_BATCH.value / pairwise_batch) ** 2
    )
    if estimate is not None and estimate <= _pml_budget_bytes():
      # Small enough for PML: compare as any other row.
      rows.append(
        _compare(
          _CASES['circle_loss_pairwise'],
          _HUGE_BATCH.value,
          pairwise_dim,
          _HUGE_BATCH.value // _SAMPLES_PER_CLASS,
          1,
          f'~{estimate / _MIB:.0f} (est.)',
          _BLOCK.value,
        )
      )
    else:
      rows.append(
        _huge_circle(_HUGE_BATCH.value, pairwise_dim, _BLOCK.value, estimate)
      )
  header = (
    'discfeat loss',
    'PML',
    'shape',
    'hyperparameters',
    'reduction',
    'value rel diff',
    'embeddings grad rel diff',
    'class weights grad rel diff',
    'check',
    'discfeat ms',
    'PML ms',
    'PML / discfeat',
    'discfeat temp MiB',
    'PML peak MiB',
  )
  print(
    f'jax {jax.__version__}, torch {torch.__version__}, '
    f'pytorch-metric-learning {pytorch_metric_learning.__version__}; '
    f'{jax.devices()[0].platform} ({cpuinfo.get_cpu_info()["brand_raw"]}, '
    f'{os.cpu_count()} cores), {threads} threads for both; float32; '
    f'forward + backward, median of {reps} runs, the two libraries '
    'alternating'
    + (' (1 run for the huge row)' if huge else '')
    + f'; "agree": value and gradients rel diff < {_AGREE_TOLERANCE:g}\n'
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in rows:
    print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
  app.run(main)
