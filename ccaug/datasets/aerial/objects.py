"""Sprites of the six object classes: recognisable top-down silhouettes, never filled rectangles.

Every builder draws in the object's local frame (x along the heading, y across, origin near the middle) and
takes `light`, the unit vector towards the sun in that frame, to shade the side facing away from it. Parts
with a `height` cast a shadow when painted; the annotation is the tight box around the opaque parts
(`Sprite.extent`), so shadows and wakes are never inside it.

    sprite = make_sprite("plane", rng, scale=1.0, light=np.array([0.6, -0.8]))
"""

from __future__ import annotations

import numpy as np
import shapely

from ccaug.datasets.aerial import palette as pal
from ccaug.datasets.aerial.canvas import Part, Sprite, ellipse, rect
from ccaug.datasets.aerial.classes import OBJECT_LENGTH


def make_sprite(
    category: str,
    rng: np.random.Generator,
    scale: float,
    light: np.ndarray,
    length: float | None = None,
    **options,
) -> Sprite:
    """A sprite of `category`; `length` (long side, px) is drawn from `OBJECT_LENGTH` x `scale` if not given."""
    if length is None:
        low, high = OBJECT_LENGTH[category]
        length = rng.uniform(low, high) * scale
    return BUILDERS[category](rng, length, np.asarray(light, dtype=np.float64), **options)


def chamfered(length: float, width: float, front: float, back: float) -> np.ndarray:
    """A rectangle centred on the origin with its four corners cut: the plan of a car or a cab."""
    x, y = length / 2, width / 2
    return np.array(
        [[x - front, -y], [x, -y + front], [x, y - front], [x - front, y],
         [-x + back, y], [-x, y - back], [-x, -y + back], [-x + back, -y]]
    )  # fmt: skip


def mirror(points: np.ndarray) -> np.ndarray:
    return points * np.array([1.0, -1.0])


def offset_shadow(points: np.ndarray, light: np.ndarray, distance: float, under_colour) -> Part:
    """A dark copy of a part shifted away from the sun: the shadow it casts on the object below it."""
    return Part(points - light * distance, pal.shade(under_colour, 0.55))


# --------------------------------------------------------------------------------------------------------
# vehicles
def small_vehicle(rng: np.random.Generator, length: float, light: np.ndarray) -> Sprite:
    """A car: body with cut corners, dark windscreen and rear window, slightly lighter roof."""
    width = length * rng.uniform(0.42, 0.5)
    colour = pal.pick(rng, pal.CAR)
    body = Part(chamfered(length, width, 0.22 * width, 0.15 * width), colour, height=0.35 * length)
    x = length / 2
    windscreen = np.array([[0.28 * x, -0.4], [0.52 * x, -0.34], [0.52 * x, 0.34], [0.28 * x, 0.4]]) * [
        1,
        width,
    ]
    rear = rect(-0.72 * x, -0.56 * x, -0.36 * width, 0.36 * width)
    roof = rect(-0.56 * x, 0.28 * x, -0.40 * width, 0.40 * width)
    if rng.random() < 0.2:  # a van: windscreen further forward, a long roof, no rear window
        van_roof = rect(-0.9 * x, 0.4 * x, -0.42 * width, 0.42 * width)
        return Sprite(
            [body, Part(windscreen + [0.12 * x, 0], pal.GLASS), Part(van_roof, pal.shade(colour, 1.05))]
        )
    return Sprite(
        [body, Part(windscreen, pal.GLASS), Part(rear, pal.GLASS), Part(roof, pal.shade(colour, 1.08))]
    )


