"""Statistics of a data set: what is in it, how big and how oriented, where, and how crowded.

These numbers decide what a layout model has to learn (size and orientation per class, objects per image)
and show at a glance whether a conversion or a tiling went wrong. `dataset_stats` computes them as pandas
tables, `print_stats` shows them in a terminal and `ccaug.data.stats_plots.plot_stats` writes PNG plots plus
``stats.csv`` and ``stats.json`` into a folder.

Sizes come from the le90 box: the long side is ``w`` and the short side ``h`` (``w >= h``), the aspect ratio
is ``w / h``, and the angle is le90's ``theta`` in degrees in ``[-90, 90)``. The orientation spread of a
class is the circular standard deviation of those axial angles: 0 when all its objects are parallel, about
50 degrees or more when they point every way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from ccaug.data.dataset import Dataset

PER_CLASS_COLUMNS = [
    "category",
    "count",
    "images",
    "difficult",
    "truncated",
    "long_side_median",
    "long_side_p5",
    "long_side_p95",
    "short_side_median",
    "short_side_p5",
    "short_side_p95",
    "aspect_median",
    "area_median",
    "orientation_spread_deg",
]


@dataclass
class DatasetStats:
    """The statistics tables; NaN marks a number that does not exist (the median size of an absent class)."""

    categories: list[str]
    per_class: pd.DataFrame  # one row per category, in the data set's order, absent classes included
    per_split: pd.DataFrame  # split, images, instances, empty_images
    instances_per_image: pd.DataFrame  # one row: images, instances, mean, median, max, empty_images
    per_image: pd.DataFrame  # image_id, file, split, width, height, instances
    geometry: pd.DataFrame  # with_geometry() + long_side, short_side, aspect, angle_deg, cx_norm, cy_norm

    def summary(self) -> dict:
        """Every summary number as plain JSON-able Python (NaN becomes None)."""
        totals = self.instances_per_image.iloc[0]
        return jsonable(
            {
                "images": int(totals["images"]),
                "instances": int(totals["instances"]),
                "categories": list(self.categories),
                "instances_per_image": self.instances_per_image.iloc[0].to_dict(),
                "per_split": self.per_split.to_dict(orient="records"),
                "per_class": self.per_class.to_dict(orient="records"),
            }
        )


# --------------------------------------------------------------------------------------------------------
# computing


def dataset_stats(dataset: Dataset) -> DatasetStats:
    """Per-class, per-split and per-image statistics of a data set (empty data sets give zero tables)."""
    geometry = _geometry_table(dataset)
    per_image = _per_image_table(dataset)
    return DatasetStats(
        categories=list(dataset.categories),
        per_class=_per_class_table(geometry, dataset.categories),
        per_split=_per_split_table(per_image, dataset.splits),
        instances_per_image=_instances_per_image_table(per_image),
        per_image=per_image,
        geometry=geometry,
    )


def _geometry_table(dataset: Dataset) -> pd.DataFrame:
    table = dataset.with_geometry()
    table["long_side"] = table["w"]
    table["short_side"] = table["h"]
    table["aspect"] = safe_divide(table["w"].to_numpy(), table["h"].to_numpy())
    table["angle_deg"] = np.degrees(table["theta"].to_numpy(dtype=np.float64))
    sizes = dataset.images.set_index("image_id")[["width", "height"]]
    width = table["image_id"].map(sizes["width"]).to_numpy(dtype=np.float64)
    height = table["image_id"].map(sizes["height"]).to_numpy(dtype=np.float64)
    table["cx_norm"] = safe_divide(table["cx"].to_numpy(), width)
    table["cy_norm"] = safe_divide(table["cy"].to_numpy(), height)
    return table


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division that gives NaN (not inf and a warning) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    result = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def _per_image_table(dataset: Dataset) -> pd.DataFrame:
    counts = dataset.instances["image_id"].value_counts()
    table = dataset.images[["image_id", "file", "split", "width", "height"]].copy()
    table["instances"] = table["image_id"].map(counts).fillna(0).astype("int64")
    return table


def _per_class_table(geometry: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    groups = dict(tuple(geometry.groupby("category", observed=True)))
    rows = [_class_row(name, groups.get(name, geometry.iloc[0:0])) for name in categories]
    return pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)


def _class_row(name: str, instances: pd.DataFrame) -> dict:
    long_side = _quantiles(instances["long_side"], (0.5, 0.05, 0.95))
    short_side = _quantiles(instances["short_side"], (0.5, 0.05, 0.95))
    return {
        "category": name,
        "count": len(instances),
        "images": instances["image_id"].nunique(),
        "difficult": int(instances["difficult"].sum()),
        "truncated": int(instances["truncated"].sum()),
        "long_side_median": long_side[0],
        "long_side_p5": long_side[1],
        "long_side_p95": long_side[2],
        "short_side_median": short_side[0],
        "short_side_p5": short_side[1],
        "short_side_p95": short_side[2],
        "aspect_median": _quantiles(instances["aspect"], (0.5,))[0],
        "area_median": _quantiles(instances["area"], (0.5,))[0],
        "orientation_spread_deg": axial_spread_deg(instances["theta"].to_numpy(dtype=np.float64)),
    }


def _quantiles(values: pd.Series, qs: tuple[float, ...]) -> list[float]:
    values = values.to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return [math.nan] * len(qs)
    return [float(v) for v in np.quantile(values, qs)]


def axial_spread_deg(theta: np.ndarray) -> float:
    """Circular standard deviation (degrees) of axial angles in radians: a box at θ is the box at θ + π.

    Angles are doubled so that the half-turn ambiguity disappears, the usual circular deviation
    ``sqrt(-2 ln R)`` is taken, and the result halved back. NaN for no angles.
    """
    theta = np.asarray(theta, dtype=np.float64)
    theta = theta[np.isfinite(theta)]
    if len(theta) == 0:
        return math.nan
    resultant = abs(np.mean(np.exp(2j * theta)))
    return float(np.degrees(math.sqrt(-2.0 * math.log(max(resultant, 1e-12))) / 2))


def _per_split_table(per_image: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    rows = []
    for split in splits:
        counts = per_image.loc[per_image["split"] == split, "instances"]
        rows.append(
            {
                "split": split,
                "images": len(counts),
                "instances": int(counts.sum()),
                "empty_images": int((counts == 0).sum()),
            }
        )
    return pd.DataFrame(rows, columns=["split", "images", "instances", "empty_images"])


def _instances_per_image_table(per_image: pd.DataFrame) -> pd.DataFrame:
    counts = per_image["instances"]
    has_images = len(counts) > 0
    row = {
        "images": len(counts),
        "instances": int(counts.sum()),
        "mean": float(counts.mean()) if has_images else 0.0,
        "median": float(counts.median()) if has_images else 0.0,
        "max": int(counts.max()) if has_images else 0,
        "empty_images": int((counts == 0).sum()),
    }
    return pd.DataFrame([row])


def jsonable(value):
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------------------
# printing


def print_stats(stats: DatasetStats, console: Console | None = None) -> None:
    """A summary table (images, instances, splits, crowding) and a per-class table, with rich."""
    console = console or Console()
    console.print(_summary_table(stats))
    console.print(_per_class_rich_table(stats, with_ranges=console.width >= 110))


def _summary_table(stats: DatasetStats) -> Table:
    totals = stats.instances_per_image.iloc[0]
    table = Table(title="Data set", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("images", f"{int(totals['images']):,}")
    table.add_row("instances", f"{int(totals['instances']):,}")
    table.add_row("categories", str(len(stats.categories)))
    for _, split in stats.per_split.iterrows():
        name = split["split"] or "(unsplit)"
        table.add_row(f"  {name}", f"{split['images']:,} images, {split['instances']:,} instances")
    table.add_row(
        "instances per image",
        f"mean {totals['mean']:.1f}, median {totals['median']:g}, max {int(totals['max'])}",
    )
    table.add_row("empty images", f"{int(totals['empty_images']):,}")
    return table


def _per_class_rich_table(stats: DatasetStats, with_ranges: bool = True) -> Table:
    """One row per class; the [5th-95th percentile] ranges only where the terminal is wide enough."""
    title = "Per class: sizes in pixels from the le90 box, as median" + (" [5th-95th percentile]" if with_ranges else "")
    headers = ["class", "count", "images", "diffi-\ncult", "trun-\ncated", "long\nside", "short\nside", "aspect", "area", "orient.\nspread"]
    rows = [
        [
            row["category"],
            f"{row['count']:,}",
            f"{row['images']:,}",
            f"{row['difficult']:,}",
            f"{row['truncated']:,}",
            _size_range(row, "long_side", with_ranges),
            _size_range(row, "short_side", with_ranges),
            _number(row["aspect_median"], "{:.2f}"),
            _number(row["area_median"], "{:,.0f}"),
            _number(row["orientation_spread_deg"], "{:.0f}°"),
        ]
        for _, row in stats.per_class.iterrows()
    ]
    padding = (0, 1) if with_ranges else (0, 0)  # a narrow terminal gets one space between columns
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=padding, show_edge=False)
    for position, header in enumerate(headers):
        # Cells never wrap or shrink: a number cut to "4,3…" is worse than a wider table.
        width = max([len(part) for part in header.split("\n")] + [len(cells[position]) for cells in rows])
        table.add_column(header, justify="left" if position == 0 else "right", no_wrap=True, min_width=width)
    for cells, count in zip(rows, stats.per_class["count"]):
        table.add_row(*cells, style="dim" if count == 0 else None)
    return table


def _size_range(row: pd.Series, prefix: str, with_range: bool) -> str:
    if not math.isfinite(row[f"{prefix}_median"]):
        return "-"
    if not with_range:
        return f"{row[f'{prefix}_median']:.0f}"
    return f"{row[f'{prefix}_median']:.0f} [{row[f'{prefix}_p5']:.0f}-{row[f'{prefix}_p95']:.0f}]"


def _number(value: float, template: str) -> str:
    return template.format(value) if math.isfinite(value) else "-"
