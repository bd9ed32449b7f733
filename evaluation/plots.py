"""PNG figures of feature spaces and of per-class geometry.

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

from losses import checks

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
  checks.check_rank(embeddings, 2, name, '[n, dim]')
  checks.check_floating(embeddings, name)
  checks.check_rank(labels, 1, 'labels', '[n]')
  checks.check_integer(labels, 'labels')
  checks.check_dim(
    np.shape(labels)[0],
    np.shape(embeddings)[0],
    'labels',
    0,
    f'number of rows of `{name}`',
  )
  if np.shape(embeddings)[0] == 0:
    raise ValueError(f'`{name}` must hold at least one row, received 0')
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


def _save(fig: mpl_figure.Figure, path: str | os.PathLike) -> str:
  path = os.fspath(path)
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  backend_agg.FigureCanvasAgg(fig)
  fig.savefig(path, format='png', dpi=_DPI, bbox_inches='tight')
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
