"""Layout fidelity: how far one set of layouts is from another, per class and per feature.

``ccaug layout compare A B`` answers "do the sampled layouts look like real ones?". Every instance gets a row
of features (`layout_features`), every image a count per class (`image_class_counts`), and `compare_layouts`
measures, per class and per feature, a distance between the two sets' empirical distributions, plus an
"all classes" row that pools every instance (its counts are all instances per image). A distance means little
on its own: read it against the floor, the distance between two real samples of one distribution (real train
vs real val). Sampling noise, and instances of one image not being independent, keep that floor above 0, the
more so the smaller the samples: compare sampled layouts with val at the sample sizes of the floor (as many
sampled layouts as train has images). `LayoutComparison.save` writes the table as CSV, JSON and Markdown and
one PNG per feature (`ccaug.layouts.compare_plots`).

The features, and the distance each gets (chosen so that a number reads in the feature's own unit):

* ``count``: instances of the class per image, images without the class included (for a rare class the
  zeros are most of the distribution). Wasserstein-1 (W1) in instances per image: how many instances per
  image, on average, must be added or removed to turn one histogram into the other.
* ``size``: the long side of the le90 box; W1 of ln(long side). Sizes are multiplicative, so the log makes
  the distance free of pixel units and symmetric: 0.1 means sizes about 10% apart, ln 2 = 0.69 twice as large.
* ``aspect``: long side / short side; W1 of ln(aspect), read like size.
* ``orientation``: the le90 angle θ in degrees. Orientation is axial (θ and θ + 180° are the same box), so
  the distance is W1 on the circle of circumference 180°, in degrees (`axial_wasserstein_deg`): -89° and
  89° are 2° apart, a set turned by 45° is at most 45° away, and no two sets are more than 90° apart.
* ``cx``, ``cy``: the centre divided by the image width, height; W1 in fractions of the image side (every box
  moved right by 20% of the width gives cx 0.2).
* ``position``: total variation (TV) between the 4 x 4 histograms of centres in the unit square: the
  fraction of instances that would have to change cell, in [0, 1]. It sees joint structure that cx and cy
  miss (objects along a diagonal vs across it); centres outside the image count in the border cells.
* ``spacing``: the distance from an instance's centre to the nearest centre of the same class in the same
  image, divided by the instance's long side (about 1 for objects parked end to end); W1 of ln(spacing).
  Lone instances (no other of their class in the image) have no spacing and are left out.
* ``alignment``: axial |Δθ| between an instance and that neighbour, 0° (parallel) to 90° (perpendicular);
  W1 in degrees. Rows of parked cars and moored ships are parallel; objects placed independently are not.

The long side of a nearly square box (a storage tank, a roundabout) is arbitrary, so its θ flips between
two values 90° apart at random: for such classes orientation and alignment measure annotation noise.

Every feature but position also gets the two-sample Kolmogorov-Smirnov statistic ``ks``, max |F_A - F_B|,
which lies in [0, 1] whatever the unit (0: the same distribution, 1: disjoint), so that one table of KS reads
across columns; for orientation it is Kuiper's statistic max(F_A - F_B) - min(F_A - F_B), the circular KS
that does not depend on where the circle is cut, and for position it is the TV. ``ks_95`` is the value two
independent samples of one distribution stay below 95% of the time at these sample sizes (asymptotic, and
instances of one image are not independent, so it is a lower bound; it shows when a class is too small for its
numbers to mean anything). A side with fewer than 2 samples of a feature gives NaN and a note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from scipy.spatial import cKDTree
from scipy.stats import ks_2samp, wasserstein_distance

from ccaug.data.geometry import polygon_to_le90
from ccaug.data.stats import jsonable, safe_divide
from ccaug.fileio import atomic_path, write_json, write_text
from ccaug.layouts.layout import Layout

ALL_CLASSES = "all classes"
POSITION_BINS = 4  # per side of the position histogram: coarse enough for a few hundred instances
MIN_SAMPLES = 2
_KS_95 = 1.358  # asymptotic 95% critical value of sqrt(n m / (n + m)) * KS
_KUIPER_95 = 1.747  # the same for Kuiper's statistic


@dataclass(frozen=True)
class Feature:
    """One compared feature: its columns in `layout_features`, the scale it is compared on, its distance."""

    name: str
    columns: tuple[str, ...]  # ("count",) means the per-image class counts
    scale: str  # "linear" or "log": a log feature is compared as ln(value)
    metric: str  # "w1", "w1_axial" (on the circle of 180 degrees) or "tv_4x4"
    unit: str  # the unit of the distance
    label: str  # what the values are, for plot axes


FEATURES: tuple[Feature, ...] = (
    Feature("count", ("count",), "linear", "w1", "instances/image", "instances of the class per image"),
    Feature("size", ("long_side",), "log", "w1", "ln", "long side of the le90 box (px)"),
    Feature("aspect", ("aspect",), "log", "w1", "ln", "aspect ratio long / short"),
    Feature("orientation", ("angle_deg",), "linear", "w1_axial", "deg", "le90 angle of the long side (deg)"),
    Feature("cx", ("cx_norm",), "linear", "w1", "image width", "centre x / image width"),
    Feature("cy", ("cy_norm",), "linear", "w1", "image height", "centre y / image height"),
    Feature("position", ("cx_norm", "cy_norm"), "linear", "tv_4x4", "fraction", "centre in the image"),
    Feature("spacing", ("spacing",), "log", "w1", "ln", "nearest same-class neighbour distance / long side"),
    Feature("alignment", ("alignment_deg",), "linear", "w1", "deg", "axial |Δθ| to that neighbour (deg)"),
)
FEATURE_BY_NAME = {feature.name: feature for feature in FEATURES}

TABLE_COLUMNS = ["metric", "unit", "distance", "ks", "ks_95", "n_a", "n_b", "note"]


# --------------------------------------------------------------------------------------------------------
# features


def layout_features(layouts: Sequence[Layout], categories: Sequence[str]) -> pd.DataFrame:
    """One row per instance: what `compare_layouts` compares.

    Columns: ``image`` (index in `layouts`), ``category`` (name), ``count_in_image`` (instances of its class
    in its image), ``long_side`` (px), ``aspect`` (long / short), ``angle_deg`` (le90, [-90, 90)),
    ``cx_norm``, ``cy_norm`` (centre / image size), ``spacing`` (distance to the nearest centre of the same
    class in the same image / own long side) and ``alignment_deg`` (axial |Δθ| to that neighbour, 0..90);
    the last two are NaN for an instance alone in its class and image.
    """
    sizes = [len(layout) for layout in layouts]
    image = np.repeat(np.arange(len(layouts), dtype=np.int64), sizes)
    labels = np.concatenate([layout.labels for layout in layouts]) if layouts else np.zeros(0, dtype=np.int64)
    _check_labels(labels, categories)
    polygons = np.concatenate([layout.polygons for layout in layouts]) if layouts else np.zeros((0, 8))
    boxes = polygon_to_le90(polygons)
    cx, cy, w, h, theta = boxes.T
    width = np.repeat([float(layout.width) for layout in layouts], sizes)
    height = np.repeat([float(layout.height) for layout in layouts], sizes)
    counts = image_class_counts(layouts, categories).to_numpy()
    angle_deg = np.degrees(theta)

    distance, neighbour = _nearest_same_class(boxes[:, :2], image * max(len(categories), 1) + labels)
    has_neighbour = neighbour >= 0
    alignment = np.full(len(labels), np.nan)
    alignment[has_neighbour] = axial_difference_deg(
        angle_deg[has_neighbour], angle_deg[neighbour[has_neighbour]]
    )
    return pd.DataFrame(
        {
            "image": image,
            "category": np.asarray(categories, dtype=object)[labels],
            "count_in_image": counts[image, labels],
            "long_side": w,
            "aspect": safe_divide(w, h),
            "angle_deg": angle_deg,
            "cx_norm": safe_divide(cx, width),
            "cy_norm": safe_divide(cy, height),
            "spacing": safe_divide(distance, w),
            "alignment_deg": alignment,
        }
    )


def image_class_counts(layouts: Sequence[Layout], categories: Sequence[str]) -> pd.DataFrame:
    """Instances per class (columns, in category order) per image (rows, in layout order), zeros included."""
    k = len(categories)
    codes = [layout.labels + index * k for index, layout in enumerate(layouts)]
    flat = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    _check_labels(flat % max(k, 1), categories)
    counts = np.bincount(flat, minlength=len(layouts) * k).reshape(len(layouts), k)
    return pd.DataFrame(counts, columns=list(categories), index=pd.RangeIndex(len(layouts), name="image"))


def _check_labels(labels: np.ndarray, categories: Sequence[str]) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= len(categories)):
        raise ValueError(
            f"layout labels run from {labels.min()} to {labels.max()} but there are {len(categories)} "
            "categories; pass the category list the layouts were made with"
        )


def _nearest_same_class(centres: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index of each centre's nearest other centre in its group; NaN and -1 when alone.

    One k-d tree serves every (image, class) group: each group is lifted to its own height on a third axis,
    further apart than any two centres of a group, and the search radius stops short of the next height.
    """
    n = len(centres)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    extent = float(np.hypot(*np.ptp(centres, axis=0))) + 1.0  # more than any distance within a group
    points = np.column_stack([centres, group.astype(np.float64) * 2 * extent])
    distance, index = cKDTree(points).query(points, k=2, distance_upper_bound=1.5 * extent)
    # Column 0 is the centre itself unless another centre coincides with it, which is then the neighbour.
    other = np.where(index[:, 0] == np.arange(n), 1, 0)
    rows = np.arange(n)
    found = index[rows, other] < n
    return np.where(found, distance[rows, other], np.nan), np.where(found, index[rows, other], -1)


