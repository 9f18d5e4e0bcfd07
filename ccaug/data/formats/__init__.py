"""Readers and writers, one module per format, all converting through `ccaug.data.Dataset`.

    ds = read_dataset("DOTA/", "dota")                  # raises DataError on the first bad line
    problems = Problems(skip_invalid=True)
    ds = read_dataset("DOTA/", "dota", problems=problems)   # records bad lines, skips them
    write_dataset(ds, "out/", "yolo-obb")               # images copied (hard-linked where possible)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ccaug.data.dataset import Dataset
from ccaug.data.errors import Problems

FORMATS = ("dota", "coco", "dior", "yolo", "yolo-obb")
ImageMode = Literal["copy", "none"]


def read_dataset(
    path: str | Path,
    fmt: str,
    *,
    problems: Problems | None = None,
    categories: list[str] | None = None,
) -> Dataset:
    """Read a data set of format `fmt` (one of `FORMATS`) from `path`.

    `categories` fixes the class list (and its order) for formats that do not store one; a class outside it is
    then an error. Problems go to `problems` (default: raise at the first).
    """
    from ccaug.data.formats import coco, dior, dota, yolo

    problems = problems if problems is not None else Problems()
    readers = {
        "dota": dota.read_dota,
        "coco": coco.read_coco,
        "dior": dior.read_dior,
        "yolo": yolo.read_yolo,
        "yolo-obb": yolo.read_yolo_obb,
    }
    if fmt not in readers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return readers[fmt](Path(path), problems=problems, categories=categories)


def write_dataset(dataset: Dataset, out: str | Path, fmt: str, *, images: ImageMode = "copy") -> Path:
    """Write `dataset` to the folder `out` in format `fmt`; every file is written atomically.

    ``images="copy"`` places the image files beside the labels (hard links where possible), ``"none"`` writes
    labels only (for layouts, which have no images yet).
    """
    from ccaug.data.formats import coco, dior, dota, yolo

    writers = {
        "dota": dota.write_dota,
        "coco": coco.write_coco,
        "dior": dior.write_dior,
        "yolo": yolo.write_yolo,
        "yolo-obb": yolo.write_yolo_obb,
    }
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writers[fmt](dataset, out, images=images)
    return out
