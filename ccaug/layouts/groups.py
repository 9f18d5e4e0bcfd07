"""Arrangements of same-class instances: fitting rows and clusters from real layouts, and laying them out.

Real remote-sensing scenes are full of groups: cars parked side by side in rows, ships moored abreast at a
quay, storage tanks on a grid, planes lined up along an apron. Sampling every instance independently loses
all of that, so the layout model fits, per class, how instances sit next to their neighbours, and the
sampler places whole groups.

Fitting. Two instances of a class are *linked* when they are aligned (axial orientation difference below
``align_degrees``; near-square boxes, whose angle means nothing, count as aligned), close (centre distance
below ``link_distance`` long sides) and among each other's nearest neighbours (distance at most
``near_factor`` times the nearest-neighbour distance of either one, so that a car links to the cars beside it
but not to the one parked back to back with it two bay depths away). Connected components of links are the
groups. For each group:

* the *row direction* is the most common link direction (axial mode), and *row links* are the links
  within ``align_degrees`` of it;
* ``phi`` is the angle between a row link and the long axis of the instance, folded to ``0..90`` degrees:
  about 90 for cars or ships side by side, about 0 for a queue nose to tail;
* ``gap`` is a row link's centre distance divided by the mean extent of its two boxes along the link (1 is
  touching, 1.3 is a gap of 30 % of a box);
* ``lines``: centres projected across the row direction split into parallel lines where they jump by more
  than half a row step (a tank farm is a grid of several lines, a row of cars is one); ``line_gap`` is the
  distance between neighbouring lines over the boxes' extent across the row;
* ``theta_jitter`` and ``size_jitter`` are the spreads of orientation (degrees) and log long side inside
  groups.

Placing. A group of ``size`` instances in ``lines`` lines is a small lattice around an anchor: columns step by
``gap`` box extents along the direction ``theta + phi`` (phi with a random sign, so echelon parking
appears in both hands), lines step by ``line_gap`` extents across it. Members share the group's box with
small orientation and size jitter. A singleton is the one-instance, one-line case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
SQUARE_ASPECT = 1.15  # boxes closer to square than this have no meaningful orientation
NEIGHBOURS = 8  # candidates per instance: enough for a row (2), a grid (4) or a hexagonal pack (6)


@dataclass(frozen=True)
class GroupSettings:
    """How neighbours are linked into groups when a layout model is fitted."""

    align_degrees: float = 15.0
    link_distance: float = 2.5  # long sides
    near_factor: float = 1.3  # times the nearest-neighbour distance

    def __post_init__(self) -> None:
        if not 0 < self.align_degrees <= 90:
            raise ValueError(f"align_degrees is an angle in (0, 90], not {self.align_degrees}")
        if not self.link_distance > 0:
            raise ValueError(f"link_distance is a positive number of long sides, not {self.link_distance}")
        if not self.near_factor >= 1:
            raise ValueError(
                f"near_factor is at least 1 (the nearest neighbour itself), not {self.near_factor}"
            )


@dataclass
class GroupStats:
    """One class's fitted arrangement; angles in degrees.

    ``shapes`` is ``(G, 2)`` int: ``size, lines`` of each fitted group (G groups, at most a few hundred kept);
    ``gap`` and ``phi`` are ``(L,)`` samples over row links, ``line_gap`` over neighbouring lines.
    ``neighbours`` holds, for reporting, quantiles (`QUANTILES`) of every instance's nearest same-class
    neighbour: ``gap``, ``dtheta`` and ``phi``.
    """

    fraction: float = 0.0  # of the class's instances that belong to a group of two or more
    shapes: np.ndarray | None = None
    gap: np.ndarray | None = None
    phi: np.ndarray | None = None
    line_gap: np.ndarray | None = None
    theta_jitter: float = 0.0
    size_jitter: float = 0.0
    neighbours: dict[str, list[float]] | None = None

    def __post_init__(self) -> None:
        self.shapes = _array(self.shapes, np.int64).reshape(-1, 2)
        self.gap, self.phi, self.line_gap = (
            _array(v, np.float64) for v in (self.gap, self.phi, self.line_gap)
        )
        self.neighbours = dict(self.neighbours or {})
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"group fraction must be in [0, 1], not {self.fraction}")
        if (self.shapes < 1).any():
            raise ValueError("group sizes and line counts must be at least 1")
        if len(self.gap) != len(self.phi):
            raise ValueError(f"{len(self.gap)} gap samples but {len(self.phi)} phi samples")
        for name in ("gap", "phi", "line_gap"):
            values = getattr(self, name)
            if not np.isfinite(values).all() or (values < 0).any():
                raise ValueError(f"group {name} samples must be finite and non-negative")

    @property
    def mean_size(self) -> float:
        return float(self.shapes[:, 0].mean()) if len(self.shapes) else 1.0

    def unit_probability(self) -> float:
        """Chance that a newly drawn unit is a group rather than a single instance.

        Groups are drawn among units, but ``fraction`` counts instances: with probability q a unit is a group
        of mean size m, so the instance fraction is ``q m / (q m + 1 - q)``; solved for q.
        """
        if len(self.shapes) == 0 or self.fraction <= 0:
            return 0.0
        m = self.mean_size
        return float(self.fraction / (m * (1 - self.fraction) + self.fraction))


def _array(values, dtype) -> np.ndarray:
    return np.asarray(values if values is not None else [], dtype=dtype)


# --------------------------------------------------------------------------------------------------------
# fitting
def fit_groups(
    boxes: np.ndarray, image_of: np.ndarray, settings: GroupSettings, rng: np.random.Generator, keep: int
) -> GroupStats:
    """Fit one class's arrangement from its ``(N, 5)`` le90 boxes and ``(N,)`` image ids.

    At most `keep` samples of each distribution are stored (drawn with `rng`), to keep the model file small.
    """
    groups, neighbours = [], []
    order = np.argsort(image_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(image_of[order]) != 0])
    for rows in np.split(order, starts[1:]):
        if len(rows) >= 2:
            image_groups, image_neighbours = _image_groups(boxes[rows], settings)
            groups.extend(image_groups)
            neighbours.append(image_neighbours)
    if not neighbours:
        return GroupStats()
    grouped = sum(int(group["shape"][0]) for group in groups)
    shapes = np.array([group["shape"] for group in groups]).reshape(-1, 2)
    return GroupStats(
        fraction=round(grouped / len(boxes), 4),
        shapes=_subsample(shapes, rng, keep),
        gap=_subsample(_concat(groups, "gap"), rng, keep).round(3),
        phi=_subsample(_concat(groups, "phi"), rng, keep).round(2),
        line_gap=_subsample(_concat(groups, "line_gap"), rng, keep).round(3),
        theta_jitter=round(_rms(_concat(groups, "dtheta")), 3),
        size_jitter=round(_rms(_concat(groups, "dsize")), 4),
        neighbours=_neighbour_quantiles(np.concatenate(neighbours)),
    )


def _image_groups(boxes: np.ndarray, settings: GroupSettings) -> tuple[list[dict], np.ndarray]:
    """Groups of one image's instances of one class, and ``(n, 3)`` nearest-neighbour gap, dtheta, phi.

    Only the `NEIGHBOURS` nearest instances of each are candidates (a KD tree), so a DOTA image with
    thousands of cars costs O(n), not O(n^2).
    """
    n = len(boxes)
    centre = boxes[:, :2]
    k = min(NEIGHBOURS + 1, n)
    distance, index = cKDTree(centre).query(centre, k=k)
    first, second, distance = np.repeat(np.arange(n), k), index.ravel(), distance.ravel()
    other = first != second
    pairs = _Pairs.measure(boxes, first[other], second[other], distance[other])

    leading = np.unique(pairs.first, return_index=True)[1]  # kd-tree rows are sorted by distance
    nearest = np.full(n, np.inf)
    nearest[pairs.first[leading]] = pairs.distance[leading]
    near = pairs.distance <= settings.near_factor * nearest[pairs.first]
    long = boxes[:, 2]
    link = (
        near
        & (pairs.dtheta < np.radians(settings.align_degrees))
        & (pairs.distance < settings.link_distance * np.maximum(long[pairs.first], long[pairs.second]))
    )
    links = pairs.select(link).undirected()
    count, component = connected_components(
        coo_matrix((np.ones(len(links.first)), (links.first, links.second)), shape=(n, n)), directed=False
    )
    groups = []
    link_component = component[links.first]
    for label in np.flatnonzero(np.bincount(component, minlength=count) >= 2):
        members = np.flatnonzero(component == label)
        groups.append(_describe_group(members, links.select(link_component == label), boxes, settings))
    closest = pairs.select(leading)
    neighbours = np.column_stack([closest.gap, np.degrees(closest.dtheta), np.degrees(closest.phi)])
    return groups, neighbours


@dataclass
class _Pairs:
    """Measurements of ``(P,)`` instance pairs ``first -> second`` of one image; angles in radians."""

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray  # centre distance, px
    direction: np.ndarray  # of the offset from first to second
    phi: np.ndarray  # offset direction against first's long axis, folded to [0, pi/2]
    dtheta: np.ndarray  # axial orientation difference, [0, pi/2]; 0 between near-square boxes
    gap: np.ndarray  # distance over the mean extent of both boxes along the offset

    @classmethod
    def measure(
        cls, boxes: np.ndarray, first: np.ndarray, second: np.ndarray, distance: np.ndarray
    ) -> _Pairs:
        long, short, theta = boxes[:, 2], np.maximum(boxes[:, 3], 1e-6), boxes[:, 4]
        offset = boxes[second, :2] - boxes[first, :2]
        direction = np.arctan2(offset[:, 1], offset[:, 0])
        phi_first = _fold_quarter(direction - theta[first])
        phi_second = _fold_quarter(direction - theta[second])
        square = long / short < SQUARE_ASPECT
        dtheta = np.where(square[first] & square[second], 0.0, _fold_quarter(theta[first] - theta[second]))
        extent = (
            long[first] * np.cos(phi_first)
            + short[first] * np.sin(phi_first)
            + long[second] * np.cos(phi_second)
            + short[second] * np.sin(phi_second)
        ) / 2
        return cls(first, second, distance, direction, phi_first, dtheta, distance / np.maximum(extent, 1e-9))

    def select(self, keep: np.ndarray) -> _Pairs:
        return _Pairs(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))

    def undirected(self) -> _Pairs:
        """Each pair once, as found from its lower index (a pair found both ways is not counted twice)."""
        low, high = np.minimum(self.first, self.second), np.maximum(self.first, self.second)
        once = np.unique(low * (high.max(initial=0) + 1) + high, return_index=True)[1]
        return self.select(once)


def _describe_group(members: np.ndarray, links: _Pairs, boxes: np.ndarray, settings: GroupSettings) -> dict:
    """Shape, row-link samples, lines and jitter of one connected group (see the module docstring)."""
    tolerance = np.radians(settings.align_degrees)
    close = _fold_half(links.direction[:, None] - links.direction[None, :]) < tolerance  # (L, L)
    mode = int(close.sum(axis=1).argmax())
    row = links.select(close[mode])
    row_direction = _axial_mean(row.direction)

    centre = boxes[members, :2]
    across = np.array([-np.sin(row_direction), np.cos(row_direction)])
    position = centre @ across
    order = np.argsort(position)
    breaks = np.flatnonzero(np.diff(position[order]) > 0.5 * np.median(row.distance))
    line_of = np.zeros(len(members), dtype=np.int64)
    line_of[order] = np.searchsorted(breaks, np.arange(len(members)), side="left")
    lines = len(breaks) + 1

    long, short, theta = boxes[members, 2], np.maximum(boxes[members, 3], 1e-6), boxes[members, 4]
    row_phi = _fold_quarter(row_direction - theta)
    extent_across = float(np.mean(long * np.sin(row_phi) + short * np.cos(row_phi)))
    line_centres = np.array([position[line_of == line].mean() for line in range(lines)])
    return {
        "shape": (len(members), lines),
        "gap": row.gap,
        "phi": np.degrees(row.phi),
        "line_gap": np.diff(np.sort(line_centres)) / max(extent_across, 1e-6),
        "dtheta": np.degrees(_fold_half(theta - _axial_mean(theta))) * (long / short >= SQUARE_ASPECT),
        "dsize": np.log(long) - np.log(long).mean(),
    }


def _neighbour_quantiles(neighbours: np.ndarray) -> dict[str, list[float]]:
    values = np.quantile(neighbours, QUANTILES, axis=0).T.round(3)
    return {"gap": values[0].tolist(), "dtheta": values[1].tolist(), "phi": values[2].tolist()}


def _fold_quarter(angle: np.ndarray) -> np.ndarray:
    """Axial angle difference folded into ``[0, pi/2]`` (a box is the same after a half turn)."""
    return np.abs(_fold_half(angle))


def _fold_half(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped into ``[-pi/2, pi/2)``."""
    return np.mod(angle + np.pi / 2, np.pi) - np.pi / 2


