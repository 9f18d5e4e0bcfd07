"""How fast large scenes are tiled: megapixels per second and wall time, inline and with worker processes.

    python benchmarks/bench_tiling.py                     # two 8000 x 8000 scenes, 3000 instances each, 1024/200
    python benchmarks/bench_tiling.py --images 1 --workers 1

Tiling runs in parallel over images, so the default data set has two scenes (the same pixels, hard-linked)
for the worker count to matter. The scene is smooth texture rather than noise, so that PNG sizes are
realistic. Prints one result line.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.errors import Problems
from ccaug.data.geometry import le90_to_polygon
from ccaug.data.tiling import tile_dataset


def make_scene(path: Path, side: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(side // 64 + 1, side // 64 + 1, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR))
    grain = rng.integers(0, 12, size=(side, 1, 1), dtype=np.uint8)  # row grain keeps PNG filters honest
    Image.fromarray(pixels + grain).save(path)


def make_dataset(root: Path, side: int, images: int, instances: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    make_scene(root / "scene0.png", side, seed)
    for index in range(1, images):
        os.link(root / "scene0.png", root / f"scene{index}.png")
    rows = []
    for index in range(images):
        boxes = np.column_stack(
            [
                rng.uniform(0, side, size=(instances, 2)),
                rng.uniform(20, 150, size=instances),
                rng.uniform(8, 60, size=instances),
                rng.uniform(-np.pi / 2, np.pi / 2, size=instances),
            ]
        )
        categories = rng.choice(["plane", "ship", "small-vehicle"], size=instances)
        rows += [
            dict(image_id=index, category=category, polygon=polygon)
            for category, polygon in zip(categories, le90_to_polygon(boxes))
        ]
    table = [
        dict(image_id=index, file=f"scene{index}.png", width=side, height=side) for index in range(images)
    ]
    return Dataset.from_records(table, rows, ["plane", "ship", "small-vehicle"], root=root)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--side", type=int, default=8000, help="scene width and height in pixels (default 8000)"
    )
    parser.add_argument("--images", type=int, default=2, help="scenes in the data set (default 2)")
    parser.add_argument("--instances", type=int, default=3000, help="instances per scene (default 3000)")
    parser.add_argument("--size", type=int, default=1024, help="tile size (default 1024)")
    parser.add_argument("--overlap", type=int, default=200, help="tile overlap (default 200)")
    parser.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts to time (default 1,2)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="ccaug-bench-tiling-") as folder:
        dataset = make_dataset(Path(folder) / "src", args.side, args.images, args.instances, args.seed)
        megapixels = args.images * args.side**2 / 1e6
        for run, workers in enumerate(int(value) for value in args.workers.split(",")):
            problems = Problems()
            start = time.perf_counter()
            tiled = tile_dataset(
                dataset,
                Path(folder) / f"out{run}",
                size=args.size,
                overlap=args.overlap,
                workers=workers,
                problems=problems,
                progress=False,
            )
            seconds = time.perf_counter() - start
            results.append(f"workers={workers} {seconds:.2f} s ({megapixels / seconds:.1f} MP/s)")
    print(
        f"tiling {args.images} x {args.side}x{args.side} RGB ({megapixels:.0f} MP, {args.instances} instances each) "
        f"at {args.size}/{args.overlap} -> {len(tiled.images)} tiles, {len(tiled.instances)} instances: "
        + "; ".join(results)
    )


if __name__ == "__main__":
    main()
