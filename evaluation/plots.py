"""PNG figures of feature spaces, per-class geometry and retrieval results.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so nothing
opens a window, no global backend is switched and no figure outlives its
call. Features with more than two dimensions are projected on their first two
principal components (scikit-learn PCA), and the axis labels say so.
"""

import math
import os
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg
from sklearn import decomposition

from common import checks

_DPI = 150
# tab10 keeps 10 classes (MNIST, CIFAR-10) clearly apart; tab20 goes to 20.
# Beyond that no qualitative map suffices and a sampled rainbow is used.
_QUALITATIVE = (('tab10', 10), ('tab20', 20))
_MAX_LEGEND_ENTRIES = 20


def _colours(num_classes: int) -> np.ndarray:
  """``[num_classes, 4]`` RGBA colours, as distinct as the count allows."""
  for name, size in _QUALITATIVE:
    if num_classes <= size:
      return matplotlib.colormaps[name](np.arange(num_classes))
  return matplotlib.colormaps['turbo'](np.linspace(0.0, 1.0, num_classes))


def _check_features(embeddings: Any, labels: Any, name: str) -> None:
  checks.check_embeddings_and_labels(embeddings, labels, embeddings_name=name)
  checks.check_non_empty(embeddings, name)
  if np.shape(embeddings)[1] < 2:
    raise ValueError(
      f'`{name}` must have at least 2 feature dimensions to plot, received '
      f'shape {np.shape(embeddings)}'
    )


def _check_class_names(
  class_names: Sequence[str] | None, classes: np.ndarray
) -> None:
  if class_names is None:
    return
  if classes.min() < 0 or classes.max() >= len(class_names):
    raise ValueError(
      f'`class_names` must name every label (ids 0..{len(class_names) - 1} '
      f'for {len(class_names)} names), received labels from '
      f'{classes.min()} to {classes.max()}'
    )


def _class_name(class_names: Sequence[str] | None, label: int) -> str:
  return str(label) if class_names is None else str(class_names[label])


def _project(embeddings: Any) -> tuple[np.ndarray, tuple[str, str]]:
  """2-D coordinates and axis labels (PCA when dim > 2)."""
  x = np.asarray(embeddings)
  x = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
  if x.shape[1] == 2:
    return x, ('feature 1', 'feature 2')
  if x.shape[0] < 2:
    # PCA needs two samples; a lone point is drawn at its first two values.
    return x[:, :2], ('feature 1', 'feature 2')
  pca = decomposition.PCA(n_components=2, random_state=0)
  projected = pca.fit_transform(x)
  ratios = pca.explained_variance_ratio_
  return projected, tuple(
    f'PCA component {i + 1} of {x.shape[1]}-d features '
    f'({100 * ratio:.0f}% var.)'
    for i, ratio in enumerate(ratios)
  )


def _scatter(axes, embeddings, labels, class_names, colours, classes, title):
  """Draws one feature panel; returns the handles for a legend."""
  points, (x_label, y_label) = _project(embeddings)
  labels = np.asarray(labels)
  # Smaller, lighter markers as the point count grows, so dense classes stay
  # readable instead of becoming solid blobs.
  size = float(np.clip(2000.0 / max(len(labels), 1), 1.0, 20.0))
  alpha = float(np.clip(200.0 / max(len(labels), 1) ** 0.5, 0.3, 0.9))
  handles = []
  for colour, label in zip(colours, classes, strict=True):
    mask = labels == label
    if not np.any(mask):
      continue
    handles.append(
      axes.scatter(
        points[mask, 0],
        points[mask, 1],
        s=size,
        color=colour,
        alpha=alpha,
        linewidths=0,
        rasterized=True,
        label=_class_name(class_names, int(label)),
      )
    )
  axes.set_xlabel(x_label, fontsize=8)
  axes.set_ylabel(y_label, fontsize=8)
  axes.set_title(title, fontsize=10)
  axes.tick_params(labelsize=7)
  return handles


def _save(
  fig: mpl_figure.Figure,
  path: str | os.PathLike,
  *,
  dpi: int = _DPI,
  tight: bool = True,
) -> str:
  path = os.fspath(path)
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  backend_agg.FigureCanvasAgg(fig)
  fig.savefig(
    path, format='png', dpi=dpi, bbox_inches='tight' if tight else None
  )
  return path


