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
    require_images: bool = True,
) -> Dataset:
    """Read a data set of format `fmt` (one of `FORMATS`) from `path`.

    `categories` fixes the class list (and its order) for formats that do not store one; a class outside it is
    then an error. Problems go to `problems` (default: raise at the first). ``require_images=False`` reads a
    set of layouts (labels whose images do not exist yet); only COCO, which stores image sizes, can.
    """
    reader, _ = _codec(fmt)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    problems = problems if problems is not None else Problems()
    if require_images:
        return reader(Path(path), problems=problems, categories=categories)
    if fmt != "coco":
        raise ValueError(f"layouts without images are read from COCO (which stores image sizes), not {fmt}")
    return reader(Path(path), problems=problems, categories=categories, require_images=False)


def write_dataset(dataset: Dataset, out: str | Path, fmt: str, *, images: ImageMode = "copy") -> Path:
    """Write `dataset` to the folder `out` in format `fmt`; every file is written atomically.

    ``images="copy"`` places the image files beside the labels (hard links where possible), ``"none"`` writes
    labels only (for layouts, which have no images yet).
    """
    _, writer = _codec(fmt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer(dataset, out, images=images)
    return out


def _codec(fmt: str):
    """The ``(reader, writer)`` pair of a format; format modules are imported on first use."""
    from ccaug.data.formats import coco, dior, dota, yolo

    codecs = {
        "dota": (dota.read_dota, dota.write_dota),
        "coco": (coco.read_coco, coco.write_coco),
        "dior": (dior.read_dior, dior.write_dior),
        "yolo": (yolo.read_yolo, yolo.write_yolo),
        "yolo-obb": (yolo.read_yolo_obb, yolo.write_yolo_obb),
    }
    if fmt not in codecs:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return codecs[fmt]


def detect_format(path: str | Path) -> str:
    """Guess the format of a data set folder from the files it holds (for commands where it is obvious)."""
    path = Path(path)
    if path.suffix == ".json" or any((path / prefix / "annotations.json").is_file() for prefix in ("", "train", "val", "test")):
        return "coco"
    if any((path / prefix / "labelTxt").is_dir() for prefix in ("", "train", "val", "test")):
        return "dota"
    if any((path / prefix / "Annotations").is_dir() for prefix in ("", "train", "val", "test")):
        return "dior"
    raise ValueError(f"{path}: cannot tell the format (no annotations.json, labelTxt/ or Annotations/); name it with --format")
