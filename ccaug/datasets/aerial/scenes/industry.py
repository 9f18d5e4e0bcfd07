"""`industrial`: tank farms on concrete pads, warehouses with lorries at their loading docks, container
yards, lorry parks and gravel lots with rail sidings, on a grid of roads with heavy-goods traffic.

The pieces (`tank_farm`, `warehouse`, `container_yard`) are also used by the harbour's hinterland.
"""

from __future__ import annotations

import numpy as np

from ccaug.datasets.aerial.canvas import Canvas, Frame, ellipse
from ccaug.datasets.aerial.classes import BARE, GRASS, INDUSTRIAL, QUAY
from ccaug.datasets.aerial.layout import (
    WHITE,
    building,
    helipad_somewhere,
    light_for,
    parking_lot,
    prop,
    put,
    traffic,
    tree_cluster,
    vehicle_category,
)
from ccaug.datasets.aerial.props import container_stack
from ccaug.datasets.aerial.scenes.common import Block, scene_frame, street_grid, visible

PAD_GROUND = frozenset({INDUSTRIAL, QUAY})


def compose(canvas: Canvas) -> None:
    rng = canvas.rng
    frame = scene_frame(canvas)
    roads, blocks = street_grid(canvas, frame, (140, 230), (110, 190), wide_share=0.15, parking_share=0.05)
    centre = np.array([canvas.size / 2] * 2)
    blocks.sort(key=lambda block: np.linalg.norm(block.centre(frame) - centre))
    for index, block in enumerate(blocks):
        kind = (
            "tanks"
            if index == 0
            else rng.choice(
                ["tanks", "warehouse", "containers", "lorries", "gravel"], p=[0.3, 0.25, 0.15, 0.15, 0.15]
            )
        )
        industrial_block(canvas, frame, block, str(kind))
    if rng.random() < 0.4:
        helipad_somewhere(canvas, frozenset({INDUSTRIAL, BARE, GRASS}))
    density = rng.uniform(0.03, 0.15)
    for street in roads:
        traffic(canvas, street, density, large_share=0.4, parked=0.2)


def industrial_block(canvas: Canvas, frame: Frame, block: Block, kind: str) -> None:
    rng, s = canvas.rng, canvas.scale
    u0, u1, v0, v1 = block.u0 + 2 * s, block.u1 - 2 * s, block.v0 + 2 * s, block.v1 - 2 * s
    if kind == "tanks":
        tank_farm(canvas, frame, u0, u1, v0, v1)
    elif kind == "warehouse":
        warehouse(canvas, frame, u0, u1, v0, v1)
    elif kind == "containers":
        container_yard(canvas, frame, u0, u1, v0, v1)
    elif kind == "lorries":
        parking_lot(canvas, frame, u0, u1, v0, v1, occupancy=rng.uniform(0.3, 0.8), truck_rows=0.7)
    else:
        gravel_lot(canvas, frame, u0, u1, v0, v1)


