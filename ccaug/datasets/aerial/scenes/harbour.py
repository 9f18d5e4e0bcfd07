"""`harbour`: water on one side of a straight quay and an irregular natural shore; ships moored bow to stern
along the quay and along piers, small boats side by side at marina pontoons, ships at anchor or under way
(with wakes) in open water, rocks along the shore; behind the quay, lorries and container stacks, a quay
road, and a port hinterland of container yards, warehouses and tank farms."""

from __future__ import annotations

import numpy as np

from ccaug.datasets.aerial.canvas import Canvas, Frame
from ccaug.datasets.aerial.classes import BARE, GRASS, INDUSTRIAL, QUAY, WATER
from ccaug.datasets.aerial.layout import (
    helipad_somewhere,
    houses,
    light_for,
    prop,
    put,
    road,
    traffic,
    tree_cluster,
    vehicle_category,
)
from ccaug.datasets.aerial.noise import noise_1d
from ccaug.datasets.aerial.objects import make_sprite
from ccaug.datasets.aerial.props import container_stack, rock
from ccaug.datasets.aerial.scenes.common import extent, scene_frame, street_grid
from ccaug.datasets.aerial.scenes.industry import PAD_GROUND, container_yard, tank_farm, warehouse

WATER_ONLY = frozenset({WATER})


def compose(canvas: Canvas) -> None:
    rng, s, size = canvas.rng, canvas.scale, canvas.size
    frame = scene_frame(canvas)  # u along the shore, water at v < shore
    reach = extent(canvas)
    shore = rng.uniform(-0.3, 0.1) * size
    quay_u = (-reach, reach) if rng.random() < 0.45 else _quay_stretch(rng, size, reach)
    canvas.fill(frame.rect(-reach, reach, -reach, reach), WATER)
    natural = natural_shore(canvas, frame, shore, quay_u)
    quay_depth = rng.uniform(16, 26) * s
    canvas.fill(frame.rect(*quay_u, shore, reach), QUAY)
    canvas.paint(frame.point(quay_u, [shore + 0.5 * s] * 2), (0.78, 0.77, 0.74), width=1.0 * s, alpha=0.8)

    piers = _piers(canvas, frame, shore, quay_u)
    quay_road = road(canvas, frame, shore + quay_depth + 8 * s, *quay_u, lanes=2)
    hinterland(canvas, frame, quay_u, shore + quay_depth + 16 * s, reach)
    for pier_frame, length, width, marina in piers:
        if marina:
            berth_boats(canvas, pier_frame, length, width)
        else:
            for side in (-1, 1):
                moor_along(
                    canvas, pier_frame, 3 * s, length, side * width / 2, side, fill=rng.uniform(0.4, 0.9)
                )
    for u0, u1 in _free_stretches(quay_u, [(frame.local(f.origin)[0], w) for f, _, w, _ in piers], 6 * s):
        moor_along(canvas, frame, u0, u1, shore, -1, fill=rng.uniform(0.4, 0.95))
    open_water(canvas, frame, count=int(rng.poisson(1.5 * (size / 256) ** 2)) + 1)
    quay_apron(canvas, frame, quay_u, shore, shore + quay_depth)
    traffic(canvas, quay_road, rng.uniform(0.03, 0.2), large_share=0.5, parked=0.0)
    if rng.random() < 0.5:
        helipad_somewhere(canvas, frozenset({GRASS, QUAY, INDUSTRIAL}))
    for u, v in natural:
        if rng.random() < 0.06:
            prop(
                canvas,
                rock(rng, rng.uniform(4, 12) * s),
                frame.point(u, v - rng.uniform(2, 7) * s),
                rng.uniform(0, np.pi),
                WATER_ONLY,
            )


def _quay_stretch(rng: np.random.Generator, size: int, reach: float) -> tuple[float, float]:
    end = rng.uniform(-0.2, 0.35) * size
    return (-reach, end) if rng.random() < 0.5 else (-end, reach)


