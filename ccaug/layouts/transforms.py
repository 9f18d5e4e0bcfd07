"""Layout transforms: small composable perturbations, each with an explicit probability (albumentations-style).

Each transform fires with its own probability ``p``, draws its magnitudes (`draw`) and applies them
(`apply`), so a test or a caller can apply an exact magnitude. All of them work on every instance at once on
the ``(N, 5)`` le90 array. A transform that moves instances rebuilds their polygons from le90, so its output
polygons are exact rectangles (the minimum-area rectangle of the annotated quadrilateral, moved); one that
does not fire returns the layout untouched.

Each transform *is* its config plus behaviour: `Jitter` is a `JitterConfig` that can be called, so the
numbers a recipe holds, their defaults and their validation are written once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ccaug.data.geometry import le90_to_polygon, normalize_le90
from ccaug.layouts.layout import Layout

InstanceSource = Callable[[np.random.Generator, Layout, int], tuple[np.ndarray, np.ndarray]]
"""``(rng, layout, n) -> (labels (n,), polygons (n, 8))``: new instances for `Insert` to put into `layout`."""

# Duplicate: a same-class neighbour farther than this many box extents away is not part of a row.
ROW_REACH = 3.0
# Duplicate without a row to continue: the copy goes beside the instance at this many short sides, the
# spacing of parked cars and moored ships.
ROW_GAP = 1.3


# --- configs: what a recipe holds -------------------------------------------------------------------


def _check_probability(owner: object, p: float) -> None:
    if not 0 <= p <= 1:
        raise ValueError(f"{type(owner).__name__}.p is a probability in [0, 1], not {p}")


def _check_at_least(owner: object, name: str, value: float, low: float = 0.0) -> None:
    if not value >= low:  # also refuses NaN
        raise ValueError(f"{type(owner).__name__}.{name} must be at least {low}, not {value}")


def _check_count(owner: object, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{type(owner).__name__}.{name} is a whole number, at least 0, not {value!r}")


@dataclass(frozen=True)
class JitterConfig:
    """Per-instance Gaussian noise: centre (std in px), size (std of the log of the factor), angle (std)."""

    p: float = 0.8
    position_px: float = 2.0
    size_fraction: float = 0.05
    angle_deg: float = 3.0

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        for name in ("position_px", "size_fraction", "angle_deg"):
            _check_at_least(self, name, getattr(self, name))


@dataclass(frozen=True)
class TranslateConfig:
    """Shift the whole layout by up to ``max_fraction`` of the image width and height."""

    p: float = 0.3
    max_fraction: float = 0.05

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        if not 0 <= self.max_fraction <= 1:
            raise ValueError(f"{type(self).__name__}.max_fraction is in [0, 1], not {self.max_fraction}")


@dataclass(frozen=True)
class RotateConfig:
    """Rotate by up to ``max_deg`` either way, plus a random multiple of 90 degrees when ``right_angles``.

    Quarter turns are always plausible in nadir imagery, so they are the default; a free angle turns the
    corners of the image out of it, and the instances there are then dropped by the constraints.
    """

    p: float = 0.5
    max_deg: float = 0.0
    per_instance: bool = False
    right_angles: bool = True

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        if not 0 <= self.max_deg <= 180:
            raise ValueError(f"{type(self).__name__}.max_deg is in [0, 180] degrees, not {self.max_deg}")


@dataclass(frozen=True)
class ScaleConfig:
    """Scale the whole layout about the image centre by a factor drawn uniformly in the range."""

    p: float = 0.3
    min_factor: float = 0.9
    max_factor: float = 1.1

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        if not 0 < self.min_factor <= self.max_factor:
            raise ValueError(
                f"{type(self).__name__} needs 0 < min_factor <= max_factor, not {self.min_factor}, {self.max_factor}"
            )


@dataclass(frozen=True)
class FlipConfig:
    """Mirror the layout; when it fires, one of the mirrors the enabled axes allow (both = a half turn)."""

    p: float = 0.5
    horizontal: bool = True
    vertical: bool = True

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        if self.p > 0 and not (self.horizontal or self.vertical):
            raise ValueError(f"{type(self).__name__} with p > 0 needs horizontal or vertical enabled")


@dataclass(frozen=True)
class DropConfig:
    """Remove between one instance and ``max_fraction`` of them (rounded down)."""

    p: float = 0.3
    max_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        if not 0 <= self.max_fraction <= 1:
            raise ValueError(f"{type(self).__name__}.max_fraction is in [0, 1], not {self.max_fraction}")


@dataclass(frozen=True)
class InsertConfig:
    """Add between one and ``max_count`` new instances from an instance source."""

    p: float = 0.3
    max_count: int = 3

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        _check_count(self, "max_count", self.max_count)


@dataclass(frozen=True)
class DuplicateConfig:
    """Copy between one and ``max_count`` instances next to themselves, continuing their row.

    The copy keeps the class, size and orientation, with small noise: ``size_fraction`` is the std of the
    log of its size factor, ``angle_deg`` the std of its angle.
    """

    p: float = 0.3
    max_count: int = 3
    size_fraction: float = 0.03
    angle_deg: float = 2.0

    def __post_init__(self) -> None:
        _check_probability(self, self.p)
        _check_count(self, "max_count", self.max_count)
        for name in ("size_fraction", "angle_deg"):
            _check_at_least(self, name, getattr(self, name))


# --- the transforms ---------------------------------------------------------------------------------


class RandomTransform(ABC):
    """Fires with probability ``p``; then `draw` picks its magnitudes and `apply` applies them."""

    p: float

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Layout:
        if rng.random() >= self.p:
            return layout
        return self.apply(layout, **self.draw(layout, rng))

    @abstractmethod
    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        """The random magnitudes of one application, as keyword arguments of `apply`."""

    @abstractmethod
    def apply(self, layout: Layout, **params) -> Layout:
        """Apply the transform with the given magnitudes."""


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order, each firing with its own ``p`` from the one generator."""

    transforms: Sequence[RandomTransform]

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Layout:
        for transform in self.transforms:
            layout = transform(layout, rng)
        return layout


