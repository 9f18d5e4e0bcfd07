"""Geometric constraints on a layout: every instance inside the image, big enough, not stacked on another.

Three rules, each a boolean ``(N,)`` mask from `violations`:

* ``too_small``: the short side of the instance's le90 box is below ``min_size`` pixels (a box a detector
  cannot learn from and a generator cannot draw), or the polygon is not finite;
* ``outside``: a corner lies more than ``inside_tolerance`` pixels outside the image;
* ``overlap``: the instance overlaps an *earlier* instance by more than the threshold of their class pair,
  where overlap is ``intersection area / area of the smaller of the two`` (so a car parked under a plane's
  wing counts fully, however large the plane).

`enforce` keeps instances greedily in layout order: an instance is dropped when it breaks the size or inside
rule, or when it overlaps an instance already *kept*; earlier instances therefore win, and a sampler that
re-draws dropped instances puts the kept ones first. `oversized` finds instances that no translation can
bring inside the image (larger than the image at their orientation), which re-drawing at the same size can
never fix, so callers report them instead of retrying.

Overlap is computed with shapely 2 on arrays: an STR tree proposes the intersecting pairs, their
intersection areas are computed in one call, and only the (few) pairs above threshold go through the greedy
pass in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from ccaug.data.geometry import polygon_area, polygon_to_hbb, polygon_to_le90
from ccaug.layouts.layout import Layout

RULES = ("too_small", "outside", "overlap")


@dataclass(frozen=True)
class LayoutConstraints:
    """What a valid layout obeys; the recipe section of the layout sampler and the perturbations.

    ``pair_overlap`` overrides ``max_overlap`` for some class pairs, keyed ``"a/b"`` in either order (e.g.
    ``{"ship/ship": 0.2}`` lets moored ships touch more than the default allows). Its keys are checked
    against the category names when they are known (`pair_thresholds`).
    """

    min_size: float = 4.0  # px: shortest side of an instance's le90 box
    inside_tolerance: float = 1.0  # px an instance's corners may stick out of the image
    max_overlap: float = 0.1  # intersection / area of the smaller of two instances, any class pair
    pair_overlap: dict[str, float] = field(default_factory=dict)
    max_retries: int = 20  # rounds of re-drawing for instances dropped by the constraints

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_size) or self.min_size < 0:
            raise ValueError(f"min_size is a length in pixels, at least 0, not {self.min_size}")
        if not np.isfinite(self.inside_tolerance) or self.inside_tolerance < 0:
            raise ValueError(
                f"inside_tolerance is a length in pixels, at least 0, not {self.inside_tolerance}"
            )
        _check_fraction("max_overlap", self.max_overlap)
        if not isinstance(self.pair_overlap, dict):
            raise ValueError(f"pair_overlap maps 'class_a/class_b' to a fraction, not {self.pair_overlap!r}")
        for key, value in self.pair_overlap.items():
            if not isinstance(key, str) or "/" not in key:
                raise ValueError(f"pair_overlap key {key!r} must name two classes as 'class_a/class_b'")
            _check_fraction(f"pair_overlap[{key!r}]", value)
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ValueError(f"max_retries is a whole number of rounds, at least 0, not {self.max_retries!r}")

    def pair_thresholds(self, categories: list[str]) -> np.ndarray:
        """``(K, K)`` symmetric matrix of overlap thresholds, ``max_overlap`` where no pair is named."""
        matrix = np.full((len(categories), len(categories)), float(self.max_overlap))
        named: dict[tuple[int, int], tuple[str, float]] = {}
        for key, value in self.pair_overlap.items():
            a, b = _split_pair(key, categories)
            pair = (min(a, b), max(a, b))
            if pair in named and named[pair][1] != value:
                raise ValueError(
                    f"pair_overlap names the pair {key!r} twice with different thresholds "
                    f"({named[pair][0]!r}: {named[pair][1]}, {key!r}: {value})"
                )
            named[pair] = (key, value)
            matrix[a, b] = matrix[b, a] = float(value)
        return matrix


def _check_fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} is a fraction of the smaller instance's area in [0, 1], not {value!r}")


def _split_pair(key: str, categories: list[str]) -> tuple[int, int]:
    """The two category indices a key ``"a/b"`` names; class names may themselves contain ``/``."""
    index = {name: position for position, name in enumerate(categories)}
    splits = [
        (index[key[:cut]], index[key[cut + 1 :]])
        for cut, char in enumerate(key)
        if char == "/" and key[:cut] in index and key[cut + 1 :] in index
    ]
    if len(splits) != 1:
        problem = "does not name two known classes" if not splits else "is ambiguous"
        raise ValueError(f"pair_overlap key {key!r} {problem}; the classes are {list(categories)}")
    return splits[0]


def violations(
    layout: Layout, categories: list[str], constraints: LayoutConstraints
) -> dict[str, np.ndarray]:
    """Boolean ``(N,)`` masks per rule (`RULES`); ``overlap`` compares each instance with all earlier ones.

    Unlike `enforce`, the masks are independent: an instance counts as overlapping even when the earlier
    instance it overlaps breaks a rule itself.
    """
    _check_labels(layout, categories)
    too_small, outside = _shape_violations(layout, constraints)
    thresholds = constraints.pair_thresholds(categories)
    first, second = _overlapping_pairs(layout, thresholds, valid=np.isfinite(layout.polygons).all(axis=1))
    overlap = np.zeros(len(layout), dtype=bool)
    overlap[second] = True
    return {"too_small": too_small, "outside": outside, "overlap": overlap}


def satisfies(layout: Layout, categories: list[str], constraints: LayoutConstraints) -> bool:
    """True when no instance breaks any rule."""
    return not any(mask.any() for mask in violations(layout, categories, constraints).values())


def enforce(
    layout: Layout, categories: list[str], constraints: LayoutConstraints
) -> tuple[Layout, dict[str, int]]:
    """Keep instances greedily in order (earlier ones win); returns the clean layout and drops per rule."""
    keep, counts = enforce_mask(layout, categories, constraints)
    return layout.select(keep), counts


def enforce_mask(
    layout: Layout, categories: list[str], constraints: LayoutConstraints
) -> tuple[np.ndarray, dict[str, int]]:
    """`enforce` as a ``(N,)`` keep mask, for callers that carry per-instance data beside the layout."""
    _check_labels(layout, categories)
    too_small, outside = _shape_violations(layout, constraints)
    keep = ~(too_small | outside)
    first, second = _overlapping_pairs(layout, constraints.pair_thresholds(categories), valid=keep)
    dropped_for_overlap = _greedy_drop(len(layout), first, second)
    keep &= ~dropped_for_overlap
    counts = {
        "too_small": int(too_small.sum()),
        "outside": int((outside & ~too_small).sum()),
        "overlap": int(dropped_for_overlap.sum()),
    }
    return keep, counts


def oversized(layout: Layout, constraints: LayoutConstraints) -> np.ndarray:
    """``(N,)`` True where an instance cannot fit inside the image by any translation (keeping its angle)."""
    if len(layout) == 0:
        return np.zeros(0, dtype=bool)
    hbb = polygon_to_hbb(layout.polygons)
    slack = 2 * constraints.inside_tolerance
    with np.errstate(invalid="ignore"):
        return (hbb[:, 2] - hbb[:, 0] > layout.width + slack) | (
            hbb[:, 3] - hbb[:, 1] > layout.height + slack
        )


def _check_labels(layout: Layout, categories: list[str]) -> None:
    if len(layout) and (layout.labels.min() < 0 or layout.labels.max() >= len(categories)):
        raise ValueError(
            f"layout labels must index the {len(categories)} categories, got {np.unique(layout.labels)}"
        )


def _shape_violations(layout: Layout, constraints: LayoutConstraints) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` too-small and outside masks; a polygon with a non-finite coordinate is too small."""
    polygons = layout.polygons
    finite = np.isfinite(polygons).all(axis=1)
    short_side = np.zeros(len(layout))
    short_side[finite] = _short_side(polygons[finite])
    too_small = ~finite | (short_side < constraints.min_size)
    x, y = polygons[:, 0::2], polygons[:, 1::2]
    tolerance = constraints.inside_tolerance
    with np.errstate(invalid="ignore"):
        inside = (
            (x >= -tolerance).all(axis=1)
            & (x <= layout.width + tolerance).all(axis=1)
            & (y >= -tolerance).all(axis=1)
            & (y <= layout.height + tolerance).all(axis=1)
        )
    return too_small, finite & ~inside


