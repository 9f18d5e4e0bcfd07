"""`airport`: parallel bands of runway, grass strip, taxiway and apron in front of a terminal.

Planes park nose-in on marked stands in aligned rows along the apron, taxi on the taxiway or roll on the
runway; helicopters stand on marked helipads and on apron stands; service vehicles and baggage-cart trains
move about the apron; beyond the terminal lie the landside road and car parks. On the far side of the runway
a general-aviation apron holds small planes and helicopters.
"""

from __future__ import annotations

import numpy as np

from ccaug.datasets.aerial.canvas import Canvas, Frame
from ccaug.datasets.aerial.classes import APRON, GRASS, RUNWAY
from ccaug.datasets.aerial.layout import (
    WHITE,
    YELLOW,
    building,
    dashed,
    helipad_somewhere,
    light_for,
    parking_lot,
    prop,
    put,
    road,
    traffic,
    tree_cluster,
    vehicle_category,
)
from ccaug.datasets.aerial.objects import make_sprite
from ccaug.datasets.aerial.props import slab
from ccaug.datasets.aerial.scenes.common import extent, scene_frame, street_grid, visible
from ccaug.datasets.aerial.scenes.urban import urban_block

APRON_GROUND = frozenset({APRON})


def compose(canvas: Canvas) -> None:
    rng, s, size = canvas.rng, canvas.scale, canvas.size
    frame = scene_frame(canvas)
    reach = extent(canvas)
    canvas.fill(frame.rect(-reach, reach, -reach, reach), GRASS, variant=int(rng.integers(1, 255)))
    # Bands from the runway (small v) to the landside (large v), placed so the apron is near the centre.
    apron0 = rng.uniform(-0.45, 0.15) * min(size, 384)
    stand_depth = rng.uniform(52, 76) * s
    rows = max(1, round(size / 450))
    apron1 = apron0 + rows * stand_depth + rng.uniform(10, 16) * s
    taxi1 = apron0 - rng.uniform(0, 18) * s
    taxi0 = taxi1 - rng.uniform(16, 22) * s
    runway1 = taxi0 - rng.uniform(28, 55) * s
    runway0 = runway1 - rng.uniform(32, 44) * s
    terminal1 = apron1 + rng.uniform(24, 45) * s

    runway(canvas, frame, runway0, runway1)
    taxiway(canvas, frame, taxi0, taxi1, runway1)
    canvas.fill(frame.rect(-reach, reach, apron0, apron1), APRON, variant=int(rng.integers(1, 255)))
    slab_joints(canvas, frame, apron0, apron1)
    terminal(canvas, frame, apron1, terminal1)
    for row in range(rows):
        stands(canvas, frame, apron0 + row * stand_depth, apron0 + (row + 1) * stand_depth)
    u_lo, u_hi, v_lo, _ = visible(canvas, frame)
    if rng.random() < 0.35:  # a plane taxiing
        put(
            canvas,
            "plane",
            frame.point(rng.uniform(u_lo, u_hi), (taxi0 + taxi1) / 2),
            frame.angle + rng.choice([0, np.pi]),
            strict=False,
        )
    if rng.random() < 0.25:  # a plane on its take-off or landing roll
        put(
            canvas,
            "plane",
            frame.point(rng.uniform(u_lo, u_hi), (runway0 + runway1) / 2),
            frame.angle + rng.choice([0, np.pi]),
            strict=False,
        )
    apron_traffic(canvas, frame, apron0, apron1, count=int(rng.poisson(3 * size / 256)))
    if v_lo < runway0 - 60 * s:
        general_aviation(canvas, frame, runway0 - rng.uniform(30, 60) * s)
    landside(canvas, frame, terminal1, reach)
    if rng.random() < 0.7:  # last: a pad drawn earlier could be paved over by the landside
        helipad_somewhere(canvas, frozenset({GRASS, APRON}))


def runway(canvas: Canvas, frame: Frame, v0: float, v1: float) -> None:
    """Asphalt with edge lines, centre-line dashes, touchdown bars, rubber marks and, where it ends inside the
    scene, threshold 'piano keys'."""
    rng, s = canvas.rng, canvas.scale
    reach = extent(canvas)
    u0, u1 = -reach, reach
    if rng.random() < 0.35:
        end = rng.uniform(-0.3, 0.3) * canvas.size
        u0, u1 = (end, reach) if rng.random() < 0.5 else (-reach, end)
    canvas.fill(frame.rect(u0, u1, v0, v1), RUNWAY)
    middle, half = (v0 + v1) / 2, (v1 - v0) / 2
    canvas.paint(frame.rect(u0, u1, middle - 0.3 * half, middle + 0.3 * half), (0.2, 0.2, 0.2), alpha=0.25)
    for edge in (v0 + 1.5 * s, v1 - 1.5 * s):
        canvas.paint(frame.point([u0, u1], [edge, edge]), WHITE, width=1.0 * s)
    dashed(canvas, frame, middle, u0, u1, dash=14, gap=10)
    for at in rng.uniform(u0, u1, 2):
        for side in (-1, 1):
            bar = middle + side * 0.55 * half
            canvas.paint(frame.rect(at, at + 14 * s, bar - 1.5 * s, bar + 1.5 * s), WHITE)
    for end, inward in ((u0, 1), (u1, -1)):
        if abs(end) >= reach:
            continue
        for v in np.arange(v0 + 3 * s, v1 - 3 * s, 3.6 * s):
            canvas.paint(
                frame.point([end + inward * 5 * s, end + inward * 25 * s], [v + 0.9 * s] * 2),
                WHITE,
                width=1.8 * s,
            )


