"""Ground materials: the terrain map turned into textured colour, all classes at once, no per-pixel loops.

Every terrain class is a material: two colours mixed by large-scale blotch noise, plus fine grain and a
mid-scale mottling, each with its own weight. Colours are jittered per image (season, wetness, paint age),
field parcels get their own crop colour and row stripes through the variant map, and water is lighter and
greener near its shore.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ccaug.datasets.aerial.canvas import Canvas
from ccaug.datasets.aerial.classes import FIELD, TERRAIN_CLASSES, WATER
from ccaug.datasets.aerial.noise import fractal_noise, pixel_noise


@dataclass(frozen=True)
class Material:
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    blotch: float  # weight of the large-scale mix between the two colours
    mottle: float  # relative brightness variation at ~10 px
    grain: float  # relative brightness variation per pixel


MATERIALS: dict[str, Material] = {
    "grass": Material((0.30, 0.40, 0.19), (0.45, 0.47, 0.26), 0.9, 0.10, 0.07),
    "water": Material((0.12, 0.22, 0.27), (0.17, 0.29, 0.31), 0.6, 0.03, 0.015),
    "road": Material((0.30, 0.30, 0.30), (0.37, 0.37, 0.36), 0.5, 0.04, 0.06),
    "runway": Material((0.46, 0.46, 0.44), (0.36, 0.36, 0.35), 0.5, 0.04, 0.05),
    "apron": Material((0.62, 0.61, 0.58), (0.52, 0.52, 0.50), 0.6, 0.04, 0.04),
    "parking": Material((0.33, 0.33, 0.33), (0.40, 0.40, 0.39), 0.5, 0.04, 0.06),
    "industrial": Material((0.60, 0.59, 0.56), (0.50, 0.48, 0.45), 0.8, 0.06, 0.05),
    "building": Material((0.50, 0.50, 0.50), (0.55, 0.55, 0.55), 0.2, 0.02, 0.02),
    "tree": Material((0.16, 0.24, 0.11), (0.22, 0.30, 0.14), 0.6, 0.10, 0.08),
    "quay": Material((0.58, 0.57, 0.54), (0.48, 0.47, 0.44), 0.6, 0.05, 0.05),
    "field": Material((0.50, 0.46, 0.28), (0.38, 0.45, 0.22), 0.3, 0.06, 0.06),
    "bare": Material((0.58, 0.51, 0.40), (0.47, 0.41, 0.32), 0.8, 0.08, 0.09),
    "pavement": Material((0.63, 0.62, 0.60), (0.55, 0.54, 0.52), 0.5, 0.03, 0.04),
    "helipad": Material((0.56, 0.56, 0.54), (0.50, 0.50, 0.49), 0.4, 0.03, 0.04),
}

# Crop colours for field parcels: ripe wheat, young green, ploughed soil, dry stubble, dark green.
CROPS = np.array(
    [
        [0.66, 0.58, 0.34],
        [0.36, 0.48, 0.20],
        [0.42, 0.33, 0.24],
        [0.60, 0.56, 0.42],
        [0.24, 0.36, 0.16],
        [0.50, 0.52, 0.28],
    ],
    np.float32,
)
PARCELS = 256  # the variant map is uint8


def paint_ground(canvas: Canvas) -> np.ndarray:
    """``(H, W, 3)`` float32 colours of the bare terrain (no markings, shadows, objects or trees yet)."""
    rng, size = canvas.rng, canvas.size
    shape = (size, size)
    colour_a, colour_b, weights = _material_tables(rng)
    blotch = fractal_noise(rng, shape, 64.0, octaves=4)
    mottle = fractal_noise(rng, shape, 10.0, octaves=2)
    grain = pixel_noise(rng, shape, blur=0.5)

    terrain = canvas.terrain
    w = weights[terrain]  # (H, W, 3): blotch, mottle, grain weights per pixel
    mix = np.clip(0.5 + 0.4 * w[..., 0] * blotch, 0, 1)[..., None]
    image = colour_a[terrain] * (1 - mix) + colour_b[terrain] * mix
    image *= (1 + w[..., 1] * mottle + w[..., 2] * grain)[..., None]
    _paint_fields(image, canvas, blotch)
    _paint_water(image, canvas, mottle)
    image *= _parcel_tint(rng)[canvas.variant]
    # Soften the hard edges of the terrain map (it is drawn without anti-aliasing).
    return cv2.GaussianBlur(image, (0, 0), 0.6)


def _material_tables(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image colour tables indexed by terrain id: the season shifts vegetation from green to dry."""
    count = len(TERRAIN_CLASSES)
    colour_a = np.zeros((count, 3), np.float32)
    colour_b = np.zeros((count, 3), np.float32)
    weights = np.zeros((count, 3), np.float32)
    dryness = rng.uniform(0, 1) ** 2
    dry = np.array([0.52, 0.48, 0.32])
    water_tone = rng.choice([0, 1, 2], p=[0.5, 0.3, 0.2])
    for terrain_id, name in TERRAIN_CLASSES.items():
        material = MATERIALS[name]
        a, b = np.array(material.colour_a), np.array(material.colour_b)
        if name in ("grass", "field", "tree"):
            a, b = a + (dry - a) * dryness * 0.7, b + (dry - b) * dryness * 0.5
        if name == "water":
            a, b = _water_colours(water_tone, a, b)
        jitter = rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, 3)
        colour_a[terrain_id], colour_b[terrain_id] = a * jitter, b * jitter
        weights[terrain_id] = (material.blotch, material.mottle, material.grain)
    return colour_a, colour_b, weights