def axial_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| for axial angles in degrees (a box at θ is the box at θ + 180): 0 to 90."""
    difference = np.mod(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), 180.0)
    return np.minimum(difference, 180.0 - difference)


# --------------------------------------------------------------------------------------------------------
# distances


def axial_wasserstein_deg(a_deg: np.ndarray, b_deg: np.ndarray) -> float:
    """Wasserstein-1 between two samples of axial angles (degrees), on the circle of circumference 180.

    On a circle, W1 = min over c of the integral of |F_A - F_B - c| (Rabin, Delon and Gousseau, 2011): the
    cheapest way round is found by shifting the CDF difference by its length-weighted median.
    """
    difference, lengths = _circular_cdf_difference(a_deg, b_deg)
    order = np.argsort(difference)
    cumulative = np.cumsum(lengths[order])
    median = difference[order][np.searchsorted(cumulative, cumulative[-1] / 2)]
    return float(np.sum(lengths * np.abs(difference - median)))


def axial_kuiper(a_deg: np.ndarray, b_deg: np.ndarray) -> float:
    """Kuiper's statistic max(F_A - F_B) - min(F_A - F_B) of axial angles: KS on a circle, in [0, 1]."""
    difference, _ = _circular_cdf_difference(a_deg, b_deg)
    return float(difference.max() - difference.min())