def taxiway(canvas: Canvas, frame: Frame, v0: float, v1: float, runway_edge: float) -> None:
    """A taxiway parallel to the runway, and one to three links across the grass strip."""
    rng, s = canvas.rng, canvas.scale
    reach = extent(canvas)
    canvas.fill(frame.rect(-reach, reach, v0, v1), APRON)
    canvas.paint(frame.point([-reach, reach], [(v0 + v1) / 2] * 2), YELLOW, width=0.8 * s)
    width = v1 - v0
    for at in rng.uniform(-0.5, 0.5, int(rng.integers(1, 4))) * canvas.size:
        canvas.fill(frame.rect(at - width / 2, at + width / 2, runway_edge - 1, v0 + 1), APRON)
        canvas.paint(frame.point([at, at], [runway_edge, v0]), YELLOW, width=0.8 * s)


def slab_joints(canvas: Canvas, frame: Frame, v0: float, v1: float) -> None:
    """The faint grid of joints between concrete slabs."""
    s = canvas.scale
    u_lo, u_hi, _, _ = visible(canvas, frame)
    pitch = canvas.rng.uniform(9, 13) * s
    for u in np.arange(u_lo - u_lo % pitch, u_hi, pitch):
        canvas.paint(frame.point([u, u], [v0, v1]), (0.3, 0.3, 0.3), width=0.6 * s, alpha=0.15)
    for v in np.arange(v0 + pitch, v1, pitch):
        canvas.paint(frame.point([u_lo, u_hi], [v, v]), (0.3, 0.3, 0.3), width=0.6 * s, alpha=0.15)


def terminal(canvas: Canvas, frame: Frame, v0: float, v1: float) -> None:
    """Terminal buildings and hangars along the back of the apron."""
    rng, s = canvas.rng, canvas.scale
    u_lo, u_hi, _, _ = visible(canvas, frame)
    u = u_lo - rng.uniform(0, 60) * s
    while u < u_hi:
        length = rng.uniform(60, 200) * s
        depth = (v1 - v0) * rng.uniform(0.7, 0.95)
        building(
            canvas,
            frame.point(u + length / 2, v0 + 2 * s + depth / 2),
            frame.angle,
            length,
            depth,
            rng.uniform(10, 25) * s,
        )
        u += length + rng.uniform(8, 40) * s


def stands(canvas: Canvas, frame: Frame, v0: float, v1: float) -> None:
    """A row of stands: lead-in lines and stop bars; planes nose-in towards the terminal (larger v), some
    stands empty, some used by helicopters."""
    rng, s = canvas.rng, canvas.scale
    u_lo, u_hi, _, _ = visible(canvas, frame)
    longest = min(64 * s, v1 - v0 - 8 * s)
    pitch = longest * rng.uniform(1.05, 1.3)
    occupancy = rng.uniform(0.45, 0.95)
    heading = frame.angle + np.pi / 2
    helicopters = rng.random() < 0.4  # a run of stands used by helicopters
    first = rng.uniform(u_lo, u_hi)
    for u in np.arange(u_lo - (u_lo % pitch), u_hi + pitch, pitch):
        canvas.paint(frame.point([u, u], [v0 + 3 * s, v1 - 3 * s]), YELLOW, width=0.8 * s)
        canvas.paint(frame.point([u - 4 * s, u + 4 * s], [v1 - 4 * s] * 2), YELLOW, width=1.0 * s)
        if rng.random() > occupancy:
            continue
        if helicopters and first <= u < first + 3 * pitch:
            for offset in (-0.25, 0.25) if pitch > 60 * s else (0.0,):
                put(
                    canvas,
                    "helicopter",
                    frame.point(u + offset * pitch, v1 - 18 * s),
                    heading + rng.normal(0, 0.3),
                    strict=False,
                )
            continue
        for _ in range(3):  # a plane whose span fits the stand
            sprite = make_sprite(
                "plane", rng, s, light_for(canvas, heading), length=rng.uniform(26 * s, longest)
            )
            x0, x1, y0, y1 = sprite.extent
            if y1 - y0 < pitch - 3 * s:
                centre = frame.point(u + rng.normal(0, 0.5) * s, v1 - 4 * s - x1 + rng.uniform(0, 2) * s)
                canvas.place("plane", sprite, centre, heading + rng.normal(0, 0.01), strict=False)
                break


