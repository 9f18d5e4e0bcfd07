"""DOTA-style tiling: cut large scenes into overlapping square tiles and carry the instances along.

Windows (per axis of length ``L``, ``step = size - overlap``): starts ``0, step, 2*step, ...`` while the
window ends before the edge, then one last window aligned to the edge (start ``L - size``); an axis no
longer than ``size`` has the single window ``[0, L)``. This is the DOTA devkit / mmrotate ``img_split`` rule,
so every pixel is in some tile and no tile reaches outside the image. A tile smaller than ``size`` (only
where the image is) is padded with zeros on the right and bottom to ``size x size`` when ``pad=True``, and
left at the image's size otherwise; either way instances are clipped to the image's pixels, not the padding.

An instance goes into a tile when at least ``keep_threshold`` of its area lies inside it. One entirely inside
keeps its corners (shifted to tile coordinates); one cut by the tile (or the image edge) is clipped, replaced
by the minimum-area rectangle of what is inside, clamped into the tile, and flagged ``truncated``.
Instances are treated as the convex hull of their four corners, so a self-crossing corner order (annotation
noise) cannot break the clipping.

Output: a DOTA data set (``[split/]images/{stem}__{size}__{x}___{y}.png``, ``labelTxt/``, ``classes.txt``),
images processed one at a time per worker process, so memory holds one decoded scene per worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from ccaug.data.dataset import Dataset
from ccaug.data.errors import Problems
from ccaug.data.formats.common import split_prefix, write_classes_file
from ccaug.data.formats.dota import HEADER_KEYS, IMAGE_DIR, LABEL_DIR, MIN_AREA, format_label_file
from ccaug.data.geometry import POLY_COLUMNS, polygon_area, polygon_to_hbb, rectify_polygon
from ccaug.fileio import save_image, write_text
from ccaug.progress import progress_bar

# PIL modes that a PNG stores as they are; anything else (palette, CMYK, float) is converted to RGB.
_PNG_MODES = ("L", "RGB", "RGBA", "I;16")
# zlib's fastest level: PNG encoding is most of the tiling time, and level 1 is ~5x faster than PIL's default
# (6) for files ~25% larger on aerial-like texture (benchmarks/bench_tiling.py). The pixels are the same.
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class TileSettings:
    size: int = 512
    overlap: int = 100
    keep_threshold: float = 0.7
    keep_empty: bool = False
    pad: bool = True

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"tile size must be a positive number of pixels, not {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ValueError(
                f"overlap must be at least 0 and less than the tile size {self.size}, not {self.overlap}"
            )
        if not 0 < self.keep_threshold <= 1:
            raise ValueError(
                f"keep_threshold is a fraction of an instance's area in (0, 1], not {self.keep_threshold}"
            )


def tile_dataset(
    dataset: Dataset,
    out: str | Path,
    *,
    size: int = 512,
    overlap: int = 100,
    keep_threshold: float = 0.7,
    keep_empty: bool = False,
    pad: bool = True,
    workers: int | None = None,
    problems: Problems | None = None,
    progress: bool = True,
) -> Dataset:
    """Tile every image of `dataset` into the empty (or new) folder `out`; returns the tiled data set.

    Splits are kept (``train/`` stays ``train/``); tile ids are 0..n-1 in (split, file name) order, the order
    `ccaug.data.formats.dota.read_dota` gives when reading `out` back. Tiles without instances are skipped
    unless `keep_empty`. Instances kept in no tile are counted in `problems` (``dropped``), as are zero-area
    ones; an unreadable image is a problem (raised, or recorded and skipped with ``skip_invalid``).
    `workers` processes share the images (default ``min(cpu count, 8)``; 1 runs in this process).
    """
    settings = TileSettings(size, overlap, keep_threshold, keep_empty, pad)
    if dataset.root is None:
        raise ValueError("the data set has no root folder, so its images cannot be read for tiling")
    problems = problems if problems is not None else Problems()
    out = _empty_output_folder(out)
    header_keys = [key for key in HEADER_KEYS if key in dataset.images.columns]
    jobs = list(_jobs(dataset, out, settings, header_keys, problems.skip_invalid))
    workers = min(workers or min(os.cpu_count() or 1, 8), max(len(jobs), 1))

    results = []
    finished = _results(jobs, workers)  # worker processes start here, before the progress bar's thread
    with _ProgressBar(len(jobs), enabled=progress) as bar:
        for result in finished:
            problems.merge(result.problems)
            results.append(result)
            bar.advance(result.megapixels)

    tiled = _assemble(results, dataset.splits, dataset.categories, header_keys, out)
    write_classes_file(out, dataset.categories)
    if len(tiled.images) == 0:
        (out / LABEL_DIR).mkdir(exist_ok=True)  # still a readable (empty) DOTA data set
    return tiled


def tile_windows(width: int, height: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left corners ``(x, y)`` of the tiles of a ``width x height`` image (see the module docstring)."""
    return [(x, y) for x in window_starts(width, size, overlap) for y in window_starts(height, size, overlap)]