def large_vehicle(rng: np.random.Generator, length: float, light: np.ndarray) -> Sprite:
    """A lorry (cab + trailer of another colour), a tanker, or a bus with roof units."""
    width = np.clip(length * rng.uniform(0.24, 0.3), 5.0, None)
    kind = rng.choice(["lorry", "tanker", "bus", "tipper"], p=[0.55, 0.15, 0.15, 0.15])
    x, y = length / 2, width / 2
    if kind == "bus":
        colour = pal.pick(rng, pal.CAB)
        parts = [Part(chamfered(length, width, 0.2 * width, 0.1 * width), colour, height=0.2 * length)]
        parts.append(Part(rect(x - 0.1 * length, x - 0.02 * length, -0.8 * y, 0.8 * y), pal.GLASS))
        for centre in rng.uniform(-0.6, 0.4, size=rng.integers(1, 3)) * x:
            unit = rect(centre - 0.07 * length, centre + 0.07 * length, -0.5 * y, 0.5 * y)
            parts += [offset_shadow(unit, light, 0.6, colour), Part(unit, pal.shade(colour, 1.15))]
        return Sprite(parts)
    cab_length = length * rng.uniform(0.15, 0.2)
    cab_colour = pal.pick(rng, pal.CAB)
    trailer_colour = pal.pick(rng, pal.CONTAINER)
    rear_end = x - cab_length - 0.04 * length
    parts = [
        Part(rect(-x + 0.02 * length, x - 0.02 * length, -0.8 * y, 0.8 * y), pal.DARK, height=0.25 * length),
        Part(
            chamfered(cab_length, width * 0.96, 0.15 * width, 0.05 * width) + [x - cab_length / 2, 0],
            cab_colour,
        ),
        Part(rect(x - 0.55 * cab_length, x - 0.3 * cab_length, -0.42 * width, 0.42 * width), pal.GLASS),
    ]
    trailer = rect(-x, rear_end, -y, y)
    if kind == "tanker":
        silver = pal.shade((0.72, 0.73, 0.75), rng.uniform(0.9, 1.1))
        tank = chamfered(rear_end + x, width, 0.3 * width, 0.3 * width) + [(rear_end - x) / 2, 0]
        highlight = rect(-x + 1, rear_end - 1, -0.15 * width, 0.15 * width)  # light along the cylinder's top
        parts += [Part(tank, silver), Part(highlight, pal.shade(silver, 1.2))]
    elif kind == "tipper":
        parts += [
            Part(trailer, trailer_colour),
            Part(rect(-x + 1, rear_end - 1, -y + 1, y - 1), pal.shade(trailer_colour, 0.6)),
        ]
    else:
        parts += [
            Part(trailer, pal.shade(trailer_colour, 0.8)),
            Part(rect(-x + 0.5, rear_end - 0.5, -y + 0.5, y - 0.5), trailer_colour),
        ]
    return Sprite(parts)


# --------------------------------------------------------------------------------------------------------
# ships
def hull_outline(length: float, width: float, bow: float) -> np.ndarray:
    """A pointed bow at +x, straight sides, a slightly rounded stern at -x."""
    x, y = length / 2, width / 2
    t = np.linspace(0, 1, 5)[1:-1]
    bow_curve = np.stack([x - bow + bow * t, y * (1 - t**2)], axis=1)
    starboard = np.concatenate(
        [[[-x, 0.75 * y], [-x + 0.04 * length, y], [x - bow, y]], bow_curve, [[x, 0.0]]]
    )
    port = mirror(starboard[:-1])[::-1]
    return np.concatenate([starboard, port])