def _axial_mean(angle: np.ndarray) -> float:
    """Mean of axial angles (defined up to a half turn), via the doubled-angle trick."""
    return float(np.arctan2(np.sin(2 * angle).sum(), np.cos(2 * angle).sum()) / 2)


def _concat(groups: list[dict], key: str) -> np.ndarray:
    return np.concatenate([group[key] for group in groups]) if groups else np.zeros(0)


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2))) if len(values) else 0.0


def _subsample(values: np.ndarray, rng: np.random.Generator, keep: int) -> np.ndarray:
    """At most `keep` rows of `values`, chosen at random without replacement (order kept)."""
    if len(values) <= keep:
        return values
    return values[np.sort(rng.choice(len(values), keep, replace=False))]


# --------------------------------------------------------------------------------------------------------
# placing
def lattice_offsets(
    size: np.ndarray,
    lines: np.ndarray,
    theta: np.ndarray,
    long: np.ndarray,
    short: np.ndarray,
    phi: np.ndarray,
    gap: np.ndarray,
    line_gap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Member positions of U groups laid out as lattices; all inputs ``(U,)``, angles in radians.

    Returns ``unit`` ``(M,)``, the group of each of the M = ``size.sum()`` members, and ``offset`` ``(M, 2)``,
    each member's centre relative to its group's anchor (the lattice is centred on the anchor).
    """
    unit = np.repeat(np.arange(len(size)), size)
    member = np.arange(len(unit)) - np.repeat(np.cumsum(size) - size, size)
    lines = np.clip(lines, 1, size)
    columns = -(-size // lines)  # ceil
    lines = -(-size // columns)  # drop lines left empty by the rounding
    column, line = member % columns[unit], member // columns[unit]

    row_direction = theta + phi
    along = np.stack([np.cos(row_direction), np.sin(row_direction)], axis=1)  # (U, 2)
    across = np.stack([-along[:, 1], along[:, 0]], axis=1)
    step_along = gap * (long * np.abs(np.cos(phi)) + short * np.abs(np.sin(phi)))
    step_across = line_gap * (long * np.abs(np.sin(phi)) + short * np.abs(np.cos(phi)))
    a = (column - (columns[unit] - 1) / 2) * step_along[unit]
    b = (line - (lines[unit] - 1) / 2) * step_across[unit]
    return unit, a[:, None] * along[unit] + b[:, None] * across[unit]