def _short_side(polygons: np.ndarray) -> np.ndarray:
    """``(N,)`` short side of each polygon's minimum-area rectangle.

    Rectangles (every sampled box, most annotations) take the shorter edge directly; only the other
    quadrilaterals pay for the full rectangle fit.
    """
    corners = polygons.reshape(-1, 4, 2)
    edges = np.roll(corners, -1, axis=1) - corners  # (N, 4, 2)
    length = np.linalg.norm(edges, axis=2)
    scale = np.maximum(length.max(axis=1), 1e-12)
    square_corner = np.abs(np.einsum("nd,nd->n", edges[:, 0], edges[:, 1])) <= 1e-9 * scale**2
    parallelogram = np.abs(edges[:, 0] + edges[:, 2]).max(axis=1) <= 1e-9 * scale
    rectangle = square_corner & parallelogram & (length.min(axis=1) > 0)
    short = length[:, :2].min(axis=1)
    if not rectangle.all():
        short[~rectangle] = polygon_to_le90(polygons[~rectangle])[:, 3]
    return short


def _overlapping_pairs(
    layout: Layout, thresholds: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``first < second`` among `valid` instances that overlap above their pair's threshold."""
    candidates = np.flatnonzero(valid)
    if len(candidates) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    polygons = layout.polygons[candidates]
    geometries = shapely.polygons(polygons.reshape(-1, 4, 2))
    broken = ~shapely.is_valid(geometries)  # self-crossing annotator polygons: repair before intersecting
    if broken.any():
        geometries[broken] = shapely.make_valid(geometries[broken])
    tree = shapely.STRtree(geometries)
    query, hit = tree.query(geometries, predicate="intersects")
    ordered = query < hit
    first, second = query[ordered], hit[ordered]
    if len(first) == 0:
        return first, second
    intersection = shapely.area(shapely.intersection(geometries[first], geometries[second]))
    area = polygon_area(polygons)
    smaller = np.maximum(np.minimum(area[first], area[second]), 1e-12)
    labels = layout.labels[candidates]
    above = intersection / smaller > thresholds[labels[first], labels[second]] + 1e-9
    return candidates[first[above]], candidates[second[above]]


def _greedy_drop(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``(N,)`` True for instances dropped because they overlap an earlier instance that is kept.

    Pairs are visited in order of their later member, so the fate of every earlier member is settled when a
    pair is looked at.
    """
    dropped = np.zeros(n, dtype=bool)
    order = np.lexsort((first, second))
    for earlier, later in zip(first[order].tolist(), second[order].tolist()):
        if not dropped[earlier] and not dropped[later]:
            dropped[later] = True
    return dropped
