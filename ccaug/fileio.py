"""Atomic file writes: a reader never sees a half-written file, whatever interrupts the writer.

Everything ccaug writes goes through `atomic_path`: the content is written to a temporary name in the same
directory and renamed over the target only once complete (a rename is atomic on POSIX file systems).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# The process umask, read once: os.umask can only be read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` if the block succeeds.

    The temporary name keeps the target's suffix so that writers which pick the format from the extension
    (PIL, OpenCV, matplotlib) still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private (0600); give it the usual mode
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | Path, obj: Any, indent: int | None = None) -> None:
    write_text(target, json.dumps(obj, indent=indent, ensure_ascii=False))


def save_image(target: str | Path, image: np.ndarray | Image.Image, **options: Any) -> None:
    """Save an HxW or HxWx3 uint8 array (or a PIL image) atomically; the format follows the suffix.

    `options` go to PIL's writer (e.g. ``compress_level=1`` for PNG, ``quality=95`` for JPEG).
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_path(target) as tmp:
        image.save(tmp, format=Image.registered_extensions()[Path(target).suffix.lower()], **options)


def copy_file(source: str | Path, target: str | Path) -> None:
    """Copy atomically, hard-linking when source and target share a file system (no bytes copied)."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def swap_in_folder(staging: str | Path, target: str | Path) -> None:
    """Replace the folder `target` by the complete folder `staging`: the old one is renamed to
    ``TARGET.old`` first, so a crash between the two renames leaves that copy for a reader to fall back on."""
    staging, target = Path(staging), Path(target)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
