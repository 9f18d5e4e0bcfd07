"""PNG plots of a data set's statistics, plus ``stats.csv`` and ``stats.json``, written into one folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ccaug.data.dataset import Dataset
from ccaug.data.draw import category_colour
from ccaug.data.stats import DatasetStats, dataset_stats
from ccaug.fileio import atomic_path, write_json


def plot_stats(stats_or_dataset: DatasetStats | Dataset, out_dir: str | Path) -> list[Path]:
    """Write the PNG plots, ``stats.csv`` (the per-class table) and ``stats.json``; return the paths.

    Matplotlib is used through `Figure` objects only (no pyplot), so no global backend or state changes.
    """
    stats = (
        stats_or_dataset if isinstance(stats_or_dataset, DatasetStats) else dataset_stats(stats_or_dataset)
    )
    out_dir = Path(out_dir)
    plots = {
        "class_counts.png": _plot_class_counts,
        "sizes.png": _plot_sizes,
        "aspect_ratios.png": _plot_aspects,
        "orientation.png": _plot_orientation,
        "instances_per_image.png": _plot_instances_per_image,
        "centres.png": _plot_centres,
    }
    written = []
    for name, plot in plots.items():
        figure = plot(stats)
        with atomic_path(out_dir / name) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        written.append(out_dir / name)
    with atomic_path(out_dir / "stats.csv") as tmp:
        stats.per_class.to_csv(tmp, index=False)
    write_json(out_dir / "stats.json", stats.summary(), indent=2)
    return [*written, out_dir / "stats.csv", out_dir / "stats.json"]


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # imported here: importing ccaug.data.stats stays light

    return Figure(figsize=(width, height), layout="constrained")


def _class_height(stats: DatasetStats) -> float:
    return max(2.5, 0.32 * len(stats.categories) + 1.2)


def _colours(stats: DatasetStats) -> list[tuple[float, float, float]]:
    return [tuple(c / 255 for c in category_colour(i)) for i in range(len(stats.categories))]


def note_if_empty(axes, empty: bool, message: str = "no instances") -> bool:
    if empty:
        axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="0.4")
    return empty


def _plot_class_counts(stats: DatasetStats):
    figure = new_figure(7, _class_height(stats))
    axes = figure.add_subplot()
    counts = stats.per_class["count"].to_numpy()
    positions = np.arange(len(counts))
    bars = axes.barh(positions, counts, color=_colours(stats), edgecolor="0.2", linewidth=0.5)
    axes.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=3, fontsize=8)
    axes.set_yticks(positions, stats.per_class["category"])
    axes.invert_yaxis()
    axes.set_xlabel("instances")
    axes.set_title(f"Instances per class ({int(counts.sum()):,} in all)")
    axes.margins(x=0.12)
    note_if_empty(axes, len(counts) == 0 or counts.sum() == 0)
    return figure


def _plot_sizes(stats: DatasetStats):
    return _plot_quantile_bars(
        stats, "long_side", "long side of the le90 box (pixels, log scale)", "Object size per class"
    )


def _plot_aspects(stats: DatasetStats):
    return _plot_quantile_bars(stats, "aspect", "aspect ratio w / h (log scale)", "Aspect ratio per class")


def _plot_quantile_bars(stats: DatasetStats, column: str, xlabel: str, title: str):
    """Per class: a line from p5 to p95, a box from p25 to p75 and a tick at the median (log x)."""
    figure = new_figure(7, _class_height(stats))
    axes = figure.add_subplot()
    groups = dict(tuple(stats.geometry.groupby("category", observed=True)[column]))
    colours = _colours(stats)
    any_values = False
    for position, name in enumerate(stats.categories):
        values = groups.get(name, pd.Series(dtype=float)).to_numpy(dtype=np.float64)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) == 0:
            x_axes_y_data = axes.get_yaxis_transform()
            axes.text(0.01, position, "no instances", va="center", color="0.5", transform=x_axes_y_data)
            continue
        any_values = True
        p5, p25, p50, p75, p95 = np.quantile(values, (0.05, 0.25, 0.5, 0.75, 0.95))
        axes.hlines(position, p5, p95, color="0.3", linewidth=1)
        axes.barh(position, p75 - p25, left=p25, height=0.6, color=colours[position], edgecolor="0.2")
        axes.vlines(p50, position - 0.3, position + 0.3, color="black", linewidth=2)
    axes.set_yticks(np.arange(len(stats.categories)), stats.categories)
    axes.set_ylim(len(stats.categories) - 0.5, -0.5)
    if any_values:
        log_x_with_plain_ticks(axes)
    axes.set_xlabel(xlabel)
    axes.set_title(f"{title}: median, 25-75% box, 5-95% line")
    axes.grid(axis="x", which="both", alpha=0.3)
    note_if_empty(axes, not any_values)
    return figure


def log_x_with_plain_ticks(axes) -> None:
    """Log x with ticks at 1, 2, 5 x 10^k written as plain numbers (``20``, not ``2 x 10^1``)."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.margins(x=0.05)


