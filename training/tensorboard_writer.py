"""TensorBoard event files without TensorFlow, and the run's metric writer.

`TensorBoardWriter` writes scalars and the hparams plugin's session record
in the formats of ``tf.summary`` (v2) that TensorBoard reads, with
tensorboardX's protos, TFRecord framing and crc32c: no TensorFlow, and not
tensorboard itself (on top of this project's other dependencies,
tensorboardX adds one package of 0.65 MB, where tensorboard adds six,
54 MB). Viewing the logs needs tensorboard (``pip install tensorboard``).
Events go through tensorboardX's synchronous ``EventsWriter``: its threaded
``EventFileWriter.flush`` does not wait for queued events.

`MetricWriter` is what the training loop writes to: TensorBoard on process
0, and every value to the log at debug level (the console shows progress
and the final summary only).
"""

import hashlib
import itertools
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from tensorboardX import event_file_writer
from tensorboardX.proto import (
  event_pb2,
  plugin_hparams_pb2,
  summary_pb2,
  tensor_pb2,
  tensor_shape_pb2,
)

_FILE_COUNTER = itertools.count()

# numpy dtype -> TensorProto DataType (the ones tensorboardX's proto has).
_DTYPES = {
  'float16': 'DT_HALF',
  'float32': 'DT_FLOAT',
  'float64': 'DT_DOUBLE',
  'int8': 'DT_INT8',
  'int16': 'DT_INT16',
  'int32': 'DT_INT32',
  'int64': 'DT_INT64',
  'uint8': 'DT_UINT8',
  'uint16': 'DT_UINT16',
  'bool': 'DT_BOOL',
}


def _metadata(
  plugin_name: str, content: bytes = b''
) -> summary_pb2.SummaryMetadata:
  return summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(
      plugin_name=plugin_name, content=content
    )
  )


def _tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
  """A TensorProto of a numeric or bool numpy array."""
  shape = tensor_shape_pb2.TensorShapeProto(
    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
  )
  if array.dtype.name not in _DTYPES:
    raise TypeError(f'Cannot write a tensor of dtype {array.dtype}')
  return tensor_pb2.TensorProto(
    dtype=_DTYPES[array.dtype.name],
    tensor_shape=shape,
    tensor_content=np.ascontiguousarray(array)
    .astype(array.dtype.newbyteorder('<'))
    .tobytes(),
  )


def _flatten(hparams: Mapping[str, Any], prefix: tuple[str, ...] = ()):
  """As clu's SummaryWriter: nested keys joined by '.', None -> ''."""
  for key, value in hparams.items():
    if isinstance(value, Mapping) or hasattr(value, 'items'):
      yield from _flatten(value, prefix + (key,))
    elif isinstance(value, (list, tuple)):
      yield from _flatten(dict(enumerate(value)), prefix + (key,))
    else:
      yield '.'.join(map(str, prefix + (key,))), value


class TensorBoardWriter:
  """Writes TensorBoard event files with tensorboardX; no TensorFlow."""

  def __init__(self, logdir: str, *, flush_secs: float = 120.0):
    """Creates `logdir` and a new event file in it.

    Args:
      logdir: the directory TensorBoard is pointed at.
      flush_secs: writes flush the file when the last flush is older (as
        tf.summary.create_file_writer's flush_millis); `flush` always does.
    """
    logdir = os.fspath(logdir)
    os.makedirs(logdir, exist_ok=True)
    # The pid and a counter keep two writers (a resumed run in the same
    # second) from sharing a file name.
    suffix = f'.{os.getpid()}.{next(_FILE_COUNTER)}.v2'
    self._events = event_file_writer.EventsWriter(
      os.path.join(logdir, 'events'), filename_suffix=suffix
    )
    self._flush_secs = flush_secs
    self._last_flush = time.monotonic()
    self._closed = False

  def _write(self, step: int, values: list[summary_pb2.Summary.Value]):
    if not values:
      return
    event = event_pb2.Event(
      wall_time=time.time(),
      step=int(step),
      summary=summary_pb2.Summary(value=values),
    )
    self._events.write_event(event)
    if time.monotonic() - self._last_flush > self._flush_secs:
      self.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    self._write(
      step,
      [
        summary_pb2.Summary.Value(
          tag=key,
          tensor=_tensor(np.asarray(value, np.float32).reshape(())),
          metadata=_metadata('scalars'),
        )
        for key, value in scalars.items()
      ],
    )

  def write_hparams(self, hparams: Mapping[str, Any]):
    """One session of the hparams plugin (as tensorboard's hparams_pb)."""
    values = {}
    for key, value in _flatten(hparams):
      if isinstance(value, np.generic):
        value = value.item()
      if value is None:
        value = ''
      elif not isinstance(value, (bool, int, float, str)):
        value = str(value)
      values[key] = value
    # TensorBoard's default group name: a hash of the values.
    group = hashlib.sha256(
      json.dumps(values, sort_keys=True, separators=(',', ':')).encode()
    ).hexdigest()
    start = plugin_hparams_pb2.SessionStartInfo(
      group_name=group, start_time_secs=time.time()
    )
    for key in sorted(values):
      value = values[key]
      if isinstance(value, bool):
        start.hparams[key].bool_value = value
      elif isinstance(value, (int, float)):
        start.hparams[key].number_value = value
      else:
        start.hparams[key].string_value = value
    content = plugin_hparams_pb2.HParamsPluginData(
      version=0, session_start_info=start
    )
    self._write(
      0,
      [
        summary_pb2.Summary.Value(
          tag='_hparams_/session_start_info',
          tensor=_tensor(np.zeros((0,), np.float32)),
          metadata=_metadata('hparams', content.SerializeToString()),
        )
      ],
    )

  def flush(self):
    if not self._closed:
      self._events.flush()
      self._last_flush = time.monotonic()

  def close(self):
    if not self._closed:
      self._events.close()
      self._closed = True


class MetricWriter:
  """The run's metrics: TensorBoard on process 0, the log at debug level.

  Args:
    logdir: where the event file goes.
    write_events: False on every process but the first (one event file per
      run).
  """

  def __init__(self, logdir: str, *, write_events: bool = True):
    self._events = TensorBoardWriter(logdir) if write_events else None

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    logging.debug(
      '[%d] %s',
      step,
      ', '.join(f'{key}={float(value):.6g}' for key, value in scalars.items()),
    )
    if self._events is not None:
      self._events.write_scalars(step, scalars)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    if self._events is not None:
      self._events.write_hparams(hparams)

  def flush(self) -> None:
    if self._events is not None:
      self._events.flush()

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
