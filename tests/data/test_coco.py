"""COCO json: round trips, category ids and order, geometry from segmentations, and every refusal."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

from ccaug.data.errors import DataError, Problems
from ccaug.data.formats import read_dataset, write_dataset
from ccaug.data.formats.coco import min_area_rectangles, read_coco, write_coco
from ccaug.data.geometry import POLY_COLUMNS, polygon_to_le90
from tests.conftest import write_png

CATEGORIES = [{"id": 5, "name": "ship"}, {"id": 2, "name": "storage tank"}, {"id": 9, "name": "plane"}]


def document():
    """A small valid COCO document: ids that are neither sorted nor 1..n."""
    return {
        "info": {"description": "hand-made"},
        "licenses": [{"id": 1, "name": "CC-BY"}],
        "images": [
            {"id": 4, "file_name": "images/a.png", "width": 96, "height": 64, "gsd": 0.3, "license": 1},
            {"id": 8, "file_name": "images/b.png", "width": 80, "height": 80, "license": 1},
        ],
        "annotations": [
            {"id": 17, "image_id": 4, "category_id": 2, "bbox": [10, 10, 20, 10], "iscrowd": 0},
            {
                "id": 18,
                "image_id": 4,
                "category_id": 5,
                "bbox": [30, 5, 10, 10],
                "segmentation": [[30, 10, 35, 5, 40, 10, 35, 15]],
                "difficult": 1,
            },
            {"id": 19, "image_id": 8, "category_id": 9, "bbox": [1, 2, 3, 4], "iscrowd": 1},
        ],
        "categories": copy.deepcopy(CATEGORIES),
    }


def write_folder(folder, doc, name="annotations.json"):
    """Write `doc` and PNG files for its images into `folder`; returns the json path."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in doc.get("images", []):
        file_name = image.get("file_name")
        if isinstance(file_name, str) and ".." not in file_name and not file_name.startswith("/"):
            write_png(folder / image["file_name"], image.get("width", 8), image.get("height", 8))
    path = folder / name
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def coco_folder(tmp_path):
    write_folder(tmp_path / "coco", document())
    return tmp_path / "coco"


# --------------------------------------------------------------------------------------------------------
# reading
def test_reads_images_instances_categories_and_metadata(coco_folder):
    dataset = read_coco(coco_folder)
    assert dataset.categories == ["ship", "storage tank", "plane"]
    assert dataset.category_ids == [5, 2, 9]
    assert dataset.images["image_id"].tolist() == [4, 8]
    assert dataset.images["file"].tolist() == ["images/a.png", "images/b.png"]
    assert dataset.images["split"].tolist() == ["", ""]
    assert dataset.images["gsd"].iloc[0] == 0.3 and np.isnan(dataset.images["gsd"].iloc[1])
    assert dataset.meta == {"info": {"description": "hand-made"}, "licenses": [{"id": 1, "name": "CC-BY"}]}
    assert dataset.instances["category"].astype(str).tolist() == ["storage tank", "ship", "plane"]
    np.testing.assert_allclose(dataset.polygons[0], [10, 10, 30, 10, 30, 20, 10, 20])  # from the bbox
    np.testing.assert_allclose(dataset.polygons[1], [30, 10, 35, 5, 40, 10, 35, 15])  # the 4-point polygon
    assert dataset.instances["difficult"].tolist() == [False, True, True]  # iscrowd 1 reads as difficult


def test_a_single_json_file_resolves_images_beside_it(tmp_path):
    doc = document()
    doc["images"][0]["file_name"] = "a.png"  # Roboflow style: images next to the json
    doc["images"][1]["file_name"] = "sub/b.png"
    path = write_folder(tmp_path / "export", doc, name="_annotations.coco.json")
    dataset = read_coco(path)
    assert dataset.root == tmp_path / "export"
    assert dataset.images["file"].tolist() == ["a.png", "sub/b.png"]
    assert dataset.image_path(8).is_file()


def test_split_folders_give_splits_and_share_the_category_list(tmp_path):
    train, val = document(), document()
    val["images"] = [dict(val["images"][1], id=30)]
    val["annotations"] = [dict(val["annotations"][2], image_id=30)]
    write_folder(tmp_path / "train", train)
    write_folder(tmp_path / "val", val)
    dataset = read_coco(tmp_path)
    assert dataset.splits == ["train", "val"]
    assert dataset.images["file"].tolist() == ["train/images/a.png", "train/images/b.png", "val/images/b.png"]
    assert dataset.images["image_id"].tolist() == [4, 8, 30]
    assert dataset.instances["image_id"].tolist() == [4, 4, 8, 30]


