"""Procedural noise: multi-octave value noise made by upsampling random grids with `cv2.resize`.

Feature sizes are given in pixels, not as a count of cells, so that a 1024-pixel scene has the same texture
grain as a 256-pixel one (the same ground resolution), only more of it.
"""

from __future__ import annotations

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, shape: tuple[int, int], feature: float) -> np.ndarray:
    """``(H, W)`` float32 smooth noise, unit variance at grid points, one random value every `feature` px."""
    height, width = shape
    rows = max(2, int(np.ceil(height / feature)) + 1)
    cols = max(2, int(np.ceil(width / feature)) + 1)
    grid = rng.standard_normal((rows, cols)).astype(np.float32)
    # Resize a slightly larger grid and crop, so that the cell size is `feature` whatever the image size.
    big = cv2.resize(
        grid, (int((cols - 1) * feature), int((rows - 1) * feature)), interpolation=cv2.INTER_CUBIC
    )
    return big[:height, :width]


def fractal_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    feature: float,
    octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """``(H, W)`` float32 fractal (fBm) noise with zero mean and unit standard deviation.

    Octave ``k`` has features of ``feature / 2**k`` px and weight ``persistence**k``; octaves finer than
    2 px are dropped.
    """
    total = np.zeros(shape, np.float32)
    weight = 1.0
    for octave in range(octaves):
        size = feature / 2**octave
        if size < 2:
            break
        total += weight * value_noise(rng, shape, size)
        weight *= persistence
    return (total - total.mean()) / (total.std() + 1e-6)


def pixel_noise(rng: np.random.Generator, shape: tuple[int, int], blur: float = 0.0) -> np.ndarray:
    """``(H, W)`` float32 white noise (unit variance), optionally blurred into a fine grain."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if blur > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), blur)
        noise /= noise.std() + 1e-6
    return noise


def noise_1d(rng: np.random.Generator, positions: np.ndarray, feature: float, octaves: int = 3) -> np.ndarray:
    """Smooth 1-D fractal noise evaluated at `positions` (px), zero-mean, roughly unit amplitude.

    Used for irregular shorelines and winding roads.
    """
    positions = np.asarray(positions, dtype=np.float64)
    low, high = positions.min() - feature, positions.max() + feature
    total = np.zeros_like(positions)
    weight = 1.0
    for octave in range(octaves):
        size = feature / 2**octave
        knots = np.arange(low, high + size, size)
        total += weight * np.interp(positions, knots, rng.standard_normal(len(knots)))
        weight *= 0.5
    return total