def _water_colours(tone: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if tone == 1:  # green, shallow harbour water
        return np.array([0.16, 0.27, 0.24]), np.array([0.22, 0.33, 0.28])
    if tone == 2:  # brown, turbid water
        return np.array([0.28, 0.28, 0.22]), np.array([0.34, 0.33, 0.26])
    return a, b


def _parcel_tint(rng: np.random.Generator) -> np.ndarray:
    """``(256, 1, 3)``-broadcastable tints by variant id: 0 is neutral, others vary a little in brightness."""
    tint = rng.uniform(0.9, 1.1, (PARCELS, 1)) * rng.uniform(0.97, 1.03, (PARCELS, 3))
    tint[0] = 1.0
    return tint.astype(np.float32)


def _paint_fields(image: np.ndarray, canvas: Canvas, blotch: np.ndarray) -> None:
    """Give every field parcel a crop colour and rows along a direction of its own."""
    field = canvas.terrain == FIELD
    if not field.any():
        return
    rng = canvas.rng
    crops = CROPS[rng.integers(0, len(CROPS), PARCELS)] * rng.uniform(0.9, 1.1, (PARCELS, 1)).astype(
        np.float32
    )
    angle = rng.uniform(0, np.pi, PARCELS)
    period = rng.uniform(2.2, 5.0, PARCELS)
    strength = rng.uniform(0.03, 0.14, PARCELS)
    variant = canvas.variant[field]
    ys, xs = np.nonzero(field)
    phase = (xs * np.cos(angle[variant]) + ys * np.sin(angle[variant])) * (2 * np.pi / period[variant])
    rows = 1 + strength[variant] * np.sin(phase)
    patchy = 1 + 0.08 * blotch[field]
    image[field] = crops[variant] * (rows * patchy)[:, None]


def _paint_water(image: np.ndarray, canvas: Canvas, mottle: np.ndarray) -> None:
    """Shallow water near the shore, long ripples, and a sparse sun glint."""
    water = canvas.terrain == WATER
    if not water.any():
        return
    rng, size = canvas.rng, canvas.size
    distance = cv2.distanceTransform(water.astype(np.uint8), cv2.DIST_L2, 3)
    shallow = np.exp(-distance / rng.uniform(4, 12))[..., None]
    shore_colour = np.array([0.30, 0.38, 0.33], np.float32) * rng.uniform(0.85, 1.15)
    ripples = _ripples(rng, size)
    glint = np.clip(pixel_noise(rng, (size, size), 0.6) - 2.2, 0, None)
    water_image = image * (1 - 0.5 * shallow) + shore_colour * 0.5 * shallow
    water_image *= (1 + 0.05 * ripples + 0.5 * glint)[..., None]
    image[water] = water_image[water]


def _ripples(rng: np.random.Generator, size: int) -> np.ndarray:
    """Wind ripples: noise stretched along one random direction."""
    grid = rng.standard_normal((size // 3 + 2, size // 24 + 2)).astype(np.float32)
    side = int(size * 1.5)
    streaks = cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC)
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(0, 180), 1.0)
    turn[:, 2] -= (side - size) / 2
    return cv2.warpAffine(streaks, turn, (size, size), borderMode=cv2.BORDER_REFLECT)
