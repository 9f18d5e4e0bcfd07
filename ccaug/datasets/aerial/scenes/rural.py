"""`rural`: a patchwork of crop fields and meadows with hedgerows and woods, a country road (straight or
winding) with the odd car or lorry, a farmstead with barns around a concrete yard, and sometimes a pond with
a small boat. Few objects and a lot of texture: the hard negatives of the data set."""

from __future__ import annotations

import numpy as np

from ccaug.datasets.aerial.canvas import Canvas, Frame
from ccaug.datasets.aerial.classes import FIELD, GRASS, INDUSTRIAL, ROAD, WATER
from ccaug.datasets.aerial.layout import (
    WHITE,
    building,
    light_for,
    plant,
    put,
    tree_cluster,
    tree_row,
    vehicle_category,
)
from ccaug.datasets.aerial.noise import fractal_noise, noise_1d
from ccaug.datasets.aerial.objects import make_sprite
from ccaug.datasets.aerial.scenes.common import extent, scene_frame


def compose(canvas: Canvas) -> None:
    rng, s, size = canvas.rng, canvas.scale, canvas.size
    frame = scene_frame(canvas)
    reach = extent(canvas)
    parcels = subdivide(
        rng, (-reach, reach, -reach, reach), rng.uniform(50, 90) * s, rng.uniform(130, 220) * s
    )
    for index, (u0, u1, v0, v1) in enumerate(parcels):
        terrain = FIELD if rng.random() < 0.7 else GRASS
        canvas.fill(frame.rect(u0, u1, v0, v1), terrain, variant=1 + index % 254)
        if rng.random() < 0.3:  # a hedgerow along one edge
            edge = v0 if rng.random() < 0.5 else v1
            tree_row(
                canvas,
                frame.point(u0, edge),
                frame.point(u1, edge),
                rng.uniform(5, 9) * s,
                rng.uniform(3, 5) * s,
                keep=0.7,
            )
    for _ in range(rng.poisson(1.2 * (size / 256) ** 2)):
        wood(canvas, rng.uniform(0, size, 2))
    # Ground first, objects last, so that nothing is drawn over an object's ground after it is placed.
    # One road per 256 px of image side, on average: a larger scene shows more of the same countryside.
    paths = [country_road(canvas, frame) for _ in range(1 + rng.poisson(max(0.0, size / 256 - 1)))]
    for path in paths:
        if rng.random() < 0.75:
            farmstead(canvas, frame, path)
    for _ in range(int(rng.random() < 0.4) + rng.poisson(0.1 * max(0.0, (size / 256) ** 2 - 1))):
        pond(canvas, rng.uniform(0.2, 0.8, 2) * size)
    for path in paths:
        drive(canvas, path, count=int(rng.integers(1, 5) + rng.poisson(2 * size / 256)))


def subdivide(
    rng: np.random.Generator, box, smallest: float, largest: float
) -> list[tuple[float, float, float, float]]:
    """Split a rectangle recursively (across its longer side) until parts are between the two sizes."""
    u0, u1, v0, v1 = box
    long_u = (u1 - u0) >= (v1 - v0)
    extent_long = (u1 - u0) if long_u else (v1 - v0)
    if extent_long < largest and (extent_long < 2 * smallest or rng.random() < 0.4):
        return [box]
    cut = rng.uniform(0.3, 0.7) * extent_long
    if long_u:
        return subdivide(rng, (u0, u0 + cut, v0, v1), smallest, largest) + subdivide(
            rng, (u0 + cut, u1, v0, v1), smallest, largest
        )
    return subdivide(rng, (u0, u1, v0, v0 + cut), smallest, largest) + subdivide(
        rng, (u0, u1, v0 + cut, v1), smallest, largest
    )


def wood(canvas: Canvas, centre) -> None:
    """A copse: a dense clump of crowns."""
    rng, s = canvas.rng, canvas.scale
    spread = rng.uniform(8, 30) * s
    count = int(rng.integers(6, 30))
    tree_cluster(canvas, centre, spread, count, rng.uniform(4, 8) * s)


