"""Wall-clock timing shared by the benchmark scripts."""

import statistics
import time
from collections.abc import Callable, Sequence


def median_seconds_interleaved(
  runs: Sequence[Callable[[], object]], reps: int
) -> list[float]:
  """Median seconds of each run over `reps` rounds, the runs alternating.

  Alternating makes the ratios between runs robust to the machine's speed
  drifting (frequency scaling, other load). Each run must block until its
  work is done (e.g. `jax.block_until_ready`), and the caller warms them up
  (compilation, first-call costs) beforehand.
  """
  times = [[] for _ in runs]
  for _ in range(reps):
    for run, run_times in zip(runs, times, strict=True):
      start = time.perf_counter()
      run()
      run_times.append(time.perf_counter() - start)
  return [statistics.median(run_times) for run_times in times]
