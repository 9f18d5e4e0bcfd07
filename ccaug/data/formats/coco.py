"""COCO detection json, loaded with pycocotools after we have validated it ourselves.

Layout (read and written)
    ``annotations.json`` + ``images/``                      one unsplit data set (split ``""``), or
    ``train/annotations.json`` + ``train/images/`` ...      one folder per split (``train``, ``val``, ``test``).
Reading also accepts the path of any single ``.json`` file (split ``""``).

An image's ``file_name`` is relative to the folder that holds its json (so our writer writes
``images/<name>``; a Roboflow-style export with images beside the json reads as it is). A ``file_name`` that
leaves that folder is refused.

Geometry of an annotation, in order of preference:
* a ``segmentation`` made of one polygon of exactly 4 points: that polygon (the annotator's corners);
* any other polygon segmentation: the minimum-area rectangle of all its points;
* RLE or no segmentation: the axis-aligned ``bbox`` (x, y, w, h).

Flags: our own ``difficult`` / ``truncated`` keys read back. Without a ``difficult`` key, ``iscrowd: 1`` reads
as difficult, because both mean "do not count this object as a miss" in evaluation. The writer writes
``iscrowd: 0`` and the flags as ``difficult`` / ``truncated``.

pycocotools silently keeps the last of two items with one id; we refuse duplicate ids instead, and every
error names the file and the offending id (``item="annotation id 17"``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from pycocotools.coco import COCO

from ccaug.data.dataset import IMAGE_COLUMNS, Dataset
from ccaug.data.errors import DataError, Problems
from ccaug.data.formats.common import (
    SPLIT_NAMES,
    check_split_names,
    place_images,
    resolve_inside,
    split_prefix,
    unique_stems,
)
from ccaug.data.geometry import (
    POLY_COLUMNS,
    hbb_to_polygon,
    polygon_area,
    polygon_to_hbb,
    rectify_polygon,
)
from ccaug.fileio import write_json

ANNOTATIONS_FILE = "annotations.json"
IMAGES_FOLDER = "images"
# Image keys that are part of the COCO record itself (the rest become image metadata columns).
_IMAGE_KEYS = {"id", "file_name", "width", "height"}
MIN_AREA = 1e-6  # square pixels; smaller boxes are degenerate (dropped and counted, as in the DOTA reader)


# --------------------------------------------------------------------------------------------------------
# reading
def read_coco(
    path: Path,
    *,
    problems: Problems | None = None,
    categories: list[str] | None = None,
    require_images: bool = True,
) -> Dataset:
    """Read a COCO data set: a folder in our layout, or a single ``.json`` file.

    With `categories`, every category of the file must be in that list, and the data set takes its order.
    ``require_images=False`` reads layouts, whose image files do not exist yet (COCO stores the sizes).
    """
    problems = problems if problems is not None else Problems()
    path = Path(path)
    root, sources = _find_json_files(path)
    parts = [part for split, json_path in sources if (part := _read_json(json_path, split, problems, require_images))]
    return _combine(parts, root, problems, categories, path)


def _find_json_files(path: Path) -> tuple[Path, list[tuple[str, Path]]]:
    """``(root, [(split, json path)])``: ``annotations.json`` (split ``""``) and the per-split files."""
    if path.is_file():
        return path.parent, [("", path)]
    found = [(split, path / split_prefix(split) / ANNOTATIONS_FILE) for split in ("", *SPLIT_NAMES)]
    found = [(split, json_path) for split, json_path in found if json_path.is_file()]
    if found:
        return path, found
    raise DataError(path, f"expected '{ANNOTATIONS_FILE}' here or in train/, val/ or test/ sub-folders")


@dataclass
class _Part:
    """What one json file contributed, after validation."""

    split: str
    path: Path
    categories: list[tuple[int, str]]
    images: list[dict]
    instances: pd.DataFrame
    meta: dict = field(default_factory=dict)


def _read_json(json_path: Path, split: str, problems: Problems, require_images: bool) -> _Part | None:
    data = _load_json(json_path, problems)
    if data is None:
        return None
    check = _Checker(json_path, problems, require_images)
    categories = check.categories(data["categories"])
    folder = json_path.parent
    images = check.images(data["images"], folder)
    annotations = check.annotations(data["annotations"], {image["id"] for image in images}, dict(categories))
    coco = _index(images, annotations, categories)
    instances = _instances(coco, dict(categories), problems)
    meta = {key: data[key] for key in ("info", "licenses") if key in data}
    root_relative = [_image_record(image, split) for image in images]
    return _Part(split, json_path, categories, root_relative, instances, meta)


def _load_json(json_path: Path, problems: Problems) -> dict | None:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problems.report(json_path, f"malformed JSON ({error.msg})", line=error.lineno)
        return None
    except UnicodeDecodeError as error:
        problems.report(json_path, f"not UTF-8 text ({error})")
        return None
    if not isinstance(data, dict):
        problems.report(json_path, "expected a JSON object with 'images', 'annotations' and 'categories'")
        return None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problems.report(json_path, f"expected a list under the top-level key '{key}'")
            return None
    return data


class _Checker:
    """Validates the three lists of one file, reporting each bad item and keeping the good ones."""

    def __init__(self, path: Path, problems: Problems, require_images: bool = True):
        self.path = path
        self.problems = problems
        self.require_images = require_images

    def report(self, message: str, item: str) -> None:
        self.problems.report(self.path, message, item=item)

    def categories(self, records: list) -> list[tuple[int, str]]:
        kept: dict[int, str] = {}
        for position, record in enumerate(records):
            item = f"category #{position + 1}"
            if not isinstance(record, dict) or not _is_int(record.get("id")) or not record.get("name"):
                self.report("a category needs an integer 'id' and a non-empty 'name'", item)
                continue
            item = f"category id {record['id']}"
            name = str(record["name"])
            if record["id"] in kept:
                self.report("duplicate category id", item)
            elif name in kept.values():
                self.report(f"duplicate category name {name!r}", item)
            else:
                kept[int(record["id"])] = name
        return list(kept.items())

    def images(self, records: list, folder: Path) -> list[dict]:
        kept: dict[int, dict] = {}
        for position, record in enumerate(records):
            item = f"image #{position + 1}"
            if not isinstance(record, dict) or not _is_int(record.get("id")):
                self.report("an image needs an integer 'id'", item)
                continue
            item = f"image id {record['id']}"
            if record["id"] in kept:
                self.report("duplicate image id", item)
                continue
            if not isinstance(record.get("file_name"), str) or not record["file_name"]:
                self.report("an image needs a 'file_name'", item)
                continue
            if not all(_is_int(record.get(key)) and record[key] > 0 for key in ("width", "height")):
                self.report("an image needs positive integer 'width' and 'height'", item)
                continue
            image_path = resolve_inside(folder, record["file_name"], self.problems, self.path, item=item)
            if image_path is None:
                continue
            if self.require_images and not image_path.is_file():
                self.report(f"image file {record['file_name']!r} is missing", item)
                continue
            kept[int(record["id"])] = record
        return list(kept.values())

    def annotations(self, records: list, image_ids: set[int], category_ids: dict[int, str]) -> list[dict]:
        kept: dict[int, dict] = {}
        for position, record in enumerate(records):
            item = f"annotation #{position + 1}"
            if not isinstance(record, dict) or not _is_int(record.get("id")):
                self.report("an annotation needs an integer 'id'", item)
                continue
            item = f"annotation id {record['id']}"
            if record["id"] in kept:
                self.report("duplicate annotation id", item)
                continue
            message = self._annotation_problem(record, image_ids, category_ids)
            if message:
                self.report(message, item)
                continue
            kept[int(record["id"])] = record
        return list(kept.values())

    @staticmethod
    def _annotation_problem(record: dict, image_ids: set[int], category_ids: dict[int, str]) -> str | None:
        """What is wrong with an annotation, or None."""
        for key in ("image_id", "category_id", "bbox"):
            if key not in record:
                return f"missing key '{key}'"
        if record["image_id"] not in image_ids:
            return f"refers to image id {record['image_id']!r}, which is not a valid image of this file"
        if record["category_id"] not in category_ids:
            return f"refers to unknown category id {record['category_id']!r}"
        bbox = record["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite(v) for v in bbox)):
            return f"'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}"
        if bbox[2] < 0 or bbox[3] < 0:
            return f"'bbox' has a negative width or height: {bbox!r}"
        segmentation = record.get("segmentation")
        if isinstance(segmentation, list):
            for polygon in segmentation:
                if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                    return "'segmentation' polygons must be lists of at least 3 x, y pairs"
                if not all(_is_finite(v) for v in polygon):
                    return "'segmentation' contains a value that is not a finite number"
        elif segmentation is not None and not isinstance(segmentation, dict):
            return "'segmentation' must be a list of polygons or an RLE object"
        for flag in ("difficult", "truncated", "iscrowd"):
            if flag in record and record[flag] not in (0, 1):  # also accepts true/false
                return f"'{flag}' must be 0 or 1, got {record[flag]!r}"
        return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _index(images: list[dict], annotations: list[dict], categories: list[tuple[int, str]]) -> COCO:
    """A pycocotools index over the validated records (its progress prints are silenced)."""
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": category_id, "name": name} for category_id, name in categories],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _instances(coco: COCO, category_names: dict[int, str], problems: Problems) -> pd.DataFrame:
    """One row per annotation, in image order then file order; zero-area boxes are dropped and counted."""
    annotations = [ann for image_id in coco.getImgIds() for ann in coco.imgToAnns[image_id]]
    polygons = _polygons(annotations)
    table = pd.DataFrame(polygons, columns=POLY_COLUMNS)
    table.insert(0, "image_id", [ann["image_id"] for ann in annotations])
    table.insert(1, "category", [category_names[ann["category_id"]] for ann in annotations])
    table["difficult"] = [bool(ann.get("difficult", ann.get("iscrowd", 0))) for ann in annotations]
    table["truncated"] = [bool(ann.get("truncated", 0)) for ann in annotations]
    degenerate = polygon_area(polygons) <= MIN_AREA
    problems.drop("zero area", int(degenerate.sum()))
    return table.loc[~degenerate]


def _polygons(annotations: list[dict]) -> np.ndarray:
    """``(N, 8)`` polygons, following the preference order in the module docstring."""
    polygons = np.zeros((len(annotations), 8))
    to_fit: list[int] = []
    for row, ann in enumerate(annotations):
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list) and len(segmentation) == 1 and len(segmentation[0]) == 8:
            polygons[row] = segmentation[0]
        elif isinstance(segmentation, list) and segmentation:
            to_fit.append(row)
        else:
            x, y, w, h = ann["bbox"]
            polygons[row] = hbb_to_polygon(np.array([[x, y, x + w, y + h]]))[0]
    if to_fit:
        points = [np.concatenate(annotations[row]["segmentation"]).reshape(-1, 2) for row in to_fit]
        polygons[to_fit] = min_area_rectangles(points)
    return polygons


def min_area_rectangles(point_sets: list[np.ndarray]) -> np.ndarray:
    """``(N, 8)`` minimum-area rectangles (le90 corner order) of N point sets of any size ``(K, 2)``.

    Collinear or coincident points give a zero-width rectangle along them (not an error: the caller drops
    zero-area boxes and counts them).
    """
    owner = np.repeat(np.arange(len(point_sets)), [len(points) for points in point_sets])
    multipoints = shapely.multipoints(np.concatenate(point_sets), indices=owner)
    rectangles = shapely.minimum_rotated_rectangle(multipoints)
    corners = np.zeros((len(point_sets), 8))
    for row, rectangle in enumerate(rectangles):
        coords = shapely.get_coordinates(rectangle)
        if isinstance(rectangle, shapely.Polygon):
            corners[row] = coords[:4].ravel()
        else:  # a LineString (collinear points) or a Point: a rectangle of zero width
            first, last = coords[0], coords[-1]
            corners[row] = np.concatenate([first, last, last, first])
    return rectify_polygon(corners)


def _image_record(image: dict, split: str) -> dict:
    """An images-table row; ``file_name`` is relative to the json's folder, ``file`` to the data-set root."""
    relative = Path(image["file_name"]).as_posix()
    record = {
        "image_id": int(image["id"]),
        "file": split_prefix(split) + posixpath.normpath(relative),
        "width": int(image["width"]),
        "height": int(image["height"]),
        "split": split,
    }
    extras = {
        key: value for key, value in image.items() if key not in _IMAGE_KEYS and key not in IMAGE_COLUMNS
    }
    return record | extras


