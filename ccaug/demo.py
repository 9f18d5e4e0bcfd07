"""`ccaug demo`: the product's job end to end on the embedded aerial data set.

Today it covers the data and layout steps: render the data set, render a few large scenes and tile them,
print statistics with plots, draw preview grids, then fit a layout model on the train split, sample layouts
with captions and compare them with the real val layouts. Generator, synthesis and detector steps join as
they land.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ccaug.data import read_dataset


@dataclass(frozen=True)
class DemoBudget:
    images: int  # 256-px images of the benchmark data set
    large_scenes: int  # 1024-px scenes that are tiled
    large_size: int
    tile_size: int
    tile_overlap: int
    layouts: int  # sampled from the layout model fitted on the train split


FULL = DemoBudget(images=300, large_scenes=4, large_size=1024, tile_size=256, tile_overlap=32, layouts=300)
QUICK = DemoBudget(images=12, large_scenes=1, large_size=512, tile_size=256, tile_overlap=32, layouts=12)


def run_demo(out: str | Path, *, seed: int = 0, quick: bool = False, console: Console | None = None) -> dict[str, Path]:
    """Run every demo step into `out`; returns the main files written, by name."""
    from ccaug.data.draw import show_grid
    from ccaug.data.stats import dataset_stats, print_stats
    from ccaug.data.stats_plots import plot_stats
    from ccaug.data.tiling import tile_dataset
    from ccaug.datasets import make_aerial
    from ccaug.layouts.jobs import compare_layout_sets, fit_layout_model, sample_layout_set

    console = console or Console()
    budget = QUICK if quick else FULL
    out = Path(out)
    started = time.perf_counter()

    def step(title: str) -> None:
        console.rule(f"[bold]{title}[/]  [dim]{time.perf_counter() - started:.0f} s[/]")

    step(f"1. render the embedded aerial data set ({budget.images} images, 256 px)")
    aerial = make_aerial(out / "aerial", n=budget.images, size=256, seed=seed)
    console.print(f"{len(aerial)} images, {len(aerial.instances)} instances in {out / 'aerial'}")

    step(f"2. render {budget.large_scenes} large scene(s) of {budget.large_size} px and tile them")
    scenes = make_aerial(out / "aerial-large", n=budget.large_scenes, size=budget.large_size, seed=seed + 1, val_fraction=0)
    shutil.rmtree(out / "aerial-tiles", ignore_errors=True)  # tiling refuses to mix with an earlier run's tiles
    tiles = tile_dataset(scenes, out / "aerial-tiles", size=budget.tile_size, overlap=budget.tile_overlap)
    console.print(
        f"{len(scenes)} scenes -> {len(tiles)} tiles, {len(tiles.instances)} instances "
        f"({int(tiles.instances['truncated'].sum())} cut by a tile border)"
    )

    step("3. statistics")
    aerial = read_dataset(out / "aerial", "dota")  # read back from disk: the files are what users get
    stats = dataset_stats(aerial)
    print_stats(stats, console)
    plot_stats(stats, out / "stats")

    step("4. preview grids")
    grid = show_grid(aerial, out / "aerial-grid.png", n=16, seed=seed)
    tiles_grid = show_grid(tiles, out / "aerial-tiles-grid.png", n=min(16, len(tiles)), seed=seed)

    step(f"5. fit a layout model on the train split, sample {budget.layouts} layouts, compare with val")
    fit_layout_model(out / "aerial" / "train", "dota", out / "layout-model.json", min_instances=5 if quick else 20)
    sampled = sample_layout_set(out / "layout-model.json", out / "layouts", n=budget.layouts, seed=seed)
    console.print(f"{sampled.layouts} layouts, {sampled.instances} instances in {sampled.out}")
    comparison = compare_layout_sets(out / "aerial" / "val", out / "layouts", out / "layout-compare")
    comparison.print(console)

    files = {
        "data set": out / "aerial",
        "tiles": out / "aerial-tiles",
        "stats": out / "stats",
        "grid": grid,
        "tiles grid": tiles_grid,
        "layouts": out / "layouts",
        "real vs sampled": out / "layout-compare" / "side_by_side.png",
    }
    console.rule(f"[bold green]done in {time.perf_counter() - started:.0f} s[/]")
    for name, path in files.items():
        console.print(f"{name:>15}: {path}")
    return files
