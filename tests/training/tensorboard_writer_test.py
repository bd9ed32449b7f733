"""The TensorBoard writer, read back without TensorFlow or tensorboard.

Event files are TFRecord files of `Event` protos; they are parsed here with
struct and tensorboardX's protos, checking each record's masked CRC32C.
"""

import glob
import io
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
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


def test_scalars_hparams_images_texts_histograms(tmp_path):
  logdir = str(tmp_path / 'run')
  writer = tensorboard_writer.create_default_writer(logdir)
  writer.write_hparams({'optimizer': {'learning_rate': 0.1}, 'loss': 'gs'})
  writer.write_scalars(1, {'train/loss': 2.5, 'train/accuracy': 0.125})
  writer.write_scalars(2, {'train/loss': np.float32(1.25)})
  images = np.zeros((2, 4, 6, 3), np.float32)
  images[1] = 1.0
  writer.write_images(2, {'samples': images})
  writer.write_texts(3, {'note': 'resumed'})
  writer.write_histograms(3, {'weights': np.arange(10.0)}, {'weights': 5})
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

  plugin, value = values[('samples', 2)]
  assert plugin == 'images'
  width, height, *pngs = value.tensor.string_val
  assert (width, height) == (b'6', b'4')
  decoded = [np.asarray(Image.open(io.BytesIO(png))) for png in pngs]
  assert [d.shape for d in decoded] == [(4, 6, 3), (4, 6, 3)]
  assert decoded[0].max() == 0 and decoded[1].min() == 255

  plugin, value = values[('note', 3)]
  assert plugin == 'text'
  assert list(value.tensor.string_val) == [b'resumed']

  _, value = values[('weights', 3)]
  assert value.histo.num == 10 and value.histo.sum == 45.0
  assert (value.histo.min, value.histo.max) == (0.0, 9.0)
  assert sum(value.histo.bucket) == 10


def test_flush_writes_the_pending_events(tmp_path):
  writer = tensorboard_writer.create_default_writer(str(tmp_path))
  writer.write_scalars(7, {'test/accuracy': 0.75})
  writer.flush()
  values = _values(str(tmp_path))
  assert _scalar(values[('test/accuracy', 7)][1]) == 0.75
  writer.close()


def test_collection_is_a_subdirectory(tmp_path):
  writer = tensorboard_writer.create_default_writer(
    str(tmp_path), asynchronous=False, collection='eval'
  )
  writer.write_scalars(1, {'accuracy': 0.5})
  writer.close()
  assert os.listdir(tmp_path) == ['eval']
  assert ('accuracy', 1) in _values(str(tmp_path / 'eval'))


@pytest.mark.parametrize('asynchronous', [True, False])
def test_just_logging_writes_no_event_file(tmp_path, asynchronous):
  logdir = tmp_path / 'run'
  writer = tensorboard_writer.create_default_writer(
    str(logdir), just_logging=True, asynchronous=asynchronous
  )
  writer.write_hparams({'seed': 0})
  writer.write_scalars(1, {'train/loss': 1.0})
  writer.close()
  assert not logdir.exists()


def test_clu_imports_without_tensorflow():
  # Even where TensorFlow is installed, clu's writers come without it.
  code = (
    'import sys\n'
    'from training import tensorboard_writer as tw\n'
    'from clu import metric_writers, periodic_actions\n'
    'assert "tensorflow" not in sys.modules, "TensorFlow was imported"\n'
    'assert tw.periodic_actions is periodic_actions\n'
    'assert metric_writers.SummaryWriter is tw._summary_writer\n'
  )
  subprocess.run(
    [sys.executable, '-c', code], cwd=_REPO, check=True, timeout=120
  )
