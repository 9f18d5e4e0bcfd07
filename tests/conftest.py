"""Shared fixtures: a tiny data set of real PNG files with rotated boxes, and a way to compare annotations."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.geometry import POLY_COLUMNS, le90_to_polygon


def _throw_away_folder(prefix: str) -> str:
    """A temp folder that is removed when this (pytest or xdist worker) process exits."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, True)
    return folder


# Before anything imports Ultralytics: offline, no pip installs, settings in a throw-away folder (not ~).
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "0"
if "YOLO_CONFIG_DIR" not in os.environ:
    os.environ["YOLO_CONFIG_DIR"] = _throw_away_folder("ccaug-test-ultralytics-")
# The workspace (registered data sets and generators) of the tests, never the user's ~/.ccaug.
os.environ["CCAUG_HOME"] = _throw_away_folder("ccaug-test-home-")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_test_worker() -> None:
    """Under pytest-xdist every worker is a process: with torch's default of one thread per core, two
    workers on two cores run four threads and the model tests slow down several times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


# Not in alphabetical order, and one name has a space: readers must keep the order and the name.
CATEGORIES = ["ship", "storage tank", "plane"]
IMAGE_SIZES = [(96, 64), (80, 80), (72, 100)]


def write_png(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def build_dataset(
    root: Path,
    splits: Sequence[str] = ("train", "val"),
    images_per_split: int = 2,
    seed: int = 0,
    metadata: bool = True,
) -> Dataset:
    """PNG files under ``root/source/<split>/`` and a Dataset of rotated boxes that lie inside their images.

    The last image of every split has no instances; difficult and truncated flags are mixed; with
    `metadata` the images table carries a ``gsd`` column.
    """
    rng = np.random.default_rng(seed)
    images, instances = [], []
    for split in splits:
        for index in range(images_per_split):
            image_id = len(images) + 10  # ids that are not 0..n-1, so that a reader cannot get them by luck
            width, height = IMAGE_SIZES[len(images) % len(IMAGE_SIZES)]
            file = f"source/{split or 'all'}/img{image_id}.png"
            write_png(root / file, width, height, seed=image_id)
            images.append(
                {"image_id": image_id, "file": file, "width": width, "height": height, "split": split}
            )
            if metadata:
                images[-1]["gsd"] = 0.5 + 0.1 * index
            count = 0 if index == images_per_split - 1 else 3
            for _ in range(count):
                instances.append(
                    {
                        "image_id": image_id,
                        "category": CATEGORIES[int(rng.integers(0, 2))],  # "plane" stays unused
                        "polygon": _random_box_inside(rng, width, height),
                        "difficult": bool(rng.integers(0, 2)),
                        "truncated": bool(rng.integers(0, 2)),
                    }
                )
    return Dataset.from_records(images, instances, CATEGORIES, root=root)


def _random_box_inside(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    w, h = rng.uniform(6, 20), rng.uniform(3, 10)
    theta = rng.uniform(-np.pi / 2, np.pi / 2)
    radius = np.hypot(w, h) / 2 + 1
    cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
    return le90_to_polygon(np.array([[cx, cy, max(w, h), min(w, h), theta]]))[0]


def annotations_by_name(dataset: Dataset) -> pd.DataFrame:
    """Instances keyed by (split, image file name stem) instead of image id, for comparing across formats.

    Rows are sorted, so that two data sets with the same annotations compare equal whatever their ids.
    """
    stems = dataset.images.set_index("image_id")["file"].map(lambda file: Path(file).stem)
    splits = dataset.images.set_index("image_id")["split"]
    table = dataset.instances.copy()
    table.insert(0, "stem", table["image_id"].map(stems))
    table.insert(0, "split", table["image_id"].map(splits))
    table = table.drop(columns="image_id")
    table["category"] = table["category"].astype(str)
    return table.sort_values(["split", "stem", "category", *POLY_COLUMNS]).reset_index(drop=True)


def images_by_name(dataset: Dataset) -> pd.DataFrame:
    """The images table keyed by (split, stem), without ids and file paths."""
    table = dataset.images.drop(columns=["image_id", "file"])
    table.insert(0, "stem", dataset.images["file"].map(lambda file: Path(file).stem))
    return table.sort_values(["split", "stem"]).reset_index(drop=True)


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Dataset]:
    """``make_dataset(splits=..., images_per_split=..., seed=..., metadata=...)`` -> Dataset under tmp_path."""

    def make(**options) -> Dataset:
        return build_dataset(tmp_path, **options)

    return make


@pytest.fixture
def by_name() -> Callable[[Dataset], pd.DataFrame]:
    return annotations_by_name


@pytest.fixture
def images_by_stem() -> Callable[[Dataset], pd.DataFrame]:
    return images_by_name


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Block every way out (DNS, TCP/UDP connects) and record each attempt; tests assert the list stays empty."""
    import socket

    attempts: list[str] = []

    def refuse(kind: str):
        def blocked(*args, **kwargs):
            attempts.append(f"{kind}{args[1:] if kind == 'connect' else args[:1]}")
            raise OSError(f"network blocked in tests ({kind})")

        return blocked

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    return attempts
