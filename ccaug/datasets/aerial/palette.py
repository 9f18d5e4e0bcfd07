"""Colours of things seen from above (RGB in [0, 1]) and small helpers to draw from them."""

from __future__ import annotations

import numpy as np

Palette = list[tuple[tuple[float, float, float], float]]  # (colour, weight)

CAR: Palette = [
    ((0.90, 0.90, 0.88), 0.22),  # white
    ((0.07, 0.07, 0.08), 0.14),  # black
    ((0.68, 0.69, 0.70), 0.18),  # silver
    ((0.40, 0.41, 0.43), 0.12),  # grey
    ((0.60, 0.10, 0.09), 0.08),  # red
    ((0.11, 0.19, 0.42), 0.08),  # blue
    ((0.12, 0.25, 0.16), 0.04),  # dark green
    ((0.72, 0.64, 0.48), 0.04),  # beige
    ((0.85, 0.72, 0.12), 0.03),  # yellow
    ((0.35, 0.22, 0.14), 0.03),  # brown
    ((0.45, 0.62, 0.78), 0.04),  # light blue
]
CAB: Palette = [
    ((0.88, 0.88, 0.86), 0.35),
    ((0.62, 0.08, 0.08), 0.15),
    ((0.12, 0.22, 0.50), 0.15),
    ((0.85, 0.70, 0.10), 0.08),
    ((0.10, 0.35, 0.18), 0.08),
    ((0.25, 0.25, 0.27), 0.12),
    ((0.90, 0.45, 0.08), 0.07),
]
# Shipping containers and truck trailers share this palette on purpose: a detector must tell a lorry from a
# stack of containers by its cab and its context, not by colour.
CONTAINER: Palette = [
    ((0.70, 0.16, 0.12), 0.18),  # rust red
    ((0.13, 0.28, 0.55), 0.16),  # blue
    ((0.18, 0.45, 0.28), 0.10),  # green
    ((0.86, 0.86, 0.84), 0.16),  # white
    ((0.60, 0.60, 0.62), 0.12),  # grey
    ((0.88, 0.52, 0.12), 0.10),  # orange
    ((0.55, 0.40, 0.25), 0.08),  # brown
    ((0.85, 0.75, 0.20), 0.05),  # yellow
    ((0.30, 0.60, 0.70), 0.05),  # teal
]
HULL: Palette = [
    ((0.35, 0.12, 0.10), 0.25),  # oxide red
    ((0.12, 0.14, 0.18), 0.20),  # black
    ((0.15, 0.22, 0.38), 0.15),  # navy
    ((0.45, 0.47, 0.48), 0.15),  # grey
    ((0.18, 0.32, 0.22), 0.10),  # green
    ((0.75, 0.75, 0.72), 0.15),  # white
]
DECK: Palette = [
    ((0.45, 0.20, 0.15), 0.3),
    ((0.25, 0.40, 0.28), 0.25),
    ((0.50, 0.50, 0.48), 0.25),
    ((0.55, 0.42, 0.30), 0.2),
]
BOAT: Palette = [
    ((0.94, 0.94, 0.92), 0.6),
    ((0.80, 0.82, 0.84), 0.15),
    ((0.15, 0.30, 0.55), 0.1),
    ((0.65, 0.12, 0.10), 0.1),
    ((0.85, 0.75, 0.30), 0.05),
]
AIRCRAFT: Palette = [
    ((0.93, 0.93, 0.93), 0.6),
    ((0.80, 0.81, 0.83), 0.2),
    ((0.55, 0.57, 0.58), 0.12),  # military grey
    ((0.36, 0.40, 0.30), 0.08),  # olive
]
LIVERY: Palette = [
    ((0.10, 0.20, 0.50), 0.3),
    ((0.70, 0.10, 0.10), 0.25),
    ((0.10, 0.45, 0.35), 0.15),
    ((0.85, 0.55, 0.10), 0.15),
    ((0.35, 0.35, 0.38), 0.15),
]
HELICOPTER: Palette = [
    ((0.90, 0.90, 0.88), 0.25),
    ((0.25, 0.32, 0.20), 0.2),
    ((0.75, 0.12, 0.10), 0.15),
    ((0.90, 0.70, 0.10), 0.1),
    ((0.15, 0.25, 0.50), 0.15),
    ((0.30, 0.30, 0.32), 0.15),
]
TANK: Palette = [
    ((0.90, 0.90, 0.88), 0.45),
    ((0.78, 0.78, 0.76), 0.25),
    ((0.80, 0.76, 0.62), 0.15),
    ((0.62, 0.72, 0.62), 0.1),
    ((0.55, 0.56, 0.58), 0.05),
]
ROOF: Palette = [
    ((0.62, 0.30, 0.22), 0.22),  # terracotta
    ((0.38, 0.38, 0.40), 0.22),  # slate
    ((0.70, 0.70, 0.68), 0.18),  # concrete
    ((0.25, 0.26, 0.28), 0.12),  # dark
    ((0.85, 0.85, 0.82), 0.10),  # white membrane
    ((0.30, 0.45, 0.42), 0.06),  # green metal
    ((0.30, 0.38, 0.55), 0.05),  # blue metal
    ((0.55, 0.45, 0.35), 0.05),  # brown
]
GLASS = (0.08, 0.09, 0.11)
DARK = (0.14, 0.14, 0.15)


def pick(rng: np.random.Generator, palette: Palette, jitter: float = 0.06) -> np.ndarray:
    """A colour from a weighted palette, each channel scaled by ``1 +- jitter``."""
    colours, weights = zip(*palette)
    weights = np.asarray(weights) / np.sum(weights)
    colour = np.asarray(colours[rng.choice(len(colours), p=weights)])
    return np.clip(colour * rng.uniform(1 - jitter, 1 + jitter, 3), 0, 1)


def shade(colour, factor: float) -> np.ndarray:
    return np.clip(np.asarray(colour, dtype=np.float64) * factor, 0, 1)
