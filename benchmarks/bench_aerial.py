"""Rendering speed of the embedded aerial data set: images per second, written to disk as `make_aerial` does.

python benchmarks/bench_aerial.py --n 300 --size 256 --workers 1
python benchmarks/bench_aerial.py --n 300 --size 256 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

from ccaug.datasets import make_aerial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="images to render")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        dataset = make_aerial(
            out, n=args.n, size=args.size, seed=args.seed, workers=args.workers, progress=False
        )
        seconds = time.perf_counter() - started
    print(
        f"aerial: {args.n} images of {args.size} px, workers={args.workers}: {seconds:.1f} s, "
        f"{args.n / seconds:.1f} images/s, {len(dataset.instances) / args.n:.1f} instances/image"
    )


if __name__ == "__main__":
    main()