def ship(rng: np.random.Generator, length: float, light: np.ndarray, underway: bool = False) -> Sprite:
    """A ship: pointed hull and, by size, hatch covers, container bays or a tank deck, and a white
    superstructure at the stern; small ones are boats with a cabin. `underway` adds a wake."""
    small = length < 30
    width = length * (rng.uniform(0.26, 0.36) if small else rng.uniform(0.14, 0.2))
    width = max(width, 4.5)
    x = length / 2
    parts: list[Part] = []
    if underway:
        parts += wake(length, width, rng)
    hull = hull_outline(length, width, length * rng.uniform(0.15, 0.28))
    if small:
        colour = pal.pick(rng, pal.BOAT)
        parts += [Part(hull, pal.shade(colour, 0.7), height=0.05 * length), Part(hull * [0.92, 0.8], colour)]
        cabin = chamfered(0.35 * length, 0.55 * width, 0.15 * width, 0.05 * width) + [-0.05 * length, 0]
        cabin_colour = pal.shade(colour, 0.85) if rng.random() < 0.5 else np.array([0.55, 0.62, 0.70])
        parts += [offset_shadow(cabin, light, 0.8, colour), Part(cabin, cabin_colour)]
        parts.append(Part(rect(0.07 * length, 0.12 * length, -0.2 * width, 0.2 * width), pal.GLASS))
        return Sprite(parts)
    hull_colour = pal.pick(rng, pal.HULL)
    deck_colour = pal.pick(rng, pal.DECK)
    parts += [Part(hull, hull_colour, height=0.04 * length), Part(hull * [0.96, 0.78], deck_colour)]
    kind = rng.choice(["bulk", "container", "tanker"])
    cargo_from, cargo_to = -0.26 * length, x - 0.22 * length
    if kind == "bulk":
        parts += hatches(rng, cargo_from, cargo_to, width, pal.pick(rng, pal.CONTAINER))
    elif kind == "container":
        parts += container_bays(rng, cargo_from, cargo_to, width)
    else:
        parts.append(Part(rect(cargo_from, cargo_to, -0.05 * width, 0.05 * width), (0.75, 0.75, 0.7)))
        parts.append(
            Part(rect(-0.02 * length, 0.02 * length, -0.35 * width, 0.35 * width), (0.75, 0.75, 0.7))
        )
    house = rect(-x + 0.05 * length, -x + 0.18 * length, -0.4 * width, 0.4 * width)
    white = pal.shade((0.92, 0.92, 0.9), rng.uniform(0.9, 1.05))
    parts += [offset_shadow(house, light, 0.03 * length, deck_colour), Part(house, white)]
    parts.append(Part(rect(-x + 0.07 * length, -x + 0.11 * length, -0.12 * width, 0.12 * width), pal.DARK))
    return Sprite(parts)


def hatches(rng: np.random.Generator, start: float, stop: float, width: float, colour) -> list[Part]:
    count = max(2, int((stop - start) / max(width * 0.9, 5)))
    pitch = (stop - start) / count
    return [
        Part(
            rect(
                start + i * pitch + 0.12 * pitch,
                start + (i + 1) * pitch - 0.12 * pitch,
                -0.32 * width,
                0.32 * width,
            ),
            colour,
        )
        for i in range(count)
    ]


def container_bays(rng: np.random.Generator, start: float, stop: float, width: float) -> list[Part]:
    bays = max(2, int((stop - start) / 5))
    pitch = (stop - start) / bays
    rows = 2 if width < 9 else 3
    row_width = 0.7 * width / rows
    parts = []
    for i in range(bays):
        for j in range(rows):
            if rng.random() < 0.15:
                continue
            y0 = -0.35 * width + j * row_width
            parts.append(
                Part(
                    rect(
                        start + i * pitch + 0.3, start + (i + 1) * pitch - 0.3, y0 + 0.2, y0 + row_width - 0.2
                    ),
                    pal.pick(rng, pal.CONTAINER),
                )
            )
    return parts


def wake(length: float, width: float, rng: np.random.Generator) -> list[Part]:
    """Foam behind a moving ship: a turbulent trail astern, fading, and the two arms of the Kelvin wedge."""
    x = length / 2
    trail = length * rng.uniform(0.6, 1.6)
    foam = (0.88, 0.91, 0.93)
    parts = []
    for k, fade in enumerate((0.45, 0.3, 0.15)):
        start, stop = -x + 1 - k * trail / 3, -x - (k + 1) * trail / 3
        near, far = 0.35 * width * (1 + 0.4 * k), 0.35 * width * (1 + 0.4 * (k + 1))
        parts.append(
            Part(np.array([[start, -near], [stop, -far], [stop, far], [start, near]]), foam, alpha=fade)
        )
    arm = np.array(
        [
            [x * 0.7, 0.45 * width],
            [-x - trail, 0.5 * width + trail * 0.36],
            [-x - trail, 0.5 * width + trail * 0.33],
        ]
    )
    return parts + [Part(arm, foam, alpha=0.25), Part(mirror(arm), foam, alpha=0.25)]


