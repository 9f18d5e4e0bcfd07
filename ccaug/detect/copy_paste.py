"""Copy-paste augmentation: the non-generative baseline a generative augmenter has to beat.

Why: before anyone trains a diffusion model to synthesise objects in context, a detection engineer cuts real
objects out of the training images along their polygons and pastes them into other training images. It costs
nothing, keeps real textures, and is the fair competitor for every generative recipe in ccaug. This module
writes that baseline as an ordinary DOTA data set, so that the same detector recipe can train on it.

    dataset = read_dataset("aerial/", "dota").split("train")
    terrain = TerrainMaps.find("aerial/", dataset)          # None when the data set has no terrain maps
    augmented = copy_paste_dataset(dataset, "cp/", n_images=500, terrain=terrain)

An output image is a copy of one real image of `dataset` (all its instances kept) plus k pasted instances, k
drawn in `pastes_per_image`. A paste is the donor's pixels whose centre lies inside its polygon, moved by a
whole number of pixels, so it keeps its size, orientation and pixel values (no resampling), and is mirrored
horizontally and/or vertically half of the time each (the polygon is mirrored with it and keeps its corner
winding). The edge is hard, not feathered: the label is exactly the pasted pixels.

Donors are the instances of any image of `dataset` except truncated ones (cut objects), tiny ones (area under
`MIN_DONOR_AREA` px²), ones not wholly inside their own image, and, per target, ones whose axis-aligned extent
exceeds half the target image's shorter side. Donors are drawn uniformly over instances, so the pasted class
mix follows the real one.

A paste lies wholly inside the image and at least `GAP_PX` from every instance already there (original or
pasted; convex hulls, shapely), so no object is hidden under another. Plausibility is judged one of two ways:

* With terrain maps (the embedded aerial data set writes one per image), the terrain each class may stand on
  is learned from the real data (`allowed_terrain`: the terrain id under each real instance's centre; a
  class's set keeps the ids under at least 5% of its instances, or every id seen when it has fewer than 20).
  Candidate centres are drawn from the target's pixels of allowed terrain, and the first candidate that also
  has at least 80% of its pasted pixels on allowed terrain, and fits, wins.
* Without terrain maps, by background similarity, a heuristic: the ring of pixels up to `RING_PX` around the
  donor's mask in its own image has a mean colour, and so does the same ring at a candidate position. Of
  `max_tries` uniformly drawn positions that fit, the one whose ring mean is nearest the donor's (Euclidean
  RGB distance) is kept if that distance is at most `MAX_BACKGROUND_DISTANCE` (of 0..441). So a ship tends to
  land on water-coloured ground and a car on asphalt-coloured ground; nothing checks meaning, so a grey roof
  passes for a road.

A paste that finds no position is skipped, so an image may get fewer than k instances.

Output (`out`): ``train/images/cp_000000.png``, ``train/labelTxt/cp_000000.txt``, ``classes.txt`` and
``copy_paste.json`` (provenance: for each output image its source image and, per paste, the donor image, the
donor's position among its image's instances and the flips). The returned `Dataset` is exactly what
``read_dataset(out, "dota")`` reads back: DOTA stores no truncated flag, so ``truncated`` is False throughout,
original instances included; the DOTA header columns (``imagesource``, ``gsd``) of the source image are kept
when `dataset` has them; other image metadata is not (DOTA cannot store it; see copy_paste.json).

Deterministic: the source images are taken in shuffled rounds (each image once per round) from
``numpy.random.default_rng(seed)``, and output image i draws its pastes from ``SeedSequence(seed,
spawn_key=(i,))``, so the same inputs give byte-identical files and the first k outputs do not depend on
`n_images`.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from ccaug.data.dataset import Dataset
from ccaug.data.formats import write_dataset
from ccaug.data.formats.common import split_prefix
from ccaug.data.formats.dota import HEADER_KEYS, MIN_AREA, _check_writable_names
from ccaug.data.geometry import POLY_COLUMNS, polygon_area
from ccaug.fileio import save_image, write_json
from ccaug.progress import progress_bar

__all__ = [
    "TerrainMaps",
    "allowed_terrain",
    "copy_paste_dataset",
    "instance_centres",
    "instance_terrain",
    "polygon_mask",
]

SPLIT = "train"
STEM = "cp_{:06d}"
PROVENANCE_FILE = "copy_paste.json"
TERRAIN_DIR = "terrain"
TERRAIN_LEGEND = "terrain_classes.json"

MIN_DONOR_AREA = 16.0  # px²
MAX_DONOR_SHARE = 0.5  # of the target image's shorter side
GAP_PX = 1.0  # least distance between a paste and any other instance
RING_PX = 3  # width of the background ring around a mask
# RGB distance of ring means (0..255 per channel). On the embedded aerial data, 25 keeps about 70% of the
# pastes and raises the share whose centre is on terrain the class may stand on from about 51% (no threshold)
# to about 61%; 15 reaches 69% but keeps only 45% of the pastes.
MAX_BACKGROUND_DISTANCE = 25.0
TERRAIN_MIN_SHARE = 0.05  # a terrain id joins a class's allowed set under this share of its instances...
TERRAIN_FEW_INSTANCES = 20  # ...unless the class has fewer instances, then every id seen is allowed
TERRAIN_MASK_SHARE = 0.8  # share of a paste's pixels that must lie on allowed terrain
FLIP_PROBABILITY = 0.5  # for each of the horizontal and the vertical flip
_IMAGE_CACHE_SIZE = 32


# --------------------------------------------------------------------------------------------------------
# terrain maps
@dataclass
class TerrainMaps:
    """Per-image terrain maps, ``(H, W)`` uint8 arrays of terrain ids keyed by image id, read on first use.

    `names` is the id -> name legend (``terrain_classes.json``), empty when the data set has none.
    """

    paths: dict[int, Path]
    names: dict[int, str] = field(default_factory=dict)
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_aerial(cls, root: str | Path, dataset: Dataset) -> TerrainMaps:
        """The maps ``{root}/{split}/terrain/{stem}.png`` that `make_aerial` writes, one per image of `dataset`.

        Raises FileNotFoundError naming the first missing map when any image lacks one.
        """
        root = Path(root)
        paths = _terrain_paths(root, dataset)
        missing = [path for path in paths.values() if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(paths)} images have no terrain map, e.g. {missing[0]}; expected "
                f"uint8 PNGs at {{root}}/{{split}}/{TERRAIN_DIR}/{{stem}}.png, as make_aerial writes them"
            )
        return cls(paths, _read_terrain_names(root))

    @classmethod
    def find(cls, root: str | Path, dataset: Dataset) -> TerrainMaps | None:
        """`from_aerial` when the data set has terrain maps, None when it has none at all."""
        paths = _terrain_paths(Path(root), dataset)
        if not any(path.is_file() for path in paths.values()):
            return None
        return cls.from_aerial(root, dataset)

    def __getitem__(self, image_id: int) -> np.ndarray:
        image_id = int(image_id)
        if image_id not in self._cache:
            if image_id not in self.paths:
                raise KeyError(
                    f"no terrain map for image id {image_id}; these maps were made for another data set"
                )
            with Image.open(self.paths[image_id]) as image:
                terrain = np.array(image)
            if terrain.ndim != 2:
                raise ValueError(
                    f"{self.paths[image_id]}: expected a single-channel terrain map, got {terrain.shape}"
                )
            self._cache[image_id] = terrain
        return self._cache[image_id]

    def at(self, image_id: int, points: np.ndarray) -> np.ndarray:
        """Terrain ids under ``(N, 2)`` points ``x, y`` in pixels (the pixel containing each, clipped)."""
        terrain = self[image_id]
        xy = np.floor(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
        x = np.clip(xy[:, 0], 0, terrain.shape[1] - 1)
        y = np.clip(xy[:, 1], 0, terrain.shape[0] - 1)
        return terrain[y, x]


def _terrain_paths(root: Path, dataset: Dataset) -> dict[int, Path]:
    return {
        int(image_id): root / f"{split_prefix(split)}{TERRAIN_DIR}/{Path(file).stem}.png"
        for image_id, split, file in zip(
            dataset.images["image_id"], dataset.images["split"], dataset.images["file"]
        )
    }


def _read_terrain_names(root: Path) -> dict[int, str]:
    path = root / TERRAIN_LEGEND
    if not path.is_file():
        return {}
    legend = json.loads(path.read_text(encoding="utf-8")).get("terrain_classes", {})
    return {int(terrain_id): str(name) for terrain_id, name in legend.items()}


def instance_centres(polygons: np.ndarray) -> np.ndarray:
    """``(N, 8)`` polygons -> ``(N, 2)`` centres (the mean of the four corners)."""
    return np.asarray(polygons, dtype=np.float64).reshape(-1, 4, 2).mean(axis=1)


def instance_terrain(dataset: Dataset, terrain: TerrainMaps) -> np.ndarray:
    """``(N,)`` terrain id under each instance's centre, in instances-table order; -1 for a non-finite polygon."""
    ids = np.full(len(dataset.instances), -1, dtype=np.int64)
    centres = instance_centres(dataset.polygons)
    finite = np.isfinite(centres).all(axis=1)
    image_ids = dataset.instances["image_id"].to_numpy()
    for image_id in np.unique(image_ids[finite]):
        rows = np.flatnonzero((image_ids == image_id) & finite)
        ids[rows] = terrain.at(image_id, centres[rows])
    return ids


