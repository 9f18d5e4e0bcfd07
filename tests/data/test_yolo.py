"""YOLO and YOLO-OBB in the Ultralytics layout: round trips, Ultralytics' own loader, and every refusal."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ccaug.data.dataset import Dataset
from ccaug.data.errors import DataError, Problems
from ccaug.data.formats import read_dataset, write_dataset
from ccaug.data.formats.yolo import label_path, read_yolo, read_yolo_obb, write_yolo, write_yolo_obb
from ccaug.data.geometry import POLY_COLUMNS, polygon_to_hbb
from tests.conftest import write_png

NAMES = {0: "ship", 1: "storage tank", 2: "plane"}


def write_layout(root, labels, names=NAMES, sizes=None, config=None):
    """``images/train/<stem>.png`` (100 x 50 unless `sizes` says otherwise), labels, and ``data.yaml``."""
    for stem, text in labels.items():
        width, height = (sizes or {}).get(stem, (100, 50))
        write_png(root / "images" / "train" / f"{stem}.png", width, height)
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    config = (
        config if config is not None else {"train": "images/train", "val": "images/train", "names": names}
    )
    (root / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


OBB_LINE = "1 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n"
HBB_LINE = "0 0.5 0.5 0.2 0.4\n"


# --------------------------------------------------------------------------------------------------------
# reading
def test_reads_obb_labels_in_pixels(tmp_path):
    root = write_layout(tmp_path, {"a": OBB_LINE, "b": ""}, config={"train": "images/train", "names": NAMES})
    dataset = read_yolo_obb(root)
    assert dataset.categories == ["ship", "storage tank", "plane"]
    assert dataset.images[["image_id", "file", "width", "height", "split"]].values.tolist() == [
        [0, "images/train/a.png", 100, 50, "train"],
        [1, "images/train/b.png", 100, 50, "train"],
    ]
    np.testing.assert_allclose(dataset.polygons, [[10, 10, 50, 10, 50, 30, 10, 30]])
    assert dataset.instances["category"].astype(str).tolist() == ["storage tank"]
    assert not dataset.instances[["difficult", "truncated"]].any().any()


def test_reads_hbb_labels_as_axis_aligned_polygons(tmp_path):
    root = write_layout(tmp_path, {"a": HBB_LINE + "2 0.1 0.1 0.2 0.1 0.2 0.3\n"})
    dataset = read_yolo(root / "data.yaml")
    np.testing.assert_allclose(dataset.hbb, [[40, 15, 60, 35], [10, 5, 20, 15]])  # the 2nd line is a segment
    np.testing.assert_allclose(dataset.polygons[0], [40, 15, 60, 15, 60, 35, 40, 35])


def test_an_image_without_a_label_file_is_a_background_image(tmp_path):
    root = write_layout(tmp_path, {"a": None})
    dataset = read_yolo(root)
    assert len(dataset.images) == 1 and len(dataset.instances) == 0


def test_a_folder_named_by_train_and_val_is_unsplit(tmp_path):
    root = write_layout(tmp_path, {"a": HBB_LINE})  # train and val both name images/train
    assert read_yolo(root).splits == [""]


def test_names_may_be_a_list_and_path_is_relative_to_the_yaml(tmp_path):
    write_layout(tmp_path / "data", {"a": HBB_LINE})
    config = {"path": "data", "train": "images/train", "names": ["ship", "boat"]}
    (tmp_path / "custom.yaml").write_text(yaml.safe_dump(config))
    dataset = read_yolo(tmp_path / "custom.yaml")
    assert dataset.categories == ["ship", "boat"]
    assert dataset.root == tmp_path / "data" and dataset.image_path(0).is_file()


def test_image_lists_and_nested_folders_are_followed(tmp_path):
    write_png(tmp_path / "images" / "train" / "part1" / "a.png", 100, 50)
    (tmp_path / "labels" / "train" / "part1").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "part1" / "a.txt").write_text(HBB_LINE)
    write_png(tmp_path / "images" / "val" / "b.png", 100, 50)
    (tmp_path / "val.txt").write_text("./images/val/b.png\n\n")
    config = {"train": "images/train", "val": "val.txt", "names": NAMES}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(config))
    dataset = read_yolo(tmp_path)
    assert dataset.images[["file", "split"]].values.tolist() == [
        ["images/train/part1/a.png", "train"],
        ["images/val/b.png", "val"],
    ]
    assert dataset.instances["image_id"].tolist() == [0]


def test_label_path_follows_the_ultralytics_rule():
    assert label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert label_path(Path("/images/d/images/x.png")) == Path("/images/d/labels/x.txt")  # the last one
    assert label_path(Path("/d/pics/x.png")) == Path("/d/pics/x.txt")


def test_coordinates_slightly_outside_the_image_are_legal(tmp_path):
    root = write_layout(tmp_path, {"a": "0 -0.01 0.2 0.5 0.2 0.5 0.6 -0.01 1.02\n"})
    np.testing.assert_allclose(read_yolo_obb(root).polygons[0, [0, 7]], [-1, 51])


def test_a_given_category_list_reorders_the_classes(tmp_path):
    root = write_layout(tmp_path, {"a": OBB_LINE})
    dataset = read_yolo_obb(root, categories=["plane", "storage tank", "ship", "car"])
    assert dataset.categories == ["plane", "storage tank", "ship", "car"]
    assert dataset.instances["category"].astype(str).tolist() == ["storage tank"]
    with pytest.raises(DataError, match=r"data.yaml: classes \['ship', 'plane'\] are not in"):
        read_yolo_obb(root, categories=["storage tank"])


# --------------------------------------------------------------------------------------------------------
# refusals
BAD_LINES = {
    "too few numbers": ("1 0.1 0.2 0.5 0.2 0.5 0.6 0.1\n", r"expected 'class x1 y1 .*' \(9 numbers\), got 8"),
    "not a number": ("1 0.1 0.2 0.5 0.2 0.5 0.6 0.1 zero\n", r"expected numbers only"),
    "class out of range": (
        "3 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n",
        r"class index 3 is not one of the 3 classes",
    ),
    "negative class": ("-1 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n", r"class index -1"),
    "fractional class": ("1.5 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n", r"class index 1.5"),
    "nan": ("1 0.1 nan 0.5 0.2 0.5 0.6 0.1 0.6\n", r"finite"),
    "pixels": ("1 10 20 50 20 50 60 10 60\n", r"coordinate 10 is far outside 0..1"),
    "far negative": ("1 0.1 0.2 0.5 0.2 0.5 0.6 -0.2 0.6\n", r"coordinate -0.2 is far outside"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_obb_lines_are_refused_naming_the_file_and_line(tmp_path, case):
    line, pattern = BAD_LINES[case]
    root = write_layout(tmp_path, {"a": OBB_LINE + line})
    with pytest.raises(DataError, match=pattern) as raised:
        read_yolo_obb(root)
    assert raised.value.path == str(tmp_path / "labels" / "train" / "a.txt")
    assert raised.value.line == 2


def test_bad_hbb_lines_are_refused(tmp_path):
    root = write_layout(tmp_path, {"a": "0 0.5 0.5 -0.01 0.4\n"})
    with pytest.raises(DataError, match=r"a.txt:1: width and height must not be negative"):
        read_yolo(root)
    root = write_layout(tmp_path, {"a": "0 0.5 0.5 0.2 0.4 0.1\n"})
    with pytest.raises(DataError, match=r"a.txt:1: expected 'class cx cy w h' \(5 numbers\), got 6"):
        read_yolo(root)


def test_an_obb_file_is_not_read_as_hbb_by_accident(tmp_path):
    root = write_layout(tmp_path, {"a": HBB_LINE})
    with pytest.raises(DataError, match=r"a.txt:1: expected 'class x1 y1"):
        read_yolo_obb(root)


BAD_CONFIGS = {
    "no names": ({"train": "images/train"}, r"expected 'names'"),
    "names with a gap": ({"train": "images/train", "names": {0: "a", 2: "b"}}, r"class indices 0..n-1"),
    "duplicate names": ({"train": "images/train", "names": ["a", "a"]}, r"duplicate class names"),
    "nc mismatch": ({"train": "images/train", "names": ["a"], "nc": 2}, r"'nc: 2' does not match"),
    "no splits": ({"names": ["a"]}, r"at least one of the keys"),
    "escaping split": ({"train": "../elsewhere", "names": ["a"]}, r"'train: ../elsewhere'.*escapes"),
    "missing split folder": (
        {"train": "images/nope", "names": ["a"]},
        r"'train: images/nope'.*no such folder",
    ),
    "missing root": (
        {"path": "nowhere", "train": "images", "names": ["a"]},
        r"'path: nowhere' is not a folder",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_data_yaml_is_refused(tmp_path, case):
    config, pattern = BAD_CONFIGS[case]
    root = write_layout(tmp_path, {"a": OBB_LINE}, config=config)
    with pytest.raises(DataError, match=pattern) as raised:
        read_yolo_obb(root)
    assert raised.value.path == str(root / "data.yaml")


def test_malformed_yaml_names_the_line(tmp_path):
    (tmp_path / "data.yaml").write_text("train: images\nnames: [a, b\nval: x\n")
    with pytest.raises(DataError, match="malformed YAML") as raised:
        read_yolo(tmp_path)
    assert raised.value.line == 3


def test_a_folder_without_data_yaml_is_refused(tmp_path):
    with pytest.raises(DataError, match="data.yaml"):
        read_yolo(tmp_path)


def test_a_label_file_without_its_image_is_refused(tmp_path):
    root = write_layout(tmp_path, {"a": OBB_LINE})
    (root / "labels" / "train" / "ghost.txt").write_text(OBB_LINE)
    with pytest.raises(DataError, match=r"ghost.txt: label file has no image"):
        read_yolo_obb(root)


def test_an_unreadable_image_is_refused(tmp_path):
    root = write_layout(tmp_path, {"a": OBB_LINE})
    (root / "images" / "train" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"a.png.*cannot be read"):
        read_yolo_obb(root)


def test_skip_invalid_collects_every_problem_and_keeps_the_good_lines(tmp_path):
    root = write_layout(tmp_path, {"a": OBB_LINE + "7 0 0 0 0 0 0 0 0\n" + OBB_LINE + "x\n", "b": OBB_LINE})
    (root / "labels" / "train" / "ghost.txt").write_text(OBB_LINE)
    problems = Problems(skip_invalid=True)
    dataset = read_yolo_obb(root, problems=problems)
    assert [(Path(e.path).name, e.line) for e in problems.errors] == [
        ("ghost.txt", None),
        ("a.txt", 2),
        ("a.txt", 4),
    ]
    assert dataset.instances["image_id"].tolist() == [0, 0, 1]


# --------------------------------------------------------------------------------------------------------
# writing and round trips
def test_yolo_obb_round_trip_keeps_polygons(make_dataset, tmp_path, by_name, images_by_stem):
    dataset = make_dataset(splits=("train", "val", "test"))
    write_dataset(dataset, tmp_path / "out", "yolo-obb")
    back = read_dataset(tmp_path / "out", "yolo-obb")
    assert back.categories == dataset.categories and back.splits == ["train", "val", "test"]
    assert back.images["file"].tolist()[:2] == ["images/train/img10.png", "images/train/img11.png"]
    a, b = by_name(dataset), by_name(back)
    np.testing.assert_allclose(b[POLY_COLUMNS], a[POLY_COLUMNS], rtol=1e-6, atol=1e-5)
    assert b["category"].tolist() == a["category"].tolist()
    assert not b["difficult"].any()  # YOLO-OBB has no difficult flag
    columns = ["stem", "width", "height", "split"]
    pd.testing.assert_frame_equal(images_by_stem(back)[columns], images_by_stem(dataset)[columns])


def test_yolo_round_trip_keeps_the_axis_aligned_boxes(make_dataset, tmp_path):
    dataset = make_dataset()
    write_yolo(dataset, tmp_path / "out")
    back = read_yolo(tmp_path / "out")
    np.testing.assert_allclose(back.hbb, polygon_to_hbb(dataset.polygons), rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(back.category_index(), dataset.category_index())


@pytest.mark.parametrize(("write", "read"), [(write_yolo, read_yolo), (write_yolo_obb, read_yolo_obb)])
def test_read_write_read_is_equal(make_dataset, tmp_path, write, read):
    write(make_dataset(), tmp_path / "first")
    first = read(tmp_path / "first")
    write(first, tmp_path / "second")
    second = read(tmp_path / "second")
    pd.testing.assert_frame_equal(first.images.drop(columns="file"), second.images.drop(columns="file"))
    pd.testing.assert_frame_equal(first.instances, second.instances, rtol=1e-7, atol=1e-6)


def test_an_unsplit_data_set_round_trips_as_unsplit(make_dataset, tmp_path):
    write_yolo_obb(make_dataset(splits=("",)), tmp_path / "out")
    config = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert config["train"] == config["val"] == "images"
    assert read_yolo_obb(tmp_path / "out").splits == [""]


def test_written_layout_and_data_yaml(make_dataset, tmp_path):
    write_yolo_obb(make_dataset(), tmp_path / "out")
    config = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert config == {"train": "images/train", "val": "images/val", "names": NAMES}
    assert (tmp_path / "out" / "labels" / "val" / "img13.txt").read_text() == ""  # a background image
    lines = (tmp_path / "out" / "labels" / "train" / "img10.txt").read_text().splitlines()
    assert len(lines) == 3 and all(len(line.split()) == 9 for line in lines)


def test_objects_beyond_the_border_are_clipped_for_ultralytics(make_dataset, tmp_path):
    dataset = make_dataset(splits=("train",))
    instances = dataset.instances.copy()
    instances.loc[0, ["x1", "y1"]] = [-30.0, -5.0]
    write_yolo_obb(dataset.replace(instances=instances), tmp_path / "obb")
    write_yolo(dataset.replace(instances=instances), tmp_path / "hbb")
    for task in ("obb", "hbb"):
        values = np.loadtxt(tmp_path / task / "labels" / "train" / "img10.txt", ndmin=2)[:, 1:]
        assert values.min() >= 0 and values.max() <= 1


def test_writers_refuse_splits_ultralytics_cannot_hold(make_dataset, tmp_path):
    dataset = make_dataset(splits=("train", ""))
    with pytest.raises(ValueError, match="mix unsplit images"):
        write_yolo(dataset, tmp_path / "out")
    with pytest.raises(ValueError, match="trainval"):
        write_yolo_obb(make_dataset(splits=("trainval",)), tmp_path / "out")


def test_ultralytics_loads_what_we_write(make_dataset, tmp_path, monkeypatch):
    """Ultralytics' own data.yaml check and label verifier accept both writers' output, offline."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    dataset = make_dataset()
    for task, write in (("obb", write_yolo_obb), ("detect", write_yolo)):
        out = tmp_path / task
        write(dataset, out)
        data = check_det_dataset(str(out / "data.yaml"), autodownload=False)
        assert data["nc"] == 3 and data["names"] == NAMES
        assert Path(data["train"]) == out / "images" / "train"
        for image in sorted((out / "images").rglob("*.png")):
            result = verify_image_label((str(image), str(label_path(image)), "", False, 3, 0, 0, False))
            corrupt, message = result[8], result[9]
            assert corrupt == 0, message


def test_two_images_of_one_split_with_one_stem_are_refused(tmp_path):
    write_png(tmp_path / "a" / "x.png", 8, 8)
    write_png(tmp_path / "b" / "x.png", 8, 8)
    images = [
        {"image_id": 0, "file": "a/x.png", "width": 8, "height": 8, "split": "train"},
        {"image_id": 1, "file": "b/x.png", "width": 8, "height": 8, "split": "train"},
    ]
    dataset = Dataset.from_records(images, [], ["ship"], root=tmp_path)
    with pytest.raises(DataError, match="stem"):
        write_yolo(dataset, tmp_path / "out")
