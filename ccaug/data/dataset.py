"""The one in-memory form of a detection data set: an images table and an instances table.

Every reader produces a `Dataset` and every writer consumes one, so any format converts to any other through
it. Oriented polygons are first-class; the axis-aligned box, the le90 box and the area are derived.

images (one row per image)
    ``image_id`` (int, unique), ``file`` (str, POSIX path relative to ``root``), ``width``, ``height`` (int,
    pixels), ``split`` (str: ``"train"``, ``"val"``, ``"test"``, or ``""`` for an unsplit data set), plus any
    per-image metadata columns a format carries (e.g. DOTA's ``imagesource`` and ``gsd``).
instances (one row per object)
    ``image_id``, ``category`` (a pandas Categorical whose categories are `Dataset.categories`, in order),
    the polygon ``x1, y1, ... x4, y4`` (float, pixels), ``difficult`` (bool), ``truncated`` (bool: cut by a
    tile border or by the image edge).
categories
    The class names in the data set's own order. Nothing ever sorts or merges them: YOLO class indices and
    COCO category ids are positions in (or ids attached to) this list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ccaug.data.geometry import (
    HBB_COLUMNS,
    LE90_COLUMNS,
    POLY_COLUMNS,
    polygon_area,
    polygon_to_hbb,
    polygon_to_le90,
)

IMAGE_COLUMNS = ["image_id", "file", "width", "height", "split"]
INSTANCE_COLUMNS = ["image_id", "category", *POLY_COLUMNS, "difficult", "truncated"]


@dataclass
class Dataset:
    images: pd.DataFrame
    instances: pd.DataFrame
    categories: list[str]
    root: Path | None = None
    # COCO category ids in the order of `categories`; None means 1..n when a COCO file is written.
    category_ids: list[int] | None = None
    # Free-form data-set level metadata (e.g. COCO "info"), carried through conversions.
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.categories = list(self.categories)
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"duplicate category names in {self.categories}")
        if self.category_ids is not None:
            self.category_ids = [int(i) for i in self.category_ids]
            if len(self.category_ids) != len(self.categories) or len(set(self.category_ids)) != len(
                self.category_ids
            ):
                raise ValueError("category_ids must be unique and one per category")
        self.root = Path(self.root) if self.root is not None else None
        self.images = _normalise_images(self.images)
        self.instances = _normalise_instances(self.instances, self.categories)
        unknown = set(self.instances["image_id"]) - set(self.images["image_id"])
        if unknown:
            raise ValueError(f"instances refer to image ids not in the images table: {sorted(unknown)[:10]}")

    # ----------------------------------------------------------------------------------------------------
    # construction
    @classmethod
    def empty(cls, categories: Sequence[str], root: str | Path | None = None) -> Dataset:
        return cls(pd.DataFrame(columns=IMAGE_COLUMNS), pd.DataFrame(columns=INSTANCE_COLUMNS), list(categories), root)

    @classmethod
    def from_records(
        cls,
        images: list[dict],
        instances: list[dict],
        categories: Sequence[str],
        root: str | Path | None = None,
        **kwargs,
    ) -> Dataset:
        """Build from plain records; an instance record may give ``polygon`` (8 numbers) instead of x1..y4."""
        rows = []
        for record in instances:
            record = dict(record)
            if "polygon" in record:
                record.update(zip(POLY_COLUMNS, np.asarray(record.pop("polygon"), dtype=float).ravel()))
            rows.append(record)
        images_table = pd.DataFrame(images) if images else pd.DataFrame(columns=IMAGE_COLUMNS)
        instances_table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=INSTANCE_COLUMNS)
        return cls(images_table, instances_table, list(categories), root, **kwargs)

    # ----------------------------------------------------------------------------------------------------
    # derived geometry
    @property
    def polygons(self) -> np.ndarray:
        """``(N, 8)`` float array of instance corners in pixels."""
        return self.instances[POLY_COLUMNS].to_numpy(dtype=np.float64)

    @property
    def hbb(self) -> np.ndarray:
        """``(N, 4)`` axis-aligned boxes ``xmin, ymin, xmax, ymax``."""
        return polygon_to_hbb(self.polygons)

    @property
    def le90(self) -> np.ndarray:
        """``(N, 5)`` rotated boxes ``cx, cy, w, h, theta`` (le90, radians)."""
        return polygon_to_le90(self.polygons)

    @property
    def area(self) -> np.ndarray:
        """``(N,)`` polygon areas in square pixels."""
        return polygon_area(self.polygons)

    def with_geometry(self) -> pd.DataFrame:
        """The instances table with HBB, le90 and area columns added (a copy)."""
        table = self.instances.copy()
        polygons = self.polygons
        table[HBB_COLUMNS] = polygon_to_hbb(polygons)
        table[LE90_COLUMNS] = polygon_to_le90(polygons)
        table["area"] = polygon_area(polygons)
        return table

    # ----------------------------------------------------------------------------------------------------
    # access
    def __len__(self) -> int:
        return len(self.images)

    @property
    def splits(self) -> list[str]:
        """Split names in order of first appearance."""
        return list(dict.fromkeys(self.images["split"]))

    def image_path(self, image: int | pd.Series) -> Path:
        """Absolute path of an image, given its id or its row of the images table."""
        if self.root is None:
            raise ValueError("this data set has no root folder, so its images cannot be located")
        if not isinstance(image, pd.Series):
            image = self.images.loc[self.images["image_id"] == image].iloc[0]
        return self.root / image["file"]

    def iter_images(self) -> Iterator[tuple[pd.Series, pd.DataFrame]]:
        """Yield ``(image row, its instances)`` in images-table order, without rescanning per image."""
        groups = dict(tuple(self.instances.groupby("image_id", sort=False)))
        empty = self.instances.iloc[0:0]
        for _, image in self.images.iterrows():
            yield image, groups.get(image["image_id"], empty)

    def category_index(self) -> np.ndarray:
        """``(N,)`` int array: each instance's position in `categories` (the YOLO class index)."""
        return self.instances["category"].cat.codes.to_numpy()

    def subset(self, image_ids: Sequence[int]) -> Dataset:
        """The images with these ids (in this order) and their instances; categories unchanged."""
        order = pd.Index(image_ids, name="image_id")  # pandas 3.0 drops the index name on .loc otherwise
        images = self.images.set_index("image_id").loc[order].reset_index()
        instances = self.instances[self.instances["image_id"].isin(order)]
        return self.replace(images=images, instances=instances)

    def split(self, name: str) -> Dataset:
        return self.subset(self.images.loc[self.images["split"] == name, "image_id"].tolist())

    def replace(self, **changes) -> Dataset:
        """A copy with some fields replaced (tables are re-validated)."""
        fields = dict(
            images=self.images,
            instances=self.instances,
            categories=self.categories,
            root=self.root,
            category_ids=self.category_ids,
            meta=dict(self.meta),
        )
        fields.update(changes)
        return Dataset(**fields)

    def __repr__(self) -> str:
        return (
            f"Dataset({len(self.images)} images, {len(self.instances)} instances, "
            f"{len(self.categories)} categories, splits={self.splits}, root={self.root})"
        )


