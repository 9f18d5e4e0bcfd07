"""What every scene kind shares: its frame, its extent, and a street grid that cuts land into blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccaug.datasets.aerial.canvas import Canvas, Frame
from ccaug.datasets.aerial.classes import PAVEMENT, ROAD
from ccaug.datasets.aerial.layout import WHITE, Road, road


def scene_frame(canvas: Canvas) -> Frame:
    """The frame a scene is laid out in: centred near the image centre, at any angle; a third of the scenes
    are aligned with the image axes, as north-up imagery of planned towns often is."""
    rng = canvas.rng
    centre = canvas.size / 2 + rng.uniform(-0.1, 0.1, 2) * canvas.size
    if rng.random() < 0.65:
        angle = rng.uniform(-np.pi, np.pi)
    else:
        angle = rng.choice([0, 0.5, 1, -0.5]) * np.pi + rng.normal(0, 0.02)
    return Frame((float(centre[0]), float(centre[1])), float(angle))


def visible(canvas: Canvas, frame: Frame) -> tuple[float, float, float, float]:
    """``u_min, u_max, v_min, v_max``: the frame coordinates the image covers."""
    corners = frame.local(np.array([[0, 0], [canvas.size, 0], [canvas.size, canvas.size], [0, canvas.size]]))
    return corners[:, 0].min(), corners[:, 0].max(), corners[:, 1].min(), corners[:, 1].max()


def extent(canvas: Canvas) -> float:
    """Half the side of the square (in frame coordinates) that covers the image whatever the frame angle."""
    return 0.85 * canvas.size


@dataclass
class Block:
    """A rectangle of land between streets, in frame coordinates."""

    u0: float
    u1: float
    v0: float
    v1: float

    def centre(self, frame: Frame) -> np.ndarray:
        return frame.point((self.u0 + self.u1) / 2, (self.v0 + self.v1) / 2)

    @property
    def size(self) -> tuple[float, float]:
        return self.u1 - self.u0, self.v1 - self.v0


def positions(
    rng: np.random.Generator, start: float, stop: float, spacing: tuple[float, float]
) -> list[float]:
    """Road positions from `start` to `stop`, `spacing` apart (a uniform range), the first one at random."""
    found = []
    position = start + rng.uniform(0.2, 1.0) * spacing[0]
    while position < stop:
        found.append(position)
        position += rng.uniform(*spacing)
    return found


def street_grid(
    canvas: Canvas,
    frame: Frame,
    spacing_u: tuple[float, float],
    spacing_v: tuple[float, float],
    *,
    v_range: tuple[float, float] | None = None,
    u_range: tuple[float, float] | None = None,
    wide_share: float = 0.2,
    parking_share: float = 0.3,
    sidewalk: float = 0.0,
) -> tuple[list[Road], list[Block]]:
    """Streets along u and across it, cutting the frame (or the part `u_range` x `v_range`) into blocks.

    Spacings are in px at the nominal ground resolution. Streets are drawn in segments between crossings,
    so that lane markings stop at junctions; some junctions get zebra crossings.
    """
    rng, s = canvas.rng, canvas.scale
    reach = extent(canvas)
    v_lo, v_hi = v_range if v_range is not None else (-reach, reach)
    u_lo, u_hi = u_range if u_range is not None else (-reach, reach)
    along = [
        _street(rng, v, s, wide_share, parking_share)
        for v in positions(rng, v_lo, v_hi, _scaled(spacing_v, s))
    ]
    across = [
        _street(rng, u, s, wide_share, parking_share)
        for u in positions(rng, u_lo, u_hi, _scaled(spacing_u, s))
    ]
    # Where each street cuts the other direction's streets and blocks: (position, half width incl. sidewalk).
    cuts_u = [(u_lo, 0.0)] + [(street.at, street.half + sidewalk) for street in across] + [(u_hi, 0.0)]
    cuts_v = [(v_lo, 0.0)] + [(street.at, street.half + sidewalk) for street in along] + [(v_hi, 0.0)]
    roads: list[Road] = []
    for street in along:
        for (a, ha), (b, hb) in zip(cuts_u, cuts_u[1:]):
            roads.append(
                road(canvas, frame, street.at, a + ha, b - hb, street.lanes, street.parking, sidewalk)
            )
    turned = frame.turned()  # its u is our v, its v is minus our u
    for street in across:
        for (a, ha), (b, hb) in zip(cuts_v, cuts_v[1:]):
            roads.append(
                road(canvas, turned, -street.at, a + ha, b - hb, street.lanes, street.parking, sidewalk)
            )
    for street_u in across:
        for street_v in along:
            _junction(canvas, frame, street_u.at, street_v.at, street_u.half, street_v.half, sidewalk)
    blocks = [
        Block(a + ha, b - hb, c + hc, d - hd)
        for (a, ha), (b, hb) in zip(cuts_u, cuts_u[1:])
        for (c, hc), (d, hd) in zip(cuts_v, cuts_v[1:])
    ]
    return roads, [block for block in blocks if min(block.size) > 20 * s]


@dataclass
class _Street:
    at: float  # position across the street's direction
    lanes: int
    parking: bool
    half: float  # half width of the carriageway and parking lanes


def _street(
    rng: np.random.Generator, at: float, scale: float, wide_share: float, parking_share: float
) -> _Street:
    lanes = 4 if rng.random() < wide_share else 2
    parking = bool(rng.random() < parking_share)
    return _Street(at, lanes, parking, lanes * 4.0 * scale + (7.0 * scale if parking else 0.0))


def _scaled(spacing: tuple[float, float], scale: float) -> tuple[float, float]:
    return spacing[0] * scale, spacing[1] * scale


def _junction(
    canvas: Canvas, frame: Frame, u: float, v: float, half_u: float, half_v: float, sidewalk: float
) -> None:
    """Fill a crossing: sidewalk corners, both carriageways, and zebra stripes on some approaches."""
    canvas.fill(
        frame.rect(
            u - half_u - sidewalk, u + half_u + sidewalk, v - half_v - sidewalk, v + half_v + sidewalk
        ),
        PAVEMENT,
    )
    canvas.fill(frame.rect(u - half_u, u + half_u, v - half_v - sidewalk, v + half_v + sidewalk), ROAD)
    canvas.fill(frame.rect(u - half_u - sidewalk, u + half_u + sidewalk, v - half_v, v + half_v), ROAD)
    if sidewalk <= 0 or canvas.rng.random() < 0.5:
        return
    s = canvas.scale
    for side in (-1, 1):
        u_stripe = u + side * (half_u + 3.0 * s)
        for v_stripe in np.arange(v - half_v + 1.5 * s, v + half_v - 1.0 * s, 2.2 * s):
            canvas.paint(
                frame.point([u_stripe - 2.2 * s, u_stripe + 2.2 * s], [v_stripe, v_stripe]),
                WHITE,
                width=1.0 * s,
            )
