"""Data sets that ccaug renders itself: the embedded aerial scenes (see `ccaug.datasets.aerial`)."""

from ccaug.datasets.aerial import (
    AERIAL_CLASSES,
    ALLOWED_TERRAIN,
    SCENE_KINDS,
    TERRAIN_CLASSES,
    AerialScene,
    make_aerial,
    render_scene,
)

__all__ = [
    "AERIAL_CLASSES",
    "ALLOWED_TERRAIN",
    "SCENE_KINDS",
    "TERRAIN_CLASSES",
    "AerialScene",
    "make_aerial",
    "render_scene",
]
