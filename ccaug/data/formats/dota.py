"""DOTA v1.0 / v1.5 ``labelTxt``: one text file per image, one oriented instance per line.

Layout: ``images/`` and ``labelTxt/`` at the data-set root (split ``""``), or inside ``train/``, ``val/`` and
``test/``. A label file shares its image's stem. Its lines are::

    imagesource:GoogleEarth                     (optional header, kept as the images column ``imagesource``)
    gsd:0.146343                                (optional header, kept as the float column ``gsd``; null = NaN)
    x1 y1 x2 y2 x3 y3 x4 y4 class-name difficult

``difficult`` (0 or 1) may be left out (then 0). Coordinates may lie a little outside the image, as they do
in real DOTA; a point more than half the image size beyond the border is an error (it is not DOTA pixel
data). The class list is the ``categories`` argument, else ``classes.txt`` at the root (written by
`write_dota`, it keeps the order), else the order of first appearance over the label files in image-id
order. Image ids are 0..n-1 in (split, stem) order, splits in the order train, val, test.

DOTA stores no ``truncated`` flag: it is written nowhere and read as False.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ccaug.data.dataset import IMAGE_COLUMNS, Dataset
from ccaug.data.errors import Problems
from ccaug.data.formats.common import (
    find_images,
    place_images,
    read_classes_file,
    read_image_size,
    split_folders,
    split_prefix,
    unique_stems,
    write_classes_file,
)
from ccaug.data.geometry import POLY_COLUMNS
from ccaug.fileio import write_text

LABEL_DIR = "labelTxt"
IMAGE_DIR = "images"
HEADER_KEYS = ("imagesource", "gsd")
# A point may lie this fraction of the image's width (height) beyond the left/right (top/bottom) border.
FAR_OUTSIDE = 0.5
# Instances with a smaller polygon area (square pixels) are degenerate; collinear corners leave rounding noise.
MIN_AREA = 1e-6
_MISSING_WORDS = ("null", "none", "nan", "")
_NUMBER_START = frozenset("0123456789+-.")


@dataclass
class LabelFile:
    """What one label file holds once parsed: header values and the legal instances, in file order."""

    header: dict[str, str | float | None] = field(default_factory=dict)
    polygons: list[tuple[float, ...]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)


class _LineError(Exception):
    """A bad line; the message says what was expected."""


# --------------------------------------------------------------------------------------------------------
# reading
def read_dota(
    root: str | Path, *, problems: Problems | None = None, categories: Sequence[str] | None = None
) -> Dataset:
    """Read a DOTA data set (flat or split into train/val/test) without decoding any image."""
    problems = problems if problems is not None else Problems()
    root = Path(root)
    given = list(categories) if categories is not None else read_classes_file(root)
    known = dict.fromkeys(given) if given is not None else None

    images: list[dict] = []
    parsed: list[LabelFile] = []
    for split, folder in split_folders(root, LABEL_DIR):
        image_files = find_images(folder / IMAGE_DIR)
        label_files = {path.stem: path for path in sorted((folder / LABEL_DIR).glob("*.txt"))}
        for stem in sorted(label_files.keys() - image_files.keys()):
            problems.report(
                label_files[stem],
                f"image file is missing: expected an image named {stem}.* in {folder / IMAGE_DIR}",
            )
        for stem in sorted(image_files):
            image_path = image_files[stem]
            size = read_image_size(image_path, problems)
            if size is None:
                continue
            label = label_files.get(stem)
            labels = parse_label_file(label, problems, known, size) if label is not None else LabelFile()
            images.append(
                {
                    "image_id": len(images),
                    "file": image_path.relative_to(root).as_posix(),
                    "width": size[0],
                    "height": size[1],
                    "split": split,
                    **labels.header,
                }
            )
            parsed.append(labels)

    names = [name for labels in parsed for name in labels.names]
    category_list = given if given is not None else list(dict.fromkeys(names))
    return Dataset(_images_table(images), _instances_table(parsed, names, category_list), category_list, root)


def parse_label_file(
    path: Path,
    problems: Problems,
    categories: Collection[str] | None = None,
    size: tuple[int, int] | None = None,
) -> LabelFile:
    """Parse one label file; every bad line goes to `problems` (which raises unless it skips).

    `categories`, when given, is the closed class list (a dict or set makes the look-up fast); `size` is the
    image's ``(width, height)``, used to reject coordinates far outside it. Zero-area instances are dropped
    and counted as ``"zero area"``.
    """
    bounds = _coordinate_bounds(size)
    result = LabelFile()
    for lineno, line in enumerate(_read_lines(path, problems), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            if ":" in tokens[0] and _header_key(tokens[0]) is not None:
                key, value = _parse_header(line)
                result.header[key] = value
                continue
            polygon, name, difficult = _parse_instance(tokens, bounds, categories)
        except _LineError as error:
            problems.report(path, str(error), line=lineno)
            continue
        if _doubled_area(polygon) <= 2 * MIN_AREA:
            problems.drop("zero area")
            continue
        result.polygons.append(polygon)
        result.names.append(name)
        result.difficult.append(difficult)
    return result


def _read_lines(path: Path, problems: Problems) -> list[str]:
    """The file's lines; a line that is not UTF-8 is reported and read as blank (so line numbers hold)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        problems.report(path, f"label file cannot be read ({error})")
        return []
    try:
        return data.decode("utf-8-sig").split("\n")
    except UnicodeDecodeError:
        pass
    lines = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))
        except UnicodeDecodeError:
            problems.report(path, "expected UTF-8 text, found undecodable bytes", line=lineno)
            lines.append("")
    return lines


