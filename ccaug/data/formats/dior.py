"""DIOR / DIOR-R annotations: one Pascal-VOC XML file per image.

Our layout (read and written)
    ``Annotations/<stem>.xml`` + ``JPEGImages/<stem>.<ext>`` + ``classes.txt`` at the root (split ``""``), or
    the two folders inside ``train/``, ``val/`` and ``test/`` (``classes.txt`` stays at the root).
The official distribution is also read, recognised by its folder names::

    Annotations/Oriented Bounding Boxes/*.xml   (DIOR-R; preferred)  or  Annotations/Horizontal Bounding Boxes/
    JPEGImages-trainval/   JPEGImages-test/
    ImageSets/Main/{train,val,test}.txt         (image stems per split; without them the split is "")

One object::

    <object>
      <name>airplane</name> <difficult>0</difficult> <truncated>0</truncated>
      <bndbox><xmin/><ymin/><xmax/><ymax/></bndbox>
      <robndbox><x_left_top/><y_left_top/><x_right_top/><y_right_top/>
                <x_right_bottom/><y_right_bottom/><x_left_bottom/><y_left_bottom/></robndbox>
      <angle/>
    </object>

An object with a ``robndbox`` is that polygon (corners left-top, right-top, right-bottom, left-bottom);
otherwise its ``bndbox``. ``angle`` is ignored on reading (the corners say it all). The writer writes both
boxes, so HBB-only and OBB tools read the same file: ``bndbox`` rounded outwards to whole pixels (the VOC
convention, which many tools parse with ``int()``), ``robndbox`` exactly, and ``angle`` as the le90 angle of
the box in degrees. ``<size>`` must match the image header. Image metadata columns (e.g. ``gsd``) have no
place in this format and are not written.

Class list: the ``categories`` argument, else ``classes.txt`` at the root, else (official layout) the 20
DIOR classes, else the order of first appearance. When a list is given, an unknown class is an error.
Official DIOR files mix letter case in class names, so names are lower-cased in that layout only.
Image ids are 0..n-1 in (split, stem) order, like the DOTA reader.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ccaug.data.dataset import IMAGE_COLUMNS, INSTANCE_COLUMNS, Dataset
from ccaug.data.errors import Problems
from ccaug.data.formats.common import (
    SPLIT_NAMES,
    check_split_names,
    find_images,
    place_images,
    read_classes_file,
    read_image_size,
    split_folders,
    split_prefix,
    unique_stems,
    write_classes_file,
)
from ccaug.data.geometry import POLY_COLUMNS, hbb_to_polygon, polygon_area, polygon_to_hbb, polygon_to_le90
from ccaug.fileio import write_text

ANNOTATION_DIR = "Annotations"
IMAGE_DIR = "JPEGImages"
OFFICIAL_OBB_DIR = "Oriented Bounding Boxes"
OFFICIAL_HBB_DIR = "Horizontal Bounding Boxes"
OFFICIAL_IMAGE_DIRS = ("JPEGImages-trainval", "JPEGImages-test")
OFFICIAL_SPLIT_DIR = Path("ImageSets") / "Main"
DIOR_CLASSES = [
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "expressway-service-area",
    "expressway-toll-station", "dam", "golffield", "groundtrackfield", "harbor", "overpass", "ship", "stadium",
    "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill",
]  # fmt: skip
ROBNDBOX_TAGS = [
    "x_left_top", "y_left_top", "x_right_top", "y_right_top",
    "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom",
]  # fmt: skip
BNDBOX_TAGS = ["xmin", "ymin", "xmax", "ymax"]
MIN_AREA = 1e-6  # square pixels; smaller boxes are degenerate (dropped and counted, as in the DOTA reader)


@dataclass
class _Source:
    """One annotation file, its split and its image (None when no image of that stem exists)."""

    split: str
    xml: Path
    image: Path | None


class _ObjectError(Exception):
    """A bad object; the message says what was expected."""


# --------------------------------------------------------------------------------------------------------
# reading
def read_dior(
    path: Path, *, problems: Problems | None = None, categories: list[str] | None = None
) -> Dataset:
    """Read DIOR / DIOR-R XML annotations in our layout or the official one (see the module docstring)."""
    problems = problems if problems is not None else Problems()
    root = Path(path)
    official = _is_official(root)
    sources = _official_sources(root) if official else _our_sources(root)
    given = list(categories) if categories is not None else read_classes_file(root)
    if given is None and official:
        given = list(DIOR_CLASSES)
    classes = _ClassList(given)
    images, instances = [], []
    for source in sources:
        parsed = _read_source(source, root, classes, problems, lower_case=official)
        if parsed is None:
            continue
        image, objects = parsed
        image["image_id"] = len(images)
        objects["image_id"] = image["image_id"]
        images.append(image)
        instances.append(objects)
    images_table = pd.DataFrame(images, columns=IMAGE_COLUMNS)
    instances_table = pd.concat(instances) if instances else pd.DataFrame(columns=INSTANCE_COLUMNS)
    return Dataset(images_table, instances_table, classes.names, root=root)


def _is_official(root: Path) -> bool:
    return any((root / ANNOTATION_DIR / name).is_dir() for name in (OFFICIAL_OBB_DIR, OFFICIAL_HBB_DIR))


def _our_sources(root: Path) -> list[_Source]:
    sources = []
    for split, folder in split_folders(root, ANNOTATION_DIR):
        images = find_images(folder / IMAGE_DIR)
        for xml in sorted((folder / ANNOTATION_DIR).glob("*.xml")):
            sources.append(_Source(split, xml, images.get(xml.stem)))
    return sources


def _official_sources(root: Path) -> list[_Source]:
    """Sources of the official layout, in (split, stem) order; split from ImageSets/Main when present."""
    annotations = root / ANNOTATION_DIR / OFFICIAL_OBB_DIR
    if not annotations.is_dir():
        annotations = root / ANNOTATION_DIR / OFFICIAL_HBB_DIR
    images: dict[str, Path] = {}
    for folder in OFFICIAL_IMAGE_DIRS:
        images.update(find_images(root / folder))
    split_of = _official_splits(root)
    order = {split: position for position, split in enumerate(("", *SPLIT_NAMES))}
    sources = [
        _Source(split_of.get(xml.stem, ""), xml, images.get(xml.stem)) for xml in annotations.glob("*.xml")
    ]
    return sorted(sources, key=lambda source: (order[source.split], source.xml.stem))


def _official_splits(root: Path) -> dict[str, str]:
    """stem -> split from ``ImageSets/Main/{train,val,test}.txt`` (empty when the folder is absent)."""
    split_of = {}
    for split in SPLIT_NAMES:
        listing = root / OFFICIAL_SPLIT_DIR / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8").split():
                split_of[line.strip()] = split
    return split_of


class _ClassList:
    """The class list: fixed when given (an unknown name is then an error), else grown in order of appearance."""

    def __init__(self, given: list[str] | None):
        self.fixed = given is not None
        self.names = list(given) if given is not None else []

    def check(self, name: str) -> None:
        if name in self.names:
            return
        if self.fixed:
            raise _ObjectError(f"unknown class {name!r}; expected one of {self.names}")
        self.names.append(name)


def _read_source(
    source: _Source, root: Path, classes: _ClassList, problems: Problems, lower_case: bool
) -> tuple[dict, pd.DataFrame] | None:
    """An images-table row (without id) and the image's objects, or None after reporting a problem."""
    try:
        annotation = ET.parse(source.xml).getroot()
    except ET.ParseError as error:
        problems.report(source.xml, f"malformed XML ({error})", line=error.position[0])
        return None
    if source.image is None:
        problems.report(source.xml, f"no image named {source.xml.stem}.* for this annotation file")
        return None
    size = _image_size(source, annotation, problems)
    if size is None:
        return None
    image = {
        "file": source.image.relative_to(root).as_posix(),
        "width": size[0],
        "height": size[1],
        "split": source.split,
    }
    return image, _read_objects(source.xml, annotation, classes, problems, lower_case)