def _combine(
    parts: list[_Part], root: Path, problems: Problems, categories: list[str] | None, path: Path
) -> Dataset:
    """One Dataset from the per-split files; they must share one category list."""
    file_categories = parts[0].categories if parts else []
    for part in parts[1:]:
        if part.categories != file_categories:
            problems.report(
                part.path,
                f"categories {part.categories} differ from {file_categories} in {parts[0].path}; "
                "all splits of a data set must share one category list",
            )
    parts = [part for part in parts if part.categories == file_categories]
    names, ids = _category_list(file_categories, categories, parts[0].path if parts else path, problems)
    _renumber_images_if_ids_clash(parts)
    images = [image for part in parts for image in part.images]
    images = pd.DataFrame(images) if images else pd.DataFrame(columns=IMAGE_COLUMNS)
    instances = pd.concat([part.instances for part in parts]) if parts else _empty_instances()
    instances = instances.loc[instances["category"].isin(names)]  # only after a reported unknown category
    meta = parts[0].meta if parts else {}
    return Dataset(images, instances, names, root=root, category_ids=ids, meta=dict(meta))


def _empty_instances() -> pd.DataFrame:
    return pd.DataFrame(columns=["image_id", "category", *POLY_COLUMNS, "difficult", "truncated"])


def _category_list(
    file_categories: list[tuple[int, str]], wanted: list[str] | None, path: Path, problems: Problems
) -> tuple[list[str], list[int]]:
    """Names and ids: the file's, in the file's order; or `wanted`, which must cover every file category.

    A wanted category that the file lacks gets a fresh id after the file's largest.
    """
    names = [name for _, name in file_categories]
    ids = [category_id for category_id, _ in file_categories]
    if wanted is None:
        return names, ids
    unknown = [name for name in names if name not in wanted]
    if unknown:
        problems.report(path, f"categories {unknown} are not in the given category list {list(wanted)}")
    by_name = dict(zip(names, ids))
    fresh = iter(range(max(ids, default=0) + 1, max(ids, default=0) + 1 + len(wanted)))
    return list(wanted), [by_name[name] if name in by_name else next(fresh) for name in wanted]