def _coordinate_bounds(size: tuple[int, int] | None) -> tuple[float, float, float, float]:
    """Closed legal ranges ``xlo, xhi, ylo, yhi``; NaN and inf fail any of them."""
    if size is None:
        return (-math.inf, math.inf, -math.inf, math.inf)  # chained comparisons below still reject NaN
    width, height = size
    return (
        -FAR_OUTSIDE * width,
        (1 + FAR_OUTSIDE) * width,
        -FAR_OUTSIDE * height,
        (1 + FAR_OUTSIDE) * height,
    )


def _header_key(token: str) -> str | None:
    key = token.split(":", 1)[0].strip().lower()
    return key if key in HEADER_KEYS else None


def _parse_header(line: str) -> tuple[str, str | float | None]:
    raw_key, raw_value = line.split(":", 1)
    key, value = raw_key.strip().lower(), raw_value.strip()
    missing = value.lower() in _MISSING_WORDS
    if key == "imagesource":
        return key, None if missing else value
    if missing:
        return key, math.nan
    try:
        gsd = float(value)
    except ValueError:
        gsd = math.nan
    if not (math.isfinite(gsd) and gsd > 0):
        raise _LineError(
            f"expected 'gsd:' followed by a positive number of metres per pixel or null, got {value!r}"
        )
    return key, gsd


def _parse_instance(
    tokens: list[str], bounds: tuple[float, float, float, float], categories: Collection[str] | None
) -> tuple[tuple[float, ...], str, bool]:
    """``(polygon, class name, difficult)`` from one line's tokens, or a `_LineError` saying what is wrong."""
    if len(tokens) != 9 and len(tokens) != 10:
        raise _LineError(_field_count_message(len(tokens)))
    try:
        x1, y1, x2, y2, x3, y3, x4, y4 = map(float, tokens[:8])
    except ValueError:
        raise _LineError(_non_number_message(tokens)) from None
    xlo, xhi, ylo, yhi = bounds
    if not (
        xlo <= x1 <= xhi
        and xlo <= x2 <= xhi
        and xlo <= x3 <= xhi
        and xlo <= x4 <= xhi
        and ylo <= y1 <= yhi
        and ylo <= y2 <= yhi
        and ylo <= y3 <= yhi
        and ylo <= y4 <= yhi
    ):
        raise _LineError(_out_of_bounds_message((x1, y1, x2, y2, x3, y3, x4, y4), bounds))
    name = tokens[8]
    if name[0] in _NUMBER_START and _is_number(name):
        raise _LineError(f"expected a class name after the 8 coordinates, got the number {name!r}")
    if categories is not None and name not in categories:
        raise _LineError(f"unknown class {name!r}; expected one of: {_listing(categories)}")
    difficult = False
    if len(tokens) == 10:
        flag = tokens[9]
        if flag == "1":
            difficult = True
        elif flag != "0":
            raise _LineError(f"expected the difficult flag to be 0 or 1, got {flag!r}")
    return (x1, y1, x2, y2, x3, y3, x4, y4), name, difficult


def _doubled_area(polygon: tuple[float, ...]) -> float:
    x1, y1, x2, y2, x3, y3, x4, y4 = polygon
    return abs((x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y4 - x4 * y3) + (x4 * y1 - x1 * y4))


def _field_count_message(count: int) -> str:
    expected = "expected 8 coordinates, a class name and an optional difficult flag (0 or 1)"
    if count < 9:
        return f"{expected}; found only {count} field(s)"
    return f"{expected}; found {count} fields"


def _non_number_message(tokens: list[str]) -> str:
    for column, token in zip(POLY_COLUMNS, tokens):
        if not _is_number(token):
            return f"expected a number for coordinate {column}, got {token!r}"
    return "expected 8 numbers for the coordinates"


