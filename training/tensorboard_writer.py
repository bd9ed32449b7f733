"""TensorBoard event files without TensorFlow, behind clu's MetricWriter.

clu's TensorBoard writer (``clu.metric_writers.SummaryWriter``) is built on
``tf.summary``, and the package ``clu.metric_writers`` imports it in its
``__init__``: without TensorFlow, neither ``clu.metric_writers.interface``
nor ``clu.periodic_actions`` (which imports ``clu.metric_writers``) can be
imported (clu 0.0.12). So, before importing them, this module registers a
stand-in for the one TensorFlow-bound module,
``clu.metric_writers.summary_writer``, whose ``SummaryWriter`` makes this
module's `TensorBoardWriter`. Everything else is clu's own code: the
interface, LoggingWriter, MultiWriter, AsyncWriter, periodic_actions. Import
them through this module (``tensorboard_writer.periodic_actions``) or after
it; a process that imported ``clu.metric_writers`` first keeps clu's
original (and needs TensorFlow for it).

The events are written with tensorboardX (its protos, TFRecord framing and
crc32c), not tensorboard: on top of this project's other dependencies,
tensorboardX 2.6.5 adds one package of 0.65 MB (it needs only numpy,
protobuf and packaging, already there) in 2 s, while tensorboard 2.21 adds
six packages, 54 MB (tensorboard-data-server 20 MB, grpcio 19 MB,
tensorboard 12 MB, werkzeug, markdown, markupsafe) in 7 s. Viewing the logs
needs tensorboard (``pip install tensorboard``), not TensorFlow. Events go
through tensorboardX's synchronous ``EventsWriter``: its threaded
``EventFileWriter.flush`` does not wait for queued events, and clu's
AsyncWriter already writes from a background thread.

The summaries use the formats of ``tf.summary`` (v2) that TensorBoard's
plugins read: scalars, images, audio, text, histograms, hparams.
"""

import hashlib
import io
import itertools
import json
import os
import sys
import time
import types
import wave
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

_CLU_SUMMARY_WRITER = 'clu.metric_writers.summary_writer'


def _summary_writer(logdir: str) -> 'TensorBoardWriter':
  """Stands for ``clu.metric_writers.SummaryWriter``: a TF-free writer."""
  return TensorBoardWriter(logdir)


if 'clu.metric_writers' not in sys.modules:
  _stand_in = types.ModuleType(
    _CLU_SUMMARY_WRITER, 'TensorBoard writer without TensorFlow (discfeat).'
  )
  _stand_in.SummaryWriter = _summary_writer
  sys.modules.setdefault(_CLU_SUMMARY_WRITER, _stand_in)

# These imports must follow the stand-in (see the module docstring).
from clu import metric_writers, periodic_actions  # noqa: E402
from clu.metric_writers import interface  # noqa: E402
from tensorboardX import event_file_writer  # noqa: E402
from tensorboardX import summary as tbx_summary  # noqa: E402
from tensorboardX.proto import (  # noqa: E402
  event_pb2,
  plugin_hparams_pb2,
  summary_pb2,
  tensor_pb2,
  tensor_shape_pb2,
)

__all__ = [
  'TensorBoardWriter',
  'create_default_writer',
  'metric_writers',
  'periodic_actions',
]

# tf.summary.histogram's default bucket count.
DEFAULT_HISTOGRAM_BUCKETS = 30
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
# AudioPluginData(version=0, encoding=WAV): field 2, varint 11. tensorboardX
# has no audio plugin proto; TensorBoard's audio plugin needs the encoding.
_AUDIO_WAV_PLUGIN_CONTENT = b'\x10\x0b'


def _metadata(
  plugin_name: str, content: bytes = b''
) -> summary_pb2.SummaryMetadata:
  return summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(
      plugin_name=plugin_name, content=content
    )
  )


