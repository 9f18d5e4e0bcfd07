"""Painting the draw lists of a `Canvas` onto the ground image: markings, shadows, sprites and tree canopy.

The order matters and is the order of `render.render_scene`: ground paint (markings and wakes) first, then
every shadow at once (one multiplicative layer, so overlapping shadows do not double up), then the sprites
in placement order, then the tree canopy over everything, which is what partly hides some objects.
"""

from __future__ import annotations

import cv2
import numpy as np

from ccaug.datasets.aerial.canvas import SHIFT, Canvas, Item, to_cv
from ccaug.datasets.aerial.noise import fractal_noise, value_noise


def paint_markings(image: np.ndarray, canvas: Canvas) -> None:
    """Blend lane lines, bay lines, runway keys and ships' wakes into a float image, in place.

    Each marking is drawn into a colour layer and an anti-aliased coverage layer; the coverage is
    modulated by noise so that paint looks worn in places.
    """
    size = canvas.size
    colour = np.zeros((size, size, 3), np.float32)
    coverage = np.zeros((size, size), np.uint8)
    for marking in canvas.markings:
        _draw(colour, coverage, marking.points, marking.colour, marking.width, marking.alpha)
    for item in canvas.items:
        for part in item.sprite.parts:
            if part.alpha < 1:
                _draw(colour, coverage, item.to_screen(part.points), part.colour, None, part.alpha)
    if not coverage.any():
        return
    wear = np.clip(0.75 + 0.35 * value_noise(canvas.rng, (size, size), 6.0), 0.3, 1.0)
    alpha = (coverage.astype(np.float32) / 255 * wear)[..., None]
    image *= 1 - alpha
    image += alpha * colour


def _draw(colour: np.ndarray, coverage: np.ndarray, points, rgb, width: float | None, alpha: float) -> None:
    pts = [to_cv(points)]
    if width is None:
        cv2.fillPoly(colour, pts, tuple(map(float, rgb)), cv2.LINE_8, SHIFT)
        cv2.fillPoly(coverage, pts, int(255 * alpha), cv2.LINE_AA, SHIFT)
        return
    # Lines thinner than a pixel are drawn one pixel wide and fainter.
    thickness = max(1, round(width))
    strength = alpha * min(1.0, width)
    cv2.polylines(colour, pts, False, tuple(map(float, rgb)), thickness + 1, cv2.LINE_8, SHIFT)
    cv2.polylines(coverage, pts, False, int(255 * strength), thickness, cv2.LINE_AA, SHIFT)


def shadow_layer(canvas: Canvas) -> np.ndarray:
    """``(H, W)`` float32 in [0, 1]: where the sprites and trees shade the ground.

    A part from `base` to `height` above ground shades the convex hull of its outline moved by
    ``base * shadow_length`` and by ``height * shadow_length`` along the sun vector.
    """
    size = canvas.size
    mask = np.zeros((size, size), np.uint8)
    step = canvas.sun * canvas.shadow_length
    for item in canvas.items:
        for part in item.sprite.parts:
            if part.height <= 0 or part.alpha < 1:
                continue
            points = item.to_screen(part.points)
            both = np.concatenate([points + step * part.base, points + step * part.height]).astype(np.float32)
            hull = cv2.convexHull(both).reshape(-1, 2)
            cv2.fillPoly(mask, [to_cv(hull)], 255, cv2.LINE_AA, SHIFT)
    for tree in canvas.trees:
        centre = tree.centre + step * tree.radius * 1.6
        cv2.circle(mask, tuple(to_cv(centre)), int(tree.radius * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
    return cv2.GaussianBlur(mask, (0, 0), 0.7).astype(np.float32) / 255


def apply_shadows(image: np.ndarray, shadow: np.ndarray, strength: float) -> None:
    """Darken the image under the shadow layer, a little bluer than the lit ground (sky light)."""
    tint = np.array([1.0, 1.02, 1.12], np.float32)
    factor = 1 - strength * shadow[..., None] * (2 - tint)
    image *= factor


def draw_items(image: np.ndarray, items: list[Item]) -> None:
    """Fill every opaque part of every sprite into a uint8 image, anti-aliased, in order."""
    for item in items:
        for part in item.sprite.parts:
            if part.alpha < 1:
                continue
            colour = tuple(float(c) * 255 for c in part.colour)
            cv2.fillPoly(image, [to_cv(item.to_screen(part.points))], colour, cv2.LINE_AA, SHIFT)


def canopy_layer(canvas: Canvas) -> np.ndarray:
    """``(H, W)`` float32 coverage of tree crowns (each tree a few overlapping discs)."""
    size = canvas.size
    mask = np.zeros((size, size), np.uint8)
    one = 1 << SHIFT
    for tree in canvas.trees:
        cv2.circle(mask, tuple(to_cv(tree.centre)), int(tree.radius * one), 255, -1, cv2.LINE_AA, SHIFT)
    return mask.astype(np.float32) / 255


def paint_canopy(image: np.ndarray, canopy: np.ndarray, canvas: Canvas) -> None:
    """Composite tree crowns over a float image: clumpy dark greens, lit on the side facing the sun."""
    if not canopy.any():
        return
    size = canvas.size
    rng = canvas.rng
    clumps = fractal_noise(rng, (size, size), 4.0, octaves=2)
    tone = fractal_noise(rng, (size, size), 40.0, octaves=2)
    dark = np.array([0.10, 0.18, 0.08], np.float32) * rng.uniform(0.8, 1.2)
    light = np.array([0.26, 0.36, 0.16], np.float32) * rng.uniform(0.85, 1.15)
    mix = np.clip(0.45 + 0.22 * clumps + 0.12 * tone, 0, 1)[..., None]
    crown = dark + (light - dark) * mix
    # The rim facing the sun is lit: canopy minus canopy moved away from the sun.
    shift = -canvas.sun * 2.0
    moved = cv2.warpAffine(canopy, np.float32([[1, 0, -shift[0]], [0, 1, -shift[1]]]), (size, size))
    lit = np.clip(canopy - moved, 0, 1)
    crown *= (1 + 0.35 * lit)[..., None]
    inner = cv2.GaussianBlur(canopy, (0, 0), 1.5)
    crown *= (0.75 + 0.25 * inner)[..., None]
    alpha = canopy[..., None]
    image *= 1 - alpha
    image += alpha * crown