def tank_farm(canvas: Canvas, frame: Frame, u0: float, u1: float, v0: float, v1: float) -> None:
    """Groups of same-sized tanks on a grid inside bund walls; some plots are empty foundations."""
    rng, s = canvas.rng, canvas.scale
    canvas.fill(frame.rect(u0, u1, v0, v1), INDUSTRIAL, variant=int(rng.integers(1, 255)))
    u_lo, u_hi, _, _ = visible(canvas, frame)
    u = max(u0, u_lo - 40 * s) + 3 * s  # groups beyond the image would hold no tank
    while u < min(u1, u_hi) - 12 * s:
        diameter = rng.uniform(11, 36) * s
        pitch = diameter * rng.uniform(1.25, 1.6)
        columns = int(min(rng.integers(1, 5), (u1 - u - 3 * s) // pitch))
        rows = int((v1 - v0 - 6 * s) // pitch)
        if columns < 1 or rows < 1:
            break
        rows = int(rng.integers(1, rows + 1))
        group_v0 = v0 + 3 * s + rng.uniform(0, max(0.0, v1 - v0 - 6 * s - rows * pitch))
        width, height = columns * pitch, rows * pitch
        bund = frame.rect(u, u + width, group_v0, group_v0 + height)
        canvas.paint(np.vstack([bund, bund[:1]]), (0.72, 0.71, 0.68), width=1.2 * s, alpha=0.8)
        for i in range(columns):
            for j in range(rows):
                centre = frame.point(u + (i + 0.5) * pitch, group_v0 + (j + 0.5) * pitch)
                if rng.random() < 0.1:  # an empty foundation ring: round, but not a tank
                    ring = ellipse(*centre, diameter / 2, diameter / 2, 24)
                    ring = np.vstack([ring, ring[:1]])
                    canvas.paint(ring, (0.35, 0.34, 0.32), width=1.0 * s, alpha=0.7)
                    continue
                put(canvas, "storage-tank", centre, 0.0, length=diameter * rng.uniform(0.97, 1.03))
        u += width + rng.uniform(6, 20) * s
    _pad_vehicles(canvas, frame, u0, u1, v0, v1, count=int(rng.integers(0, 4)))


def warehouse(canvas: Canvas, frame: Frame, u0: float, u1: float, v0: float, v1: float) -> None:
    """A large flat-roofed shed with lorries backed up to its loading docks and cars by the office."""
    rng, s = canvas.rng, canvas.scale
    canvas.fill(frame.rect(u0, u1, v0, v1), INDUSTRIAL, variant=int(rng.integers(1, 255)))
    yard = rng.uniform(34, 44) * s
    depth = min(v1 - v0 - yard - 4 * s, rng.uniform(40, 90) * s)
    length = (u1 - u0) * rng.uniform(0.6, 0.92)
    if depth < 20 * s:
        _pad_vehicles(canvas, frame, u0, u1, v0, v1, count=int(rng.integers(1, 5)))
        return
    wall = v0 + 2 * s + depth
    centre_u = u0 + (u1 - u0) / 2
    building(
        canvas,
        frame.point(centre_u, v0 + 2 * s + depth / 2),
        frame.angle,
        length,
        depth,
        rng.uniform(8, 18) * s,
    )
    dock_pitch = rng.uniform(10, 13) * s
    heading = frame.angle + np.pi / 2  # cab away from the wall, trailer against the dock
    for u in np.arange(
        centre_u - length / 2 + dock_pitch, centre_u + length / 2 - dock_pitch / 2, dock_pitch
    ):
        canvas.paint(
            frame.point([u - dock_pitch / 2] * 2, [wall + 1 * s, wall + 14 * s]),
            WHITE,
            width=0.8 * s,
            alpha=0.6,
        )
        if rng.random() < 0.55:
            sprite_length = rng.uniform(19, 32) * s
            put(
                canvas,
                "large-vehicle",
                frame.point(u, wall + 1.5 * s + sprite_length / 2),
                heading + rng.normal(0, 0.02),
                length=sprite_length,
            )
    _pad_vehicles(canvas, frame, u0, u1, wall + 36 * s, v1, count=int(rng.integers(0, 5)))


def container_yard(
    canvas: Canvas, frame: Frame, u0: float, u1: float, v0: float, v1: float, ground: int = INDUSTRIAL
) -> None:
    """Blocks of stacked containers in rows, with lanes between them where lorries wait."""
    rng, s = canvas.rng, canvas.scale
    canvas.fill(frame.rect(u0, u1, v0, v1), ground, variant=int(rng.integers(1, 255)))
    box_length = (16.0 if rng.random() < 0.5 else 32.0) * s
    box_width = 6.5 * s
    lane = rng.uniform(12, 16) * s
    v = v0 + 3 * s
    while v < v1 - 4 * box_width:
        rows = int(rng.integers(2, 6))
        if v + rows * box_width > v1 - 2 * s:
            rows = int((v1 - 2 * s - v) // box_width)
        u = u0 + 3 * s
        while u < u1 - box_length:
            columns = int(rng.integers(1, 4))
            if u + columns * box_length > u1 - 2 * s:
                columns = int((u1 - 2 * s - u) // box_length)
            if columns >= 1 and rows >= 1 and rng.random() < 0.85:
                stack = container_stack(
                    rng, rows, columns, box_length, box_width, light_for(canvas, frame.angle)
                )
                prop(
                    canvas,
                    stack,
                    frame.point(u + columns * box_length / 2, v + rows * box_width / 2),
                    frame.angle,
                    PAD_GROUND,
                )
            u += columns * box_length + rng.uniform(3, 6) * s
        v += rows * box_width + lane
        # lorries queue in the lane between the stacks, aligned with it
        for u_lorry in rng.uniform(u0, u1, int(rng.integers(0, 3))):
            put(
                canvas,
                vehicle_category(rng, 0.75),
                frame.point(u_lorry, v - lane / 2),
                frame.angle + rng.choice([0, np.pi]),
            )


def gravel_lot(canvas: Canvas, frame: Frame, u0: float, u1: float, v0: float, v1: float) -> None:
    """Rough ground with a rail siding, scrub and a few heaps: texture without objects."""
    rng, s = canvas.rng, canvas.scale
    canvas.fill(frame.rect(u0, u1, v0, v1), BARE, variant=int(rng.integers(1, 255)))
    v = rng.uniform(v0 + 8 * s, v1 - 8 * s)
    for offset in (-2.0 * s, 2.0 * s):
        canvas.paint(frame.point([u0, u1], [v + offset] * 2), (0.25, 0.22, 0.2), width=1.0 * s, alpha=0.9)
    for u in np.arange(u0, u1, 2.5 * s):
        canvas.paint(
            frame.point([u, u], [v - 3.2 * s, v + 3.2 * s]), (0.35, 0.3, 0.25), width=0.8 * s, alpha=0.6
        )
    if rng.random() < 0.6:
        corner = frame.point(rng.uniform(u0, u1), rng.uniform(v0, v1))
        canvas.fill(
            np.asarray(corner) + rng.uniform(10, 25) * s * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]),
            GRASS,
        )
        tree_cluster(canvas, corner, 8 * s, int(rng.integers(2, 6)), rng.uniform(4, 7) * s)


def _pad_vehicles(
    canvas: Canvas, frame: Frame, u0: float, u1: float, v0: float, v1: float, count: int
) -> None:
    """Vehicles parked loosely on a pad, aligned with its edges."""
    rng = canvas.rng
    for _ in range(count * 3):
        if count <= 0:
            break
        heading = frame.angle + rng.choice([0, np.pi / 2, np.pi, -np.pi / 2]) + rng.normal(0, 0.05)
        if put(
            canvas, vehicle_category(rng, 0.4), frame.point(rng.uniform(u0, u1), rng.uniform(v0, v1)), heading
        ):
            count -= 1
