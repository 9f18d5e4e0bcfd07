"""What a synth run renders: its settings and the plan of layouts, one per image, fixed by the seed.

Layout ``k`` of a plan is a function of ``(seed, k)`` and the source data alone, never of ``n``, the batch
size or the shard: asking for more images later extends a plan without changing its first layouts, and
every process of a sharded run computes the same plan.

* ``sample``: layouts drawn from a layout model fitted on the source's train split;
* ``perturb``: real train layouts perturbed (the recipe's ``perturb`` and ``constraints`` sections);
* ``real``: the real train layouts as they are, in a seeded order (cycled when ``n`` exceeds them);
* ``mix``: each layout draws its kind with the shares of ``synth.mix``.

A layout with more instances than the generator has slots keeps its largest ones (the caption is written
for what is kept, so caption, image and labels agree); how many were trimmed is in the plan's summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ccaug.data.dataset import Dataset
from ccaug.layouts.captions import captions as layout_captions
from ccaug.layouts.constraints import LayoutConstraints
from ccaug.layouts.layout import Layout, layouts_from_dataset
from ccaug.layouts.model import LayoutModel
from ccaug.layouts.perturb import PerturbConfig, RealInstanceSource, perturb_layouts
from ccaug.pipeline.data import keep_largest

LAYOUT_KINDS = ("sample", "perturb", "real")
LAYOUT_MODES = (*LAYOUT_KINDS, "mix")
SCHEDULERS = ("dpm++", "euler", "ddim")
VERIFY_MODES = ("off", "drop", "rerender")

# Streams of randomness derived from the user's seed, so that no two uses share random numbers.
STREAM_KIND, STREAM_LAYOUTS, STREAM_REAL_ORDER, STREAM_REFERENCES, STREAM_NOISE = range(5)


@dataclass(frozen=True)
class SynthSettings:
    """The ``synth`` section of a recipe: how layouts are made and rendered (flags override it).

    layouts: ``sample``, ``perturb``, ``real`` or ``mix``; mix: the shares of each kind under ``mix``.
    scheduler, steps, guidance_scale: the sampler (guidance None: the generator's training preview value).
    batch_size: layouts per UNet call. top_k: references are drawn among the k most similar bank entries.
    layout_min_instances: a class needs this many instances in the source for the layout model to fit it.
    verify: ``off``, ``drop`` (unfound instances leave the labels) or ``rerender`` (a new seed, up to
    ``max_attempts`` renders in all, then the best render with its unfound instances dropped).
    verify_iou, verify_conf: an instance is found by a detection of its class with this IoU, at this score.
    """

    layouts: str = "mix"
    mix: dict[str, float] = field(default_factory=lambda: {"sample": 0.5, "perturb": 0.5})
    scheduler: str = "dpm++"
    steps: int = 20
    guidance_scale: float | None = None
    batch_size: int = 16
    top_k: int = 5
    layout_min_instances: int = 20
    verify: str = "off"
    verify_iou: float = 0.5
    verify_conf: float = 0.25
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.layouts not in LAYOUT_MODES:
            raise ValueError(f"layouts must be one of {', '.join(LAYOUT_MODES)}, not {self.layouts!r}")
        unknown = sorted(set(self.mix) - set(LAYOUT_KINDS))
        if unknown or any(share < 0 for share in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(
                f"mix must give non-negative shares of {', '.join(LAYOUT_KINDS)} with a positive sum, not {self.mix}"
            )
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {self.scheduler!r}")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, not {self.verify!r}")
        for name in ("steps", "batch_size", "top_k", "layout_min_instances", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.guidance_scale is not None and self.guidance_scale < 1:
            raise ValueError(f"guidance_scale must be 1 (off) or more, not {self.guidance_scale}")
        if not (0 < self.verify_iou <= 1 and 0 <= self.verify_conf < 1):
            raise ValueError("verify_iou must be in (0, 1] and verify_conf in [0, 1)")

    @property
    def shares(self) -> dict[str, float]:
        """The share of each layout kind, summing to 1."""
        if self.layouts != "mix":
            return {self.layouts: 1.0}
        total = sum(self.mix.values())
        return {kind: self.mix.get(kind, 0.0) / total for kind in LAYOUT_KINDS if self.mix.get(kind, 0.0) > 0}


@dataclass
class PlannedLayout:
    """Layout `id` of a plan: the `index`-th of its `kind`, from real image `origin` (perturb, real)."""

    id: int
    kind: str
    index: int
    origin: str | None
    layout: Layout
    caption: str
    trimmed: int = 0  # instances dropped to fit the generator's slots

    def to_dict(self, categories: list[str]) -> dict[str, Any]:
        layout = self.layout
        return {
            "id": self.id,
            "kind": self.kind,
            "index": self.index,
            "origin": self.origin,
            "width": layout.width,
            "height": layout.height,
            "scene": layout.scene,
            "labels": [categories[label] for label in layout.labels],
            "polygons": layout.polygons.tolist(),  # JSON keeps float64 exactly
            "caption": self.caption,
            "trimmed": self.trimmed,
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any], categories: list[str]) -> PlannedLayout:
        code = {name: index for index, name in enumerate(categories)}
        layout = Layout(
            entry["width"], entry["height"], [code[name] for name in entry["labels"]], entry["polygons"], entry["scene"]
        )
        return cls(entry["id"], entry["kind"], entry["index"], entry["origin"], layout, entry["caption"], entry["trimmed"])


def derived_seed(seed: int, stream: int, *more: int) -> int:
    """A 32-bit seed for one use of the user's seed (`stream`, then e.g. a layout id and an attempt)."""
    return int(np.random.SeedSequence([seed, stream, *more]).generate_state(1)[0])


def image_seed(seed: int, layout_id: int, attempt: int = 0) -> int:
    """The noise seed of layout `layout_id`'s `attempt`-th render."""
    return derived_seed(seed, STREAM_NOISE, layout_id, attempt)


def layout_kinds(n: int, seed: int, shares: dict[str, float]) -> list[str]:
    """The kind of layouts 0..n-1: layout k's from its own draw, so a longer plan keeps the first kinds."""
    kinds, bounds = list(shares), np.cumsum(list(shares.values()))
    if len(kinds) == 1:
        return kinds * n
    draws = [np.random.default_rng(np.random.SeedSequence([seed, STREAM_KIND, k])).random() for k in range(n)]
    return [kinds[min(int(np.searchsorted(bounds, draw, side="right")), len(kinds) - 1)] for draw in draws]


def build_plan(
    train_set: Dataset,
    n: int,
    *,
    seed: int,
    settings: SynthSettings,
    max_instances: int,
    constraints: LayoutConstraints = LayoutConstraints(),
    perturb: PerturbConfig = PerturbConfig(),
) -> list[PlannedLayout]:
    """The `n` layouts to render, made from the source's train split (see the module docstring)."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, not {n}")
    categories = list(train_set.categories)
    real = layouts_from_dataset(train_set)
    origins = train_set.images["file"].astype(str).tolist()
    if not real:
        raise ValueError("the source's train split has no images to take layouts from")
    kinds = layout_kinds(n, seed, settings.shares)
    counts = {kind: kinds.count(kind) for kind in LAYOUT_KINDS}
    made: dict[str, list[tuple[Layout, str | None]]] = {}
    layout_seed = derived_seed(seed, STREAM_LAYOUTS)
    if counts["sample"]:
        model = LayoutModel.fit(train_set, min_instances=settings.layout_min_instances)
        result = model.sample(counts["sample"], seed=layout_seed, constraints=constraints)
        made["sample"] = [(layout, None) for layout in result.layouts]
    if counts["perturb"]:
        result = perturb_layouts(
            real, categories, counts["perturb"], seed=layout_seed, config=perturb, constraints=constraints,
            instance_source=RealInstanceSource(real),
        )  # fmt: skip
        # perturb_layouts takes layout j from real layout j % len(real)
        made["perturb"] = [(layout, origins[j % len(real)]) for j, layout in enumerate(result.layouts)]
    if counts["real"]:
        order = np.random.default_rng(derived_seed(seed, STREAM_REAL_ORDER)).permutation(len(real))
        made["real"] = [(real[order[j % len(real)]], origins[order[j % len(real)]]) for j in range(counts["real"])]

    plan, taken = [], dict.fromkeys(LAYOUT_KINDS, 0)
    for k, kind in enumerate(kinds):
        layout, origin = made[kind][taken[kind]]
        kept = keep_largest(layout, max_instances)
        plan.append(PlannedLayout(k, kind, taken[kind], origin, kept, "", len(layout) - len(kept)))
        taken[kind] += 1
    for entry, caption in zip(plan, layout_captions([entry.layout for entry in plan], categories)):
        entry.caption = caption
    return plan


def plan_summary(plan: list[PlannedLayout]) -> dict[str, Any]:
    """Layouts per kind, and how many layouts and instances were trimmed to the generator's slots."""
    return {
        "layouts": {kind: sum(entry.kind == kind for entry in plan) for kind in LAYOUT_KINDS},
        "trimmed_layouts": sum(entry.trimmed > 0 for entry in plan),
        "trimmed_instances": sum(entry.trimmed for entry in plan),
    }


def scaled_polygons(layout: Layout, size: int) -> np.ndarray:
    """``(N, 8)`` corners of the layout in the pixels of a rendered ``size``² image (the generator renders
    square images; a layout is normalised by its width and height, like training images)."""
    scale = np.tile([size / layout.width, size / layout.height], 4)
    return layout.polygons * scale