def _with_boxes(layout: Layout, boxes: np.ndarray, **changes) -> Layout:
    """The layout with its instances moved to le90 `boxes` (made canonical, polygons rebuilt)."""
    return replace(layout, polygons=le90_to_polygon(normalize_le90(boxes)), **changes)


def _rotate_about(boxes: np.ndarray, radians: float, cx: float, cy: float) -> None:
    """Rotate centres about ``(cx, cy)`` and the boxes with them, in place (positive: clockwise on screen)."""
    cos, sin = math.cos(radians), math.sin(radians)
    dx, dy = boxes[:, 0] - cx, boxes[:, 1] - cy
    boxes[:, 0], boxes[:, 1] = cx + cos * dx - sin * dy, cy + sin * dx + cos * dy
    boxes[:, 4] += radians


@dataclass(frozen=True)
class Jitter(JitterConfig, RandomTransform):
    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        n = len(layout)
        return {
            "offsets": rng.normal(0.0, self.position_px, (n, 2)),
            # A log-normal factor is never negative and shrinks as likely as it grows.
            "size_factors": np.exp(rng.normal(0.0, self.size_fraction, (n, 2))),
            "angles": rng.normal(0.0, math.radians(self.angle_deg), n),
        }

    def apply(
        self, layout: Layout, offsets: np.ndarray, size_factors: np.ndarray, angles: np.ndarray
    ) -> Layout:
        boxes = layout.le90
        boxes[:, :2] += offsets
        boxes[:, 2:4] *= size_factors
        boxes[:, 4] += angles
        return _with_boxes(layout, boxes)


@dataclass(frozen=True)
class Translate(TranslateConfig, RandomTransform):
    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        dx, dy = rng.uniform(-self.max_fraction, self.max_fraction, 2) * (layout.width, layout.height)
        return {"dx": float(dx), "dy": float(dy)}

    def apply(self, layout: Layout, dx: float, dy: float) -> Layout:
        boxes = layout.le90
        boxes[:, :2] += (dx, dy)
        return _with_boxes(layout, boxes)