def _normalise_images(images: pd.DataFrame) -> pd.DataFrame:
    images = images.copy()
    missing = [column for column in IMAGE_COLUMNS if column not in images.columns]
    if "split" in missing:
        images["split"] = ""
        missing.remove("split")
    if missing:
        raise ValueError(f"images table lacks columns {missing}")
    if images["image_id"].duplicated().any():
        duplicated = images.loc[images["image_id"].duplicated(), "image_id"].tolist()
        raise ValueError(f"duplicate image ids: {duplicated[:10]}")
    images = images.astype({"image_id": "int64", "width": "int64", "height": "int64"})
    images["file"] = images["file"].astype(str)
    images["split"] = images["split"].fillna("").astype(str)
    extra = [column for column in images.columns if column not in IMAGE_COLUMNS]
    return images[IMAGE_COLUMNS + extra].reset_index(drop=True)


def _normalise_instances(instances: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    instances = instances.copy()
    for flag in ("difficult", "truncated"):
        if flag not in instances.columns:
            instances[flag] = False
        else:  # a record that leaves a flag out means False, not NaN (which bool() would make True)
            instances[flag] = instances[flag].astype(object).fillna(False)
    missing = [column for column in INSTANCE_COLUMNS if column not in instances.columns]
    if missing:
        raise ValueError(f"instances table lacks columns {missing}")
    names = instances["category"].astype(str) if len(instances) else instances["category"]
    unknown = sorted(set(names) - set(categories))
    if unknown:
        raise ValueError(f"instances use categories {unknown} that are not in the category list {categories}")
    instances["category"] = pd.Categorical(names, categories=categories)
    instances = instances.astype({"image_id": "int64", "difficult": bool, "truncated": bool})
    instances[POLY_COLUMNS] = instances[POLY_COLUMNS].astype(np.float64)
    extra = [column for column in instances.columns if column not in INSTANCE_COLUMNS]
    return instances[INSTANCE_COLUMNS + extra].reset_index(drop=True)