def _circular_cdf_difference(a_deg: np.ndarray, b_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F_A - F_B on each arc between consecutive sample angles (cut at 0), and the arcs' lengths."""
    a = np.sort(np.mod(np.asarray(a_deg, dtype=np.float64), 180.0))
    b = np.sort(np.mod(np.asarray(b_deg, dtype=np.float64), 180.0))
    points = np.sort(np.concatenate([a, b]))
    below_a = np.searchsorted(a, points, side="right") / len(a)
    below_b = np.searchsorted(b, points, side="right") / len(b)
    difference = below_a - below_b
    # The last arc wraps from the largest angle round to the smallest, where F_A - F_B = 1 - 1 = 0.
    lengths = np.diff(np.append(points, points[0] + 180.0))
    return difference, lengths


def position_tv(a_xy: np.ndarray, b_xy: np.ndarray, bins: int = POSITION_BINS) -> float:
    """Total variation between the ``bins x bins`` histograms of normalised centres (clipped to the image)."""
    histograms = []
    for xy in (a_xy, b_xy):
        xy = np.clip(np.asarray(xy, dtype=np.float64), 0.0, 1.0)
        counts, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=bins, range=[[0, 1], [0, 1]])
        histograms.append(counts / counts.sum())
    return float(0.5 * np.abs(histograms[0] - histograms[1]).sum())