def test_image_ids_reused_across_split_files_are_renumbered_consistently(tmp_path):
    write_folder(tmp_path / "train", document())
    write_folder(tmp_path / "val", document())
    dataset = read_coco(tmp_path)
    assert dataset.images["image_id"].tolist() == [1, 2, 3, 4]
    by_image = dataset.instances.groupby("image_id")["category"].apply(lambda c: c.astype(str).tolist())
    assert by_image.to_dict() == {
        1: ["storage tank", "ship"],
        2: ["plane"],
        3: ["storage tank", "ship"],
        4: ["plane"],
    }


def test_split_files_with_different_categories_are_refused(tmp_path):
    write_folder(tmp_path / "train", document())
    val = document()
    val["categories"][0]["name"] = "boat"
    write_folder(tmp_path / "val", val)
    with pytest.raises(DataError, match="val/annotations.json.*categories"):
        read_coco(tmp_path)


def test_polygon_with_more_points_becomes_its_minimum_area_rectangle(tmp_path):
    doc = document()
    # An octagon-ish outline of a 40 x 10 box rotated by 30 degrees.
    theta = np.radians(30)
    along, across = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    offsets = [(-20, -5), (0, -5), (20, -5), (20, 5), (0, 5), (-20, 5)]
    points = np.array(
        [[40 + a * along[0] + b * across[0], 30 + a * along[1] + b * across[1]] for a, b in offsets]
    )
    doc["annotations"][0]["segmentation"] = [points.ravel().tolist()]
    read = read_coco(write_folder(tmp_path / "c", doc).parent)
    np.testing.assert_allclose(polygon_to_le90(read.polygons[:1]), [[40, 30, 40, 10, theta]], atol=1e-9)


def test_several_polygons_are_fitted_together_and_rle_falls_back_to_the_bbox(tmp_path):
    doc = document()
    doc["annotations"][0]["segmentation"] = [[10, 10, 22, 10, 22, 12], [10, 20, 22, 20, 10, 18]]
    doc["annotations"][1]["segmentation"] = {"size": [64, 96], "counts": "abc"}
    dataset = read_coco(write_folder(tmp_path / "c", doc).parent)
    np.testing.assert_allclose(polygon_to_le90(dataset.polygons[:1])[0, :4], [16, 15, 12, 10], atol=1e-9)
    np.testing.assert_allclose(dataset.polygons[1], [30, 5, 40, 5, 40, 15, 30, 15])


def test_min_area_rectangles_of_point_sets_of_different_sizes():
    triangle = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 2.0]])
    house = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0], [1.0, 3.0]])
    boxes = polygon_to_le90(min_area_rectangles([triangle, house]))
    np.testing.assert_allclose(boxes[:, 2] * boxes[:, 3], [8, 6])  # a right triangle: its legs
    np.testing.assert_allclose(boxes[1, :4], [1, 1.5, 3, 2])


def test_min_area_rectangles_handle_collinear_points():
    rectangles = min_area_rectangles([np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])])
    assert rectangles.shape == (1, 8)
    np.testing.assert_allclose(polygon_to_le90(rectangles)[0, 3], 0, atol=1e-9)


def test_zero_area_boxes_are_dropped_and_counted(tmp_path):
    doc = document()
    doc["annotations"][0]["bbox"] = [10, 10, 0, 5]
    problems = Problems()
    dataset = read_coco(write_folder(tmp_path / "c", doc).parent, problems=problems)
    assert len(dataset.instances) == 2
    assert problems.dropped == {"zero area": 1}


def test_a_given_category_list_fixes_the_order_and_keeps_the_file_ids(coco_folder):
    dataset = read_coco(coco_folder, categories=["plane", "ship", "storage tank", "car"])
    assert dataset.categories == ["plane", "ship", "storage tank", "car"]
    assert dataset.category_ids == [9, 5, 2, 10]  # "car" is not in the file: a fresh id


def test_a_file_category_outside_the_given_list_is_an_error(coco_folder):
    with pytest.raises(DataError, match="plane"):
        read_coco(coco_folder, categories=["ship", "storage tank"])
    problems = Problems(skip_invalid=True)
    dataset = read_coco(coco_folder, categories=["ship", "storage tank"], problems=problems)
    assert len(problems.errors) == 1
    assert dataset.instances["category"].astype(str).tolist() == ["storage tank", "ship"]


