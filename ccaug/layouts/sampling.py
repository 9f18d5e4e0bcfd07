"""Sampling layouts from a fitted `LayoutModel`: counts, groups, boxes, constraints, bounded re-draws.

For layout i (its own generator, seeded by ``SeedSequence([seed, i])``, so that layout i is the same
whatever the number of layouts asked for and shards can split the work):

1. bootstrap a real count vector (and its scene) and jitter its non-zero counts a little;
2. split each class's count into *units*: groups drawn from the fitted group shapes with the probability
   that reproduces the fitted share of grouped instances, singles otherwise;
3. give every unit an anchor (position histogram), a box (size samples + kernel jitter) and an angle
   (orientation histogram), and lay its members out as a lattice (`ccaug.layouts.groups.lattice_offsets`)
   with small orientation and size jitter per member;
4. `enforce_mask` the constraints, keeping what was already placed first so that it always stays, and
   re-draw the dropped instances per class (as singles or shorter rows), for at most
   ``constraints.max_retries`` rounds; whatever is still missing is reported, as is every class whose
   sampled box is larger than the image (which no re-draw at that size can place).

Everything within a layout is drawn as arrays; the only Python loop is over layouts and rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ccaug.data.geometry import le90_to_polygon, normalize_le90
from ccaug.layouts.constraints import RULES, LayoutConstraints, enforce_mask, oversized
from ccaug.layouts.groups import lattice_offsets
from ccaug.layouts.layout import Layout

if TYPE_CHECKING:  # the model imports this module to sample
    from ccaug.layouts.model import LayoutModel

ARRANGEMENTS = ("groups", "scatter")
COUNT_JITTER = 0.15  # sigma of the log-normal factor on each non-zero count


@dataclass(frozen=True)
class SampleResult:
    """Sampled layouts and the problems of those that fell short, one line each (``"layout 17: ..."``)."""

    layouts: list[Layout]
    reports: list[str]
    categories: list[str]


def sample_layouts(
    model: LayoutModel,
    n: int,
    *,
    seed: int,
    size: int | tuple[int, int] | None,
    constraints: LayoutConstraints,
    arrangement: str,
) -> SampleResult:
    """See `LayoutModel.sample`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n is the number of layouts to sample, a whole number >= 0, not {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, not {seed!r}")
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {ARRANGEMENTS}, not {arrangement!r}")
    width, height = _image_size(size, model.image_size)
    tables = _Tables.build(model, groups=arrangement == "groups")
    scale = float(np.sqrt(width / model.image_size[0] * height / model.image_size[1]))
    layouts, reports = [], []
    for index in range(int(n)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), index]))
        layout, problems = _sample_layout(rng, model, tables, width, height, scale, constraints)
        layouts.append(layout)
        reports.extend(f"layout {index}: {problem}" for problem in problems)
    return SampleResult(layouts=layouts, reports=reports, categories=list(model.categories))