def plot_features(
  embeddings: Any,
  labels: Any,
  path: str | os.PathLike,
  *,
  title: str,
  class_names: Sequence[str] | None = None,
) -> str:
  """Scatter plot of features coloured by class, saved as a PNG.

  Args:
    embeddings: ``[n, dim]`` floating features, dim >= 2; projected on their
      first two principal components when dim > 2.
    labels: ``[n]`` integer class ids.
    path: the PNG file to write (parent folders are created).
    title: the figure title.
    class_names: optional names indexed by class id, for the legend (shown
      up to 20 classes).

  Returns:
    `path`, as a string.

  Raises:
    ValueError: on wrong ranks or lengths, dim < 2, empty inputs or labels
      outside `class_names`.
    TypeError: on non-floating `embeddings` or non-integer `labels`.
  """
  _check_features(embeddings, labels, 'embeddings')
  classes = np.unique(np.asarray(labels))
  _check_class_names(class_names, classes)
  fig = mpl_figure.Figure(figsize=(6.0, 5.0))
  axes = fig.add_subplot()
  handles = _scatter(
    axes,
    embeddings,
    labels,
    class_names,
    _colours(len(classes)),
    classes,
    title,
  )
  if len(classes) <= _MAX_LEGEND_ENTRIES:
    axes.legend(
      handles=handles,
      loc='center left',
      bbox_to_anchor=(1.01, 0.5),
      fontsize=7,
      markerscale=max(1.0, 4.0 / handles[0].get_sizes()[0] ** 0.5),
      frameon=False,
    )
  return _save(fig, path)


def plot_class_geometry(
  per_class_compactness: Any,
  per_class_separability: Any,
  path: str | os.PathLike,
  *,
  title: str,
  class_names: Sequence[str] | None = None,
) -> str:
  """Grouped bar chart of per-class compactness and separability.

  The two measures usually have different units, so each has its own y
  axis: compactness on the left, separability on the right, in the colour
  of its bars.

  Args:
    per_class_compactness: ``[C]`` values (e.g.
      ``intra_class_compactness(...).per_class``).
    per_class_separability: ``[C]`` values in the same class order.
    path: the PNG file to write (parent folders are created).
    title: the figure title.
    class_names: optional ``C`` names for the x ticks (default 0..C-1).

  Returns:
    `path`, as a string.

  Raises:
    ValueError: on wrong ranks, mismatched lengths or a wrong number of
      `class_names`.
  """
  checks.check_rank(
    per_class_compactness, 1, 'per_class_compactness', '[num_classes]'
  )
  checks.check_rank(
    per_class_separability, 1, 'per_class_separability', '[num_classes]'
  )
  checks.check_same_shape(
    per_class_compactness,
    per_class_separability,
    'per_class_compactness',
    'per_class_separability',
  )
  compactness = np.asarray(per_class_compactness, np.float64)
  separability = np.asarray(per_class_separability, np.float64)
  num_classes = len(compactness)
  if num_classes == 0:
    raise ValueError('`per_class_compactness` must hold at least one class')
  if class_names is not None and len(class_names) != num_classes:
    raise ValueError(
      f'`class_names` must hold {num_classes} names (one per class), '
      f'received {len(class_names)}'
    )
  names = (
    [str(i) for i in range(num_classes)]
    if class_names is None
    else [str(name) for name in class_names]
  )
  compactness_colour, separability_colour = _colours(2)
  fig = mpl_figure.Figure(figsize=(max(6.0, 0.35 * num_classes + 2.0), 4.0))
  left = fig.add_subplot()
  right = left.twinx()
  positions = np.arange(num_classes)
  width = 0.4
  left.bar(
    positions - width / 2,
    compactness,
    width,
    color=compactness_colour,
    label='compactness',
  )
  right.bar(
    positions + width / 2,
    separability,
    width,
    color=separability_colour,
    label='separability',
  )
  left.set_ylabel('intra-class compactness', color=compactness_colour)
  right.set_ylabel('inter-class separability', color=separability_colour)
  left.set_xticks(positions)
  left.set_xticklabels(
    names, rotation=90 if num_classes > 12 else 0, fontsize=7
  )
  left.set_xlabel('class')
  left.set_title(title)
  left.legend(
    handles=left.containers + right.containers,
    labels=['compactness', 'separability'],
    loc='upper center',
    bbox_to_anchor=(0.5, -0.15 if num_classes <= 12 else -0.3),
    ncols=2,
    frameon=False,
  )
  return _save(fig, path)