@dataclass(frozen=True)
class Rotate(RotateConfig, RandomTransform):
    """Rotate the layout about the image centre (or each instance about its own, with ``per_instance``).

    Positive degrees turn clockwise on screen, like le90's theta. The quarter turns of a whole layout turn
    the image too, as ``np.rot90`` would: an odd number of them swaps width and height, so no instance of a
    non-square layout leaves the image; the rest of the angle then turns about the centre of that image.
    """

    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        count = len(layout) if self.per_instance else None
        degrees = rng.uniform(-self.max_deg, self.max_deg, count)
        if self.right_angles:
            degrees = degrees + 90.0 * rng.integers(0, 4, count)
        return {"degrees": degrees}

    def apply(self, layout: Layout, degrees: float | np.ndarray) -> Layout:
        boxes = layout.le90
        if self.per_instance:
            boxes[:, 4] += np.radians(degrees)
            return _with_boxes(layout, boxes)
        quarters = round(float(degrees) / 90.0)
        rest = float(degrees) - 90.0 * quarters
        # Exact quarter turns (cos, sin in {-1, 0, 1}), so that whole-pixel coordinates stay whole.
        cos, sin = ((1, 0), (0, 1), (-1, 0), (0, -1))[quarters % 4]
        width, height = (layout.height, layout.width) if quarters % 2 else (layout.width, layout.height)
        dx, dy = boxes[:, 0] - layout.width / 2, boxes[:, 1] - layout.height / 2
        boxes[:, 0], boxes[:, 1] = width / 2 + cos * dx - sin * dy, height / 2 + sin * dx + cos * dy
        boxes[:, 4] += quarters * math.pi / 2
        _rotate_about(boxes, math.radians(rest), width / 2, height / 2)
        return _with_boxes(layout, boxes, width=width, height=height)


@dataclass(frozen=True)
class Scale(ScaleConfig, RandomTransform):
    """Scale sizes and distances from the image centre together, as a change of ground sampling distance."""

    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        return {"factor": float(rng.uniform(self.min_factor, self.max_factor))}

    def apply(self, layout: Layout, factor: float) -> Layout:
        boxes = layout.le90
        centre = np.array([layout.width / 2, layout.height / 2])
        boxes[:, :2] = centre + factor * (boxes[:, :2] - centre)
        boxes[:, 2:4] *= factor
        return _with_boxes(layout, boxes)


@dataclass(frozen=True)
class Flip(FlipConfig, RandomTransform):
    """A horizontal mirror maps x to ``width - x`` and theta to ``-theta``; a vertical one likewise in y."""

    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        options = [(True, False)] * self.horizontal + [(False, True)] * self.vertical
        options += [(True, True)] * (self.horizontal and self.vertical)
        if not options:
            return {"horizontal": False, "vertical": False}
        horizontal, vertical = options[rng.integers(len(options))]
        return {"horizontal": horizontal, "vertical": vertical}

    def apply(self, layout: Layout, horizontal: bool, vertical: bool) -> Layout:
        boxes = layout.le90
        if horizontal:
            boxes[:, 0] = layout.width - boxes[:, 0]
            boxes[:, 4] = -boxes[:, 4]
        if vertical:
            boxes[:, 1] = layout.height - boxes[:, 1]
            boxes[:, 4] = -boxes[:, 4]
        return _with_boxes(layout, boxes)


@dataclass(frozen=True)
class Drop(DropConfig, RandomTransform):
    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        n = len(layout)
        most = math.floor(self.max_fraction * n + 1e-9)
        keep = np.ones(n, dtype=bool)
        if most >= 1:
            keep[rng.choice(n, int(rng.integers(1, most + 1)), replace=False)] = False
        return {"keep": keep}

    def apply(self, layout: Layout, keep: np.ndarray) -> Layout:
        return layout.select(keep)


