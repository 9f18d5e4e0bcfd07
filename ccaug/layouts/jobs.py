"""The layout commands as library calls: read, fit / sample / perturb / compare, write, summarise.

Each function does one whole job of ``ccaug layout …`` so that the CLI only parses and prints, and Python
users get the same behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ccaug.data.draw import show_side_by_side
from ccaug.layouts.captions import captions
from ccaug.layouts.compare import LayoutComparison, compare_layouts
from ccaug.layouts.constraints import LayoutConstraints
from ccaug.layouts.layout import (
    Layout,
    layouts_from_dataset,
    read_layout_dataset,
    write_layouts,
)
from ccaug.layouts.model import LayoutModel
from ccaug.layouts.perturb import PerturbConfig, RealInstanceSource, perturb_layouts


@dataclass
class LayoutSetSummary:
    """What a sample or perturb job wrote, for the CLI to print."""

    out: Path
    layouts: int
    instances: int
    per_class: dict[str, int]
    reports: list[str] = field(default_factory=list)


def fit_layout_model(src: str | Path, fmt: str | None, out: str | Path, *, min_instances: int = 20) -> LayoutModel:
    """Fit a layout model to the data set at `src` and save it to the file `out`."""
    model = LayoutModel.fit(read_layout_dataset(src, fmt), min_instances=min_instances)
    model.save(out)
    return model


def sample_layout_set(
    model_path: str | Path,
    out: str | Path,
    *,
    n: int,
    seed: int,
    size: int | None = None,
    constraints: LayoutConstraints = LayoutConstraints(),
) -> LayoutSetSummary:
    """Sample `n` layouts from a saved model and write them, with captions, into the folder `out`."""
    model = LayoutModel.load(model_path)
    result = model.sample(n, seed=seed, size=size, constraints=constraints)
    return _write(result.layouts, model.categories, out, result.reports, prefix="sampled")


def perturb_layout_set(
    src: str | Path,
    fmt: str | None,
    out: str | Path,
    *,
    n: int,
    seed: int,
    config: PerturbConfig = PerturbConfig(),
    constraints: LayoutConstraints = LayoutConstraints(),
) -> LayoutSetSummary:
    """Perturb the real layouts of `src` into `n` new layouts (new instances are copies of real ones)."""
    dataset = read_layout_dataset(src, fmt)
    layouts = layouts_from_dataset(dataset)
    result = perturb_layouts(
        layouts, dataset.categories, n, seed=seed, config=config, constraints=constraints,
        instance_source=RealInstanceSource(layouts),
    )
    return _write(result.layouts, dataset.categories, out, result.reports, prefix="perturbed")


def compare_layout_sets(a: str | Path, b: str | Path, out: str | Path | None = None) -> LayoutComparison:
    """Compare the layouts of two folders (layout sets or real data sets, format detected).

    With `out`, the table and histograms are saved there, with ``side_by_side.png``: layouts of both sets.
    """
    a_set, b_set = read_layout_dataset(a), read_layout_dataset(b)
    names = _set_names(Path(a), Path(b))
    comparison = compare_layouts(
        layouts_from_dataset(a_set), layouts_from_dataset(b_set), a_set.categories, b_categories=b_set.categories, names=names
    )
    if out is not None:
        comparison.save(out)
        show_side_by_side([a_set, b_set], names, Path(out) / "side_by_side.png")
    return comparison


def _set_names(a: Path, b: Path) -> tuple[str, str]:
    """Short distinct names for two folders: their last parts, or more of their paths where those clash."""
    for depth in range(1, max(len(a.parts), len(b.parts)) + 1):
        names = ("/".join(a.parts[-depth:]), "/".join(b.parts[-depth:]))
        if names[0] != names[1]:
            return names
    return (f"A: {a}", f"B: {b}")


def _write(layouts: list[Layout], categories: list[str], out: str | Path, reports: list[str], prefix: str) -> LayoutSetSummary:
    dataset = write_layouts(layouts, categories, out, captions(layouts, categories), prefix=prefix)
    counts = dataset.instances["category"].value_counts()
    return LayoutSetSummary(
        out=Path(out),
        layouts=len(layouts),
        instances=len(dataset.instances),
        per_class={name: int(counts.get(name, 0)) for name in categories},
        reports=[report for report in reports if report],
    )