def _renumber_images_if_ids_clash(parts: list[_Part]) -> None:
    """Keep the files' image ids unless two split files reuse one; then number all images 1..N in order."""
    ids = [image["image_id"] for part in parts for image in part.images]
    if len(set(ids)) == len(ids):
        return
    next_id = 1
    for part in parts:
        mapping = {}
        for image in part.images:
            mapping[image["image_id"]] = next_id
            image["image_id"] = next_id
            next_id += 1
        part.instances["image_id"] = part.instances["image_id"].map(mapping)


# --------------------------------------------------------------------------------------------------------
# writing
def write_coco(dataset: Dataset, out: Path, *, images: str = "copy") -> None:
    """Write ``{split}/annotations.json`` and ``{split}/images/`` per split (no prefix when unsplit).

    Image ids are the data set's, annotation ids run 1..N, category ids are `Dataset.category_ids` (default
    1..n); image metadata columns are written as extra image keys.
    """
    out = Path(out)
    check_split_names(dataset.splits)
    unique_stems(dataset)  # two images of one split with one name would overwrite each other
    new_files = dataset.images["split"].map(split_prefix) + IMAGES_FOLDER + "/"
    new_files = new_files + dataset.images["file"].map(lambda file: Path(file).name)
    place_images(dataset, out, new_files, images)
    category_ids = dataset.category_ids or list(range(1, len(dataset.categories) + 1))
    annotations = _annotation_records(dataset, category_ids)
    image_ids = dataset.images["image_id"].to_numpy()
    for split in dataset.splits or [""]:
        rows = (dataset.images["split"] == split).to_numpy()
        keep = set(image_ids[rows].tolist())
        document = dict(_meta(dataset))
        document["images"] = _image_records(dataset.images.loc[rows], new_files[rows], split)
        document["annotations"] = [ann for ann in annotations if ann["image_id"] in keep]
        document["categories"] = [
            {"id": category_id, "name": name} for category_id, name in zip(category_ids, dataset.categories)
        ]
        write_json(out / f"{split_prefix(split)}{ANNOTATIONS_FILE}", document)