def allowed_terrain(dataset: Dataset, terrain: TerrainMaps) -> dict[str, frozenset[int]]:
    """Per class, the terrain ids its real instances stand on (see the module docstring); empty if unseen."""
    ids = instance_terrain(dataset, terrain)
    names = dataset.instances["category"].astype(str).to_numpy()
    allowed = {}
    for name in dataset.categories:
        seen = ids[(names == name) & (ids >= 0)]
        values, counts = np.unique(seen, return_counts=True)
        if len(seen) >= TERRAIN_FEW_INSTANCES:
            values = values[counts >= TERRAIN_MIN_SHARE * len(seen)]
        allowed[name] = frozenset(int(value) for value in values)
    return allowed


# --------------------------------------------------------------------------------------------------------
# masks
def polygon_mask(corners: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(height, width)`` bool: the pixels whose centre lies inside the polygon (even-odd rule).

    `corners` is ``(K, 2)`` (or flat) in continuous pixel coordinates: pixel ``(i, j)`` covers
    ``[j, j+1) x [i, i+1)``, so its centre is ``(j + 0.5, i + 0.5)``.
    """
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    inside = np.zeros((height, width), dtype=bool)
    for (x1, y1), (x2, y2) in zip(corners, np.roll(corners, -1, axis=0)):
        if y1 == y2:
            continue  # a horizontal edge crosses no row of centres
        crosses = (y1 > ys) != (y2 > ys)
        x_cross = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < x_cross)
    return inside


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a bool mask by `radius` pixels in a square neighbourhood (separable: rows, then columns)."""
    rows = mask.copy()
    for shift in range(1, radius + 1):
        rows[shift:] |= mask[:-shift]
        rows[:-shift] |= mask[shift:]
    grown = rows.copy()
    for shift in range(1, radius + 1):
        grown[:, shift:] |= rows[:, :-shift]
        grown[:, :-shift] |= rows[:, shift:]
    return grown


def _ring(mask: np.ndarray) -> np.ndarray:
    """The pixels within `RING_PX` of the mask but outside it, on the mask's grid padded by `RING_PX`."""
    padded = np.pad(mask, RING_PX)
    return _dilate(padded, RING_PX) & ~padded


def _ring_mean(image: np.ndarray, ring: np.ndarray, left: int, top: int) -> np.ndarray | None:
    """Mean RGB of `image` under a `_ring` whose mask sits at ``(left, top)``; None when it is all off-image."""
    y0, x0 = top - RING_PX, left - RING_PX
    height, width = image.shape[:2]
    ya, yb = max(0, y0), min(height, y0 + ring.shape[0])
    xa, xb = max(0, x0), min(width, x0 + ring.shape[1])
    if ya >= yb or xa >= xb:
        return None
    visible = ring[ya - y0 : yb - y0, xa - x0 : xb - x0]
    if not visible.any():
        return None
    return image[ya:yb, xa:xb][visible].mean(axis=0)


# --------------------------------------------------------------------------------------------------------
# donors and patches
@dataclass(frozen=True)
class _Donor:
    image_id: int
    instance: int  # position among its image's instances
    category: str
    difficult: bool
    corners: np.ndarray  # (4, 2) in its own image
    window: tuple[int, int, int, int]  # left, top, right, bottom: the whole pixels its polygon touches

    @property
    def extent(self) -> float:
        """The longer side of the polygon's axis-aligned box."""
        return float(np.ptp(self.corners, axis=0).max())


@dataclass(frozen=True)
class _Patch:
    """A donor cut out of its image: pixels and mask of its window, polygon in window coordinates."""

    pixels: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool
    corners: np.ndarray  # (4, 2)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape

    def flipped(self, horizontal: bool, vertical: bool) -> _Patch:
        height, width = self.shape
        pixels, mask, corners = self.pixels, self.mask, self.corners.copy()
        if horizontal:
            pixels, mask = pixels[:, ::-1], mask[:, ::-1]
            corners[:, 0] = width - corners[:, 0]
        if vertical:
            pixels, mask = pixels[::-1], mask[::-1]
            corners[:, 1] = height - corners[:, 1]
        if (
            horizontal != vertical
        ):  # one mirror reverses the winding; keep the first corner, restore the order
            corners = corners[[0, 3, 2, 1]]
        return _Patch(pixels, mask, corners)


def _usable_donors(dataset: Dataset) -> list[_Donor]:
    """Instances that may be pasted anywhere: not truncated, not tiny, finite and inside their own image."""
    instances = dataset.instances
    sizes = dataset.images.set_index("image_id")[["width", "height"]]
    ordinal = instances.groupby("image_id", sort=False).cumcount().to_numpy()
    polygons = dataset.polygons
    corners = polygons.reshape(-1, 4, 2)
    width = sizes.loc[instances["image_id"], "width"].to_numpy()
    height = sizes.loc[instances["image_id"], "height"].to_numpy()
    with np.errstate(invalid="ignore"):
        inside = (
            (corners[..., 0] >= 0).all(axis=1)
            & (corners[..., 1] >= 0).all(axis=1)
            & (corners[..., 0] <= width[:, None]).all(axis=1)
            & (corners[..., 1] <= height[:, None]).all(axis=1)
        )
        usable = (
            ~instances["truncated"].to_numpy()
            & np.isfinite(polygons).all(axis=1)
            & (polygon_area(polygons) >= MIN_DONOR_AREA)
            & inside
        )
    names = instances["category"].astype(str).to_numpy()
    difficult = instances["difficult"].to_numpy()
    image_ids = instances["image_id"].to_numpy()
    donors = []
    for row in np.flatnonzero(usable):
        low = np.floor(corners[row].min(axis=0)).astype(int)
        high = np.ceil(corners[row].max(axis=0)).astype(int)
        window = (int(low[0]), int(low[1]), int(high[0]), int(high[1]))
        donors.append(
            _Donor(
                int(image_ids[row]), int(ordinal[row]), names[row], bool(difficult[row]), corners[row], window
            )
        )
    return donors


class _ImageCache:
    """RGB pixels of the data set's images by id, the most recently used few kept in memory."""

    def __init__(self, dataset: Dataset, size: int = _IMAGE_CACHE_SIZE):
        self.dataset = dataset
        self.rows = dataset.images.set_index("image_id", drop=False)
        self.size = size
        self.images: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getitem__(self, image_id: int) -> np.ndarray:
        if image_id in self.images:
            self.images.move_to_end(image_id)
            return self.images[image_id]
        row = self.rows.loc[image_id]
        with Image.open(self.dataset.image_path(row)) as image:
            pixels = np.array(image.convert("RGB"))
        if pixels.shape[:2] != (row["height"], row["width"]):
            raise ValueError(
                f"{self.dataset.image_path(row)}: the image is {pixels.shape[1]}x{pixels.shape[0]} px but the "
                f"images table says {row['width']}x{row['height']}"
            )
        pixels.flags.writeable = False  # shared between pastes: nothing may write into a cached image
        self.images[image_id] = pixels
        if len(self.images) > self.size:
            self.images.popitem(last=False)
        return pixels


def _cut(donor: _Donor, source: np.ndarray) -> tuple[_Patch, np.ndarray | None]:
    """The donor's patch and the mean colour of the background ring around it in its own image."""
    left, top, right, bottom = donor.window
    corners = donor.corners - [left, top]
    mask = polygon_mask(corners, bottom - top, right - left)
    patch = _Patch(source[top:bottom, left:right], mask, corners)
    return patch, _ring_mean(source, _ring(mask), left, top)


# --------------------------------------------------------------------------------------------------------
# the image being augmented
class _Canvas:
    """A copy of the target image, the footprints of its instances, and the pastes made so far."""

    def __init__(self, pixels: np.ndarray, polygons: np.ndarray):
        self.pixels = pixels.copy()
        self.footprints = [_footprint(polygon) for polygon in polygons if np.isfinite(polygon).all()]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    def fits(self, patch: _Patch, left: int, top: int) -> bool:
        """Inside the image and at least `GAP_PX` from every instance."""
        height, width = patch.shape
        if left < 0 or top < 0 or left + width > self.width or top + height > self.height:
            return False
        if not self.footprints:
            return True
        candidate = _footprint(patch.corners + [left, top])
        return not shapely.dwithin(self.footprints, candidate, GAP_PX).any()

    def paste(self, patch: _Patch, left: int, top: int) -> np.ndarray:
        """Copy the patch's masked pixels in; returns its ``(8,)`` polygon in image pixels."""
        height, width = patch.shape
        region = self.pixels[top : top + height, left : left + width]
        region[patch.mask] = patch.pixels[patch.mask]
        polygon = (patch.corners + [left, top]).ravel()
        self.footprints.append(_footprint(polygon))
        return polygon


def _footprint(polygon: np.ndarray) -> shapely.Geometry:
    """The convex hull of a polygon's corners: valid even when an annotator's four clicks cross."""
    return shapely.MultiPoint(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).convex_hull


def _place_on_terrain(
    canvas: _Canvas, patch: _Patch, allowed_here: np.ndarray, rng: np.random.Generator, max_tries: int
) -> tuple[int, int] | None:
    """The first drawn position whose centre is on allowed terrain, with most pixels there too, that fits."""
    ys, xs = np.nonzero(allowed_here)
    if not len(xs):
        return None
    centre = np.floor(patch.corners.mean(axis=0)).astype(int)
    height, width = patch.shape
    for _ in range(max_tries):
        pick = int(rng.integers(len(xs)))
        # whole-pixel moves keep the centre's fractional part, so it lands in the drawn pixel
        left, top = int(xs[pick]) - int(centre[0]), int(ys[pick]) - int(centre[1])
        if not canvas.fits(patch, left, top):
            continue
        on_allowed = allowed_here[top : top + height, left : left + width][patch.mask]
        if on_allowed.size and on_allowed.mean() >= TERRAIN_MASK_SHARE:
            return left, top
    return None


def _place_by_background(
    canvas: _Canvas,
    patch: _Patch,
    source_ring: np.ndarray | None,
    rng: np.random.Generator,
    max_tries: int,
) -> tuple[int, int] | None:
    """Of `max_tries` drawn positions that fit, the one whose ring colour is nearest the donor's, if near."""
    height, width = patch.shape
    if height > canvas.height or width > canvas.width:
        return None
    ring = _ring(patch.mask)
    best, best_distance = None, math.inf
    for _ in range(max_tries):
        left = int(rng.integers(0, canvas.width - width + 1))
        top = int(rng.integers(0, canvas.height - height + 1))
        if not canvas.fits(patch, left, top):
            continue
        here = _ring_mean(canvas.pixels, ring, left, top)
        distance = 0.0 if here is None or source_ring is None else float(np.linalg.norm(here - source_ring))
        if distance < best_distance:
            best, best_distance = (left, top), distance
    return best if best_distance <= MAX_BACKGROUND_DISTANCE else None


# --------------------------------------------------------------------------------------------------------
# one output image
@dataclass
class _Augmented:
    pixels: np.ndarray
    originals: pd.DataFrame  # the source image's instances that are written again
    polygons: list[np.ndarray] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    pastes: list[dict] = field(default_factory=list)  # provenance


@dataclass
class _Setup:
    """What every output image shares."""

    donors: list[_Donor]
    extents: np.ndarray  # (D,) donor extents
    donor_categories: np.ndarray  # (D,) class names
    images: _ImageCache
    instances: Mapping[int, pd.DataFrame]
    files: Mapping[int, str]
    terrain: TerrainMaps | None
    allowed: dict[str, frozenset[int]] | None
    pastes_per_image: tuple[int, int]
    max_tries: int


def _augment(setup: _Setup, target: pd.Series, rng: np.random.Generator) -> _Augmented:
    image_id = int(target["image_id"])
    originals = _writable(setup.instances.get(image_id))
    canvas = _Canvas(setup.images[image_id], originals[POLY_COLUMNS].to_numpy(dtype=np.float64))
    result = _Augmented(canvas.pixels, originals)
    allowed_here = _allowed_pixels(setup, image_id, canvas) if setup.terrain is not None else None
    eligible = _eligible_donors(setup, canvas, allowed_here)

    low, high = setup.pastes_per_image
    for _ in range(int(rng.integers(low, high + 1))):
        if not len(eligible):
            break
        donor = setup.donors[int(eligible[rng.integers(len(eligible))])]
        horizontal, vertical = (rng.random(2) < FLIP_PROBABILITY).tolist()
        patch, source_ring = _cut(donor, setup.images[donor.image_id])
        if not patch.mask.any():
            continue
        patch = patch.flipped(horizontal, vertical)
        if allowed_here is not None:
            spot = _place_on_terrain(canvas, patch, allowed_here[donor.category], rng, setup.max_tries)
        else:
            spot = _place_by_background(canvas, patch, source_ring, rng, setup.max_tries)
        if spot is None:
            continue
        result.polygons.append(canvas.paste(patch, *spot))
        result.categories.append(donor.category)
        result.difficult.append(donor.difficult)
        result.pastes.append(_provenance(setup.files[donor.image_id], donor, horizontal, vertical))
    return result


def _writable(instances: pd.DataFrame | None) -> pd.DataFrame:
    """Original instances that survive a DOTA round trip (finite, not of zero area), in order."""
    if instances is None or instances.empty:
        return pd.DataFrame(columns=["category", *POLY_COLUMNS, "difficult"])
    polygons = instances[POLY_COLUMNS].to_numpy(dtype=np.float64)
    finite = np.isfinite(polygons).all(axis=1)
    keep = finite & (np.where(finite, polygon_area(np.nan_to_num(polygons)), 0) > MIN_AREA)
    return instances.loc[keep]


def _allowed_pixels(setup: _Setup, image_id: int, canvas: _Canvas) -> dict[str, np.ndarray]:
    """Per class, the target's pixels whose terrain the class may stand on."""
    terrain = setup.terrain[image_id]
    if terrain.shape != (canvas.height, canvas.width):
        raise ValueError(
            f"the terrain map of image {image_id} is {terrain.shape[1]}x{terrain.shape[0]} px, the image "
            f"{canvas.width}x{canvas.height}; the maps belong to another data set"
        )
    return {name: np.isin(terrain, sorted(ids)) for name, ids in setup.allowed.items()}


def _eligible_donors(
    setup: _Setup, canvas: _Canvas, allowed_here: dict[str, np.ndarray] | None
) -> np.ndarray:
    """Indices of the donors small enough for this image (and, with terrain, with somewhere to stand)."""
    fits = setup.extents <= MAX_DONOR_SHARE * min(canvas.width, canvas.height)
    if allowed_here is not None:
        has_ground = np.array([allowed_here[name].any() for name in setup.donor_categories], dtype=bool)
        fits &= has_ground
    return np.flatnonzero(fits)


def _provenance(file: str, donor: _Donor, horizontal: bool, vertical: bool) -> dict:
    flip = ("h" if horizontal else "") + ("v" if vertical else "")
    return {
        "donor": file,
        "donor_image_id": donor.image_id,
        "instance": donor.instance,
        "category": donor.category,
        "flip": flip,
    }


# --------------------------------------------------------------------------------------------------------
# the data set
def copy_paste_dataset(
    dataset: Dataset,
    out: Path,
    *,
    n_images: int,
    seed: int = 0,
    pastes_per_image: tuple[int, int] = (1, 6),
    max_tries: int = 30,
    terrain: TerrainMaps | None = None,
    progress: bool = False,
) -> Dataset:
    """Write `n_images` copy-paste augmented images of `dataset` to `out` as DOTA (split "train").

    `dataset` holds the real training images (with files on disk: pass ``ds.split("train")`` to leave the
    validation images out); `pastes_per_image` is the inclusive range of pastes tried per image; `max_tries`
    the positions tried per paste; `terrain` switches placement from background similarity to learned terrain
    rules (see the module docstring). Returns the written data set, as ``read_dataset(out, "dota")`` reads it.
    """
    out = Path(out)
    _check_arguments(dataset, out, n_images, pastes_per_image, max_tries)
    donors = _usable_donors(dataset)
    if not donors:
        raise ValueError(
            f"no usable donor among the {len(dataset.instances)} instances: every one is truncated, smaller "
            f"than {MIN_DONOR_AREA:g} px², or not wholly inside its image"
        )
    setup = _Setup(
        donors=donors,
        extents=np.array([donor.extent for donor in donors]),
        donor_categories=np.array([donor.category for donor in donors]),
        images=_ImageCache(dataset),
        instances=dict(tuple(dataset.instances.groupby("image_id", sort=False))),
        files=dict(zip(dataset.images["image_id"].tolist(), dataset.images["file"])),
        terrain=terrain,
        allowed=allowed_terrain(dataset, terrain) if terrain is not None else None,
        pastes_per_image=(int(pastes_per_image[0]), int(pastes_per_image[1])),
        max_tries=int(max_tries),
    )

    header_keys = [key for key in HEADER_KEYS if key in dataset.images.columns]
    images, instances, provenance = [], [], []
    columns = (TextColumn("copy-paste"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with progress_bar(*columns, enabled=progress) as bar:
        task = bar.add_task("copy-paste", total=n_images)
        for index, position in enumerate(_source_order(len(dataset), n_images, seed)):
            target = dataset.images.iloc[position]
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
            result = _augment(setup, target, rng)
            file = f"{SPLIT}/images/{STEM.format(index)}.png"
            save_image(out / file, result.pixels)
            images.append(_image_record(index, file, target, header_keys))
            instances.extend(_instance_records(index, result))
            provenance.append({"file": file, "source": target["file"], "pasted": result.pastes})
            bar.advance(task)

    written = Dataset.from_records(images, instances, dataset.categories, root=out)
    write_dataset(written, out, "dota", images="none")
    write_json(
        out / PROVENANCE_FILE,
        _provenance_file(seed, pastes_per_image, max_tries, terrain, provenance),
        indent=1,
    )
    _remove_stale(out, n_images)
    return written


def _check_arguments(
    dataset: Dataset, out: Path, n_images: int, pastes_per_image: tuple[int, int], max_tries: int
) -> None:
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    if len(dataset) == 0:
        raise ValueError("the data set has no images to copy from")
    if dataset.root is None:
        raise ValueError("the data set has no root folder, so its images cannot be read")
    low, high = pastes_per_image
    if not 0 <= low <= high:
        raise ValueError(
            f"pastes_per_image must be (low, high) with 0 <= low <= high, got {pastes_per_image}"
        )
    if max_tries < 1:
        raise ValueError(f"max_tries must be at least 1, got {max_tries}")
    if out.resolve() == dataset.root.resolve():
        raise ValueError(
            f"{out} is the source data set's own folder; write the augmented set to a new folder"
        )
    _check_writable_names(dataset.categories)  # fail before any image is written, not after


def _source_order(n_sources: int, n_images: int, seed: int) -> np.ndarray:
    """Positions of the source image of each output: shuffled rounds, every image once per round."""
    rng = np.random.default_rng(seed)
    rounds = [rng.permutation(n_sources) for _ in range(math.ceil(n_images / n_sources))]
    return np.concatenate(rounds)[:n_images]


def _image_record(index: int, file: str, target: pd.Series, header_keys: list[str]) -> dict:
    record = {
        "image_id": index,
        "file": file,
        "width": int(target["width"]),
        "height": int(target["height"]),
        "split": SPLIT,
    }
    for key in header_keys:  # as DOTA reads them back: a missing source is None, a missing gsd NaN
        value = target[key]
        missing = value is None or pd.isna(value)
        record[key] = (None if missing else str(value)) if key == "imagesource" else float(value)
    return record


def _instance_records(index: int, result: _Augmented) -> list[dict]:
    originals = result.originals
    records = [
        {
            "image_id": index,
            "category": str(row.category),
            "polygon": polygon,
            "difficult": bool(row.difficult),
        }
        for row, polygon in zip(
            originals.itertuples(index=False), originals[POLY_COLUMNS].to_numpy(dtype=np.float64)
        )
    ]
    records += [
        {"image_id": index, "category": category, "polygon": polygon, "difficult": difficult}
        for polygon, category, difficult in zip(result.polygons, result.categories, result.difficult)
    ]
    return records


def _provenance_file(
    seed: int,
    pastes_per_image: tuple[int, int],
    max_tries: int,
    terrain: TerrainMaps | None,
    images: list[dict],
) -> dict:
    return {
        "method": "copy-paste",
        "seed": int(seed),
        "pastes_per_image": [int(count) for count in pastes_per_image],
        "max_tries": int(max_tries),
        "placement": "terrain" if terrain is not None else "background",
        "images": images,
    }


def _remove_stale(out: Path, n_images: int) -> None:
    """Delete cp_* files an earlier, larger run left behind (they would be read back as part of this set)."""
    keep = {STEM.format(index) for index in range(n_images)}
    for folder, pattern in (("images", "cp_*.png"), ("labelTxt", "cp_*.txt")):
        for path in (out / SPLIT / folder).glob(pattern):
            if path.stem not in keep:
                path.unlink()
