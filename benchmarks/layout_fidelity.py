"""Layout fidelity on the embedded aerial data set: sampled and perturbed layouts vs the real val layouts.

Renders the aerial set, fits a layout model on its train split, samples and perturbs layouts, and compares
each with the real val layouts; real train vs real val is the floor (two samples of one distribution).
Prints the markdown tables for BENCHMARKS.md and leaves every file (tables, histograms, side-by-side
pictures) in --out.

    python benchmarks/layout_fidelity.py --out /tmp/layout-fidelity
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ccaug.datasets import make_aerial
from ccaug.layouts.jobs import compare_layout_sets, fit_layout_model, perturb_layout_set, sample_layout_set
from ccaug.recipes import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder")
    parser.add_argument("--images", type=int, default=300, help="aerial images to render (train + val)")
    parser.add_argument("--layouts", type=int, default=300, help="layouts to sample and to perturb")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    aerial = args.out / "aerial"
    make_aerial(aerial, n=args.images, seed=args.seed, progress=False)
    recipe = load_recipe("aerial-layouts")
    started = time.perf_counter()
    fit_layout_model(aerial / "train", "dota", args.out / "layout-model.json")
    sample_layout_set(args.out / "layout-model.json", args.out / "sampled", n=args.layouts, seed=args.seed, constraints=recipe.constraints)
    perturb_layout_set(
        aerial / "train", "dota", args.out / "perturbed", n=args.layouts, seed=args.seed,
        config=recipe.perturb, constraints=recipe.constraints,
    )
    print(f"fit + sample + perturb: {time.perf_counter() - started:.1f} s\n")
    for name, a in (("floor", aerial / "train"), ("sampled", args.out / "sampled"), ("perturbed", args.out / "perturbed")):
        comparison = compare_layout_sets(aerial / "val", a, args.out / f"compare-{name}")
        print(comparison.to_markdown(), end="\n\n")


if __name__ == "__main__":
    main()
