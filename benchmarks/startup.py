r"""How long `python train.py` takes to say something, for common mistakes.

Each case starts a fresh ``python train.py ...`` and times its first line
of output (stdout or stderr) and its exit; the cases take turns, so that
a busy moment of the machine spreads over all of them.

  python -m benchmarks.startup [--repeats=3] [--data_dir=DIR]

The missing data set is MNIST in an empty data dir (DIR, default a new
temporary one); the other cases need no data.
"""

import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cases(data_dir: str, workdir: str) -> dict[str, list[str]]:
  """Case name -> train.py's arguments."""
  return {
    '--help': ['--help'],
    'unknown flag': ['--config=configs/mnist.py', '--nope', workdir],
    'bad override': [
      '--config=configs/mnist.py',
      '--config.num_epochs=abc',
      workdir,
    ],
    'missing data set': [
      '--config=configs/mnist.py',
      f'--config.input.data_dir={data_dir}',
      workdir,
    ],
  }


def time_command(command: list[str], *, timeout: float = 120.0):
  """Runs `command` in the repository's root.

  Returns:
    (seconds to the first line of output, seconds to exit, exit code, that
    first line); without output, the first line's time is the exit's.
  """
  start = time.perf_counter()
  process = subprocess.Popen(
    command,
    cwd=_ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  first, first_line = None, b''
  with selectors.DefaultSelector() as selector:
    selector.register(process.stdout, selectors.EVENT_READ)
    selector.register(process.stderr, selectors.EVENT_READ)
    open_streams = 2
    while open_streams:
      if time.perf_counter() - start > timeout:
        process.kill()
        raise TimeoutError(f'{" ".join(command)} ran past {timeout} s')
      for key, _ in selector.select(timeout=1.0):
        chunk = os.read(key.fileobj.fileno(), 65536)
        if not chunk:
          selector.unregister(key.fileobj)
          open_streams -= 1
        elif first is None and chunk.strip():
          first = time.perf_counter() - start
          first_line = chunk.strip().splitlines()[0]
  returncode = process.wait()
  end = time.perf_counter() - start
  first = end if first is None else first
  return first, end, returncode, first_line.decode(errors='replace')


def main(argv):
  del argv
  repeats = flags.FLAGS.repeats
  with tempfile.TemporaryDirectory() as scratch:
    data_dir = flags.FLAGS.data_dir or os.path.join(scratch, 'tfds')
    workdir = f'--workdir={os.path.join(scratch, "work")}'
    timings = {name: [] for name in cases(data_dir, workdir)}
    for _ in range(repeats):
      for name, case_argv in cases(data_dir, workdir).items():
        first, end, returncode, line = time_command(
          [sys.executable, 'train.py', *case_argv]
        )
        timings[name].append((first, end, returncode, line))
  print(
    f'{repeats} runs per case, {os.cpu_count()} CPUs, load '
    f'{os.getloadavg()[0]:.1f} at the end'
  )
  print('| case | first line, s (median; min-max) | exit, s | code | line |')
  print('|---|---|---|---|---|')
  for name, runs in timings.items():
    firsts = [run[0] for run in runs]
    ends = [run[1] for run in runs]
    line = runs[-1][3]
    line = line if len(line) <= 60 else line[:57] + '...'
    print(
      f'| {name} | {statistics.median(firsts):.2f}; {min(firsts):.2f}-'
      f'{max(firsts):.2f} | {statistics.median(ends):.2f} | '
      f'{runs[-1][2]} | `{line}` |'
    )


if __name__ == '__main__':
  # Defined here, not at import: the tests import the benchmarks together.
  flags.DEFINE_integer('repeats', 3, 'Runs per case.')
  flags.DEFINE_string(
    'data_dir', None, 'An empty TFDS data dir; default: a temporary one.'
  )
  app.run(main)
