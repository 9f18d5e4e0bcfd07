"""`ccaug demo`: the product's job end to end on the embedded aerial data set.

1. render the aerial data set; 2. render large scenes and tile them; 3. statistics with plots; 4. preview
grids; 5. fit a layout model on the train split, sample layouts with captions, compare them with val;
6. synthesise images from train layouts with the generator (the one shipped in the package, or ``model``);
7. train three YOLOv8n detectors on scarce real data with the same budget: real only, + synthetic images,
+ copy-paste images, each validated on the real val split; 8. print the report table and where the
pictures are.

Without a generator (none shipped in this build and no ``model``) step 6 is skipped and step 7 trains the
baseline and copy-paste arms only. Every step reuses what a previous run into the same folder finished:
synthesis resumes image by image and the detector experiment skips finished runs.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ccaug.data import read_dataset


@dataclass(frozen=True)
class DemoBudget:
    images: int  # 256-px images of the benchmark data set
    large_scenes: int  # 1024-px scenes that are tiled
    large_size: int
    tile_size: int
    tile_overlap: int
    layouts: int  # sampled from the layout model fitted on the train split
    layout_min_instances: int  # a class needs this many train instances for the layout model to fit it
    synthetic: int  # images the generator renders (at least real_n: the synthetic arm's mix is 0.5)
    synth_steps: int  # DPM-Solver++ steps
    synth_batch: int
    real_n: int  # the scarce real training set of every detector arm
    epochs: int
    epoch_images: int  # images seen per epoch in every arm
    imgsz: int
    batch: int


# Sized for 20 minutes on this project's 2-core CPU, where the tiny generator renders 0.2 images/s at 20
# steps (time grows with the steps) and YOLOv8n trains 13.7 images/s at 256 px (BENCHMARKS.md). Measured
# beside a background detector benchmark: steps 1-5 in 36 s, synthesis in 413 s, each detector in 3 min,
# 16.5 min in all (the README's table).
FULL = DemoBudget(
    images=300, large_scenes=4, large_size=1024, tile_size=256, tile_overlap=32,
    layouts=300, layout_min_instances=20,
    synthetic=50, synth_steps=12, synth_batch=25,
    real_n=50, epochs=20, epoch_images=100, imgsz=256, batch=8,  # 2,000 images seen per arm
)  # fmt: skip
# Used by the tests only: seconds per step, and numbers that show the plumbing, not a detector.
QUICK = DemoBudget(
    images=12, large_scenes=1, large_size=512, tile_size=256, tile_overlap=32,
    layouts=12, layout_min_instances=5,
    synthetic=6, synth_steps=2, synth_batch=6,
    real_n=6, epochs=1, epoch_images=12, imgsz=64, batch=4,
)  # fmt: skip
MIX = 0.5  # the share of synthetic (or copy-paste) images next to the real ones: the paper's 1:1
# Ultralytics warms up for at least 100 optimiser steps: most of a budget this small. On 50 real images, 20
# epochs of 100 reached mAP50 0.0008 with that warm-up at batch 16 and 0.005 without it at batch 8 (one seed).
DETECTOR_OVERRIDES = {"warmup_epochs": 0}

NO_GENERATOR = (
    "No trained generator ships in this build of ccaug and no --model was given: the demo skips synthesis "
    "and trains the baseline and copy-paste arms only. To get a generator, train one (on a GPU: the recipe's "
    "20,000 steps take days on a CPU):\n"
    "  ccaug train-generator --recipe tiny-aerial --data aerial --out runs/gen\n"
    "  ccaug demo --model runs/gen"
)


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    model: str | Path | None = None,
    console: Console | None = None,
) -> dict[str, Path]:
    """Run every demo step into `out`; returns the main files written, by name.

    `model` is a generator checkpoint or ``train-generator`` run folder (default: the shipped one, if any);
    one that is not a generator for the aerial classes is refused before any work.
    """
    from ccaug.data.draw import show_grid
    from ccaug.data.stats import dataset_stats, print_stats
    from ccaug.data.stats_plots import plot_stats
    from ccaug.data.tiling import tile_dataset
    from ccaug.datasets import make_aerial
    from ccaug.layouts.jobs import compare_layout_sets, fit_layout_model, sample_layout_set

    console = console or Console()
    budget = QUICK if quick else FULL
    out = Path(out)
    generator = demo_generator(model)
    started = time.perf_counter()

    def step(title: str) -> None:
        console.rule(f"[bold]{title}[/]  [dim]{time.perf_counter() - started:.0f} s[/]")

    step(f"1. render the embedded aerial data set ({budget.images} images, 256 px)")
    aerial = make_aerial(out / "aerial", n=budget.images, size=256, seed=seed)
    console.print(f"{len(aerial)} images, {len(aerial.instances)} instances in {out / 'aerial'}")

    step(f"2. render {budget.large_scenes} large scene(s) of {budget.large_size} px and tile them")
    scenes = make_aerial(
        out / "aerial-large", n=budget.large_scenes, size=budget.large_size, seed=seed + 1, val_fraction=0
    )
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
    fit_layout_model(
        out / "aerial" / "train", "dota", out / "layout-model.json", min_instances=budget.layout_min_instances
    )
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

    if generator is None:
        step("6. synthesis: skipped, no generator")
        console.print(NO_GENERATOR, style="yellow", highlight=False)
        synthetic = None
    else:
        step(f"6. synthesise {budget.synthetic} images from train layouts with {generator}")
        synthetic = synthesize_demo_set(out / "aerial", out / "synthetic", generator, budget, seed, console)
        files["synthetic"] = synthetic
        files["synthetic preview"] = synthetic / "preview.png"

    arms = "real only, + synthetic, + copy-paste" if synthetic is not None else "real only, + copy-paste"
    step(f"7. YOLOv8n on {budget.real_n} real images: {arms} ({budget.epochs} epochs of {budget.epoch_images})")
    # other arms are another experiment: its own folder, so that neither refuses the other's
    experiment = out / ("detect" if synthetic is not None else "detect-baselines")
    report = train_demo_detectors(out / "aerial", synthetic, experiment, budget, console)
    files["report"] = experiment / "report.md"
    for name, file in report.get("plots", {}).items():
        files[f"{name.replace('_', ' ')} plot"] = experiment / file

    step("8. report")
    print_report_table(report, console)
    console.rule(f"[bold green]done in {time.perf_counter() - started:.0f} s[/]")
    width = max(map(len, files))
    for name, path in files.items():
        console.print(f"{name:>{width}}: {path}", highlight=False, soft_wrap=True)  # paths stay whole to copy
    return files


def demo_generator(model: str | Path | None) -> Path | None:
    """The generator the demo renders with: `model`, else the shipped one, else None. Checked here, before any
    work: it must be a generator folder (the rule of ``ccaug synth``) that knows every aerial class."""
    from ccaug.datasets.aerial import AERIAL_CLASSES
    from ccaug.datasets.aerial.shipped import shipped_generator
    from ccaug.pipeline.synth import find_generator
    from ccaug.workspace import EMBEDDED

    checkpoint = Path(model) if model is not None else shipped_generator()
    if checkpoint is None:
        return None
    source = find_generator(checkpoint, checkpoint, EMBEDDED)  # with a model given, only the model is read
    missing = [name for name in AERIAL_CLASSES if name not in source.config.categories]
    if missing:
        raise ValueError(
            f"the generator {checkpoint} does not know the aerial classes {missing} (it knows "
            f"{list(source.config.categories)}); give one trained on the embedded aerial data set"
        )
    return checkpoint


def synthesize_demo_set(
    source: Path, out: Path, generator: Path, budget: DemoBudget, seed: int, console: Console
) -> Path:
    """Render the demo's synthetic set from the train layouts of `source`, half sampled and half perturbed."""
    from ccaug.pipeline.synth import synthesize
    from ccaug.pipeline.synth_plan import SynthSettings

    settings = SynthSettings(
        layouts="mix", mix={"sample": 0.5, "perturb": 0.5}, scheduler="dpm++", steps=budget.synth_steps,
        batch_size=budget.synth_batch, layout_min_instances=budget.layout_min_instances,
    )  # fmt: skip
    result = synthesize(
        source, budget.synthetic, out, model=generator, fmt="dota", seed=seed, settings=settings,
        log=lambda line: console.print(line, style="cyan", highlight=False),
    )  # fmt: skip
    if not result.complete:  # Ctrl-C stopped it after a batch: the user asked the whole demo to stop
        raise KeyboardInterrupt(f"synthesis stopped at {result.done} of {result.n} images; rerun to finish it")
    console.print(
        f"{result.n} images in {out} ({result.rendered} rendered now, {result.seconds:.0f} s); instances per "
        "class: " + ", ".join(f"{name} {count}" for name, count in result.per_class.items()),
        highlight=False,
    )
    return out