def natural_shore(
    canvas: Canvas, frame: Frame, shore: float, quay_u: tuple[float, float]
) -> list[tuple[float, float]]:
    """Beach and grass where there is no quay, behind an irregular shoreline; returns shoreline points."""
    rng, s = canvas.rng, canvas.scale
    reach = extent(canvas)
    u = np.linspace(-reach, reach, 160)
    v = shore + rng.uniform(6, 20) * s * noise_1d(rng, u, rng.uniform(40, 90) * s) + rng.uniform(-5, 15) * s
    outside = (u < quay_u[0]) | (u > quay_u[1])
    points = []
    for run in _runs(outside):
        uu, vv = u[run], v[run]
        beach = rng.uniform(3, 9) * s
        land = frame.point(np.concatenate([uu, uu[::-1]]), np.concatenate([vv, np.full(len(uu), reach)]))
        inland = frame.point(
            np.concatenate([uu, uu[::-1]]), np.concatenate([vv + beach, np.full(len(uu), reach)])
        )
        canvas.fill(land, BARE)
        canvas.fill(inland, GRASS, variant=int(rng.integers(1, 255)))
        for _ in range(int(rng.integers(1, 4))):
            at = frame.point(
                rng.uniform(uu.min(), uu.max()), rng.uniform(vv.max() + 10 * s, vv.max() + 80 * s)
            )
            tree_cluster(canvas, at, rng.uniform(6, 16) * s, int(rng.integers(3, 12)), rng.uniform(4, 8) * s)
        if rng.random() < 0.5 and uu.max() - uu.min() > 60 * s:
            houses(canvas, frame, uu.min() + 5 * s, uu.max() - 5 * s, vv.max() + 20 * s, vv.max() + 70 * s)
        points += list(zip(uu, vv))
    return points


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of True in a boolean vector."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return [np.arange(start, stop) for start, stop in zip(edges[::2], edges[1::2]) if stop - start > 1]


def _piers(
    canvas: Canvas, frame: Frame, shore: float, quay_u: tuple[float, float]
) -> list[tuple[Frame, float, float, bool]]:
    """Piers and marina pontoons sticking out of the quay into the water: (frame, length, width, marina).

    A pier's frame has u pointing out into the water from the quay edge and v along the quay."""
    rng, s = canvas.rng, canvas.scale
    piers = []
    if quay_u[1] - quay_u[0] < 80 * s:
        return piers
    count = rng.poisson(0.9 * (quay_u[1] - quay_u[0]) / (1.7 * canvas.size))
    for at in np.sort(rng.uniform(quay_u[0] + 30 * s, quay_u[1] - 30 * s, count)):
        if piers and at - frame.local(piers[-1][0].origin)[0] < 70 * s:
            continue
        marina = rng.random() < 0.35
        width = (rng.uniform(2.5, 3.5) if marina else rng.uniform(8, 14)) * s
        length = rng.uniform(40, 100) * s
        pier_frame = Frame(tuple(frame.point(at, shore)), frame.angle - np.pi / 2)
        canvas.fill(pier_frame.rect(-1, length, -width / 2, width / 2), QUAY)
        piers.append((pier_frame, length, width, marina))
    return piers


def _free_stretches(
    span: tuple[float, float], piers: list[tuple[float, float]], clearance: float
) -> list[tuple[float, float]]:
    """The parts of the quay between piers (each pier given as (position, width))."""
    stretches, start = [], span[0]
    for at, width in sorted(piers):
        stretches.append((start, at - width / 2 - clearance))
        start = at + width / 2 + clearance
    return stretches + [(start, span[1])]


def moor_along(
    canvas: Canvas, frame: Frame, u0: float, u1: float, edge: float, side: int, fill: float
) -> None:
    """Ships bow to stern along the line v = `edge` of `frame`, on its `side` (-1: towards smaller v),
    aligned with it, a few metres apart, some berths empty."""
    rng, s = canvas.rng, canvas.scale
    u = u0 + rng.uniform(1, 8) * s
    while u < u1:
        heading = frame.angle + (0.0 if rng.random() < 0.5 else np.pi)
        sprite = make_sprite("ship", rng, s, light_for(canvas, heading))
        x0, x1, y0, y1 = sprite.extent
        if u + (x1 - x0) < u1 and rng.random() < fill:
            centre = frame.point(u + (x1 - x0) / 2, edge + side * ((y1 - y0) / 2 + rng.uniform(1.0, 2.5) * s))
            canvas.place("ship", sprite, centre, heading + rng.normal(0, 0.01))
        u += (x1 - x0) + rng.uniform(3, 12) * s