def window_starts(length: int, size: int, overlap: int) -> list[int]:
    """Window starts along one axis: every ``size - overlap`` pixels, the last one flush with the edge."""
    if length <= size:
        return [0]
    return [*range(0, length - size, size - overlap), length - size]


# --------------------------------------------------------------------------------------------------------
# one image (runs in a worker process)
@dataclass
class _ImageJob:
    """Everything a worker needs for one image; small enough to pickle (no pixels)."""

    index: int
    source: Path
    width: int
    height: int
    split: str
    stem: str
    header: dict
    polygons: np.ndarray  # (N, 8)
    codes: np.ndarray  # (N,) category index
    difficult: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    categories: list[str]
    out: Path
    settings: TileSettings
    skip_invalid: bool


@dataclass
class _ImageTiles:
    """A worker's answer: the tiles it wrote and their instances (tile-relative), and what it dropped."""

    index: int
    megapixels: float
    tiles: list[dict] = field(default_factory=list)  # file, width, height, split, header...
    tile_of_instance: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    polygons: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    problems: Problems = field(default_factory=Problems)


@dataclass
class _Placement:
    """Instances assigned to tiles: row ``i`` puts instance ``instance[i]`` in tile ``tile[i]``."""

    tile: np.ndarray
    instance: np.ndarray
    polygons: np.ndarray  # tile-relative corners
    truncated: np.ndarray


def _tile_image(job: _ImageJob) -> _ImageTiles:
    """Cut one image: place its instances, then decode it (only if some tile is written) and save tiles."""
    result = _ImageTiles(job.index, job.width * job.height / 1e6, problems=Problems(job.skip_invalid))
    settings = job.settings
    corners = np.array(tile_windows(job.width, job.height, settings.size, settings.overlap), dtype=np.int64)
    regions = np.column_stack(
        [
            corners,
            np.minimum(corners[:, 0] + settings.size, job.width),
            np.minimum(corners[:, 1] + settings.size, job.height),
        ]
    )
    placement = _place_instances(
        job.polygons, job.truncated, regions, settings.keep_threshold, result.problems
    )
    written = np.arange(len(regions)) if settings.keep_empty else np.unique(placement.tile)
    if len(written) == 0:
        return result
    pixels = _load_pixels(job, result.problems)
    if pixels is None:
        return result

    new_index = np.full(len(regions), -1)
    new_index[written] = np.arange(len(written))
    for tile in written:
        _write_tile(job, regions[tile], pixels, placement, tile, result)
    rows = placement.instance
    result.tile_of_instance = new_index[placement.tile]
    result.polygons = placement.polygons
    result.codes = job.codes[rows]
    result.difficult = job.difficult[rows]
    result.truncated = placement.truncated
    return result


