"""Scene compositions, one module per kind; `compose` lays out a canvas of the given kind."""

from __future__ import annotations

from ccaug.datasets.aerial.canvas import Canvas
from ccaug.datasets.aerial.scenes import airport, harbour, industry, rural, urban

COMPOSERS = {
    "harbour": harbour.compose,
    "airport": airport.compose,
    "parking": urban.compose,
    "industrial": industry.compose,
    "rural": rural.compose,
}


def compose(canvas: Canvas, kind: str) -> None:
    """Lay out a scene of `kind` (one of `SCENE_KINDS`) on an empty canvas."""
    COMPOSERS[kind](canvas)
