"""Benchmark: layouts sampled per second from a fitted layout model, with a set number of instances each.

The model is fitted on the embedded aerial data set (rendered into a temporary folder), then its count
vectors are rescaled so that every sampled layout asks for about ``--instances`` instances (the real
co-occurrence is kept: each vector keeps its class proportions). Sampling runs with the default
constraints, so the figure includes the overlap checks and the bounded re-draws.

    python benchmarks/bench_layout_sample.py --n 1000 --instances 50
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np

from ccaug.datasets import make_aerial
from ccaug.layouts.model import LayoutModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="layouts to sample")
    parser.add_argument("--instances", type=int, default=50, help="instances asked for per layout")
    parser.add_argument("--size", type=int, default=256, help="image side of the fitted and sampled layouts")
    parser.add_argument("--images", type=int, default=60, help="aerial images to fit the model on")
    parser.add_argument("--arrangement", default="groups", choices=["groups", "scatter"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        dataset = make_aerial(
            folder, n=args.images, size=args.size, seed=args.seed, workers=1, progress=False
        )
    start = time.perf_counter()
    model = LayoutModel.fit(dataset)
    fit_seconds = time.perf_counter() - start
    model = with_instances_per_layout(model, args.instances)

    start = time.perf_counter()
    result = model.sample(args.n, seed=args.seed, arrangement=args.arrangement)
    seconds = time.perf_counter() - start
    placed = np.array([len(layout) for layout in result.layouts])
    print(f"fit: {len(dataset.instances)} instances in {len(dataset)} images, {fit_seconds:.2f} s")
    print(
        f"sample ({args.arrangement}): {args.n} layouts asking ~{args.instances} instances in {seconds:.2f} s: "
        f"{args.n / seconds:.0f} layouts/s, {placed.sum() / seconds:.0f} instances/s"
    )
    print(
        f"placed per layout: mean {placed.mean():.1f}, min {placed.min()}, max {placed.max()}; "
        f"layouts reported short: {len({line.split(':')[0] for line in result.reports})}"
    )


def with_instances_per_layout(model: LayoutModel, instances: int) -> LayoutModel:
    """The model with every non-empty count vector rescaled to about `instances` in total."""
    vectors = model.count_vectors.astype(np.float64)
    totals = vectors.sum(axis=1)
    keep = totals > 0
    scaled = np.rint(vectors[keep] * instances / totals[keep, None]).astype(np.int64)
    scenes = [scene for scene, kept in zip(model.count_scenes, keep) if kept] if model.count_scenes else None
    return dataclasses.replace(
        model, count_vectors=scaled, count_weights=model.count_weights[keep], count_scenes=scenes
    )


if __name__ == "__main__":
    main()
