"""The instance bank: real object crops per class, the foreground references of CC-Diff.

Every instance slot of a layout is conditioned on a reference image of an object of its class (the reference
feeds DINOv2 and then the resampler). The bank holds, per class, the crops of the largest instances of the
training data, each masked to its object and padded to a square, so that a slot can be given a real-looking
example of its class with a similar shape.

Crops are **rotated upright** by default (``crop="rotated"``): the window is the instance's le90 box, turned
so that its long side runs along the x axis. The reference code crops the axis-aligned box (HBB) instead,
which is kept as ``crop="hbb"`` for the published checkpoints. Upright crops are the better reference:

* the generator already knows the target's orientation from the box embedding, so the reference should
  carry appearance only; an HBB crop shows the object at whatever angle it had in its own image, a pose
  that disagrees with the target's in general;
* a rotated vehicle fills a small diagonal strip of its HBB, so most of an HBB crop is masked-out black,
  while an upright crop fills the long side of the square whatever the angle;
* the aspect ratio of the le90 box (long / short) is a property of the object, while the HBB's w/h changes
  with the angle, so nearest-aspect retrieval matches shapes, not poses.

Each crop is the object's pixels times its mask (the annotated polygon rasterised in the crop, or a SAM mask
the user supplies), **square-padded** rather than centre-cropped so that elongated objects (bridges, ships)
are not cut (the reference's §2.1 / §8.4), and stored in **RGB** order (PIL reads the images; the reference's
crops on disk have red and blue swapped, §8.5).

Arrays (M = crops in the bank, S = ``crop_size``):

    crops   (M, S, S, 3) uint8   RGB, zero outside the object
    masks   (M, S, S)    uint8   1 on the object, 0 elsewhere (padding included)
    table   M rows: label, category, image_id, instance (its index within its image), area (px²),
            aspect (window w / h, ≥ 1 for rotated crops), truncated, group, mask ("polygon" or "sam")

Rows are sorted by class, then complete objects before truncated ones, then by decreasing area.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from ccaug.data.dataset import Dataset
from ccaug.data.geometry import POLY_COLUMNS, le90_to_polygon, polygon_area, polygon_to_hbb, polygon_to_le90
from ccaug.model.references import check_lengths, read_bank, table_to_json, write_bank
from ccaug.progress import progress_bar

CROP_MODES = ("rotated", "hbb")
TABLE_COLUMNS = ["label", "category", "image_id", "instance", "area", "aspect", "truncated", "group", "mask"]
_TABLE_TYPES = {
    "label": "int64",
    "category": "str",
    "image_id": "int64",
    "instance": "int64",
    "area": "float64",
    "aspect": "float64",
    "truncated": "bool",
    "group": "int64",
    "mask": "str",
}
_KIND = "instance_bank"
_SHIFT = 8  # fractional bits of the polygon corners given to cv2.fillPoly (sub-pixel accuracy)


@dataclass
class InstanceBank:
    """Object crops per class and the way to choose them: `build` once, `save`, `load`, then `pick`."""

    crops: np.ndarray
    masks: np.ndarray
    table: pd.DataFrame
    categories: list[str]
    crop: str = "rotated"
    # image id -> near-duplicate group, for every image the bank was built from (see `pick`'s exclusion)
    image_groups: dict[int, int] = field(default_factory=dict)
    max_per_class: int = 200
    min_side_px: float = 4.0

    def __post_init__(self) -> None:
        _check_mode(self.crop)
        self.table = self.table[TABLE_COLUMNS].astype(_TABLE_TYPES).reset_index(drop=True)
        if self.crops.ndim != 4 or self.crops.shape[1] != self.crops.shape[2] or self.crops.shape[3] != 3:
            raise ValueError(f"crops must be (M, S, S, 3), got {self.crops.shape}")
        if self.crops.dtype != np.uint8 or self.masks.shape != self.crops.shape[:3]:
            raise ValueError("crops must be uint8 and masks (M, S, S) like them")
        labels = self.table["label"].to_numpy()
        self._rows_of_label = {
            label: np.flatnonzero(labels == label) for label in range(len(self.categories))
        }
        self._log_aspect = np.log(self.table["aspect"].to_numpy())
        self._group = self.table["group"].to_numpy()

    # ----------------------------------------------------------------------------------------------------
    # building
    @classmethod
    def build(
        cls,
        dataset: Dataset,
        *,
        crop_size: int = 64,
        max_per_class: int = 200,
        min_side_px: float = 4.0,
        crop: str = "rotated",
        masks_dir: str | Path | None = None,
        group_by: str | None = None,
        progress: bool = True,
    ) -> InstanceBank:
        """Crop the `max_per_class` largest instances of every class of `dataset`, decoding each image once.

        Pass the **training split** (``dataset.split("train")``): a bank built on validation images would
        carry their objects into synthetic training data.

        `min_side_px` drops instances whose le90 short side is smaller (a 2-pixel blob is no reference).
        Truncated instances (cut by a tile or image border) are kept only when a class has too few complete
        ones. `masks_dir` holds SAM masks as ``<image stem>_<k>.png``, k the instance's index within its
        image (instances-table order), each the size of its image, nonzero on the object; the SAM mask is
        limited to the instance's crop window, and an instance without a mask file (or with an empty mask
        there) falls back to its polygon (the ``mask`` column says which was used). `group_by` names an
        images-table column whose equal values mark near-duplicate images, e.g. overlapping tiles of one
        scene; `pick` then excludes a whole group, not only one image.
        """
        _check_mode(crop)
        if crop_size < 1 or max_per_class < 1:
            raise ValueError("crop_size and max_per_class must be positive")
        image_groups = _image_groups(dataset, group_by)
        chosen = _choose_instances(dataset, max_per_class, min_side_px)
        chosen["group"] = chosen["image_id"].map(image_groups).astype("int64")
        polygons = chosen[POLY_COLUMNS].to_numpy()
        windows = crop_windows(polygons, crop)
        chosen["aspect"] = windows[:, 2] / windows[:, 3]

        crops = np.zeros((len(chosen), crop_size, crop_size, 3), dtype=np.uint8)
        masks = np.zeros((len(chosen), crop_size, crop_size), dtype=np.uint8)
        used_sam = np.zeros(len(chosen), dtype=bool)
        rows_of_image = chosen.groupby("image_id", sort=False).indices
        images = dataset.images[dataset.images["image_id"].isin(rows_of_image)]
        columns = (TextColumn("instance bank"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with progress_bar(*columns, enabled=progress) as bar:
            task = bar.add_task("crop", total=len(images))
            for _, image in images.iterrows():
                pixels = _read_rgb(dataset.image_path(image))
                for row in rows_of_image[image["image_id"]]:
                    sam = None
                    if masks_dir is not None:
                        sam = _read_sam_mask(Path(masks_dir), image, int(chosen["instance"].iat[row]), pixels)
                    crops[row], masks[row], used_sam[row] = crop_instance(
                        pixels, polygons[row], windows[row], crop_size, sam
                    )
                bar.advance(task)
        if masks_dir is not None and len(chosen) and not used_sam.any():
            warnings.warn(
                f"no SAM mask was found in {masks_dir} (expected <image stem>_<k>.png); all crops use polygons",
                stacklevel=2,
            )
        chosen["mask"] = np.where(used_sam, "sam", "polygon")
        chosen["category"] = [dataset.categories[label] for label in chosen["label"]]
        return cls(
            crops=crops,
            masks=masks,
            table=chosen,
            categories=list(dataset.categories),
            crop=crop,
            image_groups=image_groups,
            max_per_class=max_per_class,
            min_side_px=min_side_px,
        )

    # ----------------------------------------------------------------------------------------------------
    # choosing references
    def aspect_ratios(self, polygons: np.ndarray) -> np.ndarray:
        """``(N, 8)`` target polygons -> ``(N,)`` aspect ratios as this bank measures them, for `pick`.

        Rotated banks use the le90 box's long / short side; HBB banks the axis-aligned w / h, like the
        reference. Sides are taken as at least one pixel, so a degenerate box still has a finite ratio.
        """
        windows = crop_windows(np.asarray(polygons, dtype=np.float64).reshape(-1, 8), self.crop)
        return windows[:, 2] / windows[:, 3]

    def pick(
        self,
        labels: np.ndarray,
        aspects: np.ndarray,
        rng: np.random.Generator,
        top_k: int = 5,
        exclude_image: int | None = None,
    ) -> np.ndarray:
        """One crop per slot: ``(N,)`` labels and aspect ratios -> ``(N,)`` row indices into the bank.

        Among the crops of the slot's class, the `top_k` whose aspect ratio r is nearest the target's
        (distance ``|ln(r / r_target)|``, so 2:1 and 1:2 are equally far from 1:1) are candidates and one is
        drawn uniformly with `rng`: the same layout gets varied references, and the same seed the same ones.
        ``top_k=1`` is the reference's deterministic choice. Compute `aspects` with `aspect_ratios`.

        `exclude_image` removes the crops of that image (and of its near-duplicate group when the bank was
        built with `group_by`). The default, None, is right at inference, where a layout is not a bank image.
        In **training pass the sample's image id**: otherwise a slot can receive its own object as reference,
        the model learns to copy the reference into the box, and at inference (where the reference is always
        another object) that shortcut fails (the reference's leakage, §8.6). When a class has crops only in
        the excluded image, its own crops are used rather than failing: a rare class then leaks, but the
        sample still trains.
        """
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        aspects = np.asarray(aspects, dtype=np.float64).reshape(-1)
        if len(labels) != len(aspects):
            raise ValueError(f"{len(labels)} labels but {len(aspects)} aspect ratios")
        if not (np.isfinite(aspects).all() and (aspects > 0).all()):
            raise ValueError("aspect ratios must be finite and positive; compute them with aspect_ratios()")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k}")
        excluded = self._group == self._group_of(exclude_image)
        log_target = np.log(aspects)
        picks = np.empty(len(labels), dtype=np.int64)
        for label in np.unique(labels):
            slots = np.flatnonzero(labels == label)
            rows = self._rows_for(int(label))
            allowed = rows[~excluded[rows]]
            if len(allowed) == 0:
                allowed = rows
            distance = np.abs(self._log_aspect[allowed][None, :] - log_target[slots, None])  # (slots, crops)
            k = min(top_k, len(allowed))
            nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]
            choice = rng.integers(0, k, size=len(slots))
            picks[slots] = allowed[nearest[np.arange(len(slots)), choice]]
        return picks

    def images(self, indices: np.ndarray) -> torch.Tensor:
        """``(N,)`` bank rows -> ``(N, 3, S, S)`` float32 RGB in [0, 1]."""
        crops = torch.from_numpy(self.crops[np.asarray(indices, dtype=np.int64)])
        return crops.permute(0, 3, 1, 2).float().div_(255.0)

    def _rows_for(self, label: int) -> np.ndarray:
        if not 0 <= label < len(self.categories):
            raise ValueError(f"label {label} is not a class of this bank (0..{len(self.categories) - 1})")
        rows = self._rows_of_label[label]
        if len(rows) == 0:
            name = self.categories[label]
            raise ValueError(
                f"the instance bank has no crops of class {name!r}: the data set it was built from has no "
                f"{name!r} instance with a short side of at least {self.min_side_px} px. Build the bank from "
                f"data with such instances (or a lower min_side_px), or remove {name!r} from the layouts."
            )
        return rows

    def _group_of(self, image_id: int | None) -> int:
        if image_id is None:
            return -1  # no group: nothing excluded (groups are >= 0)
        # An image the bank was not built from has no crops, so excluding it excludes nothing.
        return self.image_groups.get(int(image_id), -1)

    # ----------------------------------------------------------------------------------------------------
    # inspection and storage
    def __len__(self) -> int:
        return len(self.crops)

    @property
    def crop_size(self) -> int:
        return int(self.crops.shape[1])

    def counts(self) -> pd.Series:
        """Crops per class, in category order (zero for a class without crops)."""
        counts = np.bincount(self.table["label"].to_numpy(), minlength=len(self.categories))
        return pd.Series(counts, index=self.categories, name="crops")

    def __repr__(self) -> str:
        return f"InstanceBank({len(self)} {self.crop} crops of {self.crop_size}², {len(self.categories)} classes)"

    def save(self, path: str | Path) -> None:
        """One safetensors file: crops and masks as arrays, the table and settings in its JSON header."""
        header = {
            "categories": self.categories,
            "crop": self.crop,
            "max_per_class": self.max_per_class,
            "min_side_px": self.min_side_px,
            "image_groups": [list(self.image_groups), list(self.image_groups.values())],
            "table": table_to_json(self.table),
        }
        write_bank(path, _KIND, {"crops": self.crops, "masks": self.masks}, header)

    @classmethod
    def load(cls, path: str | Path) -> InstanceBank:
        arrays, header = read_bank(path, _KIND)
        table = pd.DataFrame(header["table"], columns=TABLE_COLUMNS)
        check_lengths(path, len(table), arrays)
        image_ids, groups = header["image_groups"]
        return cls(
            crops=arrays["crops"],
            masks=arrays["masks"],
            table=table,
            categories=header["categories"],
            crop=header["crop"],
            image_groups=dict(zip(image_ids, groups)),
            max_per_class=header["max_per_class"],
            min_side_px=header["min_side_px"],
        )


# --------------------------------------------------------------------------------------------------------
# geometry of one crop


def crop_windows(polygons: np.ndarray, crop: str) -> np.ndarray:
    """``(N, 8)`` polygons -> ``(N, 5)`` crop windows ``cx, cy, w, h, theta``: the window is the rectangle
    centred at (cx, cy) whose w side lies at angle theta; the crop turns it so that w runs along x.

    ``"rotated"``: the le90 box (w is the long side). ``"hbb"``: the axis-aligned box (theta = 0). Sides are
    at least one pixel.
    """
    _check_mode(crop)
    if crop == "rotated":
        windows = polygon_to_le90(polygons)
    else:
        hbb = polygon_to_hbb(polygons)
        centre = (hbb[:, :2] + hbb[:, 2:]) / 2
        windows = np.column_stack([centre, hbb[:, 2:] - hbb[:, :2], np.zeros(len(hbb))])
    windows[:, 2:4] = np.maximum(windows[:, 2:4], 1.0)
    return windows


def crop_instance(
    pixels: np.ndarray,
    polygon: np.ndarray,
    window: np.ndarray,
    size: int,
    sam_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Cut one object out of an image: ``(H, W, 3)`` uint8 -> ``(S, S, 3)`` crop, ``(S, S)`` mask, used SAM.

    The `window` (from `crop_windows`) is turned upright and scaled so that its longer side spans the whole
    square and the shorter is centred (square padding; nothing is cut). The pixels are resampled at the
    object's own scale first and then resized (area interpolation when shrinking, so large objects do not
    alias). The mask is the polygon rasterised directly in the square, or the `sam_mask` ``(H, W)`` bool
    limited to the window.

    Coordinates are continuous pixels (pixel (i, j) covers ``[j, j+1) x [i, i+1)``), as in the data set.
    """
    cx, cy, w, h, theta = (float(value) for value in window)
    longest = max(w, h)
    side = max(1, math.ceil(longest))  # the square at the object's own resolution
    cos, sin = math.cos(theta), math.sin(theta)
    linear = (side / longest) * np.array([[cos, sin], [-sin, cos]])  # rotate by -theta, fit the square
    offset = side / 2 - linear @ np.array([cx, cy])
    native = cv2.warpAffine(
        pixels, _opencv_affine(linear, offset), (side, side), flags=cv2.INTER_LINEAR, borderValue=0
    )
    shrink = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(native, (size, size), interpolation=shrink)

    to_square = (linear * size / side, offset * size / side)  # image -> final square, for the masks
    mask = _fill(_apply(to_square, polygon), size)
    used_sam = False
    if sam_mask is not None:
        warped = cv2.warpAffine(
            sam_mask.astype(np.uint8), _opencv_affine(*to_square), (size, size), flags=cv2.INTER_NEAREST
        )
        box = le90_to_polygon(np.asarray(window, dtype=np.float64)[None])[0]
        sam = warped * _fill(_apply(to_square, box), size)
        if sam.any():
            mask, used_sam = sam, True
    return crop * mask[..., None], mask, used_sam


def _apply(affine: tuple[np.ndarray, np.ndarray], polygon: np.ndarray) -> np.ndarray:
    linear, offset = affine
    return np.asarray(polygon, dtype=np.float64).reshape(-1, 2) @ linear.T + offset


def _opencv_affine(linear: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The 2x3 matrix OpenCV wants for ``p -> linear @ p + offset`` in continuous pixel coordinates.

    OpenCV puts pixel centres at integers, the data set at half-integers, hence the half-pixel shifts.
    """
    return np.column_stack([linear, offset + linear @ np.array([0.5, 0.5]) - 0.5])


def _fill(corners: np.ndarray, size: int) -> np.ndarray:
    """``(4, 2)`` continuous corners -> ``(size, size)`` uint8 mask of the pixels they cover."""
    points = np.round((corners - 0.5) * (1 << _SHIFT)).astype(np.int32)
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


# --------------------------------------------------------------------------------------------------------
# helpers of build


def _check_mode(crop: str) -> None:
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, not {crop!r}")


def _choose_instances(dataset: Dataset, max_per_class: int, min_side_px: float) -> pd.DataFrame:
    """The instances that go into the bank, sorted like the bank's rows, with their polygons."""
    table = dataset.instances.copy()
    table["label"] = dataset.category_index()
    table["instance"] = table.groupby("image_id", sort=False).cumcount()
    polygons = dataset.polygons
    table["area"] = polygon_area(polygons)
    short_side = polygon_to_le90(polygons)[:, 3]
    usable = np.isfinite(polygons).all(axis=1) & (short_side >= min_side_px)
    table = table[usable]
    table = table.sort_values(["label", "truncated", "area"], ascending=[True, True, False], kind="stable")
    return table.groupby("label", sort=False).head(max_per_class).reset_index(drop=True)


def _image_groups(dataset: Dataset, group_by: str | None) -> dict[int, int]:
    image_ids = dataset.images["image_id"].to_numpy()
    if group_by is None:
        return {int(image_id): index for index, image_id in enumerate(image_ids)}
    if group_by not in dataset.images.columns:
        raise ValueError(f"group_by={group_by!r} is not a column of the images table {list(dataset.images)}")
    codes, _ = pd.factorize(dataset.images[group_by])
    return {int(image_id): int(code) for image_id, code in zip(image_ids, codes)}


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _read_sam_mask(folder: Path, image: pd.Series, instance: int, pixels: np.ndarray) -> np.ndarray | None:
    path = folder / f"{Path(image['file']).stem}_{instance}.png"
    if not path.is_file():
        return None
    with Image.open(path) as file:
        mask = np.asarray(file.convert("L")) > 0
    if mask.shape != pixels.shape[:2]:
        raise ValueError(
            f"SAM mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{pixels.shape[1]}x{pixels.shape[0]}; masks must be full-image size"
        )
    return mask
