"""Face verification sets: insightface's ``NAME.bin`` and LFW's ``pairs.txt``.

Both give image pairs and a same-identity flag per pair, as decoded uint8
images ``[2N, H, W, 3]`` (pair i at rows 2i and 2i + 1) and bools ``[N]``:

* ``NAME.bin`` (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW as insightface ships
  them): a pickle of ``(list of 2N encoded images, list of N bools)``. The
  files come from the internet, so they are read with a restricted
  unpickler that builds only lists, tuples, bytes, str, bools and ints and
  refuses every global but the one Python 3 writes for bytes in the old
  protocols (``_codecs.encode(text, 'latin1')``, accepted for latin1
  only): a pickle that names ``os.system`` is refused before anything is
  called.
* LFW's ``pairs.txt`` beside the image folder: a header line (``folds
  pairs_per_fold``, or the pair count alone), then ``name i j`` for a
  same-identity pair and ``name1 i name2 j`` for a different one, images at
  ``ROOT/name/name_%04d.jpg``.

Images are decoded with PIL and converted to RGB; all images of a set
must share one size.
"""

import dataclasses
import io
import os
import pickle

import numpy as np

KINDS = ('bin', 'lfw_pairs')


@dataclasses.dataclass(frozen=True)
class VerificationSet:
  """Image pairs with same-identity flags.

  Attributes:
    name: the set's name in metric keys (``verify/<name>/accuracy``).
    images: uint8 ``[2N, H, W, 3]``; pair i is rows 2i and 2i + 1.
    same: bool ``[N]``.
  """

  name: str
  images: np.ndarray
  same: np.ndarray


def _latin1_encode(text, encoding):
  if encoding not in ('latin1', 'latin-1'):
    raise pickle.UnpicklingError(
      f'refused _codecs.encode with encoding {encoding!r}'
    )
  return text.encode('latin1')


class _RestrictedUnpickler(pickle.Unpickler):
  """Lists, tuples, bytes, str, bools, ints and nothing else."""

  def find_class(self, module, name):
    # Python 3 pickles bytes in protocols 0-2 as _codecs.encode(str,
    # 'latin1'); protocol 2 (Python 2's str) and 3+ need no global at all.
    if (module, name) == ('_codecs', 'encode'):
      return _latin1_encode
    raise pickle.UnpicklingError(
      f'refused the global {module}.{name}: a verification set holds only '
      'lists of bytes and bools'
    )


def _decode(data: bytes, where: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert('RGB'), dtype=np.uint8)
  except Exception as error:  # PIL raises many types for bad images.
    raise ValueError(
      f'{where}: cannot decode the image: {type(error).__name__}: {error}'
    ) from error


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
  shapes = sorted({image.shape for image in images})
  if len(shapes) > 1:
    raise ValueError(
      f'{where}: the images must share one size, received shapes {shapes[:4]}'
    )
  return np.stack(images)


def _unpickle(path: str):
  with open(path, 'rb') as file:
    try:
      # encoding='bytes': Python 2's str (insightface's files) -> bytes.
      return _RestrictedUnpickler(file, encoding='bytes').load()
    except pickle.UnpicklingError as error:
      raise ValueError(
        f'{path}: not a verification .bin pickle: {error}'
      ) from error
    except (EOFError, ValueError, IndexError, KeyError, TypeError) as error:
      raise ValueError(
        f'{path}: truncated or not a pickle ({type(error).__name__}: {error})'
      ) from error


