"""DIOR / DIOR-R Pascal-VOC XML: round trips of oriented boxes, the official layout, and every refusal."""

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from ccaug.data.errors import DataError, Problems
from ccaug.data.formats import read_dataset, write_dataset
from ccaug.data.formats.dior import DIOR_CLASSES, read_dior, write_dior
from ccaug.data.geometry import polygon_to_le90
from tests.conftest import write_png

ROTATED = """
  <object>
    <name>{name}</name><difficult>{difficult}</difficult><truncated>0</truncated>
    <robndbox>
      <x_left_top>10</x_left_top><y_left_top>20</y_left_top>
      <x_right_top>30</x_right_top><y_right_top>10</y_right_top>
      <x_right_bottom>{x3}</x_right_bottom><y_right_bottom>20</y_right_bottom>
      <x_left_bottom>15</x_left_bottom><y_left_bottom>30</y_left_bottom>
    </robndbox>
    <angle>-26.57</angle>
  </object>"""
HORIZONTAL = """
  <object>
    <name>{name}</name>
    <bndbox><xmin>5</xmin><ymin>6</ymin><xmax>25</xmax><ymax>16</ymax></bndbox>
  </object>"""


def annotation_xml(*objects, width=64, height=48, size=True):
    size_element = (
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>" if size else ""
    )
    return f"<annotation><filename>x.jpg</filename>{size_element}{''.join(objects)}\n</annotation>\n"


def rotated(name="ship", difficult=0, x3="35"):
    return ROTATED.format(name=name, difficult=difficult, x3=x3)


def horizontal(name="storage tank"):
    return HORIZONTAL.format(name=name)


def write_sample(
    folder, stem, text, width=64, height=48, image_dir="JPEGImages", annotation_dir="Annotations"
):
    (folder / annotation_dir).mkdir(parents=True, exist_ok=True)
    (folder / annotation_dir / f"{stem}.xml").write_text(text)
    if image_dir is not None:
        write_png(folder / image_dir / f"{stem}.png", width, height)


@pytest.fixture
def dior_folder(tmp_path):
    root = tmp_path / "dior"
    write_sample(root, "00002", annotation_xml(rotated("ship", difficult=1), horizontal()))
    write_sample(root, "00001", annotation_xml(horizontal("ship")))
    return root


# --------------------------------------------------------------------------------------------------------
# reading
def test_reads_rotated_and_horizontal_boxes(dior_folder):
    dataset = read_dior(dior_folder)
    assert dataset.images["file"].tolist() == ["JPEGImages/00001.png", "JPEGImages/00002.png"]
    assert dataset.images["image_id"].tolist() == [0, 1]
    assert dataset.images[["width", "height"]].values.tolist() == [[64, 48], [64, 48]]
    assert dataset.categories == ["ship", "storage tank"]  # first appearance, in stem order
    np.testing.assert_array_equal(dataset.polygons[0], [5, 6, 25, 6, 25, 16, 5, 16])
    np.testing.assert_array_equal(dataset.polygons[1], [10, 20, 30, 10, 35, 20, 15, 30])
    assert dataset.instances["difficult"].tolist() == [False, True, False]
    assert dataset.instances["truncated"].tolist() == [False, False, False]


def test_classes_file_fixes_the_order_and_refuses_unknown_classes(dior_folder):
    (dior_folder / "classes.txt").write_text("storage tank\nship\nplane\n")
    assert read_dior(dior_folder).categories == ["storage tank", "ship", "plane"]
    (dior_folder / "classes.txt").write_text("storage tank\n")
    with pytest.raises(DataError, match=r"00001.xml \(object 1\): unknown class 'ship'"):
        read_dior(dior_folder)


def test_categories_argument_overrides_the_classes_file(dior_folder):
    (dior_folder / "classes.txt").write_text("storage tank\n")
    assert read_dior(dior_folder, categories=["ship", "storage tank"]).categories == ["ship", "storage tank"]


def test_split_folders_are_read_as_splits(tmp_path):
    write_sample(tmp_path / "train", "a", annotation_xml(rotated()))
    write_sample(tmp_path / "val", "b", annotation_xml())
    dataset = read_dior(tmp_path)
    assert dataset.images[["file", "split"]].values.tolist() == [
        ["train/JPEGImages/a.png", "train"],
        ["val/JPEGImages/b.png", "val"],
    ]


