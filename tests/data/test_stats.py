import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from ccaug.data.dataset import Dataset
from ccaug.data.geometry import hbb_to_polygon, le90_to_polygon
from ccaug.data.stats import axial_spread_deg, dataset_stats, print_stats
from ccaug.data.stats_plots import plot_stats

CATEGORIES = ["car", "ship", "plane"]  # "plane" has no instances


def _box(xmin, ymin, xmax, ymax):
    return hbb_to_polygon(np.array([[xmin, ymin, xmax, ymax]], dtype=float))[0]


def _rotated(cx, cy, w, h, theta):
    return le90_to_polygon(np.array([[cx, cy, w, h, theta]]))[0]


@pytest.fixture
def dataset():
    """3 images: two train images with 3 and 1 instances, one empty val image."""
    images = [
        {"image_id": 1, "file": "a.png", "width": 100, "height": 80, "split": "train"},
        {"image_id": 2, "file": "b.png", "width": 64, "height": 64, "split": "train"},
        {"image_id": 3, "file": "c.png", "width": 50, "height": 50, "split": "val"},
    ]
    plain = {"difficult": False, "truncated": False}
    instances = [
        {"image_id": 1, "category": "car", "polygon": _box(0, 0, 20, 10), **plain},
        {"image_id": 1, "category": "car", "polygon": _rotated(50, 40, 30, 10, math.pi / 6), **plain},
        {"image_id": 1, "category": "ship", "polygon": _box(70, 60, 80, 70), **plain, "difficult": True},
        {"image_id": 2, "category": "ship", "polygon": _box(16, 32, 56, 40), **plain, "truncated": True},
    ]
    return Dataset.from_records(images, instances, CATEGORIES)


def test_per_class_counts_follow_category_order_and_keep_empty_classes(dataset):
    per_class = dataset_stats(dataset).per_class.set_index("category")
    assert per_class.index.tolist() == CATEGORIES
    assert per_class["count"].tolist() == [2, 2, 0]
    assert per_class["images"].tolist() == [1, 2, 0]
    assert per_class["difficult"].tolist() == [0, 1, 0]
    assert per_class["truncated"].tolist() == [0, 1, 0]
    assert per_class.loc["plane", ["count", "images", "difficult", "truncated"]].tolist() == [0, 0, 0, 0]
    assert math.isnan(per_class.loc["plane", "long_side_median"])


def test_per_class_sizes_come_from_the_le90_box(dataset):
    car = dataset_stats(dataset).per_class.set_index("category").loc["car"]
    # long sides 20 and 30, short sides 10 and 10, aspect ratios 2 and 3, areas 200 and 300
    assert car["long_side_median"] == pytest.approx(25.0)
    assert car["long_side_p5"] == pytest.approx(20.5)
    assert car["long_side_p95"] == pytest.approx(29.5)
    assert car["short_side_median"] == pytest.approx(10.0)
    assert car["aspect_median"] == pytest.approx(2.5)
    assert car["area_median"] == pytest.approx(250.0)
    # angles 0 and 30 degrees: doubled, the resultant length is cos(30 degrees)
    expected_spread = math.degrees(math.sqrt(-2 * math.log(math.cos(math.pi / 6))) / 2)
    assert car["orientation_spread_deg"] == pytest.approx(expected_spread)


def test_geometry_table_has_sizes_angle_and_normalised_centre(dataset):
    geometry = dataset_stats(dataset).geometry
    rotated = geometry.iloc[1]
    assert rotated["long_side"] == pytest.approx(30.0)
    assert rotated["short_side"] == pytest.approx(10.0)
    assert rotated["aspect"] == pytest.approx(3.0)
    assert rotated["angle_deg"] == pytest.approx(30.0)
    assert (rotated["cx_norm"], rotated["cy_norm"]) == pytest.approx((0.5, 0.5))
    assert len(geometry) == 4


def test_per_split_and_instances_per_image(dataset):
    stats = dataset_stats(dataset)
    assert stats.per_split.to_dict(orient="records") == [
        {"split": "train", "images": 2, "instances": 4, "empty_images": 0},
        {"split": "val", "images": 1, "instances": 0, "empty_images": 1},
    ]
    summary = stats.instances_per_image.iloc[0]
    assert summary["images"] == 3
    assert summary["instances"] == 4
    assert summary["mean"] == pytest.approx(4 / 3)
    assert summary["median"] == 1
    assert summary["max"] == 3
    assert summary["empty_images"] == 1
    assert stats.per_image["instances"].tolist() == [3, 1, 0]


def test_orientation_spread_treats_a_half_turn_as_the_same_box():
    nearly_parallel = np.radians([-89.0, 89.0])  # the same axis, 2 degrees apart
    assert axial_spread_deg(nearly_parallel) == pytest.approx(1.0, abs=0.01)
    assert axial_spread_deg(np.zeros(5)) == pytest.approx(0.0)
    assert math.isnan(axial_spread_deg(np.array([])))


def test_print_stats_shows_every_class_and_the_totals(dataset):
    buffer = io.StringIO()
    print_stats(dataset_stats(dataset), Console(file=buffer, width=160))
    text = buffer.getvalue()
    for name in CATEGORIES:
        assert name in text
    assert "2 images, 4 instances" in text


def _assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()


def test_plot_stats_writes_pngs_csv_and_json(dataset, tmp_path):
    written = plot_stats(dataset, tmp_path / "stats")
    names = {path.name for path in written}
    assert {"class_counts.png", "sizes.png", "orientation.png", "aspect_ratios.png"} <= names
    assert {"instances_per_image.png", "centres.png", "stats.csv", "stats.json"} <= names
    for path in written:
        assert path.is_file()
        if path.suffix == ".png":
            _assert_png(path)
    assert not list((tmp_path / "stats").glob(".*"))  # no temporary files left behind
    table = pd.read_csv(tmp_path / "stats" / "stats.csv")
    assert table["category"].tolist() == CATEGORIES
    summary = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert summary["images"] == 3 and summary["instances"] == 4
    assert summary["per_class"][2]["count"] == 0
    assert summary["per_class"][2]["long_side_median"] is None  # NaN is not valid JSON


def test_empty_dataset_gives_zero_tables_and_still_plots(tmp_path):
    empty = Dataset.empty(["car", "ship"])
    stats = dataset_stats(empty)
    assert stats.per_class["count"].tolist() == [0, 0]
    assert stats.instances_per_image.iloc[0].tolist() == [0, 0, 0.0, 0.0, 0, 0]
    assert stats.per_split.empty
    print_stats(stats, Console(file=io.StringIO()))
    written = plot_stats(stats, tmp_path)
    for path in written:
        if path.suffix == ".png":
            _assert_png(path)
