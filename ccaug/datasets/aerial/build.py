"""`make_aerial`: render N scenes in parallel and write them as a DOTA data set with terrain maps.

Layout of `out`::

    classes.txt                         the six class names, in DOTA order
    terrain_classes.json                {"terrain_classes": {id: name}, "allowed_terrain": {class: [ids]}}
    scenes.json                         {image file: scene kind}
    {split}/images/aerial_000123.png    RGB image
    {split}/labelTxt/aerial_000123.txt  DOTA labels (oriented 4-corner polygons, difficult flag)
    {split}/terrain/aerial_000123.png   uint8 terrain ids, one per pixel

Image i is rendered from a seed derived from ``(seed, i)`` by `numpy.random.SeedSequence`, so the output does
not depend on the number of workers, and the first k images of a run are the same whatever `n` is. Scene
kinds take turns (image i is ``SCENE_KINDS[i % 5]``), so every subset of consecutive images is balanced; the
val split takes the same share of every kind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from ccaug.data.dataset import Dataset
from ccaug.data.formats import write_dataset
from ccaug.datasets.aerial.classes import AERIAL_CLASSES, ALLOWED_TERRAIN, SCENE_KINDS, TERRAIN_CLASSES
from ccaug.datasets.aerial.render import render_scene
from ccaug.fileio import save_image, write_json
from ccaug.progress import progress_bar

STEM = "aerial_{:06d}"
_SPLIT_STREAM = 0x5E1EC7  # an extra SeedSequence word for the split's random stream


@dataclass(frozen=True)
class ImageJob:
    index: int
    seed: int
    kind: str
    split: str
    size: int

    @property
    def stem(self) -> str:
        return STEM.format(self.index)

    @property
    def file(self) -> str:
        return f"{self.split}/images/{self.stem}.png"

    @property
    def terrain_file(self) -> str:
        return f"{self.split}/terrain/{self.stem}.png"


def make_aerial(
    out: str | Path,
    *,
    n: int = 300,
    size: int = 256,
    seed: int = 0,
    val_fraction: float = 0.2,
    workers: int | None = None,
    progress: bool = True,
) -> Dataset:
    """Render the embedded aerial data set into `out` (DOTA layout, see the module docstring).

    `size` is the image side in pixels; a larger image shows more ground at the same resolution (more
    objects, not bigger ones). `workers` processes render in parallel (default: all cores; 1 renders
    inline). Returns the `Dataset` (root `out`) with an extra images column ``scene``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 64:
        raise ValueError(f"size must be at least 64 px, got {size}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out)
    jobs = plan(n, size, seed, val_fraction)
    instances = _render_all(jobs, out, workers if workers is not None else (os.cpu_count() or 1), progress)

    images = [
        dict(image_id=job.index, file=job.file, width=size, height=size, split=job.split, scene=job.kind)
        for job in jobs
    ]
    dataset = Dataset.from_records(images, instances, AERIAL_CLASSES, root=out)
    write_dataset(dataset, out, "dota", images="none")
    write_json(out / "terrain_classes.json", terrain_legend(), indent=1)
    write_json(out / "scenes.json", {job.file: job.kind for job in jobs}, indent=1)
    _remove_stale(out, jobs)
    return dataset


def terrain_legend() -> dict:
    """What terrain_classes.json holds: the id -> name table and the terrain each class may stand on."""
    return {
        "terrain_classes": {str(terrain_id): name for terrain_id, name in TERRAIN_CLASSES.items()},
        "allowed_terrain": {name: sorted(ALLOWED_TERRAIN[name]) for name in AERIAL_CLASSES},
    }


def plan(n: int, size: int, seed: int, val_fraction: float) -> list[ImageJob]:
    """One job per image: its seed, scene kind and split."""
    kinds = [SCENE_KINDS[index % len(SCENE_KINDS)] for index in range(n)]
    val = _val_indices(kinds, seed, val_fraction)
    return [
        ImageJob(index, image_seed(seed, index), kind, "val" if index in val else "train", size)
        for index, kind in enumerate(kinds)
    ]


def image_seed(seed: int, index: int) -> int:
    """The render seed of image `index`: a 64-bit number from the (seed, index) SeedSequence."""
    state = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(2, np.uint32)
    return int(state[0]) | int(state[1]) << 32


def _val_indices(kinds: list[str], seed: int, val_fraction: float) -> set[int]:
    """A random `val_fraction` of the images, spread evenly over scene kinds (at least one if the fraction is
    above zero and there are two images or more)."""
    n = len(kinds)
    count = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        count = min(max(count, 1), n - 1)
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    rank = np.empty(n)
    for kind in sorted(set(kinds)):
        members = [index for index, other in enumerate(kinds) if other == kind]
        rank[members] = rng.permutation(len(members))
    order = np.lexsort((rng.random(n), rank))  # round-robin over kinds, in random order within a round
    return set(order[:count].tolist())


# --------------------------------------------------------------------------------------------------------
# rendering
def render_job(job: ImageJob, out: Path) -> list[dict]:
    """Render one image, save it and its terrain map, and return its instance records."""
    scene = render_scene(job.seed, job.size, job.kind)
    save_image(out / job.file, scene.image)
    save_image(out / job.terrain_file, scene.terrain)
    return [
        dict(
            image_id=job.index,
            category=instance.category,
            polygon=instance.polygon,
            difficult=instance.difficult,
        )
        for instance in scene.instances
    ]


def _render_chunk(jobs: list[ImageJob], out: Path) -> list[list[dict]]:
    return [render_job(job, out) for job in jobs]


def _render_all(jobs: list[ImageJob], out: Path, workers: int, progress: bool) -> list[dict]:
    results: dict[int, list[dict]] = {}
    columns = (
        TextColumn("rendering aerial scenes"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with progress_bar(*columns, enabled=progress) as bar:
        task = bar.add_task("render", total=len(jobs))
        if workers <= 1 or len(jobs) == 1:
            for job in jobs:
                results[job.index] = render_job(job, out)
                bar.advance(task)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                chunks = list(_chunks(jobs, max(1, min(8, len(jobs) // (4 * workers)))))
                futures = {pool.submit(_render_chunk, chunk, out): chunk for chunk in chunks}
                for future in as_completed(futures):
                    for job, records in zip(futures[future], future.result()):
                        results[job.index] = records
                    bar.advance(task, len(futures[future]))
    return [record for job in jobs for record in results[job.index]]


def _chunks(jobs: list[ImageJob], size: int) -> Iterable[list[ImageJob]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _remove_stale(out: Path, jobs: list[ImageJob]) -> None:
    """Delete aerial_* files an earlier, larger run left in the split folders (they would be read back)."""
    keep = {job.file for job in jobs} | {job.terrain_file for job in jobs}
    keep |= {f"{job.split}/labelTxt/{job.stem}.txt" for job in jobs}
    for split in ("train", "val"):
        for folder, pattern in (("images", "*.png"), ("terrain", "*.png"), ("labelTxt", "*.txt")):
            for path in (out / split / folder).glob(f"aerial_{pattern}"):
                if path.relative_to(out).as_posix() not in keep:
                    path.unlink()