def _out_of_bounds_message(polygon: tuple[float, ...], bounds: tuple[float, float, float, float]) -> str:
    for column, value in zip(POLY_COLUMNS, polygon):
        if not math.isfinite(value):
            return f"expected finite coordinates, got {value} for {column}"
    xlo, xhi, ylo, yhi = bounds
    width, height = (xhi - xlo) / (1 + 2 * FAR_OUTSIDE), (yhi - ylo) / (1 + 2 * FAR_OUTSIDE)
    for index in range(4):
        x, y = polygon[2 * index], polygon[2 * index + 1]
        if not (xlo <= x <= xhi and ylo <= y <= yhi):
            return (
                f"corner {index + 1} ({x:g}, {y:g}) lies far outside the {width:g}x{height:g} image; expected "
                f"pixel coordinates no more than {FAR_OUTSIDE:.0%} of the image size beyond its border"
            )
    return "expected pixel coordinates inside the image"


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _listing(names: Collection[str], limit: int = 20) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _images_table(images: list[dict]) -> pd.DataFrame:
    """The images table; header columns come after the standard ones, in `HEADER_KEYS` order."""
    table = pd.DataFrame(images, columns=None if images else IMAGE_COLUMNS)
    header = [key for key in HEADER_KEYS if key in table.columns]
    table = table[IMAGE_COLUMNS + header]
    if "gsd" in table.columns:
        table["gsd"] = table["gsd"].astype(float)
    return table


def _instances_table(parsed: list[LabelFile], names: list[str], categories: list[str]) -> pd.DataFrame:
    counts = [len(labels.names) for labels in parsed]
    polygons = [polygon for labels in parsed for polygon in labels.polygons]
    table = pd.DataFrame(np.array(polygons, dtype=np.float64).reshape(-1, 8), columns=POLY_COLUMNS)
    table.insert(0, "image_id", np.repeat(np.arange(len(parsed), dtype=np.int64), counts))
    table.insert(1, "category", pd.Categorical(names, categories=categories))
    table["difficult"] = np.array([flag for labels in parsed for flag in labels.difficult], dtype=bool)
    table["truncated"] = False
    return table


# --------------------------------------------------------------------------------------------------------
# writing
def write_dota(dataset: Dataset, out: str | Path, *, images: str = "copy") -> None:
    """Write `dataset` as DOTA under `out`: ``[split/]labelTxt/*.txt``, ``[split/]images/*`` and classes.txt.

    Header lines are written for the metadata columns the images table has (``imagesource``, ``gsd``; a
    missing value is written ``null``). Coordinates keep 12 significant digits, so reading back gives the same
    numbers to well under 1e-6 pixel.
    """
    out = Path(out)
    _check_writable_names(dataset.categories)
    stems = unique_stems(dataset)
    prefixes = dataset.images["split"].map(split_prefix)
    names = dataset.images["file"].map(lambda file: Path(file).name)
    place_images(dataset, out, prefixes + IMAGE_DIR + "/" + names, images)

    header_keys = [key for key in HEADER_KEYS if key in dataset.images.columns]
    for (image, instances), prefix, stem in zip(dataset.iter_images(), prefixes, stems):
        header = {key: image[key] for key in header_keys}
        write_label_file(out / f"{prefix}{LABEL_DIR}/{stem}.txt", instances, header)
    if len(dataset.images) == 0:
        (out / LABEL_DIR).mkdir(parents=True, exist_ok=True)
    write_classes_file(out, dataset.categories)


def write_label_file(path: str | Path, instances: pd.DataFrame, header: dict | None = None) -> None:
    """Write one image's label file atomically from rows with ``category``, x1..y4 and ``difficult``."""
    polygons = instances[POLY_COLUMNS].to_numpy(dtype=np.float64)
    difficult = instances["difficult"].to_numpy(dtype=bool) if "difficult" in instances else None
    write_text(
        path, format_label_file(polygons, instances["category"].astype(str).tolist(), difficult, header)
    )


def format_label_file(
    polygons: np.ndarray,
    names: Sequence[str],
    difficult: np.ndarray | None = None,
    header: dict | None = None,
) -> str:
    """The text of a label file: header lines (keys of `HEADER_KEYS`, missing values as null), then instances.

    `polygons` is ``(N, 8)`` in pixels, `names` the N class names, `difficult` N flags (default all 0).
    """
    polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
    if not np.isfinite(polygons).all():
        raise ValueError("cannot write non-finite coordinates to a DOTA label file")
    flags = np.zeros(len(polygons), dtype=bool) if difficult is None else np.asarray(difficult, dtype=bool)
    lines = [f"{key}:{_header_value(header[key])}" for key in HEADER_KEYS if header and key in header]
    for polygon, name, flag in zip(polygons.tolist(), names, flags.tolist()):
        coordinates = " ".join([format(value, ".12g") for value in polygon])
        lines.append(f"{coordinates} {name} {int(flag)}")
    return "".join(f"{line}\n" for line in lines)


def _header_value(value: object) -> str:
    if value is None or pd.isna(value):
        return "null"
    if isinstance(value, float):
        return format(value, ".12g")
    return str(value)


def _check_writable_names(categories: list[str]) -> None:
    for name in categories:
        if not name or any(character.isspace() for character in name):
            raise ValueError(
                f"category {name!r} cannot be written to DOTA, whose lines are split on whitespace; "
                "rename it (e.g. with hyphens: 'small-vehicle') before writing"
            )
        if _is_number(name):
            raise ValueError(
                f"category {name!r} cannot be written to DOTA: a numeric class name reads as a number"
            )
