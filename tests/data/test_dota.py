"""DOTA labelTxt: what the reader keeps, what the writer writes, and how bad lines are refused."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.errors import DataError, Problems
from ccaug.data.formats import read_dataset, write_dataset
from ccaug.data.formats.dota import parse_label_file, read_dota, write_dota, write_label_file
from ccaug.data.geometry import le90_to_polygon, polygon_to_le90

CATEGORIES = ["large-vehicle", "plane", "storage-tank"]


def make_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (30, 60, 90)).save(path)


def make_label(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def assert_same_dataset(left: Dataset, right: Dataset) -> None:
    assert left.categories == right.categories
    pd.testing.assert_frame_equal(left.images, right.images)
    pd.testing.assert_frame_equal(left.instances, right.instances, check_exact=False, rtol=0, atol=1e-6)


@pytest.fixture
def flat_root(tmp_path: Path) -> Path:
    """Three images: b has a header and four instances, a has no label file, c has a label without header."""
    root = tmp_path / "dota"
    make_image(root / "images" / "b.png", 200, 100)
    make_image(root / "images" / "a.png", 64, 48)
    make_image(root / "images" / "c.jpg", 50, 40)
    make_label(
        root / "labelTxt" / "b.txt",
        "imagesource:GoogleEarth\n"
        "gsd:0.146343\n"
        "10 10 50 10 50 30 10 30 large-vehicle 0\n"
        "\n"
        "60.5 20.25 80 20.25 80 40 60.5 40 plane 1\n"
        "-3 -2 12 -2 12 8 -3 8 storage-tank\n"  # slightly outside the image: legal, as in real DOTA
        "150 50 150.4 50 150.4 50.3 150 50.3 large-vehicle 0\r\n",  # tiny box, Windows line end
    )
    make_label(root / "labelTxt" / "c.txt", "1 1 5 1 5 5 1 5 plane 0\n")
    return root


# --------------------------------------------------------------------------------------------------------
# reading
def test_reader_keeps_lines_flags_header_and_sizes(flat_root: Path) -> None:
    ds = read_dota(flat_root)

    assert ds.images["file"].tolist() == ["images/a.png", "images/b.png", "images/c.jpg"]
    assert ds.images["image_id"].tolist() == [0, 1, 2]
    assert ds.images[["width", "height"]].values.tolist() == [[64, 48], [200, 100], [50, 40]]
    assert ds.images["imagesource"].iloc[1] == "GoogleEarth"
    assert ds.images["gsd"].iloc[1] == pytest.approx(0.146343)
    assert ds.images[["imagesource", "gsd"]].iloc[[0, 2]].isna().all().all()
    # first appearance over files in id order: b (large-vehicle, plane, storage-tank), then c
    assert ds.categories == ["large-vehicle", "plane", "storage-tank"]
    b = ds.instances[ds.instances["image_id"] == 1]
    assert b["category"].astype(str).tolist() == ["large-vehicle", "plane", "storage-tank", "large-vehicle"]
    assert b["difficult"].tolist() == [False, True, False, False]  # a missing flag means 0
    assert b.iloc[1][["x1", "y1", "x2"]].tolist() == [60.5, 20.25, 80.0]
    assert b.iloc[2][["x1", "y1"]].tolist() == [-3.0, -2.0]
    assert not ds.instances["truncated"].any()
    assert (ds.instances["image_id"] == 0).sum() == 0  # a.png has no label file: an image without instances


def test_reader_and_writer_are_registered_as_dota(flat_root: Path, tmp_path: Path) -> None:
    for sibling in ("coco", "dior", "yolo"):  # the registry imports every format module
        pytest.importorskip(f"ccaug.data.formats.{sibling}")
    ds = read_dataset(flat_root, "dota")
    assert_same_dataset(ds, read_dota(flat_root))
    write_dataset(ds, tmp_path / "out", "dota")
    assert_same_dataset(read_dota(tmp_path / "out"), ds)


def test_given_categories_fix_the_order_and_refuse_other_classes(flat_root: Path) -> None:
    order = ["storage-tank", "plane", "large-vehicle", "ship"]
    assert read_dota(flat_root, categories=order).categories == order

    with pytest.raises(
        DataError, match=r"b\.txt:3: unknown class 'large-vehicle'; expected one of: plane, ship"
    ):
        read_dota(flat_root, categories=["plane", "ship"])


def test_classes_file_gives_the_order_and_the_closed_list(flat_root: Path) -> None:
    (flat_root / "classes.txt").write_text("plane\nstorage-tank\nlarge-vehicle\nship\n")
    assert read_dota(flat_root).categories == ["plane", "storage-tank", "large-vehicle", "ship"]

    (flat_root / "classes.txt").write_text("plane\nlarge-vehicle\n")
    with pytest.raises(DataError, match=r"b\.txt:6: unknown class 'storage-tank'"):
        read_dota(flat_root)


def test_split_layout_gives_ids_in_split_then_stem_order(tmp_path: Path) -> None:
    for split, stems in [("val", ["z", "a"]), ("train", ["m", "b"])]:
        for stem in stems:
            make_image(tmp_path / split / "images" / f"{stem}.png", 30, 30)
            make_label(tmp_path / split / "labelTxt" / f"{stem}.txt", "1 1 9 1 9 9 1 9 plane 0\n")
    ds = read_dota(tmp_path)
    assert ds.images["file"].tolist() == [
        "train/images/b.png",
        "train/images/m.png",
        "val/images/a.png",
        "val/images/z.png",
    ]
    assert ds.images["split"].tolist() == ["train", "train", "val", "val"]
    assert ds.instances["image_id"].tolist() == [0, 1, 2, 3]


def test_zero_area_instances_are_dropped_and_counted(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "p.png", 100, 100)
    make_label(
        tmp_path / "labelTxt" / "p.txt",
        "1 1 9 1 9 9 1 9 plane 0\n5 5 5 5 5 5 5 5 plane 0\n1 1 5 5 9 9 3 3 plane 0\n",  # a point, a line
    )
    problems = Problems()
    ds = read_dota(tmp_path, problems=problems)
    assert len(ds.instances) == 1
    assert problems.dropped == {"zero area": 2}
    assert problems.errors == []


# --------------------------------------------------------------------------------------------------------
# round trips
def _rich_dataset(root: Path, splits: list[str]) -> Dataset:
    """Rotated boxes on both sides of the +-90 degree boundary, tiny boxes, 12-digit coordinates, metadata."""
    rng = np.random.default_rng(3)
    images, instances = [], []
    for split in splits:
        for stem, (width, height) in [("P0003", (300, 200)), ("P0001", (120, 90))]:
            image_id = len(images)
            file = f"{split}/raw/{stem}.png"
            make_image(root / file, width, height)
            images.append(
                dict(
                    image_id=image_id,
                    file=file,
                    width=width,
                    height=height,
                    split=split,
                    imagesource="GoogleEarth",
                )
            )
            images[-1]["gsd"] = 0.3 if stem == "P0003" else math.nan
            for theta in [-math.pi / 2, -math.pi / 2 + 1e-4, math.pi / 2 - 1e-4, 0.3, -1.2]:
                box = [rng.uniform(20, width - 20), rng.uniform(20, height - 20), 18.123456789, 6.5, theta]
                instances.append(
                    dict(
                        image_id=image_id,
                        category=CATEGORIES[len(instances) % 3],
                        polygon=le90_to_polygon(np.array([box]))[0],
                        difficult=len(instances) % 4 == 0,
                    )
                )
            tiny = [10.25, 10.5, 10.75, 10.5, 10.75, 10.875, 10.25, 10.875]
            instances.append(dict(image_id=image_id, category="plane", polygon=tiny, difficult=False))
    return Dataset.from_records(images, instances, CATEGORIES, root=root)


@pytest.mark.parametrize("splits", [[""], ["train", "val"]], ids=["flat", "train-val"])
def test_write_then_read_gives_the_same_tables(tmp_path: Path, splits: list[str]) -> None:
    source = _rich_dataset(tmp_path / "src", splits)
    write_dota(source, tmp_path / "one")
    first = read_dota(tmp_path / "one")

    prefix = "train/" if splits != [""] else ""
    assert (tmp_path / "one" / f"{prefix}images" / "P0001.png").is_file()
    assert (tmp_path / "one" / "classes.txt").read_text() == "large-vehicle\nplane\nstorage-tank\n"
    assert first.images["file"].iloc[0] == f"{prefix}images/P0001.png"
    np.testing.assert_allclose(
        np.sort(first.polygons, axis=0), np.sort(source.polygons, axis=0), rtol=0, atol=1e-6
    )
    assert first.instances["difficult"].sum() == source.instances["difficult"].sum()

    write_dota(first, tmp_path / "two")
    assert_same_dataset(read_dota(tmp_path / "two"), first)


def test_header_lines_are_written_back(flat_root: Path, tmp_path: Path) -> None:
    write_dota(read_dota(flat_root), tmp_path / "out")
    lines = (tmp_path / "out" / "labelTxt" / "b.txt").read_text().splitlines()
    assert lines[:2] == ["imagesource:GoogleEarth", "gsd:0.146343"]
    assert lines[3] == "60.5 20.25 80 20.25 80 40 60.5 40 plane 1"
    # a file without a header in a data set that has one gets null values, which read back as missing
    assert (tmp_path / "out" / "labelTxt" / "c.txt").read_text().splitlines()[:2] == [
        "imagesource:null",
        "gsd:null",
    ]


def test_rotated_boxes_across_the_90_degree_boundary_keep_their_angle(tmp_path: Path) -> None:
    boxes = np.array(
        [[50, 40, 30, 10, -math.pi / 2], [50, 40, 30, 10, math.pi / 2 - 1e-5], [50, 40, 30, 10, 1.0]]
    )
    polygons = le90_to_polygon(boxes)
    make_image(tmp_path / "images" / "r.png", 100, 80)
    instances = pd.DataFrame(polygons, columns=["x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"])
    instances["category"] = "plane"
    instances["difficult"] = False
    write_label_file(tmp_path / "labelTxt" / "r.txt", instances)

    read = read_dota(tmp_path)
    np.testing.assert_allclose(read.polygons, polygons, rtol=0, atol=1e-9)
    np.testing.assert_allclose(polygon_to_le90(read.polygons)[:, :4], boxes[:, :4], atol=1e-8)
    # the first two boxes are nearly the same box: their angles differ by ~0 modulo pi
    angle_gap = np.mod(read.le90[0, 4] - read.le90[1, 4] + math.pi / 2, math.pi) - math.pi / 2
    assert abs(angle_gap) < 1e-4


def test_writer_refuses_class_names_with_spaces(tmp_path: Path) -> None:
    make_image(tmp_path / "x.png", 10, 10)
    ds = Dataset.from_records(
        [dict(image_id=0, file="x.png", width=10, height=10)], [], ["small vehicle"], tmp_path
    )
    with pytest.raises(ValueError, match="'small vehicle' cannot be written to DOTA"):
        write_dota(ds, tmp_path / "out")


# --------------------------------------------------------------------------------------------------------
# bad input: each raises a DataError naming the file and the line
BAD_LINES = [
    ("1 2 3 4 5 6 7 8 plane 0 extra", "found 11 fields"),
    ("1 2 3 4 5 6 7 plane", "expected 8 coordinates, a class name .* found only 8 field"),
    ("1 2 3", "found only 3 field"),
    ("1 2 3 four 5 6 7 8 plane 0", "expected a number for coordinate y2, got 'four'"),
    ("nan 2 3 4 5 6 7 8 plane 0", "expected finite coordinates, got nan for x1"),
    ("1 2 3 4 5 inf 7 8 plane 0", "expected finite coordinates, got inf for y3"),
    ("1 2 3 4 5 6 7 900 plane 0", r"corner 4 \(7, 900\) lies far outside the 200x100 image"),
    ("-101 2 3 4 5 6 7 8 plane 0", r"corner 1 \(-101, 2\) lies far outside"),
    ("1 2 3 4 5 6 7 8 plane 2", "expected the difficult flag to be 0 or 1, got '2'"),
    ("1 2 3 4 5 6 7 8 0", "expected a class name after the 8 coordinates, got the number '0'"),
    ("gsd:fast", "expected 'gsd:' followed by a positive number"),
    ("1 2 3 4 5 6 7 8 ship 0", "unknown class 'ship'"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[message[:30] for _, message in BAD_LINES])
def test_bad_line_raises_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    make_image(tmp_path / "images" / "bad.png", 200, 100)
    label = make_label(tmp_path / "labelTxt" / "bad.txt", f"10 10 20 10 20 20 10 20 plane 0\n\n{line}\n")
    with pytest.raises(DataError, match=message) as caught:
        read_dota(tmp_path, categories=["plane"])
    assert caught.value.path == str(label)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{label}:3: ")


def test_coordinates_up_to_half_the_image_beyond_the_border_are_legal(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "edge.png", 200, 100)
    make_label(tmp_path / "labelTxt" / "edge.txt", "-100 -50 300 -50 300 150 -100 150 plane 0\n")
    assert read_dota(tmp_path).polygons.tolist() == [[-100, -50, 300, -50, 300, 150, -100, 150]]


def test_undecodable_bytes_are_reported_with_their_line(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "u.png", 50, 50)
    make_label(tmp_path / "labelTxt" / "u.txt", b"1 1 9 1 9 9 1 9 plane 0\n1 1 9 1 9 9 1 9 pl\xffane 0\n")
    with pytest.raises(DataError, match=r"u\.txt:2: expected UTF-8 text"):
        read_dota(tmp_path)


def test_label_without_image_is_an_error_naming_the_label_file(flat_root: Path) -> None:
    orphan = make_label(flat_root / "labelTxt" / "orphan.txt", "1 1 9 1 9 9 1 9 plane 0\n")
    with pytest.raises(DataError, match="image file is missing") as caught:
        read_dota(flat_root)
    assert caught.value.path == str(orphan)


def test_unreadable_image_is_an_error_naming_the_image(flat_root: Path) -> None:
    broken = flat_root / "images" / "a.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="image cannot be read") as caught:
        read_dota(flat_root)
    assert caught.value.path == str(broken)


def test_skip_invalid_records_every_bad_line_and_keeps_the_good_ones(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "bad.png", 200, 100)
    make_image(tmp_path / "images" / "gone.png", 20, 20)
    (tmp_path / "images" / "gone.png").write_bytes(b"garbage")
    good = "10 10 20 10 20 20 10 20 plane 1"
    lines = [good] + [line for line, _ in BAD_LINES] + [good.replace("10 10", "11 11")]
    make_label(tmp_path / "labelTxt" / "bad.txt", "\n".join(lines) + "\n")
    make_label(tmp_path / "labelTxt" / "orphan.txt", good + "\n")

    problems = Problems(skip_invalid=True)
    ds = read_dota(tmp_path, problems=problems, categories=["plane"])

    assert ds.images["file"].tolist() == ["images/bad.png"]  # the unreadable image is skipped
    assert ds.polygons[:, 0].tolist() == [10, 11]
    assert ds.instances["difficult"].tolist() == [True, True]
    bad_lines = [error.line for error in problems.errors if error.path.endswith("bad.txt")]
    assert bad_lines == list(range(2, 2 + len(BAD_LINES)))
    assert {Path(error.path).name for error in problems.errors} == {"bad.txt", "orphan.txt", "gone.png"}


# --------------------------------------------------------------------------------------------------------
# fuzzing: corrupted lines raise DataError and nothing else; skip mode never raises
VALID_LINE = "10.5 20 60 20 60 45.25 10.5 45.25 large-vehicle 1"
JUNK_TOKENS = [
    "", "nan", "NaN", "inf", "-inf", "1e400", "-1e308", "1e308", "abc", "ü", "😀", "\x00", "0x1F", "1_000",
    "--1", "١٢", "+", ".", "e5", "gsd:", "imagesource:", "gsd:1e999", ":", "1,5", "\u2028", "\x0b", "plane",
    "0", "1", "2", "-0", "9" * 400, "\ufeff", "large-vehicle",
]  # fmt: skip


def corrupt(line: str, rng: random.Random) -> str:
    tokens = line.split(" ")
    kind = rng.randrange(8)
    if kind == 0:
        return line[: rng.randrange(len(line))]
    if kind == 1:
        tokens[rng.randrange(len(tokens))] = rng.choice(JUNK_TOKENS)
    elif kind == 2:
        del tokens[rng.randrange(len(tokens))]
    elif kind == 3:
        tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(JUNK_TOKENS))
    elif kind == 4:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(12))).replace("\n", "")
    elif kind == 5:
        tokens[rng.randrange(8)] = repr(rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-5, 300))
    elif kind == 6:
        rng.shuffle(tokens)
    else:
        tokens = [rng.choice(JUNK_TOKENS) if rng.random() < 0.3 else token for token in tokens]
    return " ".join(tokens)


def test_fuzzed_lines_raise_only_data_errors_and_skip_mode_agrees(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    lines = [corrupt(VALID_LINE, rng) for _ in range(3000)]
    categories = dict.fromkeys(["large-vehicle", "plane"])
    rejected, accepted = [], []
    for index, line in enumerate(lines):
        # after a blank line, as in the joined file below (a byte-order mark only counts at the very start)
        path = make_label(tmp_path / "one" / f"{index}.txt", "\n" + line + "\n")
        try:
            accepted += parse_label_file(path, Problems(), categories, size=(100, 80)).polygons
        except DataError as error:
            assert error.line == 2 and error.path == str(path)
            rejected.append(index)
    assert 1000 < len(rejected) < 2950  # the corruptions do reach the checks, and some stay legal

    everything = make_label(tmp_path / "all.txt", "\n".join(lines))
    problems = Problems(skip_invalid=True)
    parsed = parse_label_file(everything, problems, categories, size=(100, 80))
    assert [error.line - 1 for error in problems.errors] == rejected
    assert parsed.polygons == accepted
    assert all(all(math.isfinite(value) for value in polygon) for polygon in parsed.polygons)


def test_fuzzed_data_sets_read_or_raise_data_error(tmp_path: Path) -> None:
    rng = random.Random(7)
    for index in range(6):
        make_image(tmp_path / "images" / f"{index}.png", 100, 80)
        lines = [VALID_LINE if rng.random() < 0.5 else corrupt(VALID_LINE, rng) for _ in range(30)]
        make_label(tmp_path / "labelTxt" / f"{index}.txt", "\n".join(lines))
    try:
        read_dota(tmp_path)
    except DataError:
        pass
    ds = read_dota(tmp_path, problems=Problems(skip_invalid=True))
    assert len(ds.images) == 6
    assert np.isfinite(ds.polygons).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_parses_or_raises_data_error(tmp_path: Path, text: str) -> None:
    path = make_label(tmp_path / "h.txt", text)
    try:
        parse_label_file(path, Problems(), None, size=(100, 100))
    except DataError:
        pass
    parse_label_file(path, Problems(skip_invalid=True), None, size=(100, 100))


def test_a_split_folder_read_alone_keeps_the_class_order_of_its_data_set(tmp_path: Path) -> None:
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "labelTxt").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "train" / "images" / "a.png")
    (tmp_path / "train" / "labelTxt" / "a.txt").write_text("1 1 10 1 10 10 1 10 ship 0\n")
    (tmp_path / "classes.txt").write_text("plane\nship\n")
    assert read_dota(tmp_path / "train").categories == ["plane", "ship"]


def test_two_images_with_one_stem_are_refused(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labelTxt").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.jpg")
    with pytest.raises(DataError, match="share a name stem"):
        read_dota(tmp_path)
