"""Perturb real layouts: run the transforms of a recipe, then enforce the constraints, with bounded retries.

A real layout already has plausible counts, sizes and spacings; perturbing it gives new layouts that stay
close to the data, which a sampled layout cannot promise. The transforms live in
`ccaug.layouts.transforms`; `perturb_layouts` runs them on real layouts, enforces the constraints (inside the
image, overlap, minimum size; `ccaug.layouts.constraints`) and retries a draw that lost too much, a bounded
number of times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ccaug.data.geometry import le90_to_polygon
from ccaug.layouts.constraints import LayoutConstraints, enforce
from ccaug.layouts.layout import Layout
from ccaug.layouts.transforms import (
    Compose,
    Drop,
    DropConfig,
    Duplicate,
    DuplicateConfig,
    Flip,
    FlipConfig,
    Insert,
    InsertConfig,
    InstanceSource,
    Jitter,
    JitterConfig,
    RandomTransform,
    Rotate,
    RotateConfig,
    Scale,
    ScaleConfig,
    Translate,
    TranslateConfig,
)


@dataclass(frozen=True)
class PerturbConfig:
    """The ``perturb`` section of a recipe: one config per transform, and when a draw lost too much.

    ``min_kept_fraction``: a perturbed layout must keep at least this fraction of the instances its real
    layout has within the constraints, or the draw is retried.
    """

    flip: FlipConfig = FlipConfig()
    rotate: RotateConfig = RotateConfig()
    scale: ScaleConfig = ScaleConfig()
    translate: TranslateConfig = TranslateConfig()
    jitter: JitterConfig = JitterConfig()
    drop: DropConfig = DropConfig()
    duplicate: DuplicateConfig = DuplicateConfig()
    insert: InsertConfig = InsertConfig()
    min_kept_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.min_kept_fraction <= 1:
            raise ValueError(f"PerturbConfig.min_kept_fraction is in [0, 1], not {self.min_kept_fraction}")


# --- perturbing a set of layouts --------------------------------------------------------------------


@dataclass
class PerturbResult:
    """``layouts[j]`` was perturbed from real layout ``sources[j]`` in ``attempts[j]`` draws.

    ``failed[j]`` is true where no draw kept enough instances and the best one was kept; ``reports[j]`` says
    what happened to layout j (constraint drops, retries, failure) and is empty when nothing was dropped.
    """

    layouts: list[Layout]
    sources: np.ndarray
    attempts: np.ndarray
    failed: np.ndarray
    reports: list[str]


def perturb_layouts(
    layouts: Sequence[Layout],
    categories: Sequence[str],
    n: int,
    *,
    seed: int,
    config: PerturbConfig = PerturbConfig(),
    constraints: LayoutConstraints = LayoutConstraints(),
    instance_source: InstanceSource | None = None,
) -> PerturbResult:
    """`n` perturbed layouts; layout j comes from real layout ``j % len(layouts)``, so every real layout is
    used equally and layout j does not depend on `n`.

    Each draw runs the pipeline, then `enforce` drops the instances that break the constraints. A draw that
    keeps fewer than ``config.min_kept_fraction`` of the instances its real layout has within the
    constraints (or none, where the real layout had some) is retried, up to ``constraints.max_retries``
    times; then the draw that kept the most is used and reported. Layout j draws from
    ``default_rng(SeedSequence([seed, j]))``: the same seed gives the same layouts.
    """
    if n < 0:
        raise ValueError(f"n is a number of layouts, not {n}")
    if n and not layouts:
        raise ValueError("perturb_layouts needs at least one real layout")
    pipeline = build_pipeline(config, instance_source)
    sources = np.arange(n) % max(len(layouts), 1)
    needed = {
        source: _needed(layouts[source], categories, constraints, config) for source in set(sources.tolist())
    }
    perturbed, attempts, reports = [], np.zeros(n, dtype=np.int64), []
    for j, source in enumerate(sources.tolist()):
        rng = np.random.default_rng(np.random.SeedSequence([seed, j]))
        best, dropped = None, {}
        while attempts[j] <= constraints.max_retries and (best is None or len(best) < needed[source]):
            attempts[j] += 1
            candidate, candidate_dropped = enforce(pipeline(layouts[source], rng), categories, constraints)
            if best is None or len(candidate) > len(best):
                best, dropped = candidate, candidate_dropped
        perturbed.append(best)
        reports.append(_report(j, source, int(attempts[j]), dropped, len(best), needed[source]))
    failed = np.array(
        [len(layout) < needed[source] for layout, source in zip(perturbed, sources.tolist())], dtype=bool
    )
    return PerturbResult(perturbed, sources, attempts, failed, reports)


def _needed(
    layout: Layout, categories: Sequence[str], constraints: LayoutConstraints, config: PerturbConfig
) -> int:
    """How many instances a perturbed `layout` must keep: a fraction of those that satisfy the constraints
    as annotated (real data breaks them too, and that is no fault of the draw), and one if there are any."""
    valid = len(enforce(layout, categories, constraints)[0])
    return max(math.ceil(config.min_kept_fraction * valid), 1 if valid else 0)


def _report(j: int, source: int, attempts: int, dropped: dict[str, int], kept: int, needed: int) -> str:
    drops = ", ".join(f"{rule} {count}" for rule, count in dropped.items() if count)
    if kept < needed:
        return (
            f"layout {j} (real layout {source}): no draw in {attempts} kept {needed} instances; "
            f"kept the best, with {kept}" + (f" (dropped: {drops})" if drops else "")
        )
    if attempts > 1 or drops:
        accepted = f"accepted on draw {attempts}" if attempts > 1 else "accepted"
        return f"layout {j} (real layout {source}): {accepted}" + (f"; dropped: {drops}" if drops else "")
    return ""


def build_pipeline(
    config: PerturbConfig = PerturbConfig(), instance_source: InstanceSource | None = None
) -> Compose:
    """The transforms of `config` in a fixed order: mirrors and whole-layout moves, then per-instance noise,
    then the count changes, with inserted instances last so that they are placed in the final image.

    Without an `instance_source`, `Insert` is left out (there is nothing to insert).
    """
    transforms: list[RandomTransform] = [
        Flip(**asdict(config.flip)),
        Rotate(**asdict(config.rotate)),
        Scale(**asdict(config.scale)),
        Translate(**asdict(config.translate)),
        Jitter(**asdict(config.jitter)),
        Drop(**asdict(config.drop)),
        Duplicate(**asdict(config.duplicate)),
    ]
    if instance_source is not None:
        transforms.append(Insert(**asdict(config.insert), source=instance_source))
    return Compose(transforms)


# --- a simple instance source -----------------------------------------------------------------------


class RealInstanceSource:
    """Copies of random real instances (class, size, aspect, orientation) at random places in the layout.

    A stand-in for a fitted layout model's sampler: plausible shapes, but positions that ignore context.
    Centres are drawn so that each copy's axis-aligned extent lies inside the image where it fits.
    """

    def __init__(self, layouts: Sequence[Layout]) -> None:
        self.labels = (
            np.concatenate([layout.labels for layout in layouts]) if layouts else np.zeros(0, np.int64)
        )
        self.boxes = np.concatenate([layout.le90 for layout in layouts]) if layouts else np.zeros((0, 5))

    def __call__(self, rng: np.random.Generator, layout: Layout, n: int) -> tuple[np.ndarray, np.ndarray]:
        if not len(self.labels):
            return np.zeros(0, dtype=np.int64), np.zeros((0, 8))
        picked = rng.integers(0, len(self.labels), n)
        boxes = self.boxes[picked].copy()
        w, h, theta = boxes[:, 2], boxes[:, 3], boxes[:, 4]
        half_x = (np.abs(w * np.cos(theta)) + np.abs(h * np.sin(theta))) / 2
        half_y = (np.abs(w * np.sin(theta)) + np.abs(h * np.cos(theta))) / 2
        for axis, half, side in ((0, half_x, layout.width), (1, half_y, layout.height)):
            low, high = np.minimum(half, side / 2), np.maximum(side - half, side / 2)
            boxes[:, axis] = rng.uniform(low, high)
        return self.labels[picked], le90_to_polygon(boxes)