def test_official_distribution_layout(tmp_path):
    obb = "Annotations/Oriented Bounding Boxes"
    write_sample(
        tmp_path,
        "00001",
        annotation_xml(rotated("Airplane")),
        annotation_dir=obb,
        image_dir="JPEGImages-trainval",
    )
    write_sample(
        tmp_path,
        "00002",
        annotation_xml(rotated("ship")),
        annotation_dir=obb,
        image_dir="JPEGImages-trainval",
    )
    write_sample(
        tmp_path,
        "11726",
        annotation_xml(rotated("Expressway-Service-area")),
        annotation_dir=obb,
        image_dir="JPEGImages-test",
    )
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("00002\n")
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("00001\n")
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("11726\n")
    dataset = read_dior(tmp_path)
    assert dataset.categories == DIOR_CLASSES
    assert dataset.images[["file", "split"]].values.tolist() == [
        ["JPEGImages-trainval/00002.png", "train"],
        ["JPEGImages-trainval/00001.png", "val"],
        ["JPEGImages-test/11726.png", "test"],
    ]
    assert dataset.instances["category"].astype(str).tolist() == [
        "ship",
        "airplane",
        "expressway-service-area",
    ]


def test_official_horizontal_layout_without_image_sets_is_unsplit(tmp_path):
    hbb = "Annotations/Horizontal Bounding Boxes"
    write_sample(
        tmp_path,
        "00001",
        annotation_xml(horizontal("vehicle")),
        annotation_dir=hbb,
        image_dir="JPEGImages-trainval",
    )
    dataset = read_dior(tmp_path)
    assert dataset.splits == [""]
    np.testing.assert_array_equal(dataset.polygons, [[5, 6, 25, 6, 25, 16, 5, 16]])


def test_size_is_taken_from_the_image_when_the_xml_has_none(tmp_path):
    write_sample(tmp_path, "a", annotation_xml(rotated(), size=False), width=70, height=40)
    assert read_dior(tmp_path).images[["width", "height"]].values.tolist() == [[70, 40]]


def test_zero_area_objects_are_dropped_and_counted(tmp_path):
    flat = HORIZONTAL.replace("<ymax>16</ymax>", "<ymax>6</ymax>").format(name="ship")
    write_sample(tmp_path, "a", annotation_xml(flat, rotated()))
    problems = Problems()
    assert len(read_dior(tmp_path, problems=problems).instances) == 1
    assert problems.dropped == {"zero area": 1}