def _image_size(source: _Source, annotation: ET.Element, problems: Problems) -> tuple[int, int] | None:
    """The image header's size, checked against ``<size>`` when the file has one."""
    actual = read_image_size(source.image, problems, item=f"image of {source.xml.name}")
    if actual is None:
        return None
    size = annotation.find("size")
    if size is None:
        return actual
    try:
        declared = (int(_number(size, "width")), int(_number(size, "height")))
    except _ObjectError as error:
        problems.report(source.xml, f"<size>: {error}")
        return None
    if declared != actual:
        problems.report(
            source.xml,
            f"<size> says {declared[0]}x{declared[1]} but {source.image.name} is {actual[0]}x{actual[1]}",
        )
        return None
    return actual


def _read_objects(
    xml: Path, annotation: ET.Element, classes: _ClassList, problems: Problems, lower_case: bool
) -> pd.DataFrame:
    rows = []
    for index, element in enumerate(annotation.findall("object"), start=1):
        try:
            rows.append(_read_object(element, classes, lower_case))
        except _ObjectError as error:
            problems.report(xml, str(error), item=f"object {index}")
    table = pd.DataFrame(rows, columns=["category", *POLY_COLUMNS, "difficult", "truncated"])
    degenerate = polygon_area(table[POLY_COLUMNS].to_numpy(dtype=float)) <= MIN_AREA
    problems.drop("zero area", int(degenerate.sum()))
    return table.loc[~degenerate]


