"""The TensorBoard writer, read back without TensorFlow or tensorboard.

Event files are TFRecord files of `Event` protos; they are parsed here with
struct and tensorboardX's protos, checking each record's masked CRC32C.
"""

import glob
import os
import struct
import subprocess
import sys
from unittest import mock

import numpy as np
from tensorboardX.proto import event_pb2, plugin_hparams_pb2
from tensorboardX.record_writer import masked_crc32c

from training import tensorboard_writer

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _read_events(path):
  events = []
  with open(path, 'rb') as f:
    while header := f.read(8):
      (length,) = struct.unpack('<Q', header)
      (header_crc,) = struct.unpack('<I', f.read(4))
      assert header_crc == masked_crc32c(header)
      data = f.read(length)
      (data_crc,) = struct.unpack('<I', f.read(4))
      assert data_crc == masked_crc32c(data)
      events.append(event_pb2.Event.FromString(data))
  return events


def _event_file(logdir):
  files = glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))
  assert len(files) == 1, files
  return files[0]


def _values(logdir):
  """{(tag, step): (plugin name, Summary.Value)} of the one event file."""
  events = _read_events(_event_file(logdir))
  assert events[0].file_version == 'brain.Event:2'
  values = {}
  for event in events[1:]:
    for value in event.summary.value:
      key = (value.tag, event.step)
      assert key not in values
      values[key] = (value.metadata.plugin_data.plugin_name, value)
  return values


def _scalar(value):
  assert value.tensor.dtype == 1  # DT_FLOAT
  assert not value.tensor.tensor_shape.dim
  return float(np.frombuffer(value.tensor.tensor_content, '<f4')[0])


def test_scalars_and_hparams(tmp_path):
  logdir = str(tmp_path / 'run')
  writer = tensorboard_writer.MetricWriter(logdir)
  writer.write_hparams({'optimizer': {'learning_rate': 0.1}, 'loss': 'gs'})
  writer.write_scalars(1, {'train/loss': 2.5, 'train/accuracy': 0.125})
  writer.write_scalars(2, {'train/loss': np.float32(1.25)})
  writer.close()

  values = _values(logdir)
  scalars = {
    key: _scalar(value)
    for key, (plugin, value) in values.items()
    if plugin == 'scalars'
  }
  assert scalars == {
    ('train/loss', 1): 2.5,
    ('train/accuracy', 1): 0.125,
    ('train/loss', 2): 1.25,
  }

  plugin, value = values[('_hparams_/session_start_info', 0)]
  assert plugin == 'hparams'
  content = plugin_hparams_pb2.HParamsPluginData.FromString(
    value.metadata.plugin_data.content
  )
  hparams = content.session_start_info.hparams
  assert set(hparams) == {'optimizer.learning_rate', 'loss'}
  assert hparams['optimizer.learning_rate'].number_value == 0.1
  assert hparams['loss'].string_value == 'gs'


def test_flush_writes_the_pending_events(tmp_path):
  writer = tensorboard_writer.MetricWriter(str(tmp_path))
  writer.write_scalars(7, {'test/accuracy': 0.75})
  writer.flush()
  values = _values(str(tmp_path))
  assert _scalar(values[('test/accuracy', 7)][1]) == 0.75
  writer.close()


def test_values_go_to_the_log_at_debug_level(tmp_path):
  with mock.patch.object(tensorboard_writer.logging, 'debug') as debug:
    writer = tensorboard_writer.MetricWriter(str(tmp_path))
    writer.write_scalars(3, {'train/loss': 0.5})
    writer.close()
  (call,) = debug.call_args_list
  assert call.args[0] % call.args[1:] == '[3] train/loss=0.5'


def test_other_processes_write_no_event_file(tmp_path):
  logdir = tmp_path / 'run'
  writer = tensorboard_writer.MetricWriter(str(logdir), write_events=False)
  writer.write_hparams({'seed': 0})
  writer.write_scalars(1, {'train/loss': 1.0})
  writer.close()
  assert not logdir.exists()


def test_imports_no_tensorflow():
  code = (
    'import sys\n'
    'from training import tensorboard_writer\n'
    'assert "tensorflow" not in sys.modules, "TensorFlow was imported"\n'
  )
  subprocess.run(
    [sys.executable, '-c', code], cwd=_REPO, check=True, timeout=120
  )