def read_verification_bin(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads insightface's ``NAME.bin``: the decoded pairs and their flags.

  Args:
    path: the ``.bin`` file, a pickle of ``(list of 2N encoded images
      (JPEG, PNG: any format PIL reads), list of N bools)``.

  Returns:
    ``(images, same)``: uint8 ``[2N, H, W, 3]`` (RGB; pair i at rows 2i and
    2i + 1) and bool ``[N]``.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: a truncated file, a pickle of anything else (globals
      included: nothing is called), counts that do not match, or an image
      that cannot be decoded (its index named).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No verification .bin file at {path!r}')
  content = _unpickle(path)
  if not (isinstance(content, (tuple, list)) and len(content) == 2):
    raise ValueError(
      f'{path}: expected a pickled (images, flags) pair, received '
      f'{type(content).__name__}'
    )
  encoded, flags = content
  if not isinstance(encoded, (list, tuple)) or not all(
    isinstance(item, (bytes, bytearray)) for item in encoded
  ):
    raise ValueError(f'{path}: the first element must be a list of bytes')
  if not isinstance(flags, (list, tuple)) or not all(
    isinstance(flag, bool) or flag in (0, 1) for flag in flags
  ):
    raise ValueError(f'{path}: the second element must be a list of bools')
  if not flags or len(encoded) != 2 * len(flags):
    raise ValueError(
      f'{path}: expected 2 images per flag, received {len(encoded)} images '
      f'and {len(flags)} flags'
    )
  images = [
    _decode(bytes(data), f'{path}: image {index}')
    for index, data in enumerate(encoded)
  ]
  return _stack(images, path), np.asarray(flags, dtype=bool)


def _lfw_path(root: str, name: str, number: str, where: str) -> str:
  try:
    index = int(number)
  except ValueError as error:
    raise ValueError(f'{where}: image number {number!r} is not an int') from (
      error
    )
  return os.path.join(root, name, f'{name}_{index:04d}.jpg')


def read_lfw_pairs(
  pairs_path: str, image_root: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Reads LFW's ``pairs.txt`` and the images it names.

  Args:
    pairs_path: the pairs file: a header line (``folds pairs_per_fold``:
      each fold holds that many same pairs, then as many different pairs;
      or one number, the pairs of each kind), then one pair per line,
      ``name i j`` (same identity) or ``name1 i name2 j`` (different),
      separated by tabs or spaces.
    image_root: the folder of ``name/name_%04d.jpg`` images (default: the
      folder of `pairs_path`).

  Returns:
    ``(images, same)`` as `read_verification_bin`, in the file's order.

  Raises:
    FileNotFoundError: the pairs file or an image is missing (named).
    ValueError: a malformed line (its number named), a count that differs
      from the header's, or an image PIL cannot read.
  """
  pairs_path = os.fspath(pairs_path)
  root = image_root or os.path.dirname(os.path.abspath(pairs_path))
  with open(pairs_path) as file:
    lines = [line.split() for line in file]
  lines = [(number, fields) for number, fields in enumerate(lines, 1) if fields]
  if not lines:
    raise ValueError(f'{pairs_path}: empty pairs file')
  (_, header), body = lines[0], lines[1:]
  try:
    counts = [int(value) for value in header]
  except ValueError:
    counts = []
  if len(counts) not in (1, 2):
    raise ValueError(
      f'{pairs_path}: line 1 must be "folds pairs_per_fold" or a count, '
      f'received {" ".join(header)!r}'
    )
  expected = 2 * int(np.prod(counts))
  if len(body) != expected:
    raise ValueError(
      f'{pairs_path}: the header promises {expected} pairs, the file holds '
      f'{len(body)}'
    )
  paths, same = [], []
  for number, fields in body:
    where = f'{pairs_path}:{number}'
    if len(fields) == 3:
      paths += [
        _lfw_path(root, fields[0], fields[1], where),
        _lfw_path(root, fields[0], fields[2], where),
      ]
      same.append(True)
    elif len(fields) == 4:
      paths += [
        _lfw_path(root, fields[0], fields[1], where),
        _lfw_path(root, fields[2], fields[3], where),
      ]
      same.append(False)
    else:
      raise ValueError(
        f'{where}: expected "name i j" or "name1 i name2 j", received '
        f'{" ".join(fields)!r}'
      )
  images = []
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'{pairs_path}: no image at {path!r}')
    with open(path, 'rb') as file:
      images.append(_decode(file.read(), path))
  return _stack(images, pairs_path), np.asarray(same, dtype=bool)


def read_set(entry) -> VerificationSet:
  """Reads one entry of ``config.verification``.

  Args:
    entry: a path to ``NAME.bin`` (the set is named NAME), or a mapping
      with ``path``, optional ``kind`` (`KINDS`; default from the path:
      ``.bin`` -> 'bin', else 'lfw_pairs'), ``images`` (LFW: the image
      folder, default beside the pairs file) and ``name`` (default: the
      file's name without extension, or the folder's for ``pairs.txt``).

  Raises:
    ValueError: an unknown kind or field, or what the readers raise.
  """
  if isinstance(entry, str):
    entry = {'path': entry}
  entry = dict(entry)
  unknown = set(entry) - {'path', 'kind', 'images', 'name'}
  if unknown or 'path' not in entry:
    raise ValueError(
      'config.verification: each entry is a path or has the fields path, '
      f'kind, images, name; received {sorted(entry)}'
    )
  path = os.path.expanduser(entry['path'])
  kind = entry.get('kind') or ('bin' if path.endswith('.bin') else 'lfw_pairs')
  if kind not in KINDS:
    raise ValueError(
      f'config.verification: kind must be one of {KINDS}, received {kind!r}'
    )
  stem = os.path.splitext(os.path.basename(path))[0]
  if kind == 'bin':
    images, same = read_verification_bin(path)
    default_name = stem
  else:
    images, same = read_lfw_pairs(path, entry.get('images'))
    default_name = (
      os.path.basename(os.path.dirname(os.path.abspath(path))) or stem
    )
  return VerificationSet(entry.get('name') or default_name, images, same)
