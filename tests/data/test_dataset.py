"""The Dataset: validation of its tables, category order, and the access helpers every format uses."""

import numpy as np
import pytest

from ccaug.data.dataset import IMAGE_COLUMNS, INSTANCE_COLUMNS, Dataset
from ccaug.data.geometry import HBB_COLUMNS, LE90_COLUMNS, POLY_COLUMNS, hbb_to_polygon

CATEGORIES = ["ship", "car", "plane"]  # deliberately unsorted


def box(xmin, ymin, xmax, ymax):
    return hbb_to_polygon(np.array([[xmin, ymin, xmax, ymax]], dtype=float))[0]


def records():
    images = [
        {"image_id": 7, "file": "a.png", "width": 100, "height": 80, "split": "train"},
        {"image_id": 3, "file": "b.png", "width": 50, "height": 50, "split": "val"},
        {"image_id": 5, "file": "c.png", "width": 60, "height": 40, "split": "train"},
    ]
    instances = [
        {"image_id": 7, "category": "car", "polygon": box(0, 0, 10, 5)},
        {"image_id": 3, "category": "ship", "polygon": box(5, 5, 25, 15), "difficult": True},
        {"image_id": 7, "category": "plane", "polygon": box(20, 20, 30, 40)},
    ]
    return images, instances


@pytest.fixture
def dataset():
    images, instances = records()
    return Dataset.from_records(images, instances, CATEGORIES, root="/data")


def test_from_records_builds_typed_tables(dataset):
    assert list(dataset.images.columns[:5]) == IMAGE_COLUMNS
    assert list(dataset.instances.columns) == INSTANCE_COLUMNS
    assert dataset.instances["category"].dtype == "category"
    assert dataset.instances["difficult"].tolist() == [False, True, False]
    assert dataset.instances["truncated"].tolist() == [False, False, False]
    assert dataset.instances[POLY_COLUMNS].dtypes.eq(np.float64).all()


def test_categories_keep_their_order_and_unused_ones(dataset):
    assert dataset.categories == CATEGORIES
    assert list(dataset.instances["category"].cat.categories) == CATEGORIES
    np.testing.assert_array_equal(dataset.category_index(), [1, 0, 2])


def test_duplicate_image_ids_are_refused():
    images, instances = records()
    images[1]["image_id"] = 7
    with pytest.raises(ValueError, match="duplicate image ids"):
        Dataset.from_records(images, instances, CATEGORIES)


def test_unknown_category_is_refused():
    images, instances = records()
    instances[0]["category"] = "bus"
    with pytest.raises(ValueError, match="bus"):
        Dataset.from_records(images, instances, CATEGORIES)


def test_instance_of_a_missing_image_is_refused():
    images, instances = records()
    instances[0]["image_id"] = 99
    with pytest.raises(ValueError, match="99"):
        Dataset.from_records(images, instances, CATEGORIES)


@pytest.mark.parametrize("column", ["file", "width"])
def test_missing_image_column_is_refused(dataset, column):
    with pytest.raises(ValueError, match=column):
        Dataset(dataset.images.drop(columns=column), dataset.instances, CATEGORIES)


def test_missing_polygon_column_is_refused(dataset):
    with pytest.raises(ValueError, match="x3"):
        Dataset(dataset.images, dataset.instances.drop(columns="x3"), CATEGORIES)


def test_duplicate_category_names_and_bad_category_ids_are_refused(dataset):
    with pytest.raises(ValueError, match="duplicate category"):
        dataset.replace(categories=["ship", "car", "ship"])
    with pytest.raises(ValueError, match="category_ids"):
        dataset.replace(category_ids=[1, 2])
    with pytest.raises(ValueError, match="category_ids"):
        dataset.replace(category_ids=[1, 1, 2])


def test_missing_split_means_unsplit():
    images, instances = records()
    for image in images:
        del image["split"]
    assert Dataset.from_records(images, instances, CATEGORIES).splits == [""]


def test_a_data_set_without_instances_or_images_can_be_built():
    images, _ = records()
    assert len(Dataset.from_records(images, [], CATEGORIES).instances) == 0
    empty = Dataset.empty(CATEGORIES)
    assert len(empty) == 0 and empty.categories == CATEGORIES and empty.hbb.shape == (0, 4)


def test_extra_image_columns_are_kept_after_the_standard_ones():
    images, instances = records()
    for image in images:
        image["gsd"] = 0.5
    dataset = Dataset.from_records(images, instances, CATEGORIES)
    assert list(dataset.images.columns) == [*IMAGE_COLUMNS, "gsd"]


def test_subset_keeps_the_requested_order_and_all_categories(dataset):
    subset = dataset.subset([5, 7])
    assert subset.images["image_id"].tolist() == [5, 7]
    assert subset.instances["image_id"].tolist() == [7, 7]
    assert subset.categories == CATEGORIES
    assert subset.root == dataset.root


def test_split_selects_the_images_of_one_split(dataset):
    train = dataset.split("train")
    assert train.images["image_id"].tolist() == [7, 5]
    assert set(train.instances["image_id"]) == {7}
    assert dataset.splits == ["train", "val"]


def test_iter_images_yields_every_image_with_its_instances_in_table_order(dataset):
    seen = [
        (image["image_id"], group["category"].astype(str).tolist()) for image, group in dataset.iter_images()
    ]
    assert seen == [(7, ["car", "plane"]), (3, ["ship"]), (5, [])]


def test_with_geometry_adds_derived_columns_without_touching_the_instances(dataset):
    table = dataset.with_geometry()
    assert set(HBB_COLUMNS + LE90_COLUMNS + ["area"]) <= set(table.columns)
    np.testing.assert_allclose(table[HBB_COLUMNS].to_numpy()[0], [0, 0, 10, 5])
    np.testing.assert_allclose(table["area"], [50, 200, 200])
    np.testing.assert_allclose(table[["w", "h"]].to_numpy()[2], [20, 10])  # the long side is w
    assert "area" not in dataset.instances.columns


def test_image_path_joins_the_root(dataset):
    assert str(dataset.image_path(3)) == "/data/b.png"
    with pytest.raises(ValueError, match="root"):
        dataset.replace(root=None).image_path(3)
