"""Building blocks of scenes: roads with traffic, parking lots, buildings and trees, laid out in a `Frame`.

Each function draws terrain into the canvas and places the objects that belong there, aligned the way
real ones are: vehicles along lanes and nose-in in bays, trees on verges and islands where their crowns
overhang the paved ground. Every length is multiplied by ``canvas.scale`` (the image's ground resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely

from ccaug.datasets.aerial.canvas import SHIFT, Canvas, Frame, Item, Sprite, Tree, ellipse, rotation, to_cv
from ccaug.datasets.aerial.classes import BUILDING, GRASS, HELIPAD, PARKING, PAVEMENT, ROAD, TREE, UNPAVED
from ccaug.datasets.aerial.objects import make_sprite
from ccaug.datasets.aerial.props import roof

WHITE = (0.88, 0.88, 0.86)
YELLOW = (0.85, 0.72, 0.25)


def light_for(canvas: Canvas, angle: float) -> np.ndarray:
    """The direction towards the sun in the local frame of a sprite drawn at `angle`."""
    return -canvas.sun @ rotation(angle).T


def put(
    canvas: Canvas,
    category: str,
    centre,
    angle: float,
    length: float | None = None,
    strict: bool = True,
    **options,
) -> Item | None:
    """Make a sprite of `category` and place it if the spot is free and on allowed terrain."""
    sprite = make_sprite(category, canvas.rng, canvas.scale, light_for(canvas, angle), length, **options)
    return canvas.place(category, sprite, centre, angle, strict=strict)


def vehicle_category(rng: np.random.Generator, large_share: float) -> str:
    return "large-vehicle" if rng.random() < large_share else "small-vehicle"


def dashed(
    canvas: Canvas,
    frame: Frame,
    v: float,
    u0: float,
    u1: float,
    colour=WHITE,
    dash: float = 5,
    gap: float = 7,
):
    """A dashed line along u at offset v."""
    s = canvas.scale
    starts = np.arange(u0 + canvas.rng.uniform(0, gap * s), u1 - dash * s, (dash + gap) * s)
    for start in starts:
        canvas.paint(frame.point([start, start + dash * s], [v, v]), colour, width=max(1.0, 0.9 * s))


# --------------------------------------------------------------------------------------------------------
# roads
@dataclass
class Road:
    frame: Frame  # u runs along the road
    v: float  # centre line
    u0: float
    u1: float
    lanes: int
    lane_width: float
    parking_width: float  # width of the kerbside parking lane on each side (0: none)

    @property
    def half_width(self) -> float:
        return self.lanes * self.lane_width / 2 + self.parking_width


def road(
    canvas: Canvas,
    frame: Frame,
    v: float,
    u0: float,
    u1: float,
    lanes: int = 2,
    parking: bool = False,
    sidewalk: float = 0.0,
) -> Road:
    """A straight road along u, with lane markings, optional kerbside parking lanes and sidewalks."""
    s = canvas.scale
    result = Road(frame, v, u0, u1, lanes, 8.0 * s, 7.0 * s if parking else 0.0)
    half = result.half_width
    if sidewalk:
        canvas.fill(frame.rect(u0, u1, v - half - sidewalk, v + half + sidewalk), PAVEMENT)
    canvas.fill(frame.rect(u0, u1, v - half, v + half), ROAD)
    carriage = lanes * result.lane_width / 2
    if lanes >= 2:
        if lanes >= 4 or canvas.rng.random() < 0.3:
            for side in (-0.6, 0.6):
                canvas.paint(frame.point([u0, u1], [v + side * s, v + side * s]), YELLOW, width=0.8 * s)
        else:
            dashed(canvas, frame, v, u0, u1)
    for k in range(1, lanes // 2):
        for side in (-1, 1):
            dashed(canvas, frame, v + side * k * result.lane_width, u0, u1)
    if parking or canvas.rng.random() < 0.5:
        for side in (-1, 1):
            edge = v + side * (carriage - 0.8 * s)
            canvas.paint(frame.point([u0, u1], [edge, edge]), WHITE, width=0.7 * s, alpha=0.7)
    return result


def traffic(
    canvas: Canvas, road: Road, density: float, large_share: float = 0.12, parked: float = 0.5
) -> None:
    """Vehicles along the lanes (right-hand traffic, in queues with random gaps) and parked at the kerb.

    `density` is the share of lane length taken by vehicles; `parked` the share of kerbside spaces used.
    """
    s = canvas.scale
    frame = road.frame
    mean_gap = 14.0 * s * (1 - density) / max(density, 0.02)
    for lane in range(road.lanes):
        v = road.v - road.lanes * road.lane_width / 2 + (lane + 0.5) * road.lane_width
        forward = lane >= road.lanes / 2
        angle = frame.angle + (0.0 if forward else np.pi)
        _queue(canvas, frame, v, road.u0, road.u1, angle, mean_gap, large_share, lateral=0.6 * s)
    if road.parking_width:
        for side in (-1, 1):
            v = road.v + side * (road.lanes * road.lane_width / 2 + road.parking_width / 2)
            angle = frame.angle + (0.0 if side > 0 else np.pi)
            gap = 4.0 * s * (1 - parked) / max(parked, 0.02) + 2 * s
            _queue(canvas, frame, v, road.u0, road.u1, angle, gap, large_share / 3, lateral=0.3 * s)


def _queue(
    canvas: Canvas,
    frame: Frame,
    v: float,
    u0: float,
    u1: float,
    angle: float,
    mean_gap: float,
    large_share: float,
    lateral: float,
) -> None:
    """Vehicles one after another along the line v of `frame`, heading `angle`, gaps ~ exponential."""
    rng = canvas.rng
    u = u0 + rng.exponential(mean_gap)
    while u < u1:
        category = vehicle_category(rng, large_share)
        sprite = make_sprite(category, rng, canvas.scale, light_for(canvas, angle))
        length = sprite.length
        centre = frame.point(u + length / 2, v + rng.uniform(-lateral, lateral))
        if u + length < u1:
            canvas.place(category, sprite, centre, angle + rng.normal(0, 0.02))
        u += length + 2.5 * canvas.scale + rng.exponential(mean_gap)


# --------------------------------------------------------------------------------------------------------
# parking lots
def parking_lot(
    canvas: Canvas,
    frame: Frame,
    u0: float,
    u1: float,
    v0: float,
    v1: float,
    occupancy: float,
    truck_rows: float = 0.1,
) -> None:
    """Rows of bays back to back with aisles between them; cars nose-in (or reversed in), a few empty bays,
    trees on islands at row ends, and now and then a row of long bays holding lorries and buses."""
    rng, s = canvas.rng, canvas.scale
    canvas.fill(frame.rect(u0, u1, v0, v1), PARKING, variant=int(rng.integers(1, 255)))
    aisle = rng.uniform(13, 17) * s
    v = v0 + (aisle if rng.random() < 0.5 else 1.5 * s)
    facing = 1
    while True:
        large = rng.random() < truck_rows
        depth = (30.0 if large else rng.uniform(15.5, 17.0)) * s
        width = (10.0 if large else rng.uniform(7.5, 8.5)) * s
        if v + depth > v1 - 1.5 * s:
            break
        _bay_row(canvas, frame, u0, u1, v, v + depth, width, facing, occupancy, large)
        v += depth
        facing = -facing
        if facing == 1:  # after a back-to-back pair comes an aisle
            v += aisle


def _bay_row(
    canvas: Canvas,
    frame: Frame,
    u0: float,
    u1: float,
    v0: float,
    v1: float,
    width: float,
    facing: int,
    occupancy: float,
    large: bool,
) -> None:
    """One row of bays between v0 and v1 (lines, kerb line, island trees) and the vehicles parked in it."""
    rng, s = canvas.rng, canvas.scale
    colour = WHITE if rng.random() < 0.8 else YELLOW
    count = int((u1 - u0 - 2 * s) // width)
    if count < 1:
        return
    start = u0 + (u1 - u0 - count * width) / 2
    island = rng.random() < 0.4
    for k in range(count + 1):
        u = start + k * width
        canvas.paint(frame.point([u, u], [v0 + 0.5 * s, v1 - 0.5 * s]), colour, width=0.8 * s, alpha=0.8)
    canvas.paint(
        frame.point([start, start + count * width], [v0 if facing > 0 else v1] * 2),
        colour,
        width=0.8 * s,
        alpha=0.6,
    )
    for k in range(count):
        centre_u = start + (k + 0.5) * width
        if island and k in (0, count - 1):
            canvas.fill(frame.rect(centre_u - width / 2 + s, centre_u + width / 2 - s, v0 + s, v1 - s), GRASS)
            plant(canvas, frame.point(centre_u, (v0 + v1) / 2), rng.uniform(4, 7) * s)
            continue
        if rng.random() > occupancy:
            continue
        category = "large-vehicle" if large else vehicle_category(rng, 0.03)
        limit = (v1 - v0) - 1.5 * s
        heading = frame.angle + (np.pi / 2 if (rng.random() < 0.8) == (facing > 0) else -np.pi / 2)
        sprite = make_sprite(category, rng, s, light_for(canvas, heading))
        if sprite.length > limit:
            sprite = make_sprite(category, rng, s, light_for(canvas, heading), length=limit)
        centre = frame.point(
            centre_u + rng.uniform(-0.5, 0.5) * s, (v0 + v1) / 2 + rng.uniform(-0.7, 0.7) * s
        )
        canvas.place(category, sprite, centre, heading + rng.normal(0, 0.04))


# --------------------------------------------------------------------------------------------------------
# buildings and trees
def building(
    canvas: Canvas, centre, angle: float, length: float, width: float, height: float | None = None
) -> Item | None:
    """A roofed building, if the ground is free; its footprint becomes terrain `building`."""
    height = canvas.rng.uniform(5, 16) * canvas.scale if height is None else height
    sprite = roof(canvas.rng, length, width, light_for(canvas, angle), height)
    item = canvas.place(None, sprite, centre, angle, gap=2 * canvas.scale)
    if item is not None:
        canvas.fill(item.box(), BUILDING)
    return item


def houses(canvas: Canvas, frame: Frame, u0: float, u1: float, v0: float, v1: float) -> None:
    """Detached houses in gardens, in one or two rows facing the streets, with garden trees."""
    rng, s = canvas.rng, canvas.scale
    canvas.fill(frame.rect(u0, u1, v0, v1), GRASS, variant=int(rng.integers(1, 255)))
    rows = [v0 + 12 * s] if v1 - v0 < 60 * s else [v0 + 12 * s, v1 - 12 * s]
    for v in rows:
        u = u0 + rng.uniform(3, 8) * s
        while u < u1 - 14 * s:
            length, width = rng.uniform(12, 20) * s, rng.uniform(9, 13) * s
            building(canvas, frame.point(u + length / 2, v), frame.angle + rng.normal(0, 0.02), length, width)
            if rng.random() < 0.6:
                plant(
                    canvas,
                    frame.point(u + rng.uniform(0, length), (v0 + v1) / 2 + rng.uniform(-8, 8) * s),
                    rng.uniform(3, 6) * s,
                )
            u += length + rng.uniform(5, 12) * s


def plant(canvas: Canvas, centre, radius: float) -> None:
    """One tree: a main crown and one or two smaller lobes, so that crowns are not perfect discs."""
    rng = canvas.rng
    centre = np.asarray(centre, dtype=np.float64)
    canvas.trees.append(Tree(centre, radius))
    for _ in range(int(rng.integers(0, 3))):
        offset = rng.normal(0, 0.45 * radius, 2)
        canvas.trees.append(Tree(centre + offset, radius * rng.uniform(0.5, 0.8)))


def tree_row(canvas: Canvas, start, stop, spacing: float, radius: float, keep: float = 0.85) -> None:
    start, stop = np.asarray(start, dtype=np.float64), np.asarray(stop, dtype=np.float64)
    count = max(1, int(np.linalg.norm(stop - start) / spacing))
    for t in np.linspace(0, 1, count + 1):
        if canvas.rng.random() < keep:
            plant(canvas, start + (stop - start) * t, radius * canvas.rng.uniform(0.8, 1.2))


def tree_cluster(canvas: Canvas, centre, spread: float, count: int, radius: float) -> None:
    rng = canvas.rng
    for offset in rng.normal(0, spread, (count, 2)):
        plant(canvas, np.asarray(centre) + offset, radius * rng.uniform(0.7, 1.3))


def grow_trees(canvas: Canvas) -> None:
    """Write the canopy into the terrain map where it covers unpaved ground (see `classes`)."""
    canopy = np.zeros_like(canvas.terrain)
    for tree in canvas.trees:
        cv2.circle(
            canopy, tuple(to_cv(tree.centre)), int(tree.radius * (1 << SHIFT)), 1, -1, cv2.LINE_8, SHIFT
        )
    unpaved = np.isin(canvas.terrain, list(UNPAVED))
    canvas.terrain[(canopy > 0) & unpaved] = TREE


def helipad(canvas: Canvas, centre, side: float, angle: float | None = None) -> None:
    """A square pad with a painted circle and 'H', and usually a helicopter on it."""
    rng, s = canvas.rng, canvas.scale
    angle = rng.uniform(0, np.pi) if angle is None else angle
    pad = Frame(tuple(np.asarray(centre, dtype=float)), angle)
    canvas.fill(pad.rect(-side / 2, side / 2, -side / 2, side / 2), HELIPAD)
    ring = ellipse(*pad.origin, 0.4 * side, 0.4 * side, 28)
    canvas.paint(np.vstack([ring, ring[:1]]), WHITE, width=1.0 * s)
    h = 0.18 * side
    for points in ([[-h, -h], [-h, h]], [[h, -h], [h, h]], [[-h, 0], [h, 0]]):
        canvas.paint(pad.point(*np.array(points, dtype=float).T), WHITE, width=1.2 * s)
    if rng.random() < 0.85:
        put(canvas, "helicopter", centre, rng.uniform(-np.pi, np.pi), strict=False)


def helipad_somewhere(canvas: Canvas, ground: frozenset[int], tries: int = 12) -> bool:
    """A helipad on free, visible open ground of one of the `ground` kinds (a hospital's or a port's pad)."""
    rng, s = canvas.rng, canvas.scale
    side = rng.uniform(28, 34) * s
    probe = np.array([[x, y] for x in (-0.5, 0, 0.5) for y in (-0.5, 0, 0.5)]) * side
    margin = int(side)
    inner = canvas.terrain[margin:-margin, margin:-margin]
    ys, xs = np.nonzero(np.isin(inner, list(ground)))
    if len(xs) == 0:
        return False
    for index in rng.integers(0, len(xs), tries):
        centre = np.array([xs[index], ys[index]], dtype=np.float64) + margin + 0.5
        square = centre + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * side / 2
        if np.isin(canvas.terrain_at(centre + probe), list(ground)).all() and canvas.is_free(
            shapely.Polygon(square)
        ):
            helipad(canvas, centre, side, angle=0.0)
            canvas.reserve(square)
            return True
    return False


def prop(
    canvas: Canvas, sprite: Sprite, centre, angle: float, allowed: frozenset[int] | None = None
) -> Item | None:
    """Place a distractor (never annotated)."""
    return canvas.place(None, sprite, centre, angle, allowed=allowed)
