"""PNG plots of a `LayoutComparison`: per feature, one histogram per class of A over B; centre heatmaps.

A histogram panel shows A filled in the class colour and B as a dark outline, over the same bins, each
normalised to fractions of its own sample so that sets of different sizes overlay; the panel title carries
the numbers of the table (KS and W1, or TV). Matplotlib is used through `Figure` objects only, like
`ccaug.data.stats_plots`, whose helpers these plots share.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ccaug.data.draw import category_colour
from ccaug.data.stats_plots import log_x_with_plain_ticks, new_figure, note_if_empty
from ccaug.fileio import atomic_path
from ccaug.layouts.compare import ALL_CLASSES, FEATURES, Feature

if TYPE_CHECKING:
    from ccaug.layouts.compare import LayoutComparison

ALL_COLOUR = "#4c72b0"  # the "all classes" panels: no class colour fits them
B_COLOUR = "0.1"
PANEL_COLUMNS = 4
HEATMAP_BINS = 8  # finer than the 4 x 4 of the TV, to show the shape; the TV is in the title


def plot_comparison(comparison: LayoutComparison, out_dir: str | Path) -> list[Path]:
    """Write ``<feature>.png`` for each feature (``position.png``: heatmaps); return the paths."""
    out_dir = Path(out_dir)
    written = []
    for feature in FEATURES:
        plot = _plot_positions if feature.metric == "tv_4x4" else _plot_histograms
        figure = plot(comparison, feature)
        path = out_dir / f"{feature.name}.png"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        written.append(path)
    return written


def _panels(comparison: LayoutComparison) -> list[tuple[str, object]]:
    """(category, colour) of every panel: the classes in order, then all classes."""
    colours = [tuple(c / 255 for c in category_colour(i)) for i in range(len(comparison.categories))]
    return [*zip(comparison.categories, colours), (ALL_CLASSES, ALL_COLOUR)]


def _plot_histograms(comparison: LayoutComparison, feature: Feature):
    from matplotlib.ticker import MaxNLocator

    panels = _panels(comparison)
    cols = min(PANEL_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / cols)
    figure = new_figure(3.2 * cols, 2.5 * rows + 0.7)
    a_name, b_name = comparison.names
    figure.suptitle(f"{feature.label}: {a_name} (filled) vs {b_name} (outline)")
    for position, (category, colour) in enumerate(panels):
        axes = figure.add_subplot(rows, cols, position + 1)
        a, b = (comparison.values(side, feature.name, category) for side in (0, 1))
        row = comparison.table.loc[(category, feature.name)]
        axes.set_title(f"{category}\n{_numbers(row, feature)}", fontsize=9)
        axes.tick_params(labelsize=7)
        if note_if_empty(axes, len(a) == 0 and len(b) == 0, "no values"):
            axes.set_yticks([])
            continue
        bins = _bins(feature, np.concatenate([a, b]))
        for values, style in ((a, _filled(colour)), (b, _outline())):
            if len(values):
                axes.hist(values, bins=bins, weights=np.full(len(values), 1 / len(values)), **style)
        if feature.scale == "log":
            log_x_with_plain_ticks(axes)
            axes.set_xticks(_log_ticks(bins[0], bins[-1]))
        elif feature.metric == "w1_axial":
            axes.set_xticks([-90, -45, 0, 45, 90])
        elif feature.name == "count":
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlim(bins[0], bins[-1])
        if position % cols == 0:
            axes.set_ylabel("fraction", fontsize=8)
    return figure


def _log_ticks(low: float, high: float) -> list[float]:
    """About 3 to 7 round ticks between `low` and `high` (> 0): a log axis over less than a decade needs
    ticks at 1.5, 2, 3 and 7 as well as at powers of ten to be readable."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0**k for k in decades for m in mantissas if low <= m * 10.0**k <= high]
        if len(ticks) >= 3:
            return ticks if len(ticks) <= 7 else ticks[:: math.ceil(len(ticks) / 7)]
    return ticks


