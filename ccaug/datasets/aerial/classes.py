"""The vocabularies of the aerial data set, in one place: object classes, scene kinds, terrain ids, and which
terrain each object class may stand on.

`ALLOWED_TERRAIN` is the contract later parts of ccaug rely on to measure context coherence: every rendered
object has the terrain id under its centre in ``ALLOWED_TERRAIN[category]``, so a generated object whose
centre lands elsewhere (a ship on a road, a plane on a field) is out of context.

The terrain map records the *ground*: a tree canopy is id ``tree`` where it stands over unpaved ground
(grass, field, bare soil), but where it overhangs a road, a parking lot or any other paved surface the map
keeps that surface's id, so that a car half hidden under a tree still stands on ``road``.
"""

from __future__ import annotations

# DOTA v1.0 names, in DOTA's own class order.
AERIAL_CLASSES: tuple[str, ...] = (
    "plane",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "storage-tank",
    "helicopter",
)

SCENE_KINDS: tuple[str, ...] = ("harbour", "airport", "parking", "industrial", "rural")

# Terrain id -> name; ids are the pixel values of the terrain PNGs (written as terrain_classes.json).
TERRAIN_CLASSES: dict[int, str] = {
    0: "grass",
    1: "water",
    2: "road",
    3: "runway",
    4: "apron",  # aprons and taxiways: airside paved ground other than the runway
    5: "parking",
    6: "industrial",  # concrete pads of tank farms, depots and container yards
    7: "building",
    8: "tree",  # canopy over unpaved ground only (see the module docstring)
    9: "quay",  # quays, piers and pontoons
    10: "field",  # crop land
    11: "bare",  # sand, soil and gravel
    12: "pavement",  # sidewalks and plazas
    13: "helipad",
}
TERRAIN_IDS: dict[str, int] = {name: terrain_id for terrain_id, name in TERRAIN_CLASSES.items()}

(
    GRASS,
    WATER,
    ROAD,
    RUNWAY,
    APRON,
    PARKING,
    INDUSTRIAL,
    BUILDING,
    TREE,
    QUAY,
    FIELD,
    BARE,
    PAVEMENT,
    HELIPAD,
) = range(14)
UNPAVED: frozenset[int] = frozenset({GRASS, FIELD, BARE, TREE})

ALLOWED_TERRAIN: dict[str, frozenset[int]] = {
    "plane": frozenset({RUNWAY, APRON}),
    "small-vehicle": frozenset({ROAD, PARKING, APRON, INDUSTRIAL, QUAY}),
    "large-vehicle": frozenset({ROAD, PARKING, APRON, INDUSTRIAL, QUAY}),
    "ship": frozenset({WATER}),
    "storage-tank": frozenset({INDUSTRIAL}),
    "helicopter": frozenset({APRON, HELIPAD}),
}

# Long side of each class in pixels at the nominal ground resolution; every image draws a resolution jitter
# in SCALE_RANGE, so the smallest car is 10 * 0.85 = 8.5 px long.
OBJECT_LENGTH: dict[str, tuple[float, float]] = {
    "plane": (26.0, 64.0),
    "small-vehicle": (10.0, 15.0),
    "large-vehicle": (19.0, 32.0),
    "ship": (18.0, 70.0),
    "storage-tank": (11.0, 36.0),
    "helicopter": (17.0, 30.0),
}
SCALE_RANGE: tuple[float, float] = (0.85, 1.2)

# `difficult` rule: an object is difficult when its long side is under DIFFICULT_LENGTH pixels or when tree
# canopy covers more than DIFFICULT_OCCLUSION of its oriented box.
DIFFICULT_LENGTH = 10.0
DIFFICULT_OCCLUSION = 0.5