def _place_instances(
    polygons: np.ndarray,
    truncated: np.ndarray,
    regions: np.ndarray,
    keep_threshold: float,
    problems: Problems,
) -> _Placement:
    """Which instance goes into which tile, with its tile-relative corners (vectorised over all pairs).

    `regions` is ``(K, 4)``: ``x0, y0, x1, y1`` of each tile's image pixels.
    """
    hulls = shapely.convex_hull(shapely.multipoints(polygons.reshape(-1, 4, 2)))
    areas = shapely.area(hulls)
    usable = areas > MIN_AREA
    problems.drop("zero area", int((~usable).sum()))

    # Bounding-box prefilter over all (instance, tile) pairs: thousands x ~100 booleans is cheap.
    hbb = polygon_to_hbb(polygons)
    x0, y0, x1, y1 = (regions[:, column][None, :] for column in range(4))
    touches = (
        (hbb[:, [0]] < x1) & (hbb[:, [2]] > x0) & (hbb[:, [1]] < y1) & (hbb[:, [3]] > y0) & usable[:, None]
    )
    inside = (hbb[:, [0]] >= x0) & (hbb[:, [2]] <= x1) & (hbb[:, [1]] >= y0) & (hbb[:, [3]] <= y1) & touches

    whole_i, whole_k = np.nonzero(inside)
    whole = polygons[whole_i] - np.tile(regions[whole_k, :2], 4)

    cut_i, cut_k = np.nonzero(touches & ~inside)
    boxes = shapely.box(*regions[cut_k].T)
    pieces = shapely.intersection(hulls[cut_i], boxes)
    kept = shapely.area(pieces) >= keep_threshold * areas[cut_i]
    cut_i, cut_k, pieces = cut_i[kept], cut_k[kept], pieces[kept]
    clipped, ok = _rectangles_in_tiles(pieces, regions[cut_k])
    problems.drop("zero area after clipping to a tile", int((~ok).sum()))
    cut_i, cut_k, clipped = cut_i[ok], cut_k[ok], clipped[ok]

    placement = _Placement(
        tile=np.concatenate([whole_k, cut_k]),
        instance=np.concatenate([whole_i, cut_i]),
        polygons=np.concatenate([whole, clipped]),
        truncated=np.concatenate([truncated[whole_i], np.ones(len(cut_i), dtype=bool)]),
    )
    _count_lost(usable, touches, placement.instance, problems)
    order = np.lexsort((placement.instance, placement.tile))  # file order: by tile, then source order
    return _Placement(*(array[order] for array in vars(placement).values()))