def _read_object(element: ET.Element, classes: _ClassList, lower_case: bool) -> dict:
    name = (element.findtext("name") or "").strip()
    if not name:
        raise _ObjectError("missing <name>")
    name = name.lower() if lower_case else name
    if element.find("robndbox") is not None:
        polygon = [_number(element.find("robndbox"), tag) for tag in ROBNDBOX_TAGS]
    elif element.find("bndbox") is not None:
        box = np.array([[_number(element.find("bndbox"), tag) for tag in BNDBOX_TAGS]])
        polygon = hbb_to_polygon(box)[0].tolist()
    else:
        raise _ObjectError("missing <robndbox> and <bndbox>: an object needs one of them")
    flags = {"difficult": _flag(element, "difficult"), "truncated": _flag(element, "truncated")}
    classes.check(name)  # last, so that a rejected object adds no class
    return {"category": name, **dict(zip(POLY_COLUMNS, polygon)), **flags}


def _number(parent: ET.Element, tag: str) -> float:
    text = parent.findtext(tag)
    if text is None:
        raise _ObjectError(f"missing <{tag}> in <{parent.tag}>")
    try:
        value = float(text)
    except ValueError:
        raise _ObjectError(f"<{tag}> must be a number, got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise _ObjectError(f"<{tag}> must be a finite number, got {text.strip()!r}")
    return value


def _flag(element: ET.Element, tag: str) -> bool:
    """A 0/1 flag; an absent flag is 0, as in DIOR files that leave them out."""
    text = (element.findtext(tag) or "0").strip()
    if text not in ("0", "1"):
        raise _ObjectError(f"<{tag}> must be 0 or 1, got {text!r}")
    return text == "1"


# --------------------------------------------------------------------------------------------------------
# writing
def write_dior(dataset: Dataset, out: Path, *, images: str = "copy") -> None:
    """Write ``{split}/Annotations/<stem>.xml``, ``{split}/JPEGImages/`` and ``classes.txt``."""
    out = Path(out)
    check_split_names(dataset.splits)
    stems = unique_stems(dataset)
    prefixes = dataset.images["split"].map(split_prefix)
    suffixes = dataset.images["file"].map(lambda file: Path(file).suffix)
    new_files = prefixes + f"{IMAGE_DIR}/" + stems + suffixes
    place_images(dataset, out, new_files, images)
    write_classes_file(out, dataset.categories)
    for (image, objects), prefix, stem, new_file in zip(dataset.iter_images(), prefixes, stems, new_files):
        document = _annotation_element(image, objects, Path(new_file).name)
        ET.indent(document)
        text = ET.tostring(document, encoding="unicode") + "\n"
        write_text(out / f"{prefix}{ANNOTATION_DIR}/{stem}.xml", text)
    if not len(dataset.images):
        (out / ANNOTATION_DIR).mkdir(parents=True, exist_ok=True)  # still a readable (empty) data set


def _annotation_element(image: pd.Series, objects: pd.DataFrame, file_name: str) -> ET.Element:
    annotation = ET.Element("annotation")
    ET.SubElement(annotation, "filename").text = file_name
    size = ET.SubElement(annotation, "size")
    ET.SubElement(size, "width").text = str(int(image["width"]))
    ET.SubElement(size, "height").text = str(int(image["height"]))
    polygons = objects[POLY_COLUMNS].to_numpy(dtype=np.float64)
    hbbs = polygon_to_hbb(polygons)
    angles = np.degrees(polygon_to_le90(polygons)[:, 4])
    names = objects["category"].astype(str)
    rows = zip(names, objects["difficult"], objects["truncated"], polygons, hbbs, angles)
    for name, difficult, truncated, polygon, hbb, angle in rows:
        element = ET.SubElement(annotation, "object")
        ET.SubElement(element, "name").text = name
        ET.SubElement(element, "difficult").text = str(int(difficult))
        ET.SubElement(element, "truncated").text = str(int(truncated))
        bndbox = ET.SubElement(element, "bndbox")
        whole_pixels = [math.floor(hbb[0]), math.floor(hbb[1]), math.ceil(hbb[2]), math.ceil(hbb[3])]
        for tag, value in zip(BNDBOX_TAGS, whole_pixels):
            ET.SubElement(bndbox, tag).text = str(value)
        robndbox = ET.SubElement(element, "robndbox")
        for tag, value in zip(ROBNDBOX_TAGS, polygon):
            ET.SubElement(robndbox, tag).text = repr(float(value))  # shortest text that reads back exactly
        ET.SubElement(element, "angle").text = repr(float(angle))
    return annotation
