"""The scene under construction: terrain map, draw lists and placed objects, plus the geometry they share.

A scene is built in two phases. *Layout* (`scenes/`, `layout.py`) draws terrain ids into the terrain map
and appends to the draw lists: ground markings, trees, and `Item`s (objects and distractors, each a
`Sprite` at a position and angle). *Painting* (`terrain.py`, `paint.py`, `render.py`) then turns those
lists into the image. Keeping the two apart means the terrain map is final before a single pixel of colour
exists, and every placement rule can be checked against it.

Coordinates are pixels, x right and y down. Sprites are drawn in a local frame whose x axis is the object's
heading (its long axis) and whose y axis is 90 degrees clockwise from it on screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import shapely

from ccaug.datasets.aerial.classes import ALLOWED_TERRAIN

SHIFT = 4  # cv2 drawing calls get coordinates in 1/16 px, so that small sprites keep sub-pixel shape
_ONE = 1 << SHIFT


def to_cv(points: np.ndarray) -> np.ndarray:
    """Float ``(K, 2)`` points -> int32 fixed-point points for cv2 calls made with ``shift=SHIFT``."""
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def rotation(angle: float) -> np.ndarray:
    """2x2 matrix taking local (heading-aligned) coordinates to screen coordinates (row vectors: p @ R)."""
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, sin], [-sin, cos]])


def rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """The four corners of an axis-aligned rectangle, clockwise on screen."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    """``(n, 2)`` points on an ellipse (a polygon the size of a sprite needs, not cv2's integer ellipse)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


@dataclass(frozen=True)
class Frame:
    """A rotated frame for laying out bands of terrain: u along `angle`, v 90 degrees clockwise from it."""

    origin: tuple[float, float]
    angle: float

    def point(self, u, v) -> np.ndarray:
        """Screen coordinates ``(..., 2)`` of frame coordinates `u`, `v` (broadcast together)."""
        u, v = np.broadcast_arrays(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64))
        local = np.stack([u, v], axis=-1)
        return local @ rotation(self.angle) + np.asarray(self.origin)

    def rect(self, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
        return self.point(*rect(u0, u1, v0, v1).T)

    def local(self, points: np.ndarray) -> np.ndarray:
        """Frame coordinates ``(..., 2)`` of screen points."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.origin)) @ rotation(self.angle).T

    def turned(self, quarter_turns: int = 1) -> Frame:
        return Frame(self.origin, self.angle + quarter_turns * np.pi / 2)


@dataclass
class Part:
    """One filled polygon of a sprite, in the sprite's local frame.

    A part with a `height` (px above ground) casts a shadow: a solid from `base` to `height` (``base=0``: a
    prism standing on the ground, like a car or a tank; ``base=height``: something held up, like a wing,
    whose shadow is its own outline moved away from the sun). `alpha` < 1 makes the part a translucent
    ground paint (a ship's wake) that is not part of the object's silhouette.
    """

    points: np.ndarray
    colour: np.ndarray
    height: float = 0.0
    alpha: float = 1.0
    base: float = 0.0


@dataclass
class Sprite:
    parts: list[Part]

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``xmin, xmax, ymin, ymax`` of the opaque parts: the tight box around the silhouette."""
        points = np.concatenate([part.points for part in self.parts if part.alpha >= 1])
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return float(x0), float(x1), float(y0), float(y1)

    @property
    def length(self) -> float:
        x0, x1, y0, y1 = self.extent
        return max(x1 - x0, y1 - y0)


@dataclass
class Item:
    """A sprite placed on the canvas. `category` is an `AERIAL_CLASSES` name, or None for a distractor."""

    category: str | None
    sprite: Sprite
    centre: np.ndarray
    angle: float

    def to_screen(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points) @ rotation(self.angle) + self.centre

    def box(self, grow: float = 0.0) -> np.ndarray:
        """``(4, 2)`` screen corners of the oriented box around the silhouette, grown by `grow` px a side."""
        x0, x1, y0, y1 = self.sprite.extent
        return self.to_screen(rect(x0 - grow, x1 + grow, y0 - grow, y1 + grow))


@dataclass
class Marking:
    """Paint on the ground (lane lines, bay lines, runway keys): a polyline of `width` px, or a filled polygon
    when `width` is None."""

    points: np.ndarray
    colour: tuple[float, float, float]
    width: float | None = None
    alpha: float = 0.9


@dataclass
class Tree:
    centre: np.ndarray
    radius: float


@dataclass
class Canvas:
    """Everything the layout phase produces for one image (see the module docstring)."""

    size: int
    rng: np.random.Generator
    scale: float  # ground-resolution jitter: every length in the layout is multiplied by it
    sun: np.ndarray  # unit vector along which shadows fall, on screen
    shadow_length: float  # shadow offset in px per unit of part height
    terrain: np.ndarray = field(init=False)
    variant: np.ndarray = field(init=False)  # per-pixel parcel id: fields and lots get their own tint
    items: list[Item] = field(default_factory=list)
    markings: list[Marking] = field(default_factory=list)
    trees: list[Tree] = field(default_factory=list)
    footprints: list[shapely.Polygon] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.terrain = np.zeros((self.size, self.size), np.uint8)
        self.variant = np.zeros((self.size, self.size), np.uint8)

    # ----------------------------------------------------------------------------------------------------
    # terrain
    def fill(self, polygon: np.ndarray, terrain_id: int, variant: int | None = None) -> None:
        """Set the terrain (and optionally the parcel variant) inside a screen polygon."""
        points = [to_cv(polygon)]
        cv2.fillPoly(self.terrain, points, int(terrain_id), cv2.LINE_8, SHIFT)
        if variant is not None:
            cv2.fillPoly(self.variant, points, int(variant), cv2.LINE_8, SHIFT)

    def stroke(self, points: np.ndarray, width: float, terrain_id: int) -> None:
        """Set the terrain along a polyline `width` px wide (winding roads)."""
        cv2.polylines(
            self.terrain, [to_cv(points)], False, int(terrain_id), max(1, round(width)), cv2.LINE_8, SHIFT
        )

    def terrain_at(self, points: np.ndarray) -> np.ndarray:
        """Terrain ids at screen points (clipped to the image)."""
        xy = np.clip(np.floor(np.asarray(points)).astype(int), 0, self.size - 1).reshape(-1, 2)
        return self.terrain[xy[:, 1], xy[:, 0]]

    def paint(self, points: np.ndarray, colour, width: float | None = None, alpha: float = 0.9) -> None:
        self.markings.append(Marking(np.asarray(points, dtype=np.float64), tuple(colour), width, alpha))

    # ----------------------------------------------------------------------------------------------------
    # placement
    def place(
        self,
        category: str | None,
        sprite: Sprite,
        centre,
        angle: float,
        *,
        allowed: frozenset[int] | None = None,
        gap: float = 1.0,
        strict: bool = True,
    ) -> Item | None:
        """Add a sprite if it fits: on allowed ground, clear of everything placed so far, and for objects
        (not distractors) wholly inside the image.

        Objects are checked against ``ALLOWED_TERRAIN[category]``, distractors against `allowed` when given:
        the centre of the box always, and with `strict` also four points 70% of the way to its corners
        (``strict=False`` lets a plane's wings or a helicopter's rotor overhang the grass). Returns the new
        item, or None when the spot is refused.
        """
        item = Item(category, sprite, np.asarray(centre, dtype=np.float64), float(angle))
        corners = item.box(gap / 2)
        outside = corners.min() < 0.5 or corners.max() > self.size - 0.5
        if outside and category is not None:  # objects lie wholly inside; buildings may be cut by the border
            return None
        if category is not None:
            allowed = ALLOWED_TERRAIN[category]
        probes = _probe_points(item) if strict else _probe_points(item)[:1]
        if allowed is not None and not np.isin(self.terrain_at(probes), list(allowed)).all():
            return None
        footprint = shapely.Polygon(corners)
        if not self.is_free(footprint):
            return None
        self.items.append(item)
        self.footprints.append(footprint)
        return item

    def is_free(self, footprint: shapely.Polygon) -> bool:
        if not self.footprints:
            return True
        return not shapely.intersects(np.asarray(self.footprints, dtype=object), footprint).any()

    def reserve(self, polygon: np.ndarray) -> None:
        """Mark an area as taken without drawing anything there (so no object is placed on it)."""
        self.footprints.append(shapely.Polygon(polygon))

    @property
    def objects(self) -> list[Item]:
        return [item for item in self.items if item.category is not None]

    def drop_out_of_context(self) -> int:
        """Remove objects whose ground was redrawn after they were placed (their centre is no longer on
        allowed terrain); returns how many. Scenes lay out ground before objects, so this is a safety net
        that keeps the `ALLOWED_TERRAIN` contract exact."""
        keep = [
            item
            for item in self.items
            if item.category is None
            or self.terrain_at(_probe_points(item)[:1])[0] in ALLOWED_TERRAIN[item.category]
        ]
        dropped = len(self.items) - len(keep)
        self.items = keep
        return dropped


def _probe_points(item: Item) -> np.ndarray:
    """The centre and, for boxes bigger than a few pixels, points 70% of the way to the corners and edges."""
    x0, x1, y0, y1 = item.sprite.extent
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = 0.7 * (x1 - x0) / 2, 0.7 * (y1 - y0) / 2
    local = np.array(
        [[cx, cy], [cx - hx, cy - hy], [cx + hx, cy - hy], [cx + hx, cy + hy], [cx - hx, cy + hy]]
    )
    return item.to_screen(local)
