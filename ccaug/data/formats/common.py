"""What every format module shares: split folders, image lookup and sizes, safe paths, image placement."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from ccaug.data.dataset import Dataset
from ccaug.data.errors import DataError, Problems
from ccaug.fileio import copy_file, write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLIT_NAMES = ("train", "val", "test")
CLASSES_FILE = "classes.txt"

# Real DOTA scenes reach 20,000 px a side; PIL's decompression-bomb guard would refuse them.
Image.MAX_IMAGE_PIXELS = None


def split_folders(root: Path, marker: str) -> list[tuple[str, Path]]:
    """``[(split, folder)]`` for a data set whose files sit in ``root/marker`` and/or ``root/<split>/marker``.

    A flat layout gives the split ``""``; it comes first when split folders sit beside it (a writer puts a
    data set with both unsplit and split images there, so a reader must not skip either).
    """
    found = [(split, root / split) for split in ("", *SPLIT_NAMES) if (root / split / marker).is_dir()]
    if found:
        return found
    raise DataError(root, f"expected a folder '{marker}/' here or in train/, val/ or test/ sub-folders")


def split_prefix(split: str) -> str:
    """The folder (with trailing slash) that holds a split when written: ``"train/"``, or ``""`` if unsplit."""
    return f"{split}/" if split else ""


def check_split_names(splits: list[str]) -> None:
    """Refuse to write splits other than train / val / test / "": readers look for those folders only."""
    unknown = [split for split in splits if split and split not in SPLIT_NAMES]
    if unknown:
        raise ValueError(f"splits must be one of {SPLIT_NAMES} (or '' for none); rename the splits {unknown}")


def find_images(folder: Path) -> dict[str, Path]:
    """Image files of a folder keyed by stem (the key DOTA, DIOR and YOLO use to pair labels with images).

    Two images with one stem (``a.png`` and ``a.jpg``) cannot be told apart by their label file: an error.
    """
    if not folder.is_dir():
        return {}
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in images:
            raise DataError(path, f"{images[path.stem].name} and {path.name} share a name stem, so one label file would serve both; rename one")
        images[path.stem] = path
    return images


def read_image_size(path: Path, problems: Problems, item: str | None = None) -> tuple[int, int] | None:
    """``(width, height)`` from the image header (no pixel decoding), or None after reporting a problem."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        problems.report(path, "image file is missing", item=item)
    except (UnidentifiedImageError, OSError) as error:
        problems.report(path, f"image cannot be read ({error})", item=item)
    except ImportError:  # Ultralytics patches Image.open to retry an unknown file with pi-heif, if installed
        problems.report(path, "image cannot be read (not an image format PIL knows)", item=item)
    return None


def resolve_inside(
    root: Path, relative: str, problems: Problems, source: Path, line: int | None = None, item: str | None = None
) -> Path | None:
    """``root / relative``, refusing a path that escapes ``root`` (``../``, absolute paths).

    The check is lexical: an images folder that is a symbolic link to another disk is legal, because the
    data set names it from inside its root.
    """
    base = Path(os.path.normpath(root.absolute()))
    candidate = Path(os.path.normpath(base / relative))
    if not candidate.is_relative_to(base):
        problems.report(source, f"path {relative!r} escapes the data root {root}", line=line, item=item)
        return None
    return candidate


def read_classes_file(folder: Path) -> list[str] | None:
    """The ordered class list of ``folder/classes.txt`` (one name a line), if present.

    A split folder (``train/``, ``val/``, ``test/``) read on its own finds the list at the data set's root,
    one level up, so that a split keeps the class order of its data set.
    """
    candidates = [folder / CLASSES_FILE]
    if folder.name in SPLIT_NAMES:
        candidates.append(folder.parent / CLASSES_FILE)
    for path in candidates:
        if path.is_file():
            return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return None


def write_classes_file(folder: Path, categories: list[str]) -> None:
    write_text(folder / CLASSES_FILE, "".join(f"{name}\n" for name in categories))


def unique_stems(dataset: Dataset) -> pd.Series:
    """Per image, the file stem used to name its label file; refuses two images of one split with one stem."""
    stems = dataset.images["file"].map(lambda file: Path(file).stem)
    clash = pd.DataFrame({"split": dataset.images["split"], "stem": stems}).duplicated()
    if clash.any():
        first = dataset.images.loc[clash, "file"].iloc[0]
        raise DataError(first, "two images of one split share this file name stem; rename one before converting")
    return stems


def place_images(dataset: Dataset, out: Path, new_files: pd.Series, mode: str) -> pd.Series:
    """Copy (or hard-link) every image to ``out / new_file``; returns the new relative paths.

    With ``mode="none"`` nothing is copied (label-only output, e.g. layouts).
    """
    if mode not in ("copy", "none"):
        raise ValueError(f"images must be 'copy' or 'none', not {mode!r}")
    if mode == "copy":
        for (_, image), new_file in zip(dataset.images.iterrows(), new_files):
            source = dataset.image_path(image)
            target = out / new_file
            if source.resolve() == target.resolve():
                continue
            if not source.is_file():
                raise DataError(source, "image file is missing", item=f"image_id {image['image_id']}")
            copy_file(source, target)
    return new_files