def plot_feature_grid(
  panels: Sequence[tuple[str, Any, Any]],
  path: str | os.PathLike,
  *,
  class_names: Sequence[str] | None = None,
  title: str | None = None,
) -> str:
  """One feature scatter per loss, side by side in a grid.

  Every panel uses the same class colours (over the union of the panels'
  labels) and one shared legend, so panels compare at a glance.

  Args:
    panels: ``(title, embeddings, labels)`` per panel, with ``[n_i, dim_i]``
      floating embeddings (PCA-projected when dim_i > 2) and ``[n_i]``
      integer labels.
    path: the PNG file to write (parent folders are created).
    class_names: optional names indexed by class id, for the legend.
    title: optional title over the whole grid.

  Returns:
    `path`, as a string.

  Raises:
    ValueError: on an empty `panels`, a malformed panel, or the errors of
      `plot_features` for any panel.
  """
  if not panels:
    raise ValueError('`panels` must hold at least one panel, received none')
  for index, panel in enumerate(panels):
    if not isinstance(panel, (tuple, list)) or len(panel) != 3:
      raise ValueError(
        f'`panels[{index}]` must be a (title, embeddings, labels) tuple, '
        f'received {type(panel).__name__} of length '
        f'{len(panel) if hasattr(panel, "__len__") else "n/a"}'
      )
    _check_features(panel[1], panel[2], f'panels[{index}] embeddings')
  classes = np.unique(np.concatenate([np.asarray(p[2]) for p in panels]))
  _check_class_names(class_names, classes)
  colours = _colours(len(classes))
  num_columns = math.ceil(math.sqrt(len(panels)))
  num_rows = math.ceil(len(panels) / num_columns)
  fig = mpl_figure.Figure(figsize=(4.0 * num_columns, 3.8 * num_rows))
  grid = fig.subplots(num_rows, num_columns, squeeze=False)
  handles_by_label = {}
  for axes, (panel_title, embeddings, labels) in zip(
    grid.flat, panels, strict=False
  ):
    for handle in _scatter(
      axes, embeddings, labels, class_names, colours, classes, panel_title
    ):
      handles_by_label.setdefault(handle.get_label(), handle)
  for axes in grid.flat[len(panels) :]:
    axes.set_visible(False)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  if len(classes) <= _MAX_LEGEND_ENTRIES:
    fig.legend(
      handles=list(handles_by_label.values()),
      loc='center left',
      bbox_to_anchor=(1.0, 0.5),
      fontsize=8,
      markerscale=3.0,
      frameon=False,
    )
  return _save(fig, path)


# The retrieval grid's cells, in pixels: the image square plus a caption.
RETRIEVAL_CELL_WIDTH = 96
RETRIEVAL_CELL_HEIGHT = 120
RETRIEVAL_TITLE_HEIGHT = 32
_RETRIEVAL_DPI = 96
_IMAGE_MARGIN = 8
_CORRECT, _WRONG, _UNKNOWN, _QUERY = '#1a9641', '#d7191c', '#999999', 'black'


def _check_images(images: Any, name: str, leading: str) -> np.ndarray:
  ndim = len(leading.split(','))
  checks.check_rank(images, ndim + 3, name, f'[{leading}, H, W, C]')
  images = np.asarray(images)
  if images.shape[-1] not in (1, 3):
    raise ValueError(
      f'`{name}` must have 1 (grey) or 3 (RGB) channels, received shape '
      f'{images.shape}'
    )
  return images


def _short(text: Any, length: int = 14) -> str:
  """`text` cut to `length` characters, so captions fit their cell."""
  text = str(text)
  return text if len(text) <= length else text[: length - 1] + '…'


def _show(axes, image: np.ndarray, frame: str, caption: str) -> None:
  """One framed image with its caption above it."""
  image = np.asarray(image, np.float32)
  if image.shape[-1] == 1:
    axes.imshow(
      image[..., 0], cmap='gray', vmin=0.0, vmax=1.0, interpolation='nearest'
    )
  else:
    axes.imshow(np.clip(image, 0.0, 1.0), interpolation='nearest')
  axes.set_xticks([])
  axes.set_yticks([])
  for spine in axes.spines.values():
    spine.set_edgecolor(frame)
    spine.set_linewidth(3.0)
  axes.set_title(caption, fontsize=6.5, pad=2.0, color=frame)


