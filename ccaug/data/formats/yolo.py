"""YOLO (axis-aligned) and YOLO-OBB labels in the Ultralytics data set layout.

Layout (as Ultralytics reads it, and as we write it)::

    data.yaml                 path: (optional)  train: images/train  val: images/val  test: images/test
                              names: {0: plane, 1: ship, ...}   (a list is accepted too)
    images/<split>/<stem>.png
    labels/<split>/<stem>.txt one line per object, coordinates normalised by the image width / height:
                              YOLO      ``class cx cy w h``
                              YOLO-OBB  ``class x1 y1 x2 y2 x3 y3 x4 y4``

A label file is found from its image path the Ultralytics way: the last ``images`` folder of the path becomes
``labels`` and the suffix ``.txt``. An image without a label file has no objects (a background image).
A split in ``data.yaml`` may be a folder (searched recursively), a ``.txt`` list of image paths, or a list of
either. ``path`` and the split entries are relative to the folder of ``data.yaml`` (Ultralytics would take a
relative ``path`` from the working directory; a data set that moves with its folder is the safer reading).
An image that appears under more than one split key (``train: images`` and ``val: images``, which is how an
unsplit data set is written) belongs to the split ``""``. Image ids are 0..n-1 in (split, path) order.

What the format cannot keep: YOLO stores neither orientation nor the difficult / truncated flags nor image
metadata, so `read_yolo` gives axis-aligned polygons (the boxes round-trip, the rotations do not) and flags
read as False; YOLO-OBB keeps the polygons but not the flags. Objects may stick out of the image in the
Dataset, but Ultralytics refuses a whole label file with coordinates beyond ``1.01``, so the writers clip
coordinates to ``[0, 1]``. The readers accept coordinates slightly outside ``[0, 1]`` (see `OUTSIDE`) and
refuse anything further, which is usually a label written in pixels.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ccaug.data.dataset import IMAGE_COLUMNS, INSTANCE_COLUMNS, Dataset
from ccaug.data.errors import DataError, Problems
from ccaug.data.formats.common import (
    CLASSES_FILE,
    IMAGE_SUFFIXES,
    SPLIT_NAMES,
    check_split_names,
    place_images,
    read_image_size,
    resolve_inside,
    unique_stems,
)
from ccaug.data.geometry import POLY_COLUMNS, hbb_to_polygon, polygon_area, polygon_to_hbb
from ccaug.fileio import write_text

DATA_YAML = "data.yaml"
IMAGE_DIR = "images"
LABEL_DIR = "labels"
# How far outside [0, 1] a normalised coordinate may lie (a fraction of the image side) before it is an error.
OUTSIDE = 0.05
MIN_AREA = 1e-6  # square pixels; smaller boxes are degenerate (dropped and counted, as in the DOTA reader)
_TASKS = {"yolo": "class cx cy w h", "obb": "class x1 y1 x2 y2 x3 y3 x4 y4"}


class _LineError(Exception):
    """A bad label line; the message says what was expected."""


# --------------------------------------------------------------------------------------------------------
# reading
def read_yolo(
    path: Path, *, problems: Problems | None = None, categories: list[str] | None = None
) -> Dataset:
    """Read YOLO (axis-aligned) labels; `path` is ``data.yaml`` or the folder that holds it."""
    return _read(Path(path), "yolo", problems if problems is not None else Problems(), categories)


def read_yolo_obb(
    path: Path, *, problems: Problems | None = None, categories: list[str] | None = None
) -> Dataset:
    """Read YOLO-OBB labels; `path` is ``data.yaml`` or the folder that holds it."""
    return _read(Path(path), "obb", problems if problems is not None else Problems(), categories)


def _read(path: Path, task: str, problems: Problems, categories: list[str] | None) -> Dataset:
    yaml_path = _find_yaml(path)
    config = _load_yaml(yaml_path)
    root = _dataset_root(yaml_path, config)
    names = _class_names(yaml_path, config)
    names, class_map = _apply_category_list(names, categories, yaml_path, problems)
    images, instances = [], []
    for split, image_path in _split_images(yaml_path, config, root, problems):
        size = read_image_size(image_path, problems, item=f"{split or 'unsplit'} image")
        if size is None:
            continue
        image_id = len(images)
        file = image_path.relative_to(root).as_posix()
        images.append(
            {"image_id": image_id, "file": file, "width": size[0], "height": size[1], "split": split}
        )
        table = _read_label_file(label_path(image_path), task, size, class_map, problems)
        instances.append(table.assign(image_id=image_id))
    images_table = pd.DataFrame(images, columns=IMAGE_COLUMNS)
    instances_table = pd.concat(instances) if instances else pd.DataFrame(columns=INSTANCE_COLUMNS)
    instances_table["category"] = [names[index] for index in instances_table["category"]]
    return Dataset(images_table, instances_table, names, root=root)


def _find_yaml(path: Path) -> Path:
    if path.is_file():
        return path
    if (path / DATA_YAML).is_file():
        return path / DATA_YAML
    candidates = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(path, f"expected a '{DATA_YAML}' here (found {len(candidates)} other YAML files)")


def _load_yaml(yaml_path: Path) -> dict:
    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise DataError(
            yaml_path, f"malformed YAML ({error})", line=mark.line + 1 if mark else None
        ) from None
    if not isinstance(config, dict):
        raise DataError(yaml_path, "expected a mapping with 'train', 'val' and 'names'")
    return config


def _dataset_root(yaml_path: Path, config: dict) -> Path:
    """``path`` (relative to the YAML's folder), or the YAML's folder itself."""
    root = yaml_path.parent / str(config["path"]) if config.get("path") else yaml_path.parent
    root = Path(os.path.normpath(root.absolute()))
    if not root.is_dir():
        raise DataError(
            yaml_path, f"'path: {config['path']}' is not a folder (it is read relative to this file)"
        )
    return root


def _class_names(yaml_path: Path, config: dict) -> list[str]:
    """The class list of ``names`` (a list, or a dict with keys 0..n-1), or ``class_<i>`` from ``nc``."""
    names = config.get("names")
    if names is None:
        if not isinstance(config.get("nc"), int):
            raise DataError(
                yaml_path, "expected 'names' (a list or a dict {0: name, ...}) or an integer 'nc'"
            )
        names = [f"class_{index}" for index in range(config["nc"])]
    if isinstance(names, dict):
        try:
            by_index = {int(key): str(value) for key, value in names.items()}
        except (TypeError, ValueError):
            raise DataError(
                yaml_path, f"'names' keys must be class indices 0..n-1, got {list(names)}"
            ) from None
        if sorted(by_index) != list(range(len(by_index))):
            raise DataError(
                yaml_path, f"'names' keys must be the class indices 0..n-1, got {sorted(by_index)}"
            )
        names = [by_index[index] for index in range(len(by_index))]
    if not isinstance(names, list) or not names:
        raise DataError(yaml_path, "'names' must be a non-empty list or dict of class names")
    names = [str(name) for name in names]
    if len(set(names)) != len(names):
        raise DataError(yaml_path, f"'names' has duplicate class names: {names}")
    if "nc" in config and config["nc"] != len(names):
        raise DataError(yaml_path, f"'nc: {config['nc']}' does not match the {len(names)} entries of 'names'")
    return names


def _apply_category_list(
    names: list[str], categories: list[str] | None, yaml_path: Path, problems: Problems
) -> tuple[list[str], np.ndarray]:
    """``(final class list, map from file class index to position in it, -1 where unknown)``."""
    if categories is None:
        return names, np.arange(len(names))
    categories = list(categories)
    unknown = [name for name in names if name not in categories]
    if unknown:
        problems.report(yaml_path, f"classes {unknown} are not in the given category list {categories}")
    return categories, np.array([categories.index(name) if name in categories else -1 for name in names])


def _split_images(yaml_path: Path, config: dict, root: Path, problems: Problems) -> list[tuple[str, Path]]:
    """``[(split, image path)]`` in (split, path) order; an image named by several splits gets split ``""``."""
    entries = [
        (split, str(entry))
        for split in SPLIT_NAMES
        for entry in (config.get(split) if isinstance(config.get(split), list) else [config.get(split)])
        if entry
    ]
    if not entries:
        raise DataError(yaml_path, "expected at least one of the keys 'train', 'val', 'test'")
    images_of: dict[str, list[Path]] = {}  # each entry is listed once, however many splits name it
    splits_of: dict[Path, set[str]] = {}
    for split, entry in entries:
        if entry not in images_of:
            images_of[entry] = _entry_images(yaml_path, split, entry, root, problems)
        for image_path in images_of[entry]:
            splits_of.setdefault(image_path, set()).add(split)
    order = {split: position for position, split in enumerate(("", *SPLIT_NAMES))}
    assigned = [(found.pop() if len(found) == 1 else "", path) for path, found in splits_of.items()]
    return sorted(assigned, key=lambda item: (order[item[0]], item[1]))


def _entry_images(yaml_path: Path, split: str, entry: str, root: Path, problems: Problems) -> list[Path]:
    """Image files of one split entry: a folder (recursively) or a ``.txt`` file of image paths."""
    location = resolve_inside(root, entry, problems, yaml_path, item=f"'{split}: {entry}'")
    if location is None:
        return []
    if location.is_dir():
        _check_orphan_labels(location, problems)
        return sorted(path for path in location.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if location.is_file() and location.suffix == ".txt":
        return _listed_images(location, root, problems)
    problems.report(
        yaml_path, "no such folder or .txt image list (read relative to 'path')", item=f"'{split}: {entry}'"
    )
    return []


def _listed_images(listing: Path, root: Path, problems: Problems) -> list[Path]:
    """Paths in an image list, each relative to the list's folder (``./x.jpg`` or ``x.jpg``) or absolute."""
    found = []
    for number, line in enumerate(listing.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        path = resolve_inside(root, str(listing.parent / line.strip()), problems, listing, line=number)
        if path is not None:
            found.append(path)
    return found


def label_path(image_path: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder in the path becomes ``labels``; the suffix becomes ``.txt``."""
    parts = list(image_path.parts)
    folders = parts[:-1]
    if IMAGE_DIR in folders:
        last = len(folders) - 1 - folders[::-1].index(IMAGE_DIR)
        parts[last] = LABEL_DIR
    return Path(*parts).with_suffix(".txt")


def _check_orphan_labels(image_folder: Path, problems: Problems) -> None:
    """A label file with no image beside it is a misnamed or missing image: report it."""
    label_folder = label_path(image_folder / "x.png").parent
    if label_folder == image_folder or not label_folder.is_dir():
        return
    images = {label_path(path) for path in image_folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES}
    for label in sorted(label_folder.rglob("*.txt")):
        if label not in images and label.name != CLASSES_FILE:
            problems.report(label, "label file has no image (expected one of the same stem under images/)")


def _read_label_file(
    path: Path, task: str, size: tuple[int, int], class_map: np.ndarray, problems: Problems
) -> pd.DataFrame:
    """The objects of one label file as a table (``category`` holds class positions until the caller names them)."""
    classes, polygons = [], []
    try:
        text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
    except UnicodeDecodeError as error:
        problems.report(path, f"not UTF-8 text ({error.reason})")
        text = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            index, polygon = _parse_line(line.split(), task, len(class_map), size)
        except _LineError as error:
            problems.report(path, str(error), line=number)
            continue
        if class_map[index] < 0:
            problems.drop("class not in the given category list")
            continue
        classes.append(int(class_map[index]))
        polygons.append(polygon)
    polygons = np.array(polygons, dtype=np.float64).reshape(-1, 8)
    table = pd.DataFrame(polygons, columns=POLY_COLUMNS)
    table.insert(0, "category", np.array(classes, dtype=np.int64))
    degenerate = polygon_area(polygons) <= MIN_AREA
    problems.drop("zero area", int(degenerate.sum()))
    return table.loc[~degenerate]


def _parse_line(
    tokens: list[str], task: str, n_classes: int, size: tuple[int, int]
) -> tuple[int, np.ndarray]:
    """``(class index, pixel polygon (8,))`` of one line, or a `_LineError` saying what was expected."""
    segment = task == "yolo" and len(tokens) >= 7 and len(tokens) % 2 == 1  # Ultralytics accepts these too
    if len(tokens) != (5 if task == "yolo" else 9) and not segment:
        raise _LineError(
            f"expected '{_TASKS[task]}' ({5 if task == 'yolo' else 9} numbers), got {len(tokens)}"
        )
    try:
        values = np.array([float(token) for token in tokens])
    except ValueError:
        raise _LineError(f"expected numbers only ('{_TASKS[task]}'), got {' '.join(tokens)!r}") from None
    if not np.isfinite(values).all():
        raise _LineError(f"values must be finite numbers, got {' '.join(tokens)!r}")
    index = values[0]
    if index != math.floor(index) or not 0 <= index < n_classes:
        raise _LineError(f"class index {tokens[0]} is not one of the {n_classes} classes 0..{n_classes - 1}")
    coords = values[1:]
    far = coords[(coords < -OUTSIDE) | (coords > 1 + OUTSIDE)]
    if far.size:
        raise _LineError(
            f"coordinate {far[0]:g} is far outside 0..1; YOLO coordinates are normalised by image size"
        )
    width, height = size
    if task == "obb":
        return int(index), coords * np.tile([width, height], 4)
    if segment:
        points = coords.reshape(-1, 2) * [width, height]
        hbb = np.concatenate([points.min(axis=0), points.max(axis=0)])
    else:
        cx, cy, w, h = coords
        if w < 0 or h < 0:
            raise _LineError(f"width and height must not be negative, got {w:g} {h:g}")
        hbb = np.array(
            [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        )
    return int(index), hbb_to_polygon(hbb[None])[0]


# --------------------------------------------------------------------------------------------------------
# writing
def write_yolo(dataset: Dataset, out: Path, *, images: str = "copy") -> None:
    """Write axis-aligned YOLO labels, ``images/<split>/`` and ``data.yaml`` (orientation is lost)."""
    _write(dataset, Path(out), images, "yolo")


def write_yolo_obb(dataset: Dataset, out: Path, *, images: str = "copy") -> None:
    """Write YOLO-OBB labels (4 corners), ``images/<split>/`` and ``data.yaml``."""
    _write(dataset, Path(out), images, "obb")


def _write(dataset: Dataset, out: Path, images: str, task: str) -> None:
    _check_splits(dataset.splits)
    stems = unique_stems(dataset)
    folders = dataset.images["split"].map(lambda split: f"/{split}" if split else "")
    suffixes = dataset.images["file"].map(lambda file: Path(file).suffix)
    place_images(dataset, out, IMAGE_DIR + folders + "/" + stems + suffixes, images)
    lines = _label_lines(dataset, task)
    for image_id, folder, stem in zip(dataset.images["image_id"], folders, stems):
        write_text(out / f"{LABEL_DIR}{folder}/{stem}.txt", "".join(lines.get(image_id, [])))
    write_text(out / DATA_YAML, _data_yaml(dataset, task))


def _check_splits(splits: list[str]) -> None:
    """Ultralytics knows only train, val and test; an unsplit set cannot share images/ with named splits."""
    check_split_names(splits)
    if "" in splits and len(splits) > 1:
        raise ValueError(
            f"splits {splits} mix unsplit images with named splits; YOLO keeps an unsplit set in images/ and "
            "named splits in images/<split>/ inside it, so give every image a split first"
        )


def _label_lines(dataset: Dataset, task: str) -> dict[int, list[str]]:
    """Per image id, its label lines (normalised, clipped to [0, 1] so that Ultralytics accepts them)."""
    sizes = dataset.images.set_index("image_id").loc[dataset.instances["image_id"], ["width", "height"]]
    scale = sizes.to_numpy(dtype=np.float64)
    polygons = dataset.polygons
    if task == "obb":
        values = np.clip(polygons / np.tile(scale, 4), 0.0, 1.0)
    else:
        xmin, ymin, xmax, ymax = np.clip(polygon_to_hbb(polygons) / np.tile(scale, 2), 0.0, 1.0).T
        values = np.stack([(xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin], axis=1)
    lines: dict[int, list[str]] = {}
    for image_id, index, row in zip(dataset.instances["image_id"], dataset.category_index(), values):
        numbers = " ".join(f"{value:.8g}" for value in row)
        lines.setdefault(image_id, []).append(f"{index} {numbers}\n")
    return lines


def _data_yaml(dataset: Dataset, task: str) -> str:
    """``data.yaml`` without ``path``: Ultralytics then reads the splits relative to the file's own folder."""
    config: dict = {}
    for split in dataset.splits:
        if split:
            config[split] = f"{IMAGE_DIR}/{split}"
        else:  # an unsplit set: Ultralytics needs both keys; our reader maps a shared folder back to ""
            config["train"] = config["val"] = IMAGE_DIR
    config["names"] = dict(enumerate(dataset.categories))
    header = f"# written by ccaug; labels: {_TASKS[task]} (normalised to 0..1)\n"
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