def _meta(dataset: Dataset) -> dict:
    return {key: dataset.meta[key] for key in ("info", "licenses") if key in dataset.meta}


def _image_records(images: pd.DataFrame, new_files: pd.Series, split: str) -> list[dict]:
    prefix = split_prefix(split)
    extras = [column for column in images.columns if column not in IMAGE_COLUMNS]
    records = []
    for image, new_file in zip(images.to_dict("records"), new_files):  # keeps each column's type
        record = {
            "id": int(image["image_id"]),
            "file_name": new_file[len(prefix) :],
            "width": int(image["width"]),
            "height": int(image["height"]),
        }
        for column in extras:
            value = _json_value(image[column])
            if value is not None:
                record[column] = value
        records.append(record)
    return records


def _json_value(value):
    """A plain JSON value for a table cell; None for missing values (NaN, None), which are not written."""
    if isinstance(value, (list, dict, str)):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def _annotation_records(dataset: Dataset, category_ids: list[int]) -> list[dict]:
    polygons = dataset.polygons
    hbb = polygon_to_hbb(polygons)
    area = polygon_area(polygons)
    ids = np.asarray(category_ids)[dataset.category_index()]
    table = dataset.instances
    records = []
    for row, (image_id, difficult, truncated) in enumerate(
        zip(table["image_id"], table["difficult"], table["truncated"])
    ):
        xmin, ymin, xmax, ymax = hbb[row].tolist()
        records.append(
            {
                "id": row + 1,
                "image_id": int(image_id),
                "category_id": int(ids[row]),
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                "segmentation": [polygons[row].tolist()],
                "area": float(area[row]),
                "iscrowd": 0,
                "difficult": int(difficult),
                "truncated": int(truncated),
            }
        )
    return records
