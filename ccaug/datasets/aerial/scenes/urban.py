"""`parking`: a town grid of streets with traffic and kerbside parking, blocks of parking lots, offices with
their car parks, houses in gardens and small parks, street trees overhanging the kerbs."""

from __future__ import annotations

import numpy as np

from ccaug.datasets.aerial.canvas import Canvas, Frame
from ccaug.datasets.aerial.classes import GRASS, PAVEMENT
from ccaug.datasets.aerial.layout import (
    building,
    helipad_somewhere,
    houses,
    parking_lot,
    traffic,
    tree_cluster,
    tree_row,
)
from ccaug.datasets.aerial.scenes.common import Block, scene_frame, street_grid


def compose(canvas: Canvas) -> None:
    rng, s = canvas.rng, canvas.scale
    frame = scene_frame(canvas)
    sidewalk = rng.uniform(3, 5) * s
    roads, blocks = street_grid(canvas, frame, (100, 170), (80, 140), parking_share=0.2, sidewalk=sidewalk)
    centre = np.array([canvas.size / 2] * 2)
    blocks.sort(key=lambda block: np.linalg.norm(block.centre(frame) - centre))
    for index, block in enumerate(blocks):
        kind = (
            "lot"
            if index == 0
            else rng.choice(["lot", "offices", "houses", "park"], p=[0.25, 0.25, 0.3, 0.2])
        )
        urban_block(canvas, frame, block, str(kind))
    if rng.random() < 0.5:  # a hospital's helipad
        helipad_somewhere(canvas, frozenset({GRASS, PAVEMENT}))
    density = rng.uniform(0.02, 0.15)
    for street in roads:
        traffic(canvas, street, density, large_share=0.08, parked=rng.uniform(0.1, 0.6))
        if rng.random() < 0.4:  # street trees on one sidewalk, crowns over the kerbside lane
            v = street.v + rng.choice([-1, 1]) * (street.half_width + sidewalk / 2)
            start, stop = street.frame.point(street.u0, v), street.frame.point(street.u1, v)
            tree_row(canvas, start, stop, rng.uniform(10, 16) * s, rng.uniform(4, 7) * s, keep=0.8)


def urban_block(canvas: Canvas, frame: Frame, block: Block, kind: str) -> None:
    """Fill a block: a parking lot, an office building with its car park, houses, or a park."""
    rng, s = canvas.rng, canvas.scale
    u0, u1, v0, v1 = block.u0, block.u1, block.v0, block.v1
    if kind == "lot":
        parking_lot(canvas, frame, u0, u1, v0, v1, occupancy=rng.uniform(0.1, 0.6), truck_rows=0.06)
    elif kind == "offices":
        split = v0 + (v1 - v0) * rng.uniform(0.35, 0.55)
        canvas.fill(frame.rect(u0, u1, v0, split), PAVEMENT)
        length, width = (u1 - u0) * rng.uniform(0.55, 0.9), (split - v0) * rng.uniform(0.6, 0.85)
        building(
            canvas,
            frame.point((u0 + u1) / 2, (v0 + split) / 2),
            frame.angle,
            length,
            width,
            rng.uniform(10, 30) * s,
        )
        parking_lot(canvas, frame, u0, u1, split, v1, occupancy=rng.uniform(0.1, 0.6), truck_rows=0.05)
    elif kind == "houses":
        houses(canvas, frame, u0, u1, v0, v1)
    else:
        canvas.fill(frame.rect(u0, u1, v0, v1), GRASS, variant=int(rng.integers(1, 255)))
        for _ in range(int(rng.integers(1, 4))):
            centre = frame.point(rng.uniform(u0, u1), rng.uniform(v0, v1))
            tree_cluster(
                canvas, centre, rng.uniform(5, 15) * s, int(rng.integers(3, 10)), rng.uniform(4, 8) * s
            )