def pond(canvas: Canvas, centre) -> None:
    """An irregular pond (a thresholded noise blob) with trees on its bank and maybe a small boat."""
    rng, s, size = canvas.rng, canvas.scale, canvas.size
    radius = rng.uniform(25, 50) * s
    yy, xx = np.mgrid[0:size, 0:size]
    distance = np.hypot(xx - centre[0], yy - centre[1]) / radius
    blob = distance + 0.25 * fractal_noise(rng, (size, size), radius, octaves=3) < 1
    blob &= np.isin(canvas.terrain, [FIELD, GRASS])  # roads and farmyards stay dry
    canvas.terrain[blob] = WATER
    for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(2, 7))):
        plant(
            canvas,
            np.asarray(centre) + 1.15 * radius * np.array([np.cos(angle), np.sin(angle)]),
            rng.uniform(4, 7) * s,
        )
    if rng.random() < 0.5:
        put(canvas, "ship", centre, rng.uniform(-np.pi, np.pi), length=rng.uniform(18, 22) * s)


def country_road(canvas: Canvas, frame: Frame) -> np.ndarray:
    """A two-lane road through the scene, winding or straight; returns its centre line (K, 2) on screen."""
    rng, s = canvas.rng, canvas.scale
    reach = extent(canvas)
    u = np.linspace(-reach, reach, 120)
    v = rng.uniform(-0.3, 0.3) * canvas.size + np.zeros_like(u)
    if rng.random() < 0.5:  # roads cross the scene in both directions
        frame = frame.turned()
    if rng.random() < 0.6:
        v += rng.uniform(10, 40) * s * noise_1d(rng, u, rng.uniform(120, 250) * s, octaves=2)
    path = frame.point(u, v)
    width = rng.uniform(13, 16) * s
    canvas.stroke(path, width + 4 * s, GRASS)  # mown verges
    canvas.stroke(path, width, ROAD)
    for start in range(0, len(path) - 1, 2):
        canvas.paint(path[start : start + 2], WHITE, width=0.9 * s, alpha=0.8)
    return path


def drive(canvas: Canvas, path: np.ndarray, count: int) -> None:
    """Vehicles on the road, in their lane (right-hand traffic), along the local direction of the road."""
    rng, s = canvas.rng, canvas.scale
    for _ in range(count):
        k = int(rng.integers(0, len(path) - 1))
        direction = path[k + 1] - path[k]
        angle = float(np.arctan2(direction[1], direction[0]))
        if rng.random() < 0.5:
            angle += np.pi
        across = np.array([-np.sin(angle), np.cos(angle)])
        centre = (path[k] + path[k + 1]) / 2 + across * 3.5 * s
        put(canvas, vehicle_category(rng, 0.2), centre, angle + rng.normal(0, 0.02))


def farmstead(canvas: Canvas, frame: Frame, path: np.ndarray) -> None:
    """Barns and a farmhouse around a concrete yard beside the road, with vehicles in the yard."""
    rng, s = canvas.rng, canvas.scale
    k = int(rng.integers(len(path) // 4, 3 * len(path) // 4))
    direction = path[k + 1] - path[k]
    angle = float(np.arctan2(direction[1], direction[0]))
    side = rng.choice([-1, 1])
    across = np.array([-np.sin(angle), np.cos(angle)]) * side
    depth, length = rng.uniform(40, 70) * s, rng.uniform(50, 90) * s
    yard = Frame(tuple(path[k] + across * (depth / 2 + 11 * s)), angle)
    canvas.fill(
        yard.rect(-length / 2, length / 2, -depth / 2, depth / 2),
        INDUSTRIAL,
        variant=int(rng.integers(1, 255)),
    )
    for _ in range(int(rng.integers(2, 5))):
        at = yard.point(rng.uniform(-0.6, 0.6) * length, side * rng.uniform(0.2, 0.9) * depth)
        barn = rng.uniform(18, 40) * s
        building(
            canvas,
            at,
            angle + rng.choice([0, np.pi / 2]) + rng.normal(0, 0.03),
            barn,
            barn * rng.uniform(0.4, 0.7),
        )
    for _ in range(int(rng.integers(1, 5))):
        heading = angle + rng.choice([0, np.pi / 2, np.pi, -np.pi / 2])
        category = vehicle_category(rng, 0.4)
        sprite = make_sprite(category, rng, s, light_for(canvas, heading))
        canvas.place(
            category,
            sprite,
            yard.point(rng.uniform(-0.45, 0.45) * length, rng.uniform(-0.4, 0.4) * depth),
            heading,
        )
    tree_cluster(
        canvas, yard.point(length / 2 + 10 * s, 0), 10 * s, int(rng.integers(2, 8)), rng.uniform(4, 7) * s
    )