def _numbers(row, feature: Feature) -> str:
    """The panel's second title line: sample sizes and the table's numbers, or why there are none."""
    sizes = f"n {int(row['n_a']):,} / {int(row['n_b']):,}" + (" images" if feature.name == "count" else "")
    if not math.isfinite(row["distance"]):
        return f"{sizes}, {row['note']}" if row["note"] else sizes
    if feature.metric == "tv_4x4":
        return f"{sizes}  TV {row['distance']:.2f}"
    ks = "Kuiper" if feature.metric == "w1_axial" else "KS"
    unit = "°" if feature.unit == "deg" else ""
    return f"{sizes}  {ks} {row['ks']:.2f}  W1 {row['distance']:.3g}{unit}"


def _bins(feature: Feature, values: np.ndarray) -> np.ndarray:
    """The same bins for both sides: natural ones for angles, counts and unit-square centres."""
    if feature.metric == "w1_axial":
        return np.linspace(-90, 90, 19)
    if feature.name == "alignment":
        return np.linspace(0, 90, 19)
    low, high = float(values.min()), float(values.max())
    if feature.name == "count":
        step = max(1, math.ceil((high + 1) / 40))
        return np.arange(0, high + step + 1, step) - 0.5
    if feature.scale == "log":
        low, high = (low, high) if high > low else (low / 1.1, high * 1.1)
        return np.geomspace(low, high, 25)
    if feature.name in ("cx", "cy"):
        low, high = min(low, 0.0), max(high, 1.0)
    return np.linspace(low, high, 25) if high > low else np.linspace(low - 0.5, high + 0.5, 25)


def _filled(colour) -> dict:
    return {"histtype": "stepfilled", "color": colour, "alpha": 0.7, "edgecolor": "none"}


def _outline() -> dict:
    return {"histtype": "step", "color": B_COLOUR, "linewidth": 1.3}


def _plot_positions(comparison: LayoutComparison, feature: Feature):
    """Per class a pair of centre heatmaps, A then B, on one colour scale (fractions of each side's sample)."""
    panels = _panels(comparison)
    pairs_per_row = PANEL_COLUMNS // 2
    cols = min(pairs_per_row, len(panels))
    rows = math.ceil(len(panels) / cols)
    figure = new_figure(5.4 * cols, 2.9 * rows + 0.6)
    a_name, b_name = comparison.names
    figure.suptitle(
        f"Instance centres per class, {a_name} (left) vs {b_name} (right); colour: fraction of the side's instances"
    )
    subfigures = np.atleast_1d(figure.subfigures(rows, cols)).reshape(-1)
    for subfigure, (category, _) in zip(subfigures, panels):
        row = comparison.table.loc[(category, feature.name)]
        subfigure.suptitle(f"{category}: {_numbers(row, feature)}", fontsize=9)
        samples = [comparison.values(side, feature.name, category) for side in (0, 1)]
        histograms = [_centre_histogram(xy) for xy in samples]
        top = max([float(h.max()) for h in histograms] + [1e-9])
        for index, (histogram, name, xy) in enumerate(zip(histograms, comparison.names, samples)):
            axes = subfigure.add_subplot(1, 2, index + 1)
            axes.imshow(histogram, extent=(0, 1, 1, 0), cmap="magma", vmin=0, vmax=top, interpolation="nearest")
            axes.set_title(name, fontsize=8)
            axes.set_xticks([0, 0.5, 1])
            axes.set_yticks([0, 0.5, 1])
            axes.tick_params(labelsize=7)
            note_if_empty(axes, len(xy) == 0)
    for subfigure in subfigures[len(panels) :]:
        subfigure.set_visible(False)
    return figure


def _centre_histogram(xy: np.ndarray) -> np.ndarray:
    """Rows are y (down, as in the image), columns x; fractions of the sample; zeros for no sample."""
    xy = np.clip(np.asarray(xy, dtype=np.float64).reshape(-1, 2), 0.0, 1.0)
    counts, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=HEATMAP_BINS, range=[[0, 1], [0, 1]])
    return counts / max(len(xy), 1)
