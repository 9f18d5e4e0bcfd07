"""One aerial scene from a seed: layout, painting, the camera, and the annotations.

    scene = render_scene(7, size=256, kind="harbour")
    scene.image      # (256, 256, 3) uint8
    scene.terrain    # (256, 256) uint8 terrain ids (see TERRAIN_CLASSES)
    scene.instances  # [Instance(category, polygon (8,), difficult, occlusion)]

Everything is drawn from one `numpy.random.Generator` seeded with `seed`, so a seed always gives the same
bytes. The illumination (sun direction, shadow length, colour balance, haze) changes per image; the camera
adds vignetting, blur, sensor noise and sometimes JPEG compression at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ccaug.datasets.aerial.canvas import SHIFT, Canvas, to_cv
from ccaug.datasets.aerial.classes import DIFFICULT_LENGTH, DIFFICULT_OCCLUSION, SCALE_RANGE, SCENE_KINDS
from ccaug.datasets.aerial.layout import grow_trees
from ccaug.datasets.aerial.noise import fractal_noise, pixel_noise
from ccaug.datasets.aerial.paint import (
    apply_shadows,
    canopy_layer,
    draw_items,
    paint_canopy,
    paint_markings,
    shadow_layer,
)
from ccaug.datasets.aerial.scenes import compose
from ccaug.datasets.aerial.terrain import paint_ground


@dataclass(frozen=True)
class Instance:
    category: str
    polygon: np.ndarray  # (8,) x1, y1, ... x4, y4 in pixels: the oriented box of the silhouette
    difficult: bool
    occlusion: float  # share of the box under tree canopy


@dataclass
class AerialScene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    terrain: np.ndarray  # (H, W) uint8 terrain ids
    instances: list[Instance]
    kind: str


def render_scene(seed: int, size: int = 256, kind: str | None = None) -> AerialScene:
    """Render one scene of `kind` (one of `SCENE_KINDS`; drawn from the seed when None)."""
    if kind is not None and kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {', '.join(SCENE_KINDS)}")
    if size < 64:
        raise ValueError(f"size must be at least 64 px, got {size}")
    rng = np.random.default_rng(seed)
    kind = kind if kind is not None else str(rng.choice(SCENE_KINDS))
    canvas = new_canvas(rng, size)
    compose(canvas, kind)
    grow_trees(canvas)
    canvas.drop_out_of_context()

    image = paint_ground(canvas)
    paint_markings(image, canvas)
    apply_shadows(image, shadow_layer(canvas), strength=rng.uniform(0.35, 0.6))
    pixels = to_uint8(image)
    draw_items(pixels, canvas.items)
    image = pixels.astype(np.float32) / 255
    canopy = canopy_layer(canvas)
    paint_canopy(image, canopy, canvas)
    image = camera(image, rng)
    return AerialScene(image, canvas.terrain, annotate(canvas, canopy), kind)


def new_canvas(rng: np.random.Generator, size: int) -> Canvas:
    """An empty canvas with this image's ground resolution and sun."""
    azimuth = rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(azimuth), np.sin(azimuth)])
    return Canvas(size, rng, scale=rng.uniform(*SCALE_RANGE), sun=sun, shadow_length=rng.uniform(0.25, 0.8))


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------
# annotations
def annotate(canvas: Canvas, canopy: np.ndarray) -> list[Instance]:
    """The oriented box of every object, with its occlusion by canopy and the `difficult` flag.

    difficult = long side < DIFFICULT_LENGTH px, or more than DIFFICULT_OCCLUSION of the box under canopy.
    """
    instances = []
    for item in canvas.objects:
        box = item.box()
        occlusion = covered_share(canopy, box)
        x0, x1, y0, y1 = item.sprite.extent
        difficult = max(x1 - x0, y1 - y0) < DIFFICULT_LENGTH or occlusion > DIFFICULT_OCCLUSION
        instances.append(Instance(item.category, box.reshape(-1), bool(difficult), float(occlusion)))
    return instances


def covered_share(coverage: np.ndarray, polygon: np.ndarray) -> float:
    """Mean of a coverage layer over the pixels of a polygon (computed in the polygon's bounding box only)."""
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int).clip(0)
    x1, y1 = (np.ceil(polygon.max(axis=0)).astype(int) + 1).clip(max=coverage.shape[::-1])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [to_cv(polygon - [x0, y0])], 1, cv2.LINE_8, SHIFT)
    inside = mask.astype(bool)
    if not inside.any():
        return 0.0
    return float(coverage[y0:y1, x0:x1][inside].mean())


# --------------------------------------------------------------------------------------------------------
# camera
def camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Illumination and sensor: colour balance, saturation, exposure, vignetting, haze, blur, noise, JPEG."""
    size = image.shape[0]
    luminance = image @ np.array([0.299, 0.587, 0.114], np.float32)
    saturation = rng.uniform(0.7, 1.2)
    image = luminance[..., None] + (image - luminance[..., None]) * saturation
    image *= rng.normal(1.0, 0.03, 3).astype(np.float32)  # white balance
    image = (image - 0.45) * rng.uniform(0.85, 1.2) + 0.45 + rng.uniform(-0.06, 0.06)
    image = np.clip(image, 0, 1) ** rng.uniform(0.85, 1.15)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    image *= (1 - rng.uniform(0, 0.35) * (xx**2 + yy**2))[..., None]
    if rng.random() < 0.35:
        haze = np.clip(0.5 + 0.5 * fractal_noise(rng, (size, size), size / 2, octaves=3), 0, 1)
        amount = rng.uniform(0.1, 0.4) * haze[..., None]
        image = image * (1 - amount) + amount * np.array([0.75, 0.77, 0.8], np.float32)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.35, 0.8))
    noise = pixel_noise(rng, (size, size), blur=0.0)[..., None] * rng.uniform(0.004, 0.02)
    pixels = to_uint8(image + noise)
    if rng.random() < 0.4:
        quality = int(rng.integers(60, 92))
        encoded = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        pixels = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])
    return pixels
