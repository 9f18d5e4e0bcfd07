"""A layout: what one image should contain and where, before the image exists.

A `Layout` is one image's size plus, per instance, a class and an oriented polygon. Sets of layouts are stored
as an ordinary data set without images: COCO ``annotations.json`` (which carries the image sizes and the scene
of each layout), DOTA ``labelTxt/`` for DOTA tools, and ``captions.jsonl`` with the global caption of every
layout, so that the generator and every data tool read them like real annotations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ccaug.data import Dataset, read_dataset, write_dataset
from ccaug.data.formats import detect_format
from ccaug.data.geometry import POLY_COLUMNS, polygon_to_le90
from ccaug.fileio import write_text

CAPTIONS_FILE = "captions.jsonl"


@dataclass
class Layout:
    """One image's layout.

    ``labels`` is ``(N,)`` int (positions in the category list of the set), ``polygons`` is ``(N, 8)`` float
    corners in pixels; ``scene`` names the kind of scene when known (it feeds the caption).
    """

    width: int
    height: int
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    polygons: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))
    scene: str | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.polygons = np.asarray(self.polygons, dtype=np.float64).reshape(-1, 8)
        if len(self.labels) != len(self.polygons):
            raise ValueError(f"{len(self.labels)} labels but {len(self.polygons)} polygons")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def le90(self) -> np.ndarray:
        """``(N, 5)`` rotated boxes ``cx, cy, w, h, theta`` of the instances."""
        return polygon_to_le90(self.polygons)

    def select(self, keep: np.ndarray) -> Layout:
        """The layout with only the instances where `keep` is true (or at the given indices)."""
        return replace(self, labels=self.labels[keep], polygons=self.polygons[keep])

    def with_instances(self, labels: np.ndarray, polygons: np.ndarray) -> Layout:
        return replace(self, labels=labels, polygons=polygons)


def layouts_from_dataset(dataset: Dataset) -> list[Layout]:
    """One layout per image of a data set (in images-table order), with its ``scene`` column if it has one."""
    codes = dataset.category_index()
    polygons = dataset.polygons
    rows_of = dataset.instances.groupby("image_id", sort=False).indices
    has_scene = "scene" in dataset.images.columns
    layouts = []
    for image in dataset.images.itertuples(index=False):
        rows = rows_of.get(image.image_id, np.zeros(0, dtype=np.int64))
        scene = getattr(image, "scene", None) if has_scene else None
        scene = scene if isinstance(scene, str) and scene else None
        layouts.append(Layout(int(image.width), int(image.height), codes[rows], polygons[rows], scene))
    return layouts


def layouts_to_dataset(layouts: list[Layout], categories: list[str], prefix: str = "layout") -> Dataset:
    """A data set without images: layout i becomes ``images/<prefix>_<i:06d>.png`` (a file not yet rendered)."""
    images = pd.DataFrame(
        {
            "image_id": np.arange(len(layouts)),
            "file": [f"images/{prefix}_{index:06d}.png" for index in range(len(layouts))],
            "width": [layout.width for layout in layouts],
            "height": [layout.height for layout in layouts],
            "split": "",
            "scene": [layout.scene or "" for layout in layouts],
        }
    )
    counts = [len(layout) for layout in layouts]
    instances = pd.DataFrame(np.concatenate([layout.polygons for layout in layouts]) if layouts else np.zeros((0, 8)), columns=POLY_COLUMNS)
    instances.insert(0, "image_id", np.repeat(np.arange(len(layouts)), counts))
    labels = np.concatenate([layout.labels for layout in layouts]).astype(int) if layouts else np.zeros(0, dtype=int)
    instances.insert(1, "category", np.asarray(categories, dtype=object)[labels] if len(labels) else [])
    return Dataset(images, instances, list(categories))


def write_layouts(
    layouts: list[Layout], categories: list[str], out: str | Path, captions: list[str], prefix: str = "layout"
) -> Dataset:
    """Write a set of layouts into `out`: COCO, DOTA label files and ``captions.jsonl``; returns the data set."""
    if len(captions) != len(layouts):
        raise ValueError(f"{len(captions)} captions for {len(layouts)} layouts")
    out = Path(out)
    dataset = layouts_to_dataset(layouts, categories, prefix).replace(root=out)
    write_dataset(dataset, out, "coco", images="none")
    write_dataset(dataset, out, "dota", images="none")
    lines = [
        json.dumps({"image_id": int(image_id), "file": file, "caption": caption, "labels": [categories[k] for k in layout.labels]})
        for image_id, file, caption, layout in zip(dataset.images["image_id"], dataset.images["file"], captions, layouts)
    ]
    write_text(out / CAPTIONS_FILE, "".join(f"{line}\n" for line in lines))
    return dataset


def read_layouts(path: str | Path, fmt: str | None = None) -> tuple[list[Layout], list[str]]:
    """Layouts and categories of a layout folder (written by `write_layouts`) or of any real data set."""
    dataset = read_layout_dataset(path, fmt)
    return layouts_from_dataset(dataset), dataset.categories


def read_layout_dataset(path: str | Path, fmt: str | None = None) -> Dataset:
    """A data set read for its layouts: images need not exist (COCO), and scenes are attached when known.

    A scene comes from the images table's ``scene`` column (layout folders store it in COCO) or from a
    ``scenes.json`` (image file -> scene name) in the data set's folder or the one above it, which the
    embedded aerial data set writes.
    """
    fmt = fmt or detect_format(path)
    dataset = read_dataset(path, fmt, require_images=False) if fmt == "coco" else read_dataset(path, fmt)
    if "scene" not in dataset.images.columns:
        scenes = _scenes_json(Path(path))
        if scenes:
            stems = dataset.images["file"].map(lambda file: Path(file).stem)
            dataset = dataset.replace(images=dataset.images.assign(scene=stems.map(scenes).fillna("")))
    return dataset


def _scenes_json(path: Path) -> dict[str, str]:
    """``{image stem: scene}`` from the nearest ``scenes.json`` (the folder itself, then its parent)."""
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / "scenes.json", folder.parent / "scenes.json"):
        if candidate.is_file():
            return {Path(file).stem: scene for file, scene in json.loads(candidate.read_text(encoding="utf-8")).items()}
    return {}


def read_captions(path: str | Path) -> list[str]:
    """The captions of a layout folder, in layout order."""
    lines = Path(path, CAPTIONS_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["caption"] for line in lines if line.strip()]