# --------------------------------------------------------------------------------------------------------
# refusals
BAD_FILES = {
    "malformed xml": (annotation_xml(rotated()).replace("</annotation>", ""), r"a.xml:\d+: malformed XML"),
    "missing name": (annotation_xml(rotated(), rotated(name="")), r"a.xml \(object 2\): missing <name>"),
    "non-numeric": (
        annotation_xml(rotated(x3="abc")),
        r"a.xml \(object 1\): <x_right_bottom> must be a number",
    ),
    "not finite": (
        annotation_xml(rotated(x3="nan")),
        r"a.xml \(object 1\): <x_right_bottom> must be a finite",
    ),
    "missing box": (
        annotation_xml("<object><name>ship</name></object>"),
        r"\(object 1\): missing <robndbox>",
    ),
    "missing corner": (
        annotation_xml(rotated().replace("<x_left_top>10</x_left_top>", "")),
        r"\(object 1\): missing <x_left_top> in <robndbox>",
    ),
    "bad flag": (annotation_xml(rotated(difficult="2")), r"\(object 1\): <difficult> must be 0 or 1"),
    "size mismatch": (annotation_xml(rotated(), width=65), r"a.xml: <size> says 65x48 but a.png is 64x48"),
    "size not numeric": (annotation_xml(rotated(), width="wide"), r"a.xml: <size>: <width> must be a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_naming_the_file_and_object(tmp_path, case):
    text, pattern = BAD_FILES[case]
    write_sample(tmp_path, "a", text)
    with pytest.raises(DataError, match=pattern) as raised:
        read_dior(tmp_path)
    assert raised.value.path.endswith("a.xml") or raised.value.path.endswith("a.png")


def test_malformed_xml_names_the_line(tmp_path):
    write_sample(tmp_path, "a", "<annotation>\n<size>\n</annotation>\n")
    with pytest.raises(DataError) as raised:
        read_dior(tmp_path)
    assert raised.value.line == 3


def test_missing_image_is_refused(tmp_path):
    write_sample(tmp_path, "a", annotation_xml(rotated()), image_dir=None)
    with pytest.raises(DataError, match="a.xml: no image named a"):
        read_dior(tmp_path)


def test_unreadable_image_is_refused(tmp_path):
    write_sample(tmp_path, "a", annotation_xml(rotated()))
    (tmp_path / "JPEGImages" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="a.png.*cannot be read"):
        read_dior(tmp_path)


def test_unreadable_image_is_refused_after_ultralytics_patched_pil(tmp_path):
    """Importing Ultralytics makes PIL retry unknown files with pi-heif; the user still gets our error."""
    from ccaug.detect.offline import use_offline_ultralytics

    use_offline_ultralytics(tmp_path / "ultralytics")
    write_sample(tmp_path, "a", annotation_xml(rotated()))
    (tmp_path / "JPEGImages" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="a.png.*cannot be read"):
        read_dior(tmp_path)


def test_a_folder_without_annotations_is_refused(tmp_path):
    with pytest.raises(DataError, match="Annotations"):
        read_dior(tmp_path)


def test_skip_invalid_collects_every_problem_and_keeps_the_good_objects(tmp_path):
    write_sample(tmp_path, "a", annotation_xml(rotated(x3="abc"), rotated(), horizontal(name="")))
    write_sample(tmp_path, "b", annotation_xml(rotated(), width=10))
    write_sample(tmp_path, "c", annotation_xml(rotated()))
    problems = Problems(skip_invalid=True)
    dataset = read_dior(tmp_path, problems=problems)
    assert [(error.path.rsplit("/", 1)[1], error.item) for error in problems.errors] == [
        ("a.xml", "object 1"),
        ("a.xml", "object 3"),
        ("b.xml", None),
    ]
    assert dataset.images["file"].tolist() == ["JPEGImages/a.png", "JPEGImages/c.png"]
    assert dataset.instances["image_id"].tolist() == [0, 1]


# --------------------------------------------------------------------------------------------------------
# writing and round trips
def test_dataset_written_and_read_back_keeps_the_oriented_boxes_exactly(make_dataset, tmp_path):
    dataset = make_dataset(splits=("train", "val", "test"))
    write_dataset(dataset, tmp_path / "out", "dior")
    back = read_dataset(tmp_path / "out", "dior")
    assert back.categories == dataset.categories  # kept by classes.txt, including the unused "plane"
    assert back.images["file"].tolist()[:2] == ["train/JPEGImages/img10.png", "train/JPEGImages/img11.png"]
    # Image ids become 0..n-1; everything else is the same (gsd metadata has no place in DIOR XML).
    expected = dataset.instances.assign(image_id=dataset.instances["image_id"] - 10)
    pd.testing.assert_frame_equal(back.instances, expected)
    columns = ["width", "height", "split"]
    pd.testing.assert_frame_equal(back.images[columns], dataset.images[columns])


def test_read_write_read_is_equal(dior_folder, tmp_path):
    first = read_dior(dior_folder)
    write_dior(first, tmp_path / "out")
    second = read_dior(tmp_path / "out")
    pd.testing.assert_frame_equal(first.images, second.images)
    pd.testing.assert_frame_equal(first.instances, second.instances)


def test_written_xml_has_both_boxes_for_hbb_and_obb_tools(make_dataset, tmp_path):
    dataset = make_dataset(splits=("train",), images_per_split=1 + 1)
    write_dior(dataset, tmp_path / "out")
    annotation = ET.parse(tmp_path / "out" / "train" / "Annotations" / "img10.xml").getroot()
    assert annotation.findtext("filename") == "img10.png"
    assert annotation.findtext("size/width") == "96" and annotation.findtext("size/height") == "64"
    objects = annotation.findall("object")
    assert len(objects) == 3
    first = objects[0]
    polygon = dataset.polygons[0]
    bndbox = [int(first.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax")]
    assert bndbox[0] <= polygon[0::2].min() and bndbox[2] >= polygon[0::2].max()  # whole pixels, enclosing
    assert bndbox[1] <= polygon[1::2].min() and bndbox[3] >= polygon[1::2].max()
    assert bndbox[2] - polygon[0::2].max() < 1
    assert float(first.findtext("angle")) == pytest.approx(np.degrees(polygon_to_le90(polygon[None])[0, 4]))
    assert first.findtext("difficult") == str(int(dataset.instances["difficult"].iloc[0]))
    assert (tmp_path / "out" / "classes.txt").read_text().splitlines() == dataset.categories
    assert (tmp_path / "out" / "train" / "JPEGImages" / "img11.png").is_file()


def test_label_only_output_writes_no_images(make_dataset, tmp_path):
    write_dior(make_dataset(), tmp_path / "out", images="none")
    assert (tmp_path / "out" / "val" / "Annotations" / "img13.xml").is_file()
    assert not (tmp_path / "out" / "val" / "JPEGImages").exists()


def test_dior_to_coco_to_dior_keeps_boxes_and_flags_exactly(make_dataset, tmp_path):
    write_dataset(make_dataset(), tmp_path / "dior", "dior")
    original = read_dataset(tmp_path / "dior", "dior")
    write_dataset(original, tmp_path / "coco", "coco")
    write_dataset(read_dataset(tmp_path / "coco", "coco"), tmp_path / "back", "dior")
    back = read_dataset(tmp_path / "back", "dior")
    pd.testing.assert_frame_equal(back.instances, original.instances)
    assert back.categories == original.categories