def _image_size(size: int | tuple[int, int] | None, fitted: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return fitted
    width, height = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if min(width, height) < 1:
        raise ValueError(f"size must be a positive number of pixels or (width, height), not {size!r}")
    return int(width), int(height)


@dataclass
class _Tables:
    """The model's per-class distributions packed into flat arrays, so a layout draws with fancy indexing.

    Variable-length samples of all classes are concatenated with ``(K,)`` starts and lengths; a class
    without samples points at a neutral row appended at the end.
    """

    count_cdf: np.ndarray  # (V,)
    size: np.ndarray  # (S + 1, 2)
    size_start: np.ndarray  # (K,)
    size_length: np.ndarray  # (K,)
    bandwidth: np.ndarray  # (K, 2)
    orientation_cdf: np.ndarray  # (K, B)
    position_cdf: np.ndarray  # (K, P * P)
    cells: int
    group_probability: np.ndarray  # (K,)
    shapes: np.ndarray  # (G + 1, 2)
    shape_start: np.ndarray
    shape_length: np.ndarray
    link: np.ndarray  # (L + 1, 2): gap, phi (degrees)
    link_start: np.ndarray
    link_length: np.ndarray
    line_gap: np.ndarray  # (R + 1,)
    line_start: np.ndarray
    line_length: np.ndarray
    theta_jitter: np.ndarray  # (K,) radians
    size_jitter: np.ndarray  # (K,)

    @classmethod
    def build(cls, model: LayoutModel, groups: bool) -> _Tables:
        classes = model.classes
        stats = [c.groups for c in classes]
        size, size_start, size_length = _pack([c.size for c in classes], np.zeros((1, 2)))
        shapes, shape_start, shape_length = _pack([s.shapes for s in stats], np.ones((1, 2), dtype=np.int64))
        links = [np.column_stack([s.gap, s.phi]) for s in stats]
        link, link_start, link_length = _pack(links, np.array([[1.0, 90.0]]))
        line_gap, line_start, line_length = _pack([s.line_gap for s in stats], np.ones(1))
        probability = np.array([s.unit_probability() if groups else 0.0 for s in stats])
        probability[(shape_length == 0) | (link_length == 0)] = 0.0
        return cls(
            count_cdf=_cdf(model.count_weights[None, :])[0],
            size=size,
            size_start=size_start,
            size_length=size_length,
            bandwidth=np.stack([c.bandwidth for c in classes]),
            orientation_cdf=_cdf(np.stack([c.orientation for c in classes])),
            position_cdf=_cdf(np.stack([c.position.ravel() for c in classes])),
            cells=classes[0].position.shape[0],
            group_probability=probability,
            shapes=shapes,
            shape_start=shape_start,
            shape_length=shape_length,
            link=link,
            link_start=link_start,
            link_length=link_length,
            line_gap=line_gap,
            line_start=line_start,
            line_length=line_length,
            theta_jitter=np.radians([s.theta_jitter for s in stats]),
            size_jitter=np.array([s.size_jitter for s in stats]),
        )


def _pack(arrays: list[np.ndarray], neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.concatenate([*arrays, neutral])
    starts = np.where(lengths > 0, starts, len(flat) - 1)
    return flat, starts, lengths


def _cdf(weights: np.ndarray) -> np.ndarray:
    """Row-wise cumulative distribution ``(R, B)`` of non-negative weights, the last column exactly 1."""
    cdf = np.cumsum(weights, axis=1)
    cdf = cdf / cdf[:, -1:]
    cdf[:, -1] = 1.0
    return cdf


def _inverse_cdf(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One bin index per row of ``(U, B)`` cumulative distributions."""
    u = rng.random(len(cdf))
    return np.minimum((cdf <= u[:, None]).sum(axis=1), cdf.shape[1] - 1)


def _pick(rng: np.random.Generator, start: np.ndarray, length: np.ndarray, label: np.ndarray) -> np.ndarray:
    """A uniformly chosen sample index within each unit's class (the neutral row for empty classes)."""
    return start[label] + (rng.random(len(label)) * np.maximum(length[label], 1)).astype(np.int64)


# --------------------------------------------------------------------------------------------------------
def _sample_layout(
    rng: np.random.Generator,
    model: LayoutModel,
    tables: _Tables,
    width: int,
    height: int,
    scale: float,
    constraints: LayoutConstraints,
) -> tuple[Layout, list[str]]:
    """One layout and its problems (what could not be placed, and why)."""
    vector = int(np.searchsorted(tables.count_cdf, rng.random(), side="right"))
    vector = min(vector, len(tables.count_cdf) - 1)
    wanted = _jitter_counts(rng, model.count_vectors[vector])
    scene = (model.count_scenes[vector] or None) if model.count_scenes is not None else None

    k = len(model.categories)
    labels, polygons = np.zeros(0, dtype=np.int64), np.zeros((0, 8))
    missing, drops = wanted.copy(), dict.fromkeys(RULES, 0)
    too_large = np.zeros(k)  # per class, the longest sampled box that fits the image at no position
    for _ in range(constraints.max_retries + 1):
        if missing.sum() == 0:
            break
        new_labels, boxes = _draw_instances(rng, tables, missing, width, height, scale)
        new_polygons = le90_to_polygon(boxes)
        candidate = Layout(
            width, height, np.concatenate([labels, new_labels]), np.concatenate([polygons, new_polygons])
        )
        big = oversized(candidate.select(slice(len(labels), None)), constraints)
        np.maximum.at(too_large, new_labels[big], boxes[big, 2])
        keep, drops = enforce_mask(candidate, model.categories, constraints)
        labels, polygons = candidate.labels[keep], candidate.polygons[keep]
        missing = wanted - np.bincount(labels, minlength=k)
    layout = Layout(width, height, labels, polygons, scene)
    return layout, _problems(model.categories, wanted, missing, drops, too_large, width, height, constraints)


def _jitter_counts(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Non-zero counts times a log-normal factor (at least 1); zero counts stay zero (co-occurrence kept)."""
    factor = np.exp(rng.normal(0.0, COUNT_JITTER, len(counts)))
    return np.where(counts > 0, np.maximum(1, np.rint(counts * factor)), 0).astype(np.int64)


def _draw_instances(
    rng: np.random.Generator, tables: _Tables, counts: np.ndarray, width: int, height: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """``counts`` ``(K,)`` instances as ``(M,)`` labels and ``(M, 5)`` le90 boxes, grouped into units."""
    size, lines, label = _split_into_units(rng, tables, counts)
    # Earlier instances win conflicts: groups go first so that singles do not break rows, and the order is
    # random otherwise so that no class always wins.
    order = np.lexsort((rng.random(len(size)), size == 1))
    size, lines, label = size[order], lines[order], label[order]
    units = len(size)

    cell = _inverse_cdf(rng, tables.position_cdf[label])
    row, column = np.divmod(cell, tables.cells)
    anchor = np.column_stack(
        [
            (column + rng.random(units)) / tables.cells * width,
            (row + rng.random(units)) / tables.cells * height,
        ]
    )
    log_size = tables.size[_pick(rng, tables.size_start, tables.size_length, label)]
    log_size = log_size + rng.normal(size=(units, 2)) * tables.bandwidth[label]
    long = np.exp(log_size[:, 0]) * scale
    aspect = np.exp(np.abs(log_size[:, 1]))
    bins = tables.orientation_cdf.shape[1]
    theta = np.radians(
        -90 + (_inverse_cdf(rng, tables.orientation_cdf[label]) + rng.random(units)) * 180 / bins
    )
    gap, phi = tables.link[_pick(rng, tables.link_start, tables.link_length, label)].T
    phi = np.radians(phi) * rng.choice([-1.0, 1.0], units)
    line_gap = tables.line_gap[_pick(rng, tables.line_start, tables.line_length, label)]

    unit, offset = lattice_offsets(size, lines, theta, long, long / aspect, phi, gap, line_gap)
    grouped = size[unit] > 1
    members = len(unit)
    member_theta = theta[unit] + grouped * rng.normal(size=members) * tables.theta_jitter[label[unit]]
    member_long = long[unit] * np.exp(grouped * rng.normal(size=members) * tables.size_jitter[label[unit]])
    boxes = normalize_le90(np.column_stack([offset, member_long, member_long / aspect[unit], member_theta]))
    boxes[:, :2] += _inside_anchor(anchor, unit, le90_to_polygon(boxes), width, height)[unit]
    return label[unit], boxes


def _inside_anchor(
    anchor: np.ndarray, unit: np.ndarray, polygons: np.ndarray, width: int, height: int
) -> np.ndarray:
    """``(U, 2)`` anchors moved just enough that each group's members lie inside the image.

    `polygons` ``(M, 8)`` are the members around their anchor. Without the move a row anchored near the
    border loses its outer members, which come back as singles and break the row. A group wider than the
    image is centred.
    """
    units = len(anchor)
    corners = polygons.reshape(-1, 4, 2)
    low = np.full((units, 2), np.inf)
    high = np.full((units, 2), -np.inf)
    np.minimum.at(low, unit, corners.min(axis=1))
    np.maximum.at(high, unit, corners.max(axis=1))
    size = np.array([width, height], dtype=np.float64)
    lowest, highest = -low, size - high  # the anchor range that keeps the group inside
    centred = (lowest + highest) / 2
    return np.where(lowest <= highest, np.clip(anchor, lowest, np.maximum(lowest, highest)), centred)


def _split_into_units(
    rng: np.random.Generator, tables: _Tables, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units covering exactly ``counts[k]`` instances of each class k: ``(U,)`` size, lines and label.

    One candidate unit per instance is drawn (enough even if all are singles); each class keeps its
    candidates until its count is reached, and the last one is cut short.
    """
    label = np.repeat(np.arange(len(counts)), counts)
    is_group = rng.random(len(label)) < tables.group_probability[label]
    shape = tables.shapes[_pick(rng, tables.shape_start, tables.shape_length, label)]
    size = np.where(is_group, shape[:, 0], 1)
    lines = np.where(is_group, shape[:, 1], 1)
    total = np.cumsum(size)
    class_base = np.concatenate([[0], total])[np.concatenate([[0], np.cumsum(counts)[:-1]])]
    before = total - size - class_base[label]  # instances of the class in its earlier units
    take = before < counts[label]
    size = np.minimum(size, counts[label] - before)[take]
    return size, np.minimum(lines[take], size), label[take]


def _problems(
    categories: list[str],
    wanted: np.ndarray,
    missing: np.ndarray,
    drops: dict[str, int],
    too_large: np.ndarray,
    width: int,
    height: int,
    constraints: LayoutConstraints,
) -> list[str]:
    """Report lines for one layout (without the ``layout i:`` prefix)."""
    problems = []
    image = f"{width}-px" if width == height else f"{width}x{height}-px"
    for label in np.flatnonzero(too_large):
        problems.append(
            f"class {categories[label]}'s sampled size {too_large[label]:.0f} px is larger than the {image} image"
        )
    if missing.sum():
        short = ", ".join(f"{int(missing[k])} {categories[k]}" for k in np.flatnonzero(missing))
        reasons = ", ".join(f"{count} {rule.replace('_', ' ')}" for rule, count in drops.items() if count)
        problems.append(
            f"{int(missing.sum())} of {int(wanted.sum())} instances could not be placed ({short}) after "
            f"{constraints.max_retries} retries (last round dropped: {reasons or 'none'})"
        )
    return problems