def apron_traffic(canvas: Canvas, frame: Frame, v0: float, v1: float, count: int) -> None:
    """Service vehicles and baggage-cart trains on the apron, aligned with it."""
    rng, s = canvas.rng, canvas.scale
    u_lo, u_hi, _, _ = visible(canvas, frame)
    for _ in range(count):
        heading = frame.angle + rng.choice([0, np.pi / 2, np.pi, -np.pi / 2])
        put(
            canvas,
            vehicle_category(rng, 0.35),
            frame.point(rng.uniform(u_lo, u_hi), rng.uniform(v0, v1)),
            heading,
        )
    for _ in range(int(rng.integers(0, 3))):
        u, v = rng.uniform(u_lo, u_hi), rng.uniform(v0, v1)
        for k in range(int(rng.integers(3, 6))):
            prop(
                canvas,
                slab(4 * s, 3 * s, (0.55, 0.55, 0.6), height=1.5 * s),
                frame.point(u + k * 5 * s, v),
                frame.angle,
                APRON_GROUND,
            )


def general_aviation(canvas: Canvas, frame: Frame, v1: float) -> None:
    """Beyond the runway: a small apron with light aircraft in a row and helicopters on pads."""
    rng, s = canvas.rng, canvas.scale
    reach = extent(canvas)
    depth = rng.uniform(40, 55) * s
    v0 = v1 - depth
    canvas.fill(frame.rect(-reach, reach, v0, v1), APRON)
    road_strip = v1 + rng.uniform(6, 12) * s
    canvas.fill(frame.rect(-reach, reach, v1 - 1, road_strip), APRON)
    u_lo, u_hi, _, _ = visible(canvas, frame)
    pitch = rng.uniform(36, 44) * s
    heading = frame.angle - np.pi / 2  # nose away from the runway
    for u in np.arange(u_lo, u_hi, pitch):
        choice = rng.random()
        if choice < 0.45:
            put(
                canvas,
                "plane",
                frame.point(u, (v0 + v1) / 2),
                heading + rng.normal(0, 0.05),
                length=rng.uniform(26, 32) * s,
                strict=False,
            )
        elif choice < 0.7:
            put(
                canvas,
                "helicopter",
                frame.point(u, (v0 + v1) / 2),
                heading + rng.normal(0, 0.3),
                strict=False,
            )
    building(
        canvas,
        frame.point(rng.uniform(u_lo, u_hi), v0 - 20 * s),
        frame.angle,
        rng.uniform(40, 80) * s,
        rng.uniform(25, 35) * s,
    )
    tree_cluster(
        canvas, frame.point(rng.uniform(u_lo, u_hi), v0 - 60 * s), 15 * s, int(rng.integers(3, 10)), 6 * s
    )


def landside(canvas: Canvas, frame: Frame, v0: float, reach: float) -> None:
    """The road in front of the terminal, its car park, a band of town blocks, then open grass with trees."""
    rng, s = canvas.rng, canvas.scale
    street = road(canvas, frame, v0 + 9 * s, -reach, reach, lanes=int(rng.choice([2, 4])))
    traffic(canvas, street, rng.uniform(0.05, 0.25), large_share=0.2)
    lot0 = v0 + 9 * s + street.half_width + 3 * s
    lot1 = lot0 + rng.uniform(40, 70) * s
    parking_lot(canvas, frame, -reach, reach, lot0, lot1, occupancy=rng.uniform(0.2, 0.7), truck_rows=0.05)
    town_end = min(reach, lot1 + rng.uniform(120, 280) * s)
    if lot1 < town_end:
        roads, blocks = street_grid(
            canvas, frame, (100, 170), (80, 140), v_range=(lot1, town_end), sidewalk=3 * s
        )
        for block in blocks:
            urban_block(canvas, frame, block, str(rng.choice(["lot", "offices", "houses", "park"])))
        for other in roads:
            traffic(canvas, other, rng.uniform(0.03, 0.2))
    u_lo, u_hi, _, v_hi = visible(canvas, frame)
    for _ in range(int(max(0.0, v_hi - town_end - 20 * s) * (u_hi - u_lo) / (120 * s) ** 2)):
        at = frame.point(rng.uniform(u_lo, u_hi), rng.uniform(town_end + 20 * s, v_hi))
        tree_cluster(canvas, at, rng.uniform(6, 20) * s, int(rng.integers(3, 15)), rng.uniform(4, 8) * s)