def plot_retrieval(
  query_images: Any,
  neighbour_images: Any,
  path: str | os.PathLike,
  *,
  scores: Any = None,
  correct: Any = None,
  query_captions: Sequence[str] | None = None,
  neighbour_captions: Sequence[Sequence[str]] | None = None,
  title: str | None = None,
) -> str:
  """A grid of retrieval results: each row a query and its k neighbours.

  Every neighbour is framed green when it is a correct answer, red when it
  is not, grey when that is unknown (no labels); the query is framed black.
  The PNG has a fixed size: ``(k + 1) * RETRIEVAL_CELL_WIDTH`` pixels wide
  and ``q * RETRIEVAL_CELL_HEIGHT`` high, plus ``RETRIEVAL_TITLE_HEIGHT``
  with a `title`.

  Args:
    query_images: ``[q, H, W, C]`` images with values in [0, 1], C 1 (grey)
      or 3 (RGB).
    neighbour_images: ``[q, k, H', W', C']`` the neighbours' images, best
      first.
    path: the PNG file to write (parent folders are created).
    scores: optional ``[q, k]`` similarities, printed under the captions.
    correct: optional ``[q, k]`` booleans: whether each neighbour is a
      correct answer (e.g. shares the query's label).
    query_captions: optional ``q`` captions (e.g. the query's class).
    neighbour_captions: optional ``[q][k]`` captions.
    title: optional title over the grid.

  Returns:
    `path`, as a string.

  Raises:
    ValueError: on wrong ranks, channel counts or shapes that disagree.
  """
  queries = _check_images(query_images, 'query_images', 'q')
  neighbours = _check_images(neighbour_images, 'neighbour_images', 'q, k')
  num_queries, k = neighbours.shape[:2]
  checks.check_dim(
    queries.shape[0], num_queries, 'query_images', 0, 'queries of neighbours'
  )
  if num_queries == 0 or k == 0:
    raise ValueError(
      f'`neighbour_images` must hold at least one query and one neighbour, '
      f'received shape {neighbours.shape}'
    )
  for name, value in (('scores', scores), ('correct', correct)):
    if value is not None and np.shape(value) != (num_queries, k):
      raise ValueError(
        f'`{name}` must have shape {(num_queries, k)} (queries, neighbours), '
        f'received {np.shape(value)}'
      )
  if query_captions is not None and len(query_captions) != num_queries:
    raise ValueError(
      f'`query_captions` must hold {num_queries} captions, received '
      f'{len(query_captions)}'
    )
  if neighbour_captions is not None and (
    len(neighbour_captions) != num_queries
    or any(len(row) != k for row in neighbour_captions)
  ):
    raise ValueError(
      f'`neighbour_captions` must hold {num_queries} rows of {k} captions'
    )
  title_height = RETRIEVAL_TITLE_HEIGHT if title else 0
  width = (k + 1) * RETRIEVAL_CELL_WIDTH
  height = num_queries * RETRIEVAL_CELL_HEIGHT + title_height
  fig = mpl_figure.Figure(
    figsize=(width / _RETRIEVAL_DPI, height / _RETRIEVAL_DPI)
  )
  side = RETRIEVAL_CELL_WIDTH - 2 * _IMAGE_MARGIN
  for row in range(num_queries):
    # The image sits at the bottom of its cell, its caption above it.
    bottom = (num_queries - 1 - row) * RETRIEVAL_CELL_HEIGHT + _IMAGE_MARGIN
    for column in range(k + 1):
      axes = fig.add_axes(
        (
          (column * RETRIEVAL_CELL_WIDTH + _IMAGE_MARGIN) / width,
          bottom / height,
          side / width,
          side / height,
        )
      )
      if column == 0:
        caption = 'query'
        if query_captions is not None:
          caption += f'\n{_short(query_captions[row])}'
        _show(axes, queries[row], _QUERY, caption)
        continue
      rank = column - 1
      caption = f'#{rank + 1}'
      if neighbour_captions is not None:
        caption += f': {_short(neighbour_captions[row][rank])}'
      if scores is not None:
        caption += f'\n{float(np.asarray(scores)[row, rank]):.3f}'
      frame = _UNKNOWN
      if correct is not None:
        frame = _CORRECT if np.asarray(correct)[row, rank] else _WRONG
      _show(axes, neighbours[row, rank], frame, caption)
  if title:
    fig.text(
      0.5,
      1.0 - (title_height / 2) / height,
      title,
      ha='center',
      va='center',
      fontsize=9,
    )
  return _save(fig, path, dpi=_RETRIEVAL_DPI, tight=False)