def train_demo_detectors(
    real: Path, synthetic: Path | None, out: Path, budget: DemoBudget, console: Console
) -> dict:
    """The trainability experiment on `budget.real_n` real images, one seed, HBB; returns its report."""
    from ccaug.detect import DetectorSettings, TrainabilityConfig, run_trainability

    config = TrainabilityConfig(
        real=str(real), real_format="dota", synthetic=None if synthetic is None else str(synthetic),
        synthetic_format="dota", mix=MIX, real_n=budget.real_n, augment=("copy-paste",), seeds=1,
        epoch_images=budget.epoch_images,
        detector=DetectorSettings(
            task="detect", model="yolov8n.yaml", epochs=budget.epochs, imgsz=budget.imgsz, batch=budget.batch,
            overrides=DETECTOR_OVERRIDES,
        ),
    )  # fmt: skip
    def log(line: str) -> None:
        console.print(line, style="bold cyan", highlight=False)

    return run_trainability(config, out, log=log)


def print_report_table(report: dict, console: Console) -> None:
    """Arm, images, mAP50, mAP50-95 and the difference to the baseline, then what one seed can tell."""
    table = Table(title="detectors, validated on the real val split")
    columns = ("arm", "real + extra images", "mAP50", "mAP50-95", "vs baseline mAP50", "vs baseline mAP50-95")
    for column in columns:
        table.add_column(column, justify="left" if column == "arm" else "right")
    for name, arm in report["arms"].items():
        gains = [f"{arm[key]['mean']:+.3f}" if key in arm else "—" for key in ("gain_map50", "gain_map50_95")]
        table.add_row(
            name, f"{arm['real_images']} + {arm['extra_images']}", f"{arm['map50']['mean']:.3f}",
            f"{arm['map50_95']['mean']:.3f}", *gains,
        )  # fmt: skip
    console.print(table)
    console.print(
        "One seed at this small budget cannot tell a difference between arms from noise: the demo shows the "
        "pipeline end to end, not a gain. The experiment with 3 seeds and a longer budget is in BENCHMARKS.md.",
        highlight=False,
    )
