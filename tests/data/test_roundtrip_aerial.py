"""Every format round-trips the embedded aerial data set: what one format writes, it reads back the same."""

from __future__ import annotations

import numpy as np
import pytest

from ccaug.data import read_dataset, write_dataset
from ccaug.data.geometry import POLY_COLUMNS, polygon_to_hbb
from ccaug.datasets import make_aerial


@pytest.fixture(scope="module")
def aerial(tmp_path_factory):
    return make_aerial(tmp_path_factory.mktemp("aerial"), n=10, seed=5, workers=1, progress=False)


def _sorted_instances(dataset):
    """Instances keyed by (image file stem, polygon) so that formats with other image ids compare equal."""
    stems = dataset.images.set_index("image_id")["file"].map(lambda file: file.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    table = dataset.instances.assign(stem=dataset.instances["image_id"].map(stems))
    return table.sort_values(["stem", "x1", "y1", "x2", "y2"]).reset_index(drop=True)


@pytest.mark.parametrize("fmt", ["dota", "coco", "dior", "yolo-obb"])
def test_oriented_formats_keep_every_instance_polygon_and_class(aerial, tmp_path, fmt):
    back = read_dataset(write_dataset(aerial, tmp_path / fmt, fmt), fmt)
    assert back.categories == aerial.categories
    assert sorted(back.images["split"]) == sorted(aerial.images["split"])
    expected, got = _sorted_instances(aerial), _sorted_instances(back)
    assert len(got) == len(expected)
    assert (got["category"].astype(str) == expected["category"].astype(str)).all()
    # YOLO-OBB stores coordinates normalised to the image size, the others in pixels.
    tolerance = 1e-3 if fmt == "yolo-obb" else 1e-6
    np.testing.assert_allclose(got[POLY_COLUMNS], expected[POLY_COLUMNS], atol=tolerance)
    if fmt != "yolo-obb":  # YOLO has no difficult flag
        assert (got["difficult"] == expected["difficult"]).all()


def test_yolo_keeps_the_axis_aligned_box_of_every_instance(aerial, tmp_path):
    back = read_dataset(write_dataset(aerial, tmp_path / "yolo", "yolo"), "yolo")
    expected = np.sort(polygon_to_hbb(aerial.polygons), axis=0)
    got = np.sort(polygon_to_hbb(back.polygons), axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_the_written_images_are_the_rendered_images(aerial, tmp_path):
    back = read_dataset(write_dataset(aerial, tmp_path / "coco", "coco"), "coco")
    source = aerial.image_path(aerial.images.iloc[0])
    copied = back.image_path(back.images.loc[back.images["file"].str.endswith(source.name)].iloc[0])
    assert copied.read_bytes() == source.read_bytes()