# --------------------------------------------------------------------------------------------------------
# storage tanks
def storage_tank(rng: np.random.Generator, length: float, light: np.ndarray) -> Sprite:
    """A cylinder seen from above: a rim, a shaded cone roof or a floating roof with the rim's shadow."""
    radius = length / 2
    colour = pal.pick(rng, pal.TANK)
    n = 32
    parts = [
        Part(ellipse(0, 0, radius, radius, n), pal.shade(colour, 0.8), height=radius * rng.uniform(0.8, 1.6))
    ]
    if rng.random() < 0.5:  # floating roof: a lighter rim, a grey roof, the rim's crescent shadow on it
        inner = 0.86 * radius
        roof = pal.shade((0.62, 0.62, 0.6), rng.uniform(0.85, 1.1))
        parts.append(Part(ellipse(0, 0, 0.97 * radius, 0.97 * radius, n), colour))
        parts.append(Part(ellipse(0, 0, inner, inner, n), roof))
        parts.append(Part(crescent(inner, light, 0.25 * inner), pal.shade(roof, 0.55)))
        parts.append(Part(ellipse(0, 0, 0.12 * radius, 0.12 * radius, 8), pal.shade(roof, 1.2)))
    else:  # cone roof: the half facing away from the sun is darker
        parts.append(Part(ellipse(0, 0, 0.95 * radius, 0.95 * radius, n), colour))
        away = np.arctan2(-light[1], -light[0])
        t = np.linspace(away - np.pi / 2, away + np.pi / 2, n // 2 + 1)
        parts.append(Part(0.95 * radius * np.stack([np.cos(t), np.sin(t)], axis=1), pal.shade(colour, 0.82)))
        parts.append(Part(ellipse(0, 0, 0.1 * radius, 0.1 * radius, 8), pal.shade(colour, 0.7)))
    return Sprite(parts)


def crescent(radius: float, light: np.ndarray, depth: float) -> np.ndarray:
    """The part of a disc not covered by the same disc moved away from the sun: where a rim shades it."""
    disc = shapely.Point(0, 0).buffer(radius, quad_segs=8)
    moved = shapely.affinity.translate(disc, -light[0] * depth, -light[1] * depth)
    shape = disc.difference(moved)
    if shape.geom_type != "Polygon":
        shape = max(shape.geoms, key=lambda g: g.area)
    return np.asarray(shape.exterior.coords)[:-1]


# --------------------------------------------------------------------------------------------------------
# aircraft
def plane(rng: np.random.Generator, length: float, light: np.ndarray) -> Sprite:
    """Fuselage with a rounded nose, swept (jet) or straight (turboprop) wings, a tailplane and engines."""
    jet = rng.random() < 0.7
    span = length * (rng.uniform(0.85, 1.05) if jet else rng.uniform(1.05, 1.3))
    fuselage_width = length * rng.uniform(0.085, 0.11)
    colour = pal.pick(rng, pal.AIRCRAFT, jitter=0.03)
    wing_colour = pal.shade(colour, rng.uniform(0.82, 0.95))
    x, f = length / 2, fuselage_width / 2
    sweep = np.tan(np.radians(rng.uniform(25, 35) if jet else rng.uniform(0, 6)))
    root_chord = length * (0.2 if jet else 0.12)
    tip_chord = root_chord * (0.3 if jet else 0.6)
    lead = length * (rng.uniform(0.02, 0.1) if jet else rng.uniform(0.05, 0.12))
    half = span / 2
    wing = np.array(
        [
            [lead, f],
            [lead - sweep * half, half],
            [lead - sweep * half - tip_chord, half],
            [lead - root_chord, f],
        ]
    )
    tail_half = 0.17 * span if jet else 0.2 * span
    tail_lead = -x + 0.16 * length
    tail_tip = tail_lead - sweep * tail_half
    tailplane = np.array(
        [
            [tail_lead, f * 0.5],
            [tail_tip - 0.02 * length, tail_half],
            [tail_tip - 0.07 * length, tail_half],
            [tail_lead - 0.12 * length, f * 0.5],
        ]
    )
    t = np.linspace(-np.pi / 2, np.pi / 2, 9)
    nose = np.stack([x - 1.3 * f + 1.3 * f * np.cos(t), f * np.sin(t)], axis=1)
    tail = np.array([[-x + 0.2 * length, f], [-x, 0.3 * f], [-x, -0.3 * f], [-x + 0.2 * length, -f]])
    body = np.concatenate([nose, tail])
    wing_height, body_height = 0.06 * length, 0.1 * length
    parts = [
        Part(wing, wing_colour, wing_height, base=wing_height),
        Part(mirror(wing), wing_colour, wing_height, base=wing_height),
        Part(tailplane, wing_colour, body_height, base=body_height),
        Part(mirror(tailplane), wing_colour, body_height, base=body_height),
    ]
    engines = [0.32, 0.62] if jet and rng.random() < 0.2 else [0.35]
    for at in engines:
        y_engine = at * half
        x_engine = lead - sweep * y_engine + (0.05 * length if jet else 0.03 * length)
        nacelle = rect(
            x_engine - 0.11 * length, x_engine, y_engine - 0.022 * length, y_engine + 0.022 * length
        )
        parts += [Part(nacelle, (0.45, 0.46, 0.48)), Part(mirror(nacelle), (0.45, 0.46, 0.48))]
    parts.append(Part(body, colour, body_height, base=0.4 * body_height))
    dark_side = -1.0 if light[1] > 0 else 1.0  # darken the fuselage half facing away from the sun
    parts.append(Part(rect(-x + 0.2 * length, x - 1.3 * f, 0, dark_side * f * 0.95), pal.shade(colour, 0.86)))
    parts.append(
        Part(rect(-x + 0.01 * length, -x + 0.18 * length, -0.25 * f, 0.25 * f), pal.pick(rng, pal.LIVERY))
    )
    parts.append(Part(rect(x - 1.6 * f, x - 1.1 * f, -0.7 * f, 0.7 * f), pal.GLASS))
    return Sprite(parts)


def helicopter(rng: np.random.Generator, length: float, light: np.ndarray) -> Sprite:
    """Cabin, tail boom with a tail rotor, and a main rotor of 2 to 5 blades at a random angle."""
    colour = pal.pick(rng, pal.HELICOPTER)
    x = length / 2
    radius = length * rng.uniform(0.4, 0.48)
    hub = np.array([0.12 * length, 0.0])
    boom_width = max(1.2, 0.06 * length)
    parts = [
        Part(
            rect(-x + 0.02 * length, 0, -boom_width / 2, boom_width / 2),
            colour,
            0.12 * length,
            base=0.1 * length,
        ),
        Part(
            rect(-x, -x + 0.08 * length, -0.1 * length, 0.1 * length),
            pal.DARK,
            0.12 * length,
            base=0.12 * length,
        ),
        Part(ellipse(0.17 * length, 0, 0.22 * length, 0.12 * length, 20), colour, 0.15 * length),
        Part(ellipse(0.3 * length, 0, 0.08 * length, 0.09 * length, 12), pal.GLASS),
    ]
    blades = int(rng.integers(2, 6))
    blade_width = max(0.9, 0.035 * length)
    start = rng.uniform(0, 2 * np.pi)
    for k in range(blades):
        angle = start + 2 * np.pi * k / blades
        direction, normal = (
            np.array([np.cos(angle), np.sin(angle)]),
            np.array([-np.sin(angle), np.cos(angle)]),
        )
        tip = hub + direction * radius
        blade = np.array(
            [
                hub + normal * blade_width / 2,
                tip + normal * blade_width / 2,
                tip - normal * blade_width / 2,
                hub - normal * blade_width / 2,
            ]
        )
        parts.append(Part(blade, (0.18, 0.18, 0.2), 0.2 * length, base=0.2 * length))
    parts.append(Part(ellipse(*hub, 0.05 * length, 0.05 * length, 8), pal.DARK))
    return Sprite(parts)


BUILDERS = {
    "plane": plane,
    "small-vehicle": small_vehicle,
    "large-vehicle": large_vehicle,
    "ship": ship,
    "storage-tank": storage_tank,
    "helicopter": helicopter,
}