def _distance(feature: Feature, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(distance, KS-like statistic, its 95% critical value) of two samples of one feature."""
    if feature.metric == "tv_4x4":
        return position_tv(a, b), position_tv(a, b), math.nan
    noise = math.sqrt((len(a) + len(b)) / (len(a) * len(b)))
    if feature.metric == "w1_axial":
        return axial_wasserstein_deg(a, b), axial_kuiper(a, b), _KUIPER_95 * noise
    if feature.scale == "log":
        a, b = np.log(a), np.log(b)
    ks = float(ks_2samp(a, b, method="asymp").statistic)  # the exact p-value, unused, is slow to compute
    return float(wasserstein_distance(a, b)), ks, _KS_95 * noise


# --------------------------------------------------------------------------------------------------------
# comparing


def compare_layouts(
    a_layouts: Sequence[Layout],
    b_layouts: Sequence[Layout],
    categories: Sequence[str],
    *,
    b_categories: Sequence[str] | None = None,
    names: tuple[str, str] = ("A", "B"),
) -> LayoutComparison:
    """Compare two sets of layouts per class and feature (see the module docstring for the distances).

    `categories` are the names that ``a_layouts``' labels index; `b_categories` those of ``b_layouts`` when
    they differ (as when two data sets are read with `read_layouts`). Classes are matched by name: the
    result covers the union, A's order first, and notes the classes missing from a side.
    """
    if names[0] == names[1]:
        raise ValueError(f"the two sets need different names, got {names[0]!r} twice")
    a_categories = list(categories)
    b_categories = a_categories if b_categories is None else list(b_categories)
    union = a_categories + [name for name in b_categories if name not in a_categories]
    features = (layout_features(a_layouts, a_categories), layout_features(b_layouts, b_categories))
    counts = (
        image_class_counts(a_layouts, a_categories).reindex(columns=union, fill_value=0),
        image_class_counts(b_layouts, b_categories).reindex(columns=union, fill_value=0),
    )
    groups = [dict(tuple(side.groupby("category", sort=False))) for side in features]

    rows = []
    for category in [*union, ALL_CLASSES]:
        for feature in FEATURES:
            a, b = (
                _feature_values(_instances_of(side, category, by_class), side_counts, feature, category)
                for side, by_class, side_counts in zip(features, groups, counts)
            )
            rows.append(_compare_row(category, feature, a, b, names))
    table = pd.DataFrame(rows).set_index(["category", "feature"])[TABLE_COLUMNS]

    missing = {name: [c for c in union if c not in group] for name, group in zip(names, groups)}
    notes = [
        f"{category!r} is not among {name}'s categories"
        for name, side_categories in zip(names, (a_categories, b_categories))
        for category in union
        if category not in side_categories
    ]
    notes += [
        f"{name} has no instance of {', '.join(map(repr, absent))}" for name, absent in missing.items() if absent
    ]
    return LayoutComparison(names, union, table, features, counts, missing, notes)


def _instances_of(
    features: pd.DataFrame, category: str, groups: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """The feature rows of one class (all rows for `ALL_CLASSES`); `groups` are the rows by class, if known."""
    if category == ALL_CLASSES:
        return features
    if groups is not None:
        return groups.get(category, features.iloc[0:0])
    return features[features["category"] == category]


def _feature_values(
    instances: pd.DataFrame, counts: pd.DataFrame, feature: Feature, category: str
) -> np.ndarray:
    """Finite values of one feature of a class (positive ones for a log feature); ``(n, 2)`` for position.

    `instances` are the class's rows of `layout_features`; counts come from the per-image table instead.
    """
    if feature.name == "count":
        column = counts.sum(axis=1) if category == ALL_CLASSES else counts[category]
        return column.to_numpy(dtype=np.float64)
    values = instances[list(feature.columns)].to_numpy(dtype=np.float64)
    keep = np.isfinite(values).all(axis=1)
    if feature.scale == "log":
        keep &= (values > 0).all(axis=1)
    values = values[keep]
    return values if len(feature.columns) > 1 else values[:, 0]


def _compare_row(
    category: str, feature: Feature, a: np.ndarray, b: np.ndarray, names: tuple[str, str]
) -> dict:
    row = {"category": category, "feature": feature.name, "metric": feature.metric, "unit": feature.unit}
    row.update(distance=math.nan, ks=math.nan, ks_95=math.nan, n_a=len(a), n_b=len(b), note="")
    short = [name for name, sample in zip(names, (a, b)) if len(sample) < MIN_SAMPLES]
    if short:
        row["note"] = f"fewer than {MIN_SAMPLES} samples in {' and '.join(short)}"
        return row
    row["distance"], row["ks"], row["ks_95"] = _distance(feature, a, b)
    return row


# --------------------------------------------------------------------------------------------------------
# the result: tables and files


@dataclass
class LayoutComparison:
    """Per class and feature, the distance between two sets of layouts; see the module docstring.

    ``table`` is indexed by (category, feature), categories in the union order then "all classes",
    with columns ``metric, unit, distance, ks, ks_95, n_a, n_b, note``. ``features`` and ``counts`` keep
    both sides' `layout_features` and `image_class_counts` (counts over the union of categories) for plots.
    ``missing`` maps each side's name to the classes it has no instance of.
    """

    names: tuple[str, str]
    categories: list[str]
    table: pd.DataFrame
    features: tuple[pd.DataFrame, pd.DataFrame]
    counts: tuple[pd.DataFrame, pd.DataFrame]
    missing: dict[str, list[str]]
    notes: list[str]

    def values(self, side: int, feature: str, category: str) -> np.ndarray:
        """The finite values of a feature on side 0 (A) or 1 (B) for a class or `ALL_CLASSES`, unlogged."""
        rows = _instances_of(self.features[side], category)
        return _feature_values(rows, self.counts[side], FEATURE_BY_NAME[feature], category)

    def wide(self, column: str = "ks") -> pd.DataFrame:
        """One column of the table as category x feature (e.g. ``"ks"`` or ``"distance"``)."""
        wide = self.table[column].unstack("feature")
        return wide.loc[[*self.categories, ALL_CLASSES], [feature.name for feature in FEATURES]]

    def summary(self) -> dict:
        """Everything but the per-instance tables, as plain JSON-able Python (NaN becomes None)."""
        return jsonable(
            {
                "names": list(self.names),
                "images": [len(counts) for counts in self.counts],
                "instances": [len(features) for features in self.features],
                "categories": self.categories,
                "missing": self.missing,
                "notes": self.notes,
                "features": [
                    {"name": f.name, "metric": f.metric, "unit": f.unit, "values": f.label} for f in FEATURES
                ],
                "rows": self.table.reset_index().to_dict(orient="records"),
            }
        )

    def to_markdown(self) -> str:
        """A compact table for BENCHMARKS.md: per class and feature, KS with W1 (or TV) in brackets."""
        a, b = self.names
        headers = ["class", f"n {a}", f"n {b}", *[_markdown_header(feature) for feature in FEATURES]]
        lines = [
            f"**{a}** ({len(self.counts[0]):,} layouts) vs **{b}** ({len(self.counts[1]):,} layouts)",
            "",
            "| " + " | ".join(headers) + " |",
            "|" + "|".join([":--", "--:", "--:", *["--:"] * len(FEATURES)]) + "|",
        ]
        for category, n_a, n_b, cells in self._rows():
            lines.append("| " + " | ".join([category, f"{n_a:,}", f"{n_b:,}", *cells]) + " |")
        lines += ["", _LEGEND]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def print(self, console: Console | None = None) -> None:
        """The same table in a terminal, with rich: KS on top of each cell, W1 (dim) below it."""
        console = console or Console()
        a, b = self.names
        rows = [
            (category, f"{n_a:,}\n{n_b:,}", [cell.replace(" (", "\n[dim]").replace(")", "[/dim]") for cell in cells])
            for category, n_a, n_b, cells in self._rows()
        ]
        headers = ["class", f"n {a}\nn {b}", *["\n".join(_HEADERS[feature.name]) for feature in FEATURES]]
        padding = (0, 1) if console.width >= 100 else (0, 0)  # a narrow terminal gets one space between columns
        table = Table(
            title=f"Layout fidelity: {a} ({len(self.counts[0]):,} layouts) vs {b} ({len(self.counts[1]):,})",
            caption=_LEGEND,
            title_justify="left",
            caption_justify="left",
            box=box.SIMPLE_HEAD,
            padding=padding,
            show_edge=False,
        )
        for position, header in enumerate(headers):
            # Cells never shrink: a number cut to "0.…" says nothing.
            lines = [*header.split("\n"), *(line for row in rows for line in _plain_lines(row, position))]
            width = max(len(line) for line in lines)
            table.add_column(header, justify="left" if position == 0 else "right", no_wrap=True, min_width=width)
        for category, n, cells in rows:
            table.add_row(category, n, *cells, end_section=True)
        console.print(table)
        for note in self.notes:
            console.print(f"[dim]- {note}[/dim]")

    def _rows(self) -> list[tuple[str, int, int, list[str]]]:
        rows = []
        for category in [*self.categories, ALL_CLASSES]:
            n_a, n_b = (int(len(self.values(side, "size", category))) for side in (0, 1))
            rows.append((category, n_a, n_b, [_cell(self.table.loc[(category, f.name)], f) for f in FEATURES]))
        return rows

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``comparison.csv``, ``comparison.json``, ``comparison.md`` and the PNG plots into `out_dir`."""
        from ccaug.layouts.compare_plots import plot_comparison  # matplotlib loads only when plotting

        out_dir = Path(out_dir)
        with atomic_path(out_dir / "comparison.csv") as tmp:
            self.table.to_csv(tmp)
        write_json(out_dir / "comparison.json", self.summary(), indent=2)
        write_text(out_dir / "comparison.md", self.to_markdown())
        plots = plot_comparison(self, out_dir)
        return [out_dir / "comparison.csv", out_dir / "comparison.json", out_dir / "comparison.md", *plots]


_HEADERS = {  # feature: (name, unit of its W1)
    "count": ("count", "/img"),
    "size": ("size", "ln"),
    "aspect": ("aspect", "ln"),
    "orientation": ("orient", "°"),
    "cx": ("cx", ""),
    "cy": ("cy", ""),
    "position": ("pos.", "TV"),
    "spacing": ("spacing", "ln"),
    "alignment": ("align.", "°"),
}
_LEGEND = (
    "Each cell: KS statistic, 0 = same distribution, 1 = disjoint (Kuiper's for orientation), then "
    "Wasserstein-1 in the column's unit (ln: of a log ratio, 0.69 = twice; cx, cy: fraction of the image "
    "side); position: total variation between 4x4 histograms of centres; -: fewer than 2 samples on a side. "
    "n: instances; count compares instances per image over all images, spacing and alignment the instances "
    "with a neighbour of their class."
)


def _plain_lines(row: tuple[str, str, list[str]], position: int) -> list[str]:
    """The lines of one cell of a rich row, without markup (for column widths)."""
    category, n, cells = row
    text = [category, n, *cells][position]
    return text.replace("[dim]", "").replace("[/dim]", "").split("\n")


def _markdown_header(feature: Feature) -> str:
    name, unit = _HEADERS[feature.name]
    return f"{name} ({unit})" if unit else name


def _cell(row: pd.Series, feature: Feature) -> str:
    if not math.isfinite(row["distance"]):
        return "-"
    if feature.metric == "tv_4x4":
        return f"{row['distance']:.2f}"
    unit = "°" if feature.unit == "deg" else ""
    return f"{row['ks']:.2f} ({_short(row['distance'])}{unit})"


def _short(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"