def _plot_orientation(stats: DatasetStats):
    """One small histogram of le90 angles per class (degrees, 10-degree bins)."""
    n = max(1, len(stats.categories))
    cols = min(5, n)
    rows = math.ceil(n / cols)
    figure = new_figure(2.6 * cols, 1.9 * rows + 0.5)
    figure.suptitle("Orientation per class (le90 angle of the long side, degrees)")
    groups = dict(tuple(stats.geometry.groupby("category", observed=True)["angle_deg"]))
    bins = np.arange(-90, 91, 10)
    colours = _colours(stats)
    for position, name in enumerate(stats.categories):
        axes = figure.add_subplot(rows, cols, position + 1)
        values = groups.get(name, pd.Series(dtype=float)).to_numpy(dtype=np.float64)
        axes.hist(values, bins=bins, color=colours[position], edgecolor="0.2", linewidth=0.5)
        axes.set_title(f"{name} ({len(values):,})", fontsize=9)
        axes.set_xlim(-90, 90)
        axes.set_xticks([-90, -45, 0, 45, 90])
        axes.tick_params(labelsize=7)
        if note_if_empty(axes, len(values) == 0):
            axes.set_yticks([])
    if not stats.categories:
        note_if_empty(figure.add_subplot(), True, "no categories")
    return figure


def _plot_instances_per_image(stats: DatasetStats):
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(6, 3.5)
    axes = figure.add_subplot()
    counts = stats.per_image["instances"].to_numpy()
    totals = stats.instances_per_image.iloc[0]
    if len(counts):
        top = int(counts.max())
        bins = np.arange(top + 2) - 0.5 if top <= 60 else 60
        axes.hist(counts, bins=bins, color="#4c72b0", edgecolor="0.2", linewidth=0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("instances in the image")
    axes.set_ylabel("images")
    axes.set_title(
        f"Instances per image: mean {totals['mean']:.1f}, median {totals['median']:g}, "
        f"max {int(totals['max'])}, {int(totals['empty_images'])} empty"
    )
    note_if_empty(axes, len(counts) == 0, "no images")
    return figure


def _plot_centres(stats: DatasetStats):
    """Where objects sit in their images: a 2D histogram of centres in image-normalised coordinates."""
    figure = new_figure(5.2, 4.4)
    axes = figure.add_subplot()
    cx = stats.geometry["cx_norm"].to_numpy(dtype=np.float64)
    cy = stats.geometry["cy_norm"].to_numpy(dtype=np.float64)
    keep = np.isfinite(cx) & np.isfinite(cy)
    counts, _, _ = np.histogram2d(cy[keep], cx[keep], bins=32, range=[[0, 1], [0, 1]])
    image = axes.imshow(counts, extent=(0, 1, 1, 0), cmap="magma", interpolation="nearest")
    figure.colorbar(image, ax=axes, label="instances")
    axes.set_xlabel("x / width")
    axes.set_ylabel("y / height")
    axes.set_title(f"Instance centres ({int(keep.sum()):,})")
    note_if_empty(axes, not keep.any())
    return figure
