"""Person re-identification data sets as distributed: their images listed.

Market-1501 and DukeMTMC-reID (one folder per split, identity and camera
in every file name)::

  ROOT/bounding_box_train/0002_c1s1_000451_03.jpg
  ROOT/query/0001_c1s1_001051_00.jpg
  ROOT/bounding_box_test/0000_c1s1_000151_01.jpg   (0000: distractor)
  ROOT/bounding_box_test/-1_c1s1_000401_03.jpg     (-1: junk)

MSMT17 (list files naming each image and its identity; the camera is the
third field of the file name, counted from 1)::

  ROOT/train/0000/0000_000_01_0303morning_0015_0.jpg
  ROOT/test/...
  ROOT/list_train.txt, list_val.txt, list_query.txt, list_gallery.txt
  (lines ``<path relative to train/ or test/> <identity>``)

The conventions are torchreid's readers' (``torchreid/data/datasets/
image/market1501.py``, ``msmt17.py``): identity and camera parsed with the
pattern ``([-\\d]+)_c(\\d)``; junk images (identity -1) dropped from every
split; distractors (identity 0) kept in the gallery; cameras counted from
0; training identities relabelled 0..N-1 in sorted order (they are class
ids), query and gallery identities kept as they are (they only need to
compare equal); MSMT17's validation list is not part of its training
split (torchreid's default without ``combineall``).

Only the listing is here: nothing reads these listings into prepared
records, the pipeline or the evaluation yet (docs/protocols.md).
"""

import dataclasses
import os
import re

REID_SPLITS = ('train', 'query', 'gallery')
JUNK_ID = -1
MARKET_FOLDERS = {
  'train': 'bounding_box_train',
  'query': 'query',
  'gallery': 'bounding_box_test',
}
MSMT17_LISTS = {
  'train': ('train', 'list_train.txt'),
  'query': ('test', 'list_query.txt'),
  'gallery': ('test', 'list_gallery.txt'),
}
_NAME_PATTERN = re.compile(r'([-\d]+)_c(\d)')
_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


@dataclasses.dataclass(frozen=True)
class ReidImage:
  """One image: its path, identity and camera.

  Attributes:
    path: the absolute image path.
    identity: the class id (training split: relabelled 0..N-1) or the
      identity as distributed (query and gallery; 0 for distractors).
    camera: the camera id, counted from 0.
  """

  path: str
  identity: int
  camera: int


def parse_market_name(name: str) -> tuple[int, int]:
  """Identity and camera (from 0) of a Market-1501 / DukeMTMC-reID file.

  Args:
    name: a file name such as ``'0002_c1s1_000451_03.jpg'``.

  Returns:
    ``(identity, camera)``, e.g. ``(2, 0)``; identity -1 for junk images.

  Raises:
    ValueError: when the name does not start ``<identity>_c<camera>``.
  """
  match = _NAME_PATTERN.match(os.path.basename(name))
  if match is None:
    raise ValueError(
      f'a re-id image name must start <identity>_c<camera> (e.g. '
      f'0002_c1s1_000451_03.jpg), received {name!r}'
    )
  return int(match.group(1)), int(match.group(2)) - 1


def _relabelled(images: list[ReidImage]) -> tuple[ReidImage, ...]:
  identities = sorted({image.identity for image in images})
  codes = {identity: code for code, identity in enumerate(identities)}
  return tuple(
    dataclasses.replace(image, identity=codes[image.identity])
    for image in images
  )


def _check_root(root: str, required: tuple[str, ...]) -> str:
  root = os.path.abspath(os.path.expanduser(root))
  missing = [
    name for name in required if not os.path.exists(os.path.join(root, name))
  ]
  if missing:
    raise ValueError(
      f'{root!r} must hold {", ".join(required)}; missing: {", ".join(missing)}'
    )
  return root


def list_market1501(root: str) -> dict[str, tuple[ReidImage, ...]]:
  """The train, query and gallery images of a Market-1501-style folder.

  DukeMTMC-reID has the same layout and names.

  Args:
    root: the folder holding ``bounding_box_train/``, ``query/`` and
      ``bounding_box_test/``.

  Returns:
    Split name -> its images sorted by file name, junk dropped.

  Raises:
    ValueError: on a missing folder, a split without images or an image
      name without identity and camera.
  """
  root = _check_root(root, tuple(MARKET_FOLDERS.values()))
  result = {}
  for split, folder in MARKET_FOLDERS.items():
    images = []
    for name in sorted(os.listdir(os.path.join(root, folder))):
      if not name.lower().endswith(_IMAGE_EXTENSIONS):
        continue
      identity, camera = parse_market_name(name)
      if identity == JUNK_ID:
        continue
      images.append(
        ReidImage(os.path.join(root, folder, name), identity, camera)
      )
    if not images:
      raise ValueError(f'{os.path.join(root, folder)!r} holds no re-id image')
    result[split] = _relabelled(images) if split == 'train' else tuple(images)
  return result


def list_msmt17(root: str) -> dict[str, tuple[ReidImage, ...]]:
  """The train, query and gallery images of MSMT17 from its list files.

  Args:
    root: the folder holding ``train/``, ``test/`` and the list files.

  Returns:
    Split name -> its images in list order.

  Raises:
    ValueError: on a missing folder or list file, a malformed line or an
      empty list.
  """
  required = ('train', 'test') + tuple(
    name for _, name in MSMT17_LISTS.values()
  )
  root = _check_root(root, required)
  result = {}
  for split, (folder, list_name) in MSMT17_LISTS.items():
    images = []
    list_path = os.path.join(root, list_name)
    with open(list_path) as file:
      for number, line in enumerate(file, 1):
        if not line.strip():
          continue
        fields = line.split()
        name_fields = os.path.basename(fields[0]).split('_')
        if len(fields) != 2 or len(name_fields) < 3:
          raise ValueError(
            f'{list_path}:{number}: expected "<path> <identity>" with a '
            f'name like 0000_000_01_0303morning_0015_0.jpg, received '
            f'{line.strip()!r}'
          )
        images.append(
          ReidImage(
            os.path.join(root, folder, fields[0]),
            int(fields[1]),
            int(name_fields[2]) - 1,
          )
        )
    if not images:
      raise ValueError(f'{list_path!r} lists no image')
    result[split] = _relabelled(images) if split == 'train' else tuple(images)
  return result