@dataclass(frozen=True)
class Insert(InsertConfig, RandomTransform):
    """New instances from ``source`` (e.g. a layout model's class-conditional sampler), appended as given."""

    source: InstanceSource | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source is None:
            raise ValueError(
                "Insert needs an instance source: a callable (rng, layout, n) -> (labels, polygons)"
            )

    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        count = int(rng.integers(1, self.max_count + 1)) if self.max_count >= 1 else 0
        labels, polygons = self.source(rng, layout, count)
        return {"labels": labels, "polygons": polygons}

    def apply(self, layout: Layout, labels: np.ndarray, polygons: np.ndarray) -> Layout:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
        return layout.with_instances(
            np.concatenate([layout.labels, labels]), np.concatenate([layout.polygons, polygons])
        )


@dataclass(frozen=True)
class Duplicate(DuplicateConfig, RandomTransform):
    """Copy instances next to themselves, continuing their row.

    The row of an instance is given by its nearest same-class neighbour (within ``ROW_REACH`` box extents):
    the copy goes on the axis of the box (long or short) that points most towards that neighbour, on the
    side away from it, one spacing (their distance along that axis, at least one box extent) further. An
    instance without such a neighbour is copied beside itself, across its long axis at ``ROW_GAP`` short
    sides, on a random side.
    """

    def draw(self, layout: Layout, rng: np.random.Generator) -> dict:
        n = len(layout)
        count = min(int(rng.integers(1, self.max_count + 1)), n) if n and self.max_count >= 1 else 0
        return {
            "indices": rng.choice(n, count, replace=False) if count else np.zeros(0, dtype=np.int64),
            "size_factors": np.exp(rng.normal(0.0, self.size_fraction, (count, 2))),
            "angles": rng.normal(0.0, math.radians(self.angle_deg), count),
            "sides": rng.choice([-1.0, 1.0], count),
        }

    def apply(
        self,
        layout: Layout,
        indices: np.ndarray,
        size_factors: np.ndarray,
        angles: np.ndarray,
        sides: np.ndarray,
    ) -> Layout:
        boxes = layout.le90
        copies = boxes[indices].copy()
        copies[:, :2] += _row_offsets(boxes, layout.labels, indices, sides)
        copies[:, 2:4] *= size_factors
        copies[:, 4] += angles
        labels = np.concatenate([layout.labels, layout.labels[indices]])
        return layout.with_instances(
            labels, np.concatenate([layout.polygons, le90_to_polygon(normalize_le90(copies))])
        )


def _row_offsets(boxes: np.ndarray, labels: np.ndarray, indices: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """``(M, 2)`` offsets from instances ``boxes[indices]`` to where their row continues (see `Duplicate`)."""
    chosen = boxes[indices]
    theta = chosen[:, 4]
    long_axis = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    short_axis = np.stack([-np.sin(theta), np.cos(theta)], axis=1)
    to_others = boxes[None, :, :2] - chosen[:, None, :2]  # (M, N, 2)
    distance = np.linalg.norm(to_others, axis=2)
    distance[
        (labels[None, :] != labels[indices, None]) | (np.arange(len(boxes))[None, :] == indices[:, None])
    ] = np.inf
    rows = np.arange(len(indices))
    to_nearest = to_others[rows, np.argmin(distance, axis=1)] if len(boxes) else np.zeros((0, 2))
    along = np.einsum("md,md->m", to_nearest, long_axis)
    across = np.einsum("md,md->m", to_nearest, short_axis)
    use_long = np.abs(along) > np.abs(across)
    step = np.where(use_long, along, across)
    extent = np.where(use_long, chosen[:, 2], chosen[:, 3])
    in_row = np.isfinite(distance.min(axis=1, initial=np.inf)) & (np.abs(step) <= ROW_REACH * extent)
    axis = np.where((in_row & use_long)[:, None], long_axis, short_axis)
    spacing = np.where(in_row, np.maximum(np.abs(step), extent), ROW_GAP * chosen[:, 3])
    side = np.where(in_row, np.where(step > 0, -1.0, 1.0), sides)
    return axis * (side * spacing)[:, None]
