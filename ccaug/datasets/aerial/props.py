"""Distractor sprites: things that share colours or shapes with the objects but are not annotated.

Roofs (red, grey or white, like vehicles), stacks of shipping containers (the colours and proportions of
lorry trailers), rocks along a shore (the size of small boats). A detector that learns colour alone confuses
them with objects; it has to learn shape and context.
"""

from __future__ import annotations

import numpy as np

from ccaug.datasets.aerial import palette as pal
from ccaug.datasets.aerial.canvas import Part, Sprite, ellipse, rect


def roof(rng: np.random.Generator, length: float, width: float, light: np.ndarray, height: float) -> Sprite:
    """A building seen from above: a gable or hip roof shaded by the sun, or a flat roof with a parapet and
    rooftop units. `height` (px) sets its shadow."""
    colour = pal.pick(rng, pal.ROOF)
    x, y = length / 2, width / 2
    base = Part(rect(-x, x, -y, y), pal.shade(colour, 0.8), height=height)
    style = rng.choice(["gable", "hip", "flat"], p=[0.35, 0.25, 0.4] if width < 30 else [0.15, 0.15, 0.7])
    if style == "flat":
        parts = [base, Part(rect(-x + 1, x - 1, -y + 1, y - 1), colour)]
        for _ in range(int(rng.integers(0, 2 + length * width // 300))):
            parts += rooftop_unit(rng, x - 2, y - 2, light, colour)
        return Sprite(parts)
    # Facets of a pitched roof, each with its outward direction; lit by how much it faces the sun.
    if style == "gable":
        facets = [
            (np.array([[-x, -y], [x, -y], [x, 0], [-x, 0]]), np.array([0.0, -1.0])),
            (np.array([[-x, y], [x, y], [x, 0], [-x, 0]]), np.array([0.0, 1.0])),
        ]
    else:
        ridge = max(0.0, x - y)
        facets = [
            (np.array([[-x, -y], [x, -y], [ridge, 0], [-ridge, 0]]), np.array([0.0, -1.0])),
            (np.array([[-x, y], [x, y], [ridge, 0], [-ridge, 0]]), np.array([0.0, 1.0])),
            (np.array([[x, -y], [x, y], [ridge, 0]]), np.array([1.0, 0.0])),
            (np.array([[-x, -y], [-x, y], [-ridge, 0]]), np.array([-1.0, 0.0])),
        ]
    parts = [base]
    for points, normal in facets:
        parts.append(Part(points, pal.shade(colour, 1.0 + 0.22 * float(normal @ light))))
    return Sprite(parts)


def rooftop_unit(rng: np.random.Generator, x: float, y: float, light: np.ndarray, roof_colour) -> list[Part]:
    """An air-conditioning box on a flat roof, with the small shadow it casts on the roof."""
    size = rng.uniform(2, 5, 2)
    centre = rng.uniform(-1, 1, 2) * np.maximum([x - size[0], y - size[1]], 0)
    box = rect(-size[0] / 2, size[0] / 2, -size[1] / 2, size[1] / 2) + centre
    return [
        Part(box - light * 1.2, pal.shade(roof_colour, 0.6)),
        Part(box, pal.shade((0.75, 0.75, 0.74), rng.uniform(0.85, 1.1))),
    ]


def container_stack(
    rng: np.random.Generator, rows: int, columns: int, length: float, width: float, light
) -> Sprite:
    """`rows` x `columns` shipping containers side by side (long axis along x), a tier or two high."""
    parts = [
        Part(
            rect(0, columns * length, 0, rows * width) - [columns * length / 2, rows * width / 2],
            pal.DARK,
            height=rng.uniform(2.5, 6),
        )
    ]
    for i in range(columns):
        for j in range(rows):
            x0, y0 = i * length - columns * length / 2, j * width - rows * width / 2
            colour = pal.pick(rng, pal.CONTAINER)
            parts.append(Part(rect(x0 + 0.3, x0 + length - 0.3, y0 + 0.3, y0 + width - 0.3), colour))
            parts.append(
                Part(
                    rect(x0 + 0.3, x0 + length - 0.3, y0 + 0.45 * width, y0 + 0.55 * width),
                    pal.shade(colour, 0.85),
                )
            )
    return Sprite(parts)


def rock(rng: np.random.Generator, size: float) -> Sprite:
    """An irregular grey-brown boulder or islet."""
    points = ellipse(0, 0, size / 2, size * rng.uniform(0.3, 0.5), 12)
    points *= rng.uniform(0.75, 1.15, (12, 1))
    colour = pal.shade((0.50, 0.47, 0.42), rng.uniform(0.7, 1.3))
    return Sprite(
        [
            Part(points, colour, height=size * 0.2),
            Part(points * 0.6 - [0.1 * size, 0], pal.shade(colour, 1.15)),
        ]
    )


def slab(length: float, width: float, colour, height: float = 0.0) -> Sprite:
    """A plain rectangle (a shed, a pallet of goods, a baggage cart train)."""
    return Sprite(
        [Part(rect(-length / 2, length / 2, -width / 2, width / 2), np.asarray(colour), height=height)]
    )
