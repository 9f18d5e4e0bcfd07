"""Box geometry: oriented polygons (4 corners), le90 rotated boxes and axis-aligned boxes (HBB).

All functions are vectorised over the first axis and work in pixel coordinates (x right, y down).

* polygon: ``(N, 8)`` as ``x1, y1, x2, y2, x3, y3, x4, y4``; the four corners of an instance, as DOTA
  stores them. A polygon need not be a perfect rectangle (annotators click four points).
* le90: ``(N, 5)`` as ``cx, cy, w, h, theta`` with ``w >= h`` and ``theta`` in radians in ``[-pi/2, pi/2)``:
  the angle of the long side, measured from the x axis towards the y axis (clockwise on screen). This is the
  "long edge, 90 degree" convention of mmrotate and the CC-Diff captions.
* hbb: ``(N, 4)`` as ``xmin, ymin, xmax, ymax``.

`polygon_to_le90` fits the minimum-area rotated rectangle, like OpenCV's ``minAreaRect`` but batched: for
four points, that rectangle has a side parallel to one of the six point-to-point directions, so those six
candidates are tried exhaustively.
"""

from __future__ import annotations

import numpy as np

POLY_COLUMNS = ["x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"]
HBB_COLUMNS = ["xmin", "ymin", "xmax", "ymax"]
LE90_COLUMNS = ["cx", "cy", "w", "h", "theta"]

_PAIRS = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])


def _as_2d(array: np.ndarray, width: int) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"expected an array of shape (N, {width}), got {array.shape}")
    return array


def polygon_to_hbb(polygons: np.ndarray) -> np.ndarray:
    """``(N, 8)`` polygons -> ``(N, 4)`` enclosing axis-aligned boxes."""
    corners = _as_2d(polygons, 8).reshape(-1, 4, 2)
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)


def hbb_to_polygon(hbbs: np.ndarray) -> np.ndarray:
    """``(N, 4)`` boxes -> ``(N, 8)`` polygons, corners clockwise on screen from the top-left."""
    xmin, ymin, xmax, ymax = _as_2d(hbbs, 4).T
    return np.stack([xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax], axis=1)


def polygon_area(polygons: np.ndarray) -> np.ndarray:
    """Shoelace area of each polygon (absolute value; corner order may be either orientation)."""
    corners = _as_2d(polygons, 8).reshape(-1, 4, 2)
    x, y = corners[..., 0], corners[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))


def wrap_angle(theta: np.ndarray) -> np.ndarray:
    """Wrap angles (radians) into ``[-pi/2, pi/2)``: a box is unchanged by a half turn."""
    wrapped = np.mod(np.asarray(theta, dtype=np.float64) + np.pi / 2, np.pi) - np.pi / 2
    # mod can return a hair below pi, which the subtraction then rounds up to exactly pi/2
    return np.where(wrapped >= np.pi / 2, wrapped - np.pi, wrapped)


def normalize_le90(boxes: np.ndarray) -> np.ndarray:
    """Make any ``(cx, cy, w, h, theta)`` boxes canonical le90: ``w >= h`` and theta in ``[-pi/2, pi/2)``."""
    boxes = _as_2d(boxes, 5).copy()
    swap = boxes[:, 2] < boxes[:, 3]
    boxes[swap, 2], boxes[swap, 3] = boxes[swap, 3], boxes[swap, 2].copy()
    boxes[swap, 4] += np.pi / 2
    boxes[:, 4] = wrap_angle(boxes[:, 4])
    return boxes


def le90_to_polygon(boxes: np.ndarray) -> np.ndarray:
    """``(N, 5)`` rotated boxes -> ``(N, 8)`` polygons.

    Corner order: for ``theta = 0`` it is top-left, top-right, bottom-right, bottom-left (clockwise on
    screen, the same order as `hbb_to_polygon`); the corners rotate with the box.
    """
    cx, cy, w, h, theta = _as_2d(boxes, 5).T
    cos, sin = np.cos(theta), np.sin(theta)
    along = np.stack([cos, sin], axis=1) * (w / 2)[:, None]  # half of the w side
    across = np.stack([-sin, cos], axis=1) * (h / 2)[:, None]  # half of the h side
    centre = np.stack([cx, cy], axis=1)
    corners = np.stack(
        [centre - along - across, centre + along - across, centre + along + across, centre - along + across],
        axis=1,
    )
    return corners.reshape(-1, 8)


def polygon_to_le90(polygons: np.ndarray) -> np.ndarray:
    """``(N, 8)`` polygons -> ``(N, 5)`` le90 boxes of their minimum-area enclosing rectangle."""
    corners = _as_2d(polygons, 8).reshape(-1, 4, 2)
    n = len(corners)
    if n == 0:
        return np.zeros((0, 5))
    direction = corners[:, _PAIRS[:, 1]] - corners[:, _PAIRS[:, 0]]  # (N, 6, 2)
    length = np.linalg.norm(direction, axis=2, keepdims=True)
    usable = length[..., 0] > 1e-12
    unit = np.where(usable[..., None], direction / np.where(length > 0, length, 1.0), [1.0, 0.0])
    normal = np.stack([-unit[..., 1], unit[..., 0]], axis=2)
    along = np.einsum("ncd,npd->ncp", unit, corners)  # (N, 6 candidates, 4 corners)
    across = np.einsum("ncd,npd->ncp", normal, corners)
    extent_along = along.max(axis=2) - along.min(axis=2)
    extent_across = across.max(axis=2) - across.min(axis=2)
    area = np.where(usable, extent_along * extent_across, np.inf)
    # Prefer the first candidate among equal areas (within rounding) so that results are stable.
    best = np.argmin(np.round(area, 9), axis=1)
    rows = np.arange(n)
    mid_along = (along.max(axis=2) + along.min(axis=2))[rows, best] / 2
    mid_across = (across.max(axis=2) + across.min(axis=2))[rows, best] / 2
    centre = unit[rows, best] * mid_along[:, None] + normal[rows, best] * mid_across[:, None]
    theta = np.arctan2(unit[rows, best, 1], unit[rows, best, 0])
    boxes = np.stack(
        [centre[:, 0], centre[:, 1], extent_along[rows, best], extent_across[rows, best], theta], axis=1
    )
    degenerate = ~usable.any(axis=1)  # all four corners coincide
    boxes[degenerate] = np.column_stack([corners[degenerate, 0], np.zeros((degenerate.sum(), 3))])
    return normalize_le90(boxes)


def polygon_is_finite(polygons: np.ndarray) -> np.ndarray:
    """True where all eight coordinates are finite numbers."""
    return np.isfinite(_as_2d(polygons, 8)).all(axis=1)


def rectify_polygon(polygons: np.ndarray) -> np.ndarray:
    """Replace each polygon by the 4 corners of its minimum-area rectangle (e.g. after clipping)."""
    return le90_to_polygon(polygon_to_le90(polygons))
