"""How fast DOTA label files are read: the line parser alone, and the whole reader (image headers included).

    python benchmarks/bench_dota_parse.py                 # 10,000 files of 20-50 lines
    python benchmarks/bench_dota_parse.py --files 2000

The images are hard links to one 4000 x 4000 PNG, so that sizes are realistic (coordinates are checked
against them) while the data set costs no disk space. Prints one result line.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ccaug.data.errors import Problems
from ccaug.data.formats.dota import parse_label_file, read_dota
from ccaug.data.geometry import le90_to_polygon

CLASSES = [
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
    "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter", "roundabout",
    "soccer-ball-field", "swimming-pool", "container-crane",
]  # fmt: skip
IMAGE_SIZE = 4000


def generate(root: Path, files: int, min_lines: int, max_lines: int, seed: int) -> int:
    """Write `files` label files and their (linked) images under `root`; returns the number of instances."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    template = root / "template.png"
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE)).save(template)
    instances = 0
    for index in range(files):
        stem = f"P{index:05d}"
        os.link(template, root / "images" / f"{stem}.png")
        count = rng.randint(min_lines, max_lines)
        boxes = np.array(
            [
                [rng.uniform(50, IMAGE_SIZE - 50), rng.uniform(50, IMAGE_SIZE - 50), rng.uniform(8, 80),
                 rng.uniform(4, 40), rng.uniform(-1.57, 1.57)]
                for _ in range(count)
            ]
        )  # fmt: skip
        lines = ["imagesource:GoogleEarth", f"gsd:{rng.uniform(0.1, 1):.6f}"]
        for polygon in le90_to_polygon(boxes).round(1):
            lines.append(
                " ".join(f"{value:.1f}" for value in polygon) + f" {rng.choice(CLASSES)} {rng.randint(0, 1)}"
            )
        (root / "labelTxt" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        instances += count
    template.unlink()
    return instances


def time_parser(root: Path) -> float:
    categories = dict.fromkeys(CLASSES)
    problems = Problems()
    start = time.perf_counter()
    for path in sorted((root / "labelTxt").iterdir()):
        parse_label_file(path, problems, categories, size=(IMAGE_SIZE, IMAGE_SIZE))
    return time.perf_counter() - start


def time_reader(root: Path) -> tuple[float, int]:
    start = time.perf_counter()
    dataset = read_dota(root)
    return time.perf_counter() - start, len(dataset.instances)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000, help="label files to generate (default 10000)")
    parser.add_argument("--min-lines", type=int, default=20, help="fewest instances per file (default 20)")
    parser.add_argument("--max-lines", type=int, default=50, help="most instances per file (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ccaug-bench-dota-") as folder:
        root = Path(folder) / "dota"
        instances = generate(root, args.files, args.min_lines, args.max_lines, args.seed)
        parse_seconds = time_parser(root)
        read_seconds, read_instances = time_reader(root)
    assert read_instances == instances
    print(
        f"DOTA labelTxt, {args.files} files / {instances} instances: "
        f"parser {args.files / parse_seconds:,.0f} files/s ({instances / parse_seconds:,.0f} lines/s, "
        f"{parse_seconds:.2f} s); full read_dota {args.files / read_seconds:,.0f} files/s ({read_seconds:.2f} s)"
    )


if __name__ == "__main__":
    main()
