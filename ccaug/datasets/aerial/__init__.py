"""The embedded aerial data set: procedural top-down scenes of harbours, airports, town parking, industry
and farmland, with six DOTA object classes placed by context rules and a per-pixel terrain map.

    from ccaug.datasets.aerial import make_aerial, render_scene
    dataset = make_aerial("aerial/", n=300, size=256, seed=0)   # DOTA folders + terrain maps
    scene = render_scene(7, size=512, kind="harbour")           # one scene in memory

Modules, in the order a scene is made: `classes` (vocabularies and rules), `canvas` (the scene under
construction), `scenes` (one composition per kind, built from `layout`), `objects` and `props` (sprites of
annotated objects and of distractors), `terrain` and `paint` (colour), `render` (the camera and the
annotations) and `build` (the data set on disk).
"""

from ccaug.datasets.aerial.build import make_aerial
from ccaug.datasets.aerial.classes import (
    AERIAL_CLASSES,
    ALLOWED_TERRAIN,
    DIFFICULT_LENGTH,
    DIFFICULT_OCCLUSION,
    SCENE_KINDS,
    TERRAIN_CLASSES,
    TERRAIN_IDS,
)
from ccaug.datasets.aerial.render import AerialScene, Instance, render_scene

__all__ = [
    "AERIAL_CLASSES",
    "ALLOWED_TERRAIN",
    "DIFFICULT_LENGTH",
    "DIFFICULT_OCCLUSION",
    "SCENE_KINDS",
    "TERRAIN_CLASSES",
    "TERRAIN_IDS",
    "AerialScene",
    "Instance",
    "make_aerial",
    "render_scene",
]