def _rectangles_in_tiles(pieces: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-corner boxes of clipped pieces, in tile coordinates and inside the tile.

    A piece that is itself a quadrilateral (a box cut across two opposite sides) keeps its exact corners.
    Any other piece (a box with a corner cut off is a pentagon) becomes its minimum-area rectangle, clamped
    into the tile. Returns ``(M, 8)`` corners and an ``(M,)`` mask of those that still have an area.
    """
    if len(pieces) == 0:
        return np.zeros((0, 8)), np.zeros(0, dtype=bool)
    corners = np.zeros((len(pieces), 8))
    # Counter-clockwise in shapely's y-up sense is clockwise on screen, the order DOTA uses.
    rings = shapely.get_exterior_ring(shapely.orient_polygons(pieces))
    is_quad = (shapely.get_type_id(pieces) == shapely.GeometryType.POLYGON) & (shapely.get_num_coordinates(rings) == 5)
    if is_quad.any():
        corners[is_quad] = shapely.get_coordinates(rings[is_quad]).reshape(-1, 5, 2)[:, :4].reshape(-1, 8)
    envelopes = shapely.oriented_envelope(pieces)
    is_rectangle = ~is_quad & (shapely.get_type_id(envelopes) == shapely.GeometryType.POLYGON)
    if is_rectangle.any():
        ring = shapely.get_coordinates(shapely.get_exterior_ring(envelopes[is_rectangle]))
        corners[is_rectangle] = rectify_polygon(ring.reshape(-1, 5, 2)[:, :4].reshape(-1, 8))  # ring repeats its first point
    corners -= np.tile(regions[:, :2], 4)
    extent = np.tile(regions[:, 2:] - regions[:, :2], 4)
    corners = np.clip(corners, 0, extent)
    return corners, (is_quad | is_rectangle) & (polygon_area(corners) > MIN_AREA)


def _count_lost(usable: np.ndarray, touches: np.ndarray, placed: np.ndarray, problems: Problems) -> None:
    """Count usable instances that ended up in no tile, saying why."""
    lost = usable.copy()
    lost[placed] = False
    outside = lost & ~touches.any(axis=1)
    problems.drop("outside the image", int(outside.sum()))
    problems.drop("less than keep_threshold of its area in any tile", int((lost & ~outside).sum()))


def _load_pixels(job: _ImageJob, problems: Problems) -> np.ndarray | None:
    """The decoded image as an array (H, W[, C]), or None after reporting why it cannot be used."""
    try:
        with Image.open(job.source) as image:
            image = image if image.mode in _PNG_MODES else image.convert("RGB")
            pixels = np.asarray(image)
    except FileNotFoundError:
        problems.report(job.source, "image file is missing")
        return None
    except OSError as error:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        problems.report(job.source, f"image cannot be read ({error})")
        return None
    if pixels.shape[:2] != (job.height, job.width):
        problems.report(
            job.source,
            f"image is {pixels.shape[1]}x{pixels.shape[0]} pixels but the data set says {job.width}x{job.height}",
        )
        return None
    return pixels


def _write_tile(
    job: _ImageJob,
    region: np.ndarray,
    pixels: np.ndarray,
    placement: _Placement,
    tile: int,
    result: _ImageTiles,
) -> None:
    x0, y0, x1, y1 = (int(value) for value in region)
    crop = pixels[y0:y1, x0:x1]
    if job.settings.pad and crop.shape[:2] != (job.settings.size, job.settings.size):
        padded = np.zeros((job.settings.size, job.settings.size, *crop.shape[2:]), dtype=crop.dtype)
        padded[: crop.shape[0], : crop.shape[1]] = crop
        crop = padded
    stem = f"{job.stem}__{job.settings.size}__{x0}___{y0}"
    prefix = split_prefix(job.split)
    save_image(job.out / f"{prefix}{IMAGE_DIR}/{stem}.png", crop, compress_level=PNG_COMPRESS_LEVEL)

    mine = placement.tile == tile
    names = [job.categories[code] for code in job.codes[placement.instance[mine]]]
    text = format_label_file(
        placement.polygons[mine], names, job.difficult[placement.instance[mine]], job.header
    )
    write_text(job.out / f"{prefix}{LABEL_DIR}/{stem}.txt", text)
    result.tiles.append(
        {
            "file": f"{prefix}{IMAGE_DIR}/{stem}.png",
            "width": crop.shape[1],
            "height": crop.shape[0],
            "split": job.split,
        }
        | job.header
    )


# --------------------------------------------------------------------------------------------------------
# the parent: jobs out, results in
def _empty_output_folder(out: str | Path) -> Path:
    """Tiles go into a new or empty folder, so that stale tiles of an earlier run cannot mix in."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} exists and is not an empty folder; tile into a new or empty folder (or remove this one), "
            "so that tiles of an earlier run cannot mix with the new ones"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _jobs(
    dataset: Dataset, out: Path, settings: TileSettings, header_keys: list[str], skip_invalid: bool
) -> Iterator[_ImageJob]:
    codes = dataset.category_index()
    for index, (image, instances) in enumerate(dataset.iter_images()):
        rows = instances.index.to_numpy()
        yield _ImageJob(
            index=index,
            source=dataset.image_path(image),
            width=int(image["width"]),
            height=int(image["height"]),
            split=image["split"],
            stem=Path(image["file"]).stem,
            header={key: image[key] for key in header_keys},
            polygons=instances[POLY_COLUMNS].to_numpy(dtype=np.float64),
            codes=codes[rows],
            difficult=instances["difficult"].to_numpy(dtype=bool),
            truncated=instances["truncated"].to_numpy(dtype=bool),
            categories=dataset.categories,
            out=out,
            settings=settings,
            skip_invalid=skip_invalid,
        )


def _results(jobs: list[_ImageJob], workers: int) -> Iterator[_ImageTiles]:
    """Results as images finish: inline when ``workers == 1`` (easy to debug), else in worker processes."""
    if workers <= 1:
        return map(_tile_image, jobs)
    executor = ProcessPoolExecutor(max_workers=workers)
    futures = [executor.submit(_tile_image, job) for job in jobs]
    return _as_finished(executor, futures)


def _as_finished(executor: ProcessPoolExecutor, futures: list[Future]) -> Iterator[_ImageTiles]:
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        # After an error (or when the consumer stops early) do not wait for the images not started yet.
        executor.shutdown(wait=True, cancel_futures=True)


def _assemble(
    results: list[_ImageTiles], splits: list[str], categories: list[str], header_keys: list[str], out: Path
) -> Dataset:
    """One Dataset from the workers' answers, tiles numbered in (split, stem) order like `read_dota`."""
    results = sorted(results, key=lambda result: result.index)
    tiles = [tile for result in results for tile in result.tiles]
    images = pd.DataFrame(tiles, columns=["file", "width", "height", "split", *header_keys])
    first_tile = np.cumsum([0] + [len(result.tiles) for result in results])
    instances = pd.DataFrame(_concatenate(results, "polygons", np.zeros((0, 8))), columns=POLY_COLUMNS)
    tile_ids = [result.tile_of_instance + first for result, first in zip(results, first_tile)]
    instances.insert(0, "image_id", np.concatenate([np.zeros(0, dtype=np.int64), *tile_ids]))
    codes = _concatenate(results, "codes", np.zeros(0, dtype=np.int64))
    instances.insert(1, "category", pd.Categorical.from_codes(codes, categories=categories))
    instances["difficult"] = _concatenate(results, "difficult", np.zeros(0, dtype=bool))
    instances["truncated"] = _concatenate(results, "truncated", np.zeros(0, dtype=bool))

    split_rank = images["split"].map({split: rank for rank, split in enumerate(splits)})
    stems = images["file"].map(lambda file: Path(file).stem)
    order = np.lexsort((stems.to_numpy(), split_rank.to_numpy()))
    new_id = np.empty(len(images), dtype=np.int64)
    new_id[order] = np.arange(len(images))
    images = images.iloc[order].reset_index(drop=True)
    images.insert(0, "image_id", np.arange(len(images), dtype=np.int64))
    instances["image_id"] = new_id[instances["image_id"].to_numpy()]
    instances = instances.sort_values("image_id", kind="stable")
    return Dataset(images, instances, categories, root=out)


def _concatenate(results: list[_ImageTiles], name: str, empty: np.ndarray) -> np.ndarray:
    return np.concatenate([empty, *(getattr(result, name) for result in results)])


class _ProgressBar:
    """Images done and megapixels per second, on stderr (stdout stays for results)."""

    def __init__(self, total: int, enabled: bool):
        self.progress = progress_bar(
            TextColumn("tiling"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images  {task.fields[rate]:.1f} MP/s"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            enabled=enabled,
        )
        self.task = self.progress.add_task("tiling", total=total, rate=0.0)
        self.megapixels = 0.0
        self.start = time.perf_counter()

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def advance(self, megapixels: float) -> None:
        self.megapixels += megapixels
        rate = self.megapixels / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, advance=1, rate=rate)