def _tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
  """A TensorProto of a numeric, bool or string numpy array."""
  shape = tensor_shape_pb2.TensorShapeProto(
    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
  )
  if array.dtype.kind in 'SUO':
    values = [
      v if isinstance(v, bytes) else str(v).encode('utf-8')
      for v in array.reshape(-1).tolist()
    ]
    return tensor_pb2.TensorProto(
      dtype='DT_STRING', tensor_shape=shape, string_val=values
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


def _png(image: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if image.shape[-1] == 1:
    image = image[..., 0]
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def _wav(audio: np.ndarray, sample_rate: int) -> bytes:
  """16-bit PCM WAV of a [T, C] float array in [-1, 1]."""
  pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype('<i2')
  buffer = io.BytesIO()
  with wave.open(buffer, 'wb') as f:
    f.setnchannels(audio.shape[1])
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes(pcm.tobytes())
  return buffer.getvalue()


def _flatten(hparams: Mapping[str, Any], prefix: tuple[str, ...] = ()):
  """As clu's SummaryWriter: nested keys joined by '.', None -> ''."""
  for key, value in hparams.items():
    if isinstance(value, Mapping) or hasattr(value, 'items'):
      yield from _flatten(value, prefix + (key,))
    elif isinstance(value, (list, tuple)):
      yield from _flatten(dict(enumerate(value)), prefix + (key,))
    else:
      yield '.'.join(map(str, prefix + (key,))), value


class TensorBoardWriter(interface.MetricWriter):
  """Writes TensorBoard event files with tensorboardX; no TensorFlow.

  Not thread-safe on its own (as clu's SummaryWriter); clu's AsyncWriter
  calls it from one background thread.
  """

  def __init__(self, logdir: str, *, flush_secs: float = 120.0):
    """Creates `logdir` and a new event file in it.

    Args:
      logdir: the directory TensorBoard is pointed at.
      flush_secs: writes flush the file when the last flush is older (as
        tf.summary.create_file_writer's flush_millis); `flush` always does.
    """
    super().__init__()
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

  def write_summaries(
    self,
    step: int,
    values: Mapping[str, interface.Array],
    metadata: Mapping[str, Any] | None = None,
  ):
    summaries = []
    for key, value in values.items():
      summary = summary_pb2.Summary.Value(
        tag=key, tensor=_tensor(np.asarray(value))
      )
      md = None if metadata is None else metadata.get(key)
      if md is not None:
        # A SummaryMetadata of any proto module, or its serialization.
        if not isinstance(md, bytes):
          md = md.SerializeToString()
        summary.metadata.ParseFromString(md)
      summaries.append(summary)
    self._write(step, summaries)

  def write_scalars(self, step: int, scalars: Mapping[str, interface.Scalar]):
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

  def write_images(self, step: int, images: Mapping[str, interface.Array]):
    """[N, H, W, C] or [H, W, C]; uint8, or floats in [0, 1]; C 1, 3 or 4."""
    summaries = []
    for key, value in images.items():
      value = np.asarray(value)
      if value.ndim == 3:
        value = value[None]
      if value.dtype != np.uint8:
        # As tf.image.convert_image_dtype(saturate=True).
        value = np.round(np.clip(value, 0.0, 1.0) * 255).astype(np.uint8)
      height, width = value.shape[1:3]
      encoded = [str(width), str(height)] + [_png(image) for image in value]
      summaries.append(
        summary_pb2.Summary.Value(
          tag=key,
          tensor=_tensor(np.array(encoded, dtype=object)),
          metadata=_metadata('images'),
        )
      )
    self._write(step, summaries)

  def write_videos(self, step: int, videos: Mapping[str, interface.Array]):
    del step, videos
    logging.log_first_n(
      logging.WARNING, 'TensorBoardWriter does not support writing videos.', 1
    )

  def write_audios(
    self,
    step: int,
    audios: Mapping[str, interface.Array],
    *,
    sample_rate: int,
  ):
    """[N, T, C] floats in [-1, 1], as WAV."""
    summaries = []
    for key, value in audios.items():
      value = np.asarray(value, np.float32)
      clips = [[_wav(clip, sample_rate), b''] for clip in value]
      summaries.append(
        summary_pb2.Summary.Value(
          tag=key,
          tensor=_tensor(np.array(clips, dtype=object)),
          metadata=_metadata('audio', _AUDIO_WAV_PLUGIN_CONTENT),
        )
      )
    self._write(step, summaries)

  def write_texts(self, step: int, texts: Mapping[str, str]):
    self._write(
      step,
      [
        summary_pb2.Summary.Value(
          tag=key,
          tensor=_tensor(np.array(value, dtype=object)),
          metadata=_metadata('text'),
        )
        for key, value in texts.items()
      ],
    )

  def write_histograms(
    self,
    step: int,
    arrays: Mapping[str, interface.Array],
    num_buckets: Mapping[str, int] | None = None,
  ):
    """Equal-width buckets (30 unless `num_buckets` says); NaN/inf dropped."""
    summaries = []
    for key, value in arrays.items():
      value = np.asarray(value, np.float64).reshape(-1)
      value = value[np.isfinite(value)]
      if not value.size:
        logging.warning('Histogram %r has no finite values; not written.', key)
        continue
      buckets = (num_buckets or {}).get(key) or DEFAULT_HISTOGRAM_BUCKETS
      summaries.append(
        summary_pb2.Summary.Value(
          tag=key, histo=tbx_summary.make_histogram(value, bins=buckets)
        )
      )
    self._write(step, summaries)

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


def create_default_writer(
  logdir: str | os.PathLike | None,
  *,
  just_logging: bool = False,
  asynchronous: bool = True,
  collection: str | None = None,
) -> metric_writers.MultiWriter:
  """As ``clu.metric_writers.create_default_writer``, without TensorFlow.

  Args:
    logdir: where the event files go (under `collection` if given); None:
      logging only.
    just_logging: only log (e.g. on every host but the first).
    asynchronous: write from a background thread (clu's AsyncMultiWriter).
    collection: a name prefixed to the log lines and appended to `logdir`.

  Returns:
    A MultiWriter of a LoggingWriter and, unless `just_logging`, a
    `TensorBoardWriter`.
  """
  writers = [metric_writers.LoggingWriter(collection=collection)]
  if not just_logging and logdir is not None:
    logdir = os.fspath(logdir)
    if collection is not None:
      logdir = os.path.join(logdir, collection)
    writers.append(TensorBoardWriter(logdir))
  if asynchronous:
    return metric_writers.AsyncMultiWriter(writers)
  return metric_writers.MultiWriter(writers)