def berth_boats(canvas: Canvas, pier_frame: Frame, length: float, width: float) -> None:
    """Small boats side by side along both sides of a pontoon, perpendicular to it, bows in."""
    rng, s = canvas.rng, canvas.scale
    for side in (-1, 1):
        u = 4 * s
        while u < length:
            boat_length = rng.uniform(16, 26) * s
            heading = pier_frame.angle + (np.pi / 2 if side < 0 else -np.pi / 2)
            sprite = make_sprite("ship", rng, s, light_for(canvas, heading), length=boat_length)
            x0, x1, y0, y1 = sprite.extent
            if rng.random() < 0.8:
                centre = pier_frame.point(u + (y1 - y0) / 2, side * (width / 2 + 1.0 * s + (x1 - x0) / 2))
                canvas.place("ship", sprite, centre, heading)
            u += (y1 - y0) + rng.uniform(1.5, 4) * s


def open_water(canvas: Canvas, frame: Frame, count: int) -> None:
    """Ships at anchor or under way (with a wake), anywhere on open water, at any heading."""
    rng = canvas.rng
    placed, tries = 0, 0
    while placed < count and tries < 40:
        tries += 1
        centre = rng.uniform(0, canvas.size, 2)
        if canvas.terrain_at(centre)[0] != WATER:
            continue
        if put(canvas, "ship", centre, rng.uniform(-np.pi, np.pi), underway=bool(rng.random() < 0.5)):
            placed += 1


def quay_apron(canvas: Canvas, frame: Frame, quay_u: tuple[float, float], v0: float, v1: float) -> None:
    """The quay behind the berths: a row of container stacks and lorries driving along it."""
    rng, s = canvas.rng, canvas.scale
    box_length, box_width = (16.0 if rng.random() < 0.5 else 32.0) * s, 6.5 * s
    v = v1 - 2 * s - box_width
    u = quay_u[0] + rng.uniform(0, 20) * s
    while u < quay_u[1]:
        columns = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            stack = container_stack(rng, 1, columns, box_length, box_width, light_for(canvas, frame.angle))
            prop(
                canvas,
                stack,
                frame.point(u + columns * box_length / 2, v + box_width / 2),
                frame.angle,
                PAD_GROUND,
            )
        u += columns * box_length + rng.uniform(4, 30) * s
    for u in rng.uniform(*quay_u, int(rng.integers(1, 5))):
        put(
            canvas,
            vehicle_category(rng, 0.7),
            frame.point(u, (v0 + v) / 2 + rng.uniform(-3, 3) * s),
            frame.angle + rng.choice([0, np.pi]),
        )


def hinterland(canvas: Canvas, frame: Frame, quay_u: tuple[float, float], v0: float, v1: float) -> None:
    """Port land behind the quay road: container yards, warehouses and tank farms between cross streets."""
    rng, s = canvas.rng, canvas.scale
    roads, blocks = street_grid(
        canvas, frame, (120, 220), (100, 180), v_range=(v0, v1), u_range=quay_u, parking_share=0.0
    )
    for block in blocks:
        u0, u1, b0, b1 = block.u0 + 2 * s, block.u1 - 2 * s, block.v0 + 2 * s, block.v1 - 2 * s
        kind = rng.choice(["containers", "warehouse", "tanks", "grass"], p=[0.35, 0.25, 0.25, 0.15])
        if kind == "containers":
            container_yard(canvas, frame, u0, u1, b0, b1)
        elif kind == "warehouse":
            warehouse(canvas, frame, u0, u1, b0, b1)
        elif kind == "tanks":
            tank_farm(canvas, frame, u0, u1, b0, b1)
        else:
            canvas.fill(frame.rect(u0, u1, b0, b1), GRASS)
            tree_cluster(canvas, block.centre(frame), 12 * s, int(rng.integers(2, 8)), rng.uniform(4, 8) * s)
    for street in roads:
        traffic(canvas, street, rng.uniform(0.02, 0.12), large_share=0.5, parked=0.0)