# --------------------------------------------------------------------------------------------------------
# refusals: each names the file and the offending id
def _mutate(doc, edit):
    edit(doc)
    return doc


BAD_DOCUMENTS = {
    "missing images list": (lambda d: d.pop("images"), "'images'"),
    "image without width": (lambda d: d["images"][0].pop("width"), r"image id 4.*width"),
    "duplicate image id": (lambda d: d["images"][1].update(id=4), r"image id 4.*duplicate image id"),
    "duplicate annotation id": (lambda d: d["annotations"][1].update(id=17), r"annotation id 17.*duplicate"),
    "duplicate category id": (lambda d: d["categories"][1].update(id=5), r"category id 5.*duplicate"),
    "duplicate category name": (lambda d: d["categories"][1].update(name="ship"), r"category id 2.*ship"),
    "annotation without bbox": (lambda d: d["annotations"][0].pop("bbox"), r"annotation id 17.*'bbox'"),
    "unknown image": (lambda d: d["annotations"][0].update(image_id=99), r"annotation id 17.*image id 99"),
    "unknown category": (
        lambda d: d["annotations"][0].update(category_id=3),
        r"annotation id 17.*category id 3",
    ),
    "non-finite bbox": (lambda d: d["annotations"][0].update(bbox=[1, float("nan"), 2, 2]), r"id 17.*finite"),
    "negative bbox": (lambda d: d["annotations"][0].update(bbox=[1, 1, -2, 2]), r"id 17.*negative"),
    "bad segmentation": (
        lambda d: d["annotations"][1].update(segmentation=[[1, 2, 3]]),
        r"id 18.*segmentation",
    ),
    "infinite segmentation": (
        lambda d: d["annotations"][1].update(segmentation=[[1, 2, 3, 4, 5, float("inf")]]),
        r"id 18.*finite",
    ),
    "bad difficult flag": (lambda d: d["annotations"][1].update(difficult="yes"), r"id 18.*'difficult'"),
    "path escape": (lambda d: d["images"][0].update(file_name="../outside.png"), r"image id 4.*escapes"),
    "absolute path": (lambda d: d["images"][0].update(file_name="/etc/hosts"), r"image id 4.*escapes"),
    "string image id": (lambda d: d["images"][0].update(id="a"), r"image #1.*integer 'id'"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_documents_are_refused_naming_the_file_and_id(tmp_path, case):
    edit, pattern = BAD_DOCUMENTS[case]
    path = write_folder(tmp_path / "c", _mutate(document(), edit))
    with pytest.raises(DataError, match=pattern) as raised:
        read_coco(path.parent)
    assert raised.value.path == str(path)


def test_missing_image_file_is_refused(coco_folder):
    (coco_folder / "images" / "b.png").unlink()
    with pytest.raises(DataError, match=r"image id 8.*missing"):
        read_coco(coco_folder)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text('{\n  "images": [],\n  "annotations": [,]\n}')
    with pytest.raises(DataError) as raised:
        read_coco(path)
    assert raised.value.line == 3 and "malformed JSON" in str(raised.value)


def test_a_folder_without_annotations_is_refused(tmp_path):
    with pytest.raises(DataError, match="annotations.json"):
        read_coco(tmp_path)


def test_skip_invalid_collects_every_problem_and_keeps_the_good_items(tmp_path):
    doc = document()
    doc["images"].append({"id": 4, "file_name": "images/c.png", "width": 8, "height": 8})  # duplicate id
    doc["annotations"][0]["category_id"] = 3  # unknown category
    doc["annotations"].append({"id": 20, "image_id": 8, "category_id": 5, "bbox": [0, 0, 5, float("nan")]})
    doc["annotations"].append({"id": 21, "image_id": 8, "category_id": 5, "bbox": [0, 0, 5, 5]})
    problems = Problems(skip_invalid=True)
    dataset = read_coco(write_folder(tmp_path / "c", doc).parent, problems=problems)
    assert [error.item for error in problems.errors] == ["image id 4", "annotation id 17", "annotation id 20"]
    assert dataset.images["image_id"].tolist() == [4, 8]
    assert len(dataset.instances) == 3  # annotations 18, 19 and 21


# --------------------------------------------------------------------------------------------------------
# writing and round trips
def test_round_trip_keeps_tables_category_ids_and_metadata(coco_folder, tmp_path):
    first = read_coco(coco_folder)
    write_coco(first, tmp_path / "out")
    second = read_coco(tmp_path / "out")
    pd.testing.assert_frame_equal(first.images, second.images)
    pd.testing.assert_frame_equal(first.instances, second.instances)
    assert second.categories == first.categories and second.category_ids == [5, 2, 9]
    assert second.meta == first.meta


def test_written_file_has_the_coco_fields(coco_folder, tmp_path):
    write_coco(read_coco(coco_folder), tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [c["id"] for c in doc["categories"]] == [5, 2, 9]
    assert [a["id"] for a in doc["annotations"]] == [1, 2, 3]
    ship = doc["annotations"][1]
    assert ship["bbox"] == [30, 5, 10, 10] and ship["area"] == pytest.approx(50)
    assert ship["segmentation"] == [[30, 10, 35, 5, 40, 10, 35, 15]]
    assert ship["iscrowd"] == 0 and ship["difficult"] == 1 and ship["truncated"] == 0
    assert doc["images"][0] == {
        "id": 4,
        "file_name": "images/a.png",
        "width": 96,
        "height": 64,
        "gsd": 0.3,
        "license": 1,
    }
    assert isinstance(doc["images"][0]["license"], int)
    assert "gsd" not in doc["images"][1]  # a missing value is left out, not written as NaN
    assert (tmp_path / "out" / "images" / "a.png").is_file()


def test_a_dataset_written_and_read_back_is_equal(make_dataset, tmp_path):
    dataset = make_dataset()
    write_dataset(dataset, tmp_path / "out", "coco")
    back = read_dataset(tmp_path / "out", "coco")
    pd.testing.assert_frame_equal(back.instances, dataset.instances)
    pd.testing.assert_frame_equal(back.images.drop(columns="file"), dataset.images.drop(columns="file"))
    assert back.images["file"].tolist() == [
        "train/images/img10.png",
        "train/images/img11.png",
        "val/images/img12.png",
        "val/images/img13.png",
    ]
    assert back.category_ids == [1, 2, 3]
    assert pycocotools_can_load(tmp_path / "out" / "train" / "annotations.json")


def pycocotools_can_load(path):
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    return len(coco.getAnnIds()) == len(json.loads(path.read_text())["annotations"])


def test_coco_to_yolo_obb_to_coco_keeps_the_polygons(make_dataset, tmp_path, by_name):
    write_dataset(make_dataset(), tmp_path / "coco", "coco")
    original = read_dataset(tmp_path / "coco", "coco")
    write_dataset(original, tmp_path / "yolo", "yolo-obb")
    write_dataset(read_dataset(tmp_path / "yolo", "yolo-obb"), tmp_path / "back", "coco")
    back = read_dataset(tmp_path / "back", "coco")
    assert back.categories == original.categories
    a, b = by_name(original), by_name(back)
    pd.testing.assert_frame_equal(a[POLY_COLUMNS], b[POLY_COLUMNS], rtol=1e-6, atol=1e-5)
    assert a["category"].tolist() == b["category"].tolist()


def test_label_only_output_writes_no_images(make_dataset, tmp_path):
    write_dataset(make_dataset(), tmp_path / "out", "coco", images="none")
    assert (tmp_path / "out" / "train" / "annotations.json").is_file()
    assert not (tmp_path / "out" / "train" / "images").exists()


def test_two_images_of_one_split_with_one_name_are_refused(make_dataset, tmp_path):
    dataset = make_dataset(splits=("train",))
    images = dataset.images.copy()
    images.loc[1, "file"] = "elsewhere/" + images.loc[0, "file"].rsplit("/", 1)[1]
    with pytest.raises(DataError, match="stem"):
        write_coco(dataset.replace(images=images), tmp_path / "out")


def test_unsplit_and_split_images_are_both_written_and_read(make_dataset, tmp_path):
    dataset = make_dataset(splits=("", "val"))
    write_coco(dataset, tmp_path / "out")
    back = read_coco(tmp_path / "out")
    assert back.images[["image_id", "split"]].values.tolist() == [
        [10, ""],
        [11, ""],
        [12, "val"],
        [13, "val"],
    ]
    assert back.images["file"].tolist()[::2] == ["images/img10.png", "val/images/img12.png"]


def test_splits_the_readers_do_not_know_are_refused(make_dataset, tmp_path):
    with pytest.raises(ValueError, match="trainval"):
        write_coco(make_dataset(splits=("trainval",)), tmp_path / "out")
