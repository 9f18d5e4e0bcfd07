"""The ``ccaug`` command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import dataclasses
import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ccaug.data import DataError, Problems, read_dataset, write_dataset
from ccaug.data.formats import detect_format

console = Console()
app = typer.Typer(
    help="Synthetic training data for remote-sensing object detection, rendered by a CC-Diff generator.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Data sets: convert between formats, tile large scenes, inspect, and render the embedded aerial set.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(data_app, name="data")
layout_app = typer.Typer(
    help="Layouts: fit a layout model to real data, sample and perturb layouts with captions, compare layout sets.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(layout_app, name="layout")


class Format(str, Enum):
    dota = "dota"
    coco = "coco"
    dior = "dior"
    yolo = "yolo"
    yolo_obb = "yolo-obb"


FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Annotation format of SRC.")]
SourceArgument = Annotated[Path, typer.Argument(help="Data set folder (or a COCO .json file).")]


def friendly_errors(command):
    """Turn bad input into a one-line red message and exit code 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (DataError, FileNotFoundError, FileExistsError, KeyError, ValueError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _print_problems(problems: Problems) -> None:
    for line in problems.summary_lines():
        console.print(f"[yellow]{line}[/]", highlight=False, soft_wrap=True)


def _parse_classes(classes: str | None) -> list[str] | None:
    return [name.strip() for name in classes.split(",") if name.strip()] if classes else None


@data_app.command("make-aerial")
@friendly_errors
def make_aerial_command(
    out: Annotated[Path, typer.Option(help="Folder to write the data set to (DOTA format).")],
    n: Annotated[int, typer.Option(help="Number of images (train + val).")] = 300,
    size: Annotated[int, typer.Option(help="Image side in pixels; larger scenes hold more objects.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed: the same seed renders the same images.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of images in the val split.")] = 0.2,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
) -> None:
    """Render the embedded aerial data set: harbours, airports, parking lots, industry, fields.

    Six DOTA classes (plane, helicopter, ship, storage-tank, large-vehicle, small-vehicle) placed by context
    rules, with a per-pixel terrain map for every image.

    [bold]Examples[/]

      ccaug data make-aerial --out aerial/                      [dim]# 300 images of 256 px[/]
      ccaug data make-aerial --out big/ --n 8 --size 1024       [dim]# large scenes, for tiling[/]
    """
    from ccaug.datasets import make_aerial

    dataset = make_aerial(out, n=n, size=size, seed=seed, val_fraction=val_fraction, workers=workers)
    console.print(f"wrote {len(dataset)} images, {len(dataset.instances)} instances to [bold]{out}[/]")


@data_app.command("import")
@friendly_errors
def import_command(
    src: SourceArgument,
    fmt: FormatOption,
    out: Annotated[Path, typer.Option(help="Folder to write the converted data set to.")],
    to: Annotated[Format, typer.Option("--to", help="Format to write.")] = Format.dota,
    name: Annotated[str | None, typer.Option(help="Register under this name, e.g. for `ccaug synth --source NAME`.")] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated class list (fixes order; others are errors).")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Report bad lines and go on, instead of stopping at the first.")] = False,
) -> None:
    """Read a data set in one format and write it in another (images are hard-linked or copied).

    [bold]Examples[/]

      ccaug data import DOTA/ --format dota --to yolo-obb --out dota-yolo/
      ccaug data import coco/annotations.json --format coco --to dota --out dota/ --name mydata
      ccaug data import DIOR/ --format dior --out dior-dota/ --skip-invalid
    """
    problems = Problems(skip_invalid=skip_invalid)
    dataset = read_dataset(src, fmt.value, problems=problems, categories=_parse_classes(classes))
    write_dataset(dataset, out, to.value)
    _print_problems(problems)
    console.print(
        f"converted {len(dataset)} images, {len(dataset.instances)} instances, {len(dataset.categories)} classes "
        f"from {fmt.value} to {to.value} in [bold]{out}[/]"
    )
    if name:
        from ccaug.workspace import register_dataset, workspace_dir

        register_dataset(name, out, to.value)
        console.print(f"registered as [bold]{name}[/] in {workspace_dir()}")


@data_app.command("tile")
@friendly_errors
def tile_command(
    src: SourceArgument,
    fmt: FormatOption,
    out: Annotated[Path, typer.Option(help="Folder for the tiles (DOTA format).")],
    recipe: Annotated[str | None, typer.Option(help="Recipe name (recipes/NAME.yaml) or file with a 'tiling' section.")] = None,
    size: Annotated[int | None, typer.Option(help="Tile side in pixels [default: 512].")] = None,
    overlap: Annotated[int | None, typer.Option(help="Overlap between neighbouring tiles in pixels [default: 100].")] = None,
    keep_threshold: Annotated[float | None, typer.Option(help="Keep an instance in a tile when this share of its area is inside [default: 0.7].")] = None,
    keep_empty: Annotated[bool | None, typer.Option("--keep-empty/--drop-empty", help="Write tiles with no instance [default: drop].")] = None,
    pad: Annotated[bool | None, typer.Option("--pad/--no-pad", help="Pad edge tiles to the full size [default: pad].")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores, up to 8).")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Report bad input and go on.")] = False,
) -> None:
    """Cut large scenes into overlapping tiles, DOTA-style; cut instances are clipped and flagged truncated.

    Options given on the command line override the recipe's values.

    [bold]Examples[/]

      ccaug data tile DOTA/ --format dota --out DOTA-512/ --recipe dota-512     [dim]# as CC-Diff: 512 px, 100 px gap[/]
      ccaug data tile big/ --format dota --out tiles/ --size 256 --overlap 32 --keep-empty
    """
    from ccaug.data.tiling import TileSettings, tile_dataset
    from ccaug.recipes import load_recipe

    config = load_recipe(recipe).tiling if recipe else TileSettings()
    given = dict(size=size, overlap=overlap, keep_threshold=keep_threshold, keep_empty=keep_empty, pad=pad)
    config = dataclasses.replace(config, **{key: value for key, value in given.items() if value is not None})
    problems = Problems(skip_invalid=skip_invalid)
    dataset = read_dataset(src, fmt.value, problems=problems)
    tiles = tile_dataset(dataset, out, **dataclasses.asdict(config), workers=workers, problems=problems)
    _print_problems(problems)
    console.print(
        f"{len(dataset)} images -> {len(tiles)} tiles of {config.size} px with {len(tiles.instances)} instances "
        f"({int(tiles.instances['truncated'].sum())} truncated) in [bold]{out}[/]"
    )


@data_app.command("stats")
@friendly_errors
def stats_command(
    src: SourceArgument,
    fmt: FormatOption,
    out: Annotated[Path | None, typer.Option(help="Folder for PNG plots, stats.csv and stats.json.")] = None,
) -> None:
    """Per-class counts, sizes, aspect ratios, orientations and instances per image.

    [bold]Examples[/]

      ccaug data stats aerial/ --format dota
      ccaug data stats DOTA/ --format dota --out dota-stats/      [dim]# also PNG plots[/]
    """
    from ccaug.data.stats import dataset_stats, print_stats
    from ccaug.data.stats_plots import plot_stats

    stats = dataset_stats(read_dataset(src, fmt.value))
    print_stats(stats, console)
    if out is not None:
        written = plot_stats(stats, out)
        console.print(f"wrote {len(written)} files to [bold]{out}[/]")


@data_app.command("show")
@friendly_errors
def show_command(
    src: SourceArgument,
    out: Annotated[Path, typer.Option(help="PNG file to write.")],
    fmt: Annotated[Format | None, typer.Option("--format", "-f", help="Annotation format of SRC (default: detected).")] = None,
    n: Annotated[int, typer.Option(help="Number of images in the grid.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed for picking the images.")] = 0,
    layout_only: Annotated[bool, typer.Option(help="Draw boxes on a blank canvas (no image files needed: layouts).")] = False,
) -> None:
    """Draw a grid of images with their oriented boxes and class names.

    [bold]Examples[/]

      ccaug data show aerial/ --format dota --out aerial.png
      ccaug data show layouts/ --format coco --out layouts.png --layout-only     [dim]# sampled layouts[/]
    """
    from ccaug.data.draw import show_grid
    from ccaug.layouts.layout import read_layout_dataset

    fmt_name = fmt.value if fmt else None
    dataset = read_layout_dataset(src, fmt_name) if layout_only else read_dataset(src, fmt_name or detect_format(src))
    path = show_grid(dataset, out, n=n, seed=seed, layout_only=layout_only)
    console.print(f"wrote [bold]{path}[/]")


# ----------------------------------------------------------------------------------------------------------
# ccaug layout ...

OptionalFormat = Annotated[Format | None, typer.Option("--format", "-f", help="Annotation format of SRC (default: detected).")]
RecipeOption = Annotated[str | None, typer.Option(help="Recipe name (recipes/NAME.yaml) or file; its 'constraints' (and 'perturb') sections apply.")]


def _print_layout_summary(summary) -> None:
    for line in summary.reports[:20]:
        console.print(f"[yellow]{line}[/]", highlight=False, soft_wrap=True)
    if len(summary.reports) > 20:
        console.print(f"[yellow]... and {len(summary.reports) - 20} more reports[/]")
    classes = ", ".join(f"{name} {count}" for name, count in summary.per_class.items())
    console.print(f"wrote {summary.layouts} layouts, {summary.instances} instances ({classes}) to [bold]{summary.out}[/]")


@layout_app.command("fit")
@friendly_errors
def layout_fit_command(
    src: SourceArgument,
    out: Annotated[Path, typer.Option(help="Layout model file to write (JSON).")],
    fmt: OptionalFormat = None,
    min_instances: Annotated[int, typer.Option(help="Classes with fewer instances fall back to a broader prior.")] = 20,
) -> None:
    """Fit a layout model: per-class counts, sizes, aspect, orientation, position, co-occurrence and rows.

    [bold]Examples[/]

      ccaug layout fit aerial/train --format dota --out aerial-layouts.json
      ccaug layout fit DOTA-512/ --out dota-layouts.json
    """
    import warnings

    from ccaug.layouts.jobs import fit_layout_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit_layout_model(src, fmt.value if fmt else None, out, min_instances=min_instances)
    for warning in caught:
        console.print(f"[yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)
    console.print(f"fitted a layout model of {len(model.categories)} classes; wrote [bold]{out}[/]")


@layout_app.command("sample")
@friendly_errors
def layout_sample_command(
    model: Annotated[Path, typer.Option(help="Layout model file from `ccaug layout fit`.")],
    n: Annotated[int, typer.Option(help="Number of layouts.")],
    out: Annotated[Path, typer.Option(help="Folder for the layouts (COCO + DOTA labels + captions.jsonl).")],
    seed: Annotated[int, typer.Option(help="Seed: the same seed samples the same layouts.")] = 0,
    size: Annotated[int | None, typer.Option(help="Image side in pixels (default: the fitted data's size).")] = None,
    recipe: RecipeOption = None,
) -> None:
    """Sample new layouts from a fitted model, with the paper's templated captions.

    [bold]Examples[/]

      ccaug layout sample --model aerial-layouts.json --n 1000 --seed 0 --out layouts/
      ccaug layout sample --model dota-layouts.json --n 500 --size 512 --out layouts-512/
      ccaug data show layouts/ --format coco --out layouts.png --layout-only
    """
    from ccaug.layouts.jobs import sample_layout_set

    constraints = _load_recipe(recipe).constraints
    _print_layout_summary(sample_layout_set(model, out, n=n, seed=seed, size=size, constraints=constraints))


@layout_app.command("perturb")
@friendly_errors
def layout_perturb_command(
    src: SourceArgument,
    n: Annotated[int, typer.Option(help="Number of layouts to write.")],
    out: Annotated[Path, typer.Option(help="Folder for the layouts (COCO + DOTA labels + captions.jsonl).")],
    fmt: OptionalFormat = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same layouts.")] = 0,
    recipe: RecipeOption = None,
) -> None:
    """Perturb real layouts: jitter, translate, rotate, scale, flip, drop, insert and duplicate instances.

    Probabilities and magnitudes come from the recipe's 'perturb' section; constraints (inside the image,
    overlap, minimum size) from its 'constraints' section.

    [bold]Examples[/]

      ccaug layout perturb aerial/train --format dota --n 1000 --seed 0 --out perturbed/
      ccaug layout perturb DOTA-512/ --n 500 --recipe aerial-layouts --out perturbed/
    """
    from ccaug.layouts.jobs import perturb_layout_set

    settings = _load_recipe(recipe)
    summary = perturb_layout_set(
        src, fmt.value if fmt else None, out, n=n, seed=seed, config=settings.perturb, constraints=settings.constraints
    )
    _print_layout_summary(summary)


@layout_app.command("compare")
@friendly_errors
def layout_compare_command(
    a: Annotated[Path, typer.Argument(help="First layout set or data set folder.")],
    b: Annotated[Path, typer.Argument(help="Second layout set or data set folder.")],
    out: Annotated[Path, typer.Option(help="Folder for the table (csv, json, md) and PNG histograms.")],
) -> None:
    """Distance between two sets' layout distributions, per class: counts, sizes, aspect, orientation,
    position, nearest-neighbour spacing and alignment.

    [bold]Examples[/]

      ccaug layout compare layouts/ aerial/val --out compare-sampled/      [dim]# sampled vs real[/]
      ccaug layout compare aerial/train aerial/val --out compare-floor/    [dim]# two real sets: the floor[/]
    """
    from ccaug.layouts.jobs import compare_layout_sets

    comparison = compare_layout_sets(a, b, out)
    comparison.print(console)
    console.print(f"wrote the table and plots to [bold]{out}[/]")


def _load_recipe(recipe: str | None):
    from ccaug.recipes import Recipe, load_recipe

    return load_recipe(recipe) if recipe else Recipe(name="defaults")


@app.command("train-generator")
@friendly_errors
def train_generator_command(
    recipe: Annotated[str, typer.Option(help="Recipe name (recipes/NAME.yaml) or file with 'generator' and 'training' sections.")],
    data: Annotated[str, typer.Option(help="Data set to train on: a folder, a registered name or 'aerial' (its train split; val layouts for the sample grids).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint/, metrics.jsonl, samples/, banks/, run.json.")],
    fmt: OptionalFormat = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides the recipe's training.max_steps).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its checkpoint.")] = False,
) -> None:
    """Train the CC-Diff generator; several GPUs with `accelerate launch -m ccaug train-generator ...`.

    [bold]Examples[/]

      ccaug train-generator --recipe tiny-aerial --data aerial/ --format dota --out runs/tiny/
      ccaug train-generator --recipe tiny-aerial --data aerial/ --out runs/tiny/ --max-steps 40000 --resume
    """
    from ccaug.pipeline.train import train_generator

    settings = _load_recipe(recipe)
    result = train_generator(
        data, fmt.value if fmt else None, out, generator_config=settings.generator,
        training_config=settings.training, resume=resume, max_steps=max_steps,
    )  # fmt: skip
    console.print(
        f"trained to step {result.step} (loss {result.loss:.4f}, {result.images_per_second:.1f} images/s); "
        f"checkpoint [bold]{result.checkpoint}[/], metrics [bold]{result.metrics}[/], "
        f"samples [bold]{result.out / 'samples'}[/]"
    )


class Task(str, Enum):
    detect = "detect"
    obb = "obb"


TaskOption = Annotated[Task, typer.Option(help="detect: axis-aligned boxes; obb: oriented boxes (YOLO-OBB).")]
ModelOption = Annotated[
    str | None,
    typer.Option(help="Model YAML to train from scratch (default yolov8n.yaml / yolov8n-obb.yaml) or a local .pt file."),
]
EpochsOption = Annotated[int, typer.Option(help="Epochs; every arm runs the same epochs of the same size.")]
ImgszOption = Annotated[int, typer.Option(help="Training and validation image size in pixels.")]
BatchOption = Annotated[int, typer.Option(help="Batch size.")]
DeviceOption = Annotated[str, typer.Option(help="'cpu', a GPU ('0') or several for Ultralytics' DDP ('0,1,2,3').")]
WorkersOption = Annotated[int, typer.Option(help="Data loader workers per process.")]


@app.command("train-detector")
@friendly_errors
def train_detector_command(
    real: Annotated[str, typer.Option(help="Real data set (folder or registered name) with 'train' and 'val' splits.")],
    out: Annotated[Path, typer.Option(help="Experiment folder: report.md, report.json, plots, runs/, data/.")],
    synthetic: Annotated[str | None, typer.Option(help="Synthetic data set (e.g. a ccaug synth folder); all its images train.")] = None,
    mix: Annotated[float, typer.Option(help="Share of synthetic images in the training set: 0.5 = 1:1 (the paper).")] = 0.5,
    real_fraction: Annotated[float | None, typer.Option(help="Keep this share of the real training images (scarce data).")] = None,
    real_n: Annotated[int | None, typer.Option(help="Keep this many real training images (scarce data).")] = None,
    augment: Annotated[list[str] | None, typer.Option(help="Add a non-generative arm: copy-paste.")] = None,
    seeds: Annotated[int, typer.Option(help="Repeat every arm with seeds 0..K-1 (each seed draws its own real subset).")] = 3,
    epoch_images: Annotated[int | None, typer.Option(help="Images per epoch in every arm (default: the largest arm's size).")] = None,
    task: TaskOption = Task.detect,
    model: ModelOption = None,
    epochs: EpochsOption = 30,
    imgsz: ImgszOption = 256,
    batch: BatchOption = 16,
    device: DeviceOption = "cpu",
    workers: WorkersOption = 2,
    real_format: Annotated[Format | None, typer.Option(help="Format of --real (default: detected).")] = None,
    synthetic_format: Annotated[Format | None, typer.Option(help="Format of --synthetic (default: detected).")] = None,
) -> None:
    """Does synthetic data buy mAP? Real-only vs real + synthetic (vs copy-paste), same budget, several seeds.

    Every arm trains the same YOLO model with the same hyper-parameters on the same number of images seen,
    and is validated on the real validation split only. The report says plainly when a gain is within noise.
    Ultralytics runs offline, with its settings in OUT/ultralytics. A rerun resumes where it stopped.

    [bold]Examples[/]

      ccaug train-detector --real aerial/ --synthetic synth/ --mix 0.5 --real-n 50 --out exp/
      ccaug train-detector --real dota --synthetic synth/ --augment copy-paste --task obb --out exp/
      ccaug train-detector --real dota --synthetic synth/ --device 0,1 --epochs 100 --imgsz 1024 --out exp/
    """
    from ccaug.detect import DetectorSettings, TrainabilityConfig, run_trainability
    from ccaug.detect.report import render_markdown

    config = TrainabilityConfig(
        real=real, synthetic=synthetic, mix=mix, real_fraction=real_fraction, real_n=real_n,
        augment=tuple(_split_list(augment)), seeds=seeds, epoch_images=epoch_images,
        real_format=real_format.value if real_format else None,
        synthetic_format=synthetic_format.value if synthetic_format else None,
        detector=DetectorSettings(
            task=task.value, model=model, epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=workers
        ),
    )  # fmt: skip
    report = run_trainability(config, out, log=lambda line: console.print(f"[bold cyan]{line}[/]", highlight=False))
    console.print(render_markdown(report).split("## Per-class")[0], highlight=False)
    console.print(f"report: [bold]{out / 'report.md'}[/] (plots beside it)")


@app.command("eval")
@friendly_errors
def eval_command(
    real: Annotated[str, typer.Option(help="Real data set (folder or registered name) with 'train' and 'val' splits.")],
    synthetic: Annotated[str, typer.Option(help="Generated data set whose annotations are the layouts it was rendered from.")],
    out: Annotated[Path, typer.Option(help="Folder for yoloscore.json, yoloscore.md and the detector.")],
    metrics: Annotated[str, typer.Option(help="Comma-separated metrics; available: yoloscore.")] = "yoloscore",
    detector: Annotated[Path | None, typer.Option(help="Local .pt detector trained on the real data (default: train one here).")] = None,
    task: TaskOption = Task.detect,
    model: ModelOption = None,
    epochs: EpochsOption = 30,
    imgsz: ImgszOption = 256,
    batch: BatchOption = 16,
    device: DeviceOption = "cpu",
    workers: WorkersOption = 2,
) -> None:
    """Measure generated images. YOLOScore: a detector trained on real images, scored on the generated ones.

    The same detector's score on the real validation images is printed beside it: the ceiling.

    [bold]Examples[/]

      ccaug eval --real aerial/ --synthetic synth/ --out eval/ --metrics yoloscore
      ccaug eval --real dota --synthetic synth/ --out eval/ --detector runs/yolo/weights/last.pt --task obb
    """
    from ccaug.detect import DetectorSettings
    from ccaug.metrics.yoloscore import render_markdown, yolo_score

    wanted = _split_list([metrics])
    unknown = sorted(set(wanted) - {"yoloscore"})
    if unknown:
        raise ValueError(f"--metrics {', '.join(unknown)}: available metrics are: yoloscore")
    settings = DetectorSettings(
        task=task.value, model=model, epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=workers
    )
    score = yolo_score(real, synthetic, out, detector=detector, settings=settings)
    console.print(render_markdown(score), highlight=False)
    console.print(f"written to [bold]{out}[/]")


class LayoutMode(str, Enum):
    sample = "sample"
    perturb = "perturb"
    real = "real"
    mix = "mix"


class VerifyPolicy(str, Enum):
    drop = "drop"
    rerender = "rerender"


@app.command("synth")
@friendly_errors
def synth_command(
    source: Annotated[str, typer.Option(help="Data set to imitate: a folder, a name registered with `ccaug data import --name`, or 'aerial'.")],
    n: Annotated[int, typer.Option("--n", help="Number of images to render.")],
    out: Annotated[Path, typer.Option(help="Output folder: DOTA (images/, labelTxt/), annotations.json, yolo/, yolo-obb/, manifest.jsonl.")],
    model: Annotated[Path | None, typer.Option(help="Generator: a train-generator run folder or its checkpoint/ (default: the one registered for SOURCE).")] = None,
    layouts: Annotated[LayoutMode | None, typer.Option(help="Where layouts come from: sampled from a fitted layout model, perturbed real ones, real ones, or a mix (default: the recipe's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice: the same seed renders the same images.")] = 0,
    batch_size: Annotated[int | None, typer.Option(help="Layouts per UNet call (default: the recipe's).")] = None,
    recipe: Annotated[str | None, typer.Option(help="Recipe with 'synth' (and 'constraints', 'perturb') sections.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Sampler: dpm++ (default, ~20 steps), euler (the paper's, 50), ddim.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    guidance_scale: Annotated[float | None, typer.Option(help="Classifier-free guidance (default: the generator's training preview value).")] = None,
    verify: Annotated[bool, typer.Option(help="Check every instance with a detector trained on the real data.")] = False,
    verify_policy: Annotated[VerifyPolicy, typer.Option(help="With --verify: drop unfound instances from the labels, or re-render the image with a new seed.")] = VerifyPolicy.drop,
    verify_detector: Annotated[Path | None, typer.Option(help="With --verify: a local .pt detector trained on the real data (default: train one into OUT/verify-detector).")] = None,
    verify_epochs: Annotated[int, typer.Option(help="With --verify and no --verify-detector: epochs of the detector trained on the real data (a small set is repeated within each epoch so that it sees at least 24,000 images in all).")] = 30,
    verify_imgsz: Annotated[int, typer.Option(help="With --verify: the detector's image size (training and checking).")] = 256,
    verify_device: Annotated[str, typer.Option(help="With --verify: the detector's device ('cpu', '0').")] = "cpu",
    num_shards: Annotated[int | None, typer.Option(help="Split the job into this many shards (without accelerate launch).")] = None,
    shard_index: Annotated[int | None, typer.Option(help="Which shard this process renders (0-based).")] = None,
    precision: Annotated[str, typer.Option(help="'no' (fp32) or 'bf16' (autocast; on a GPU).")] = "no",
    fmt: OptionalFormat = None,
) -> None:
    """Render N annotated images whose layouts imitate SOURCE, with a trained CC-Diff generator.

    Rerunning the same command resumes (Ctrl-C stops after the current batch). Several GPUs:
    `accelerate launch -m ccaug synth ...`, or `--num-shards K --shard-index I` as K separate jobs; the shards
    together write the same files one process would.

    [bold]Examples[/]

      ccaug synth --source aerial --n 1000 --out synth/
      ccaug synth --source dota --n 5000 --out synth-dota/ --model runs/dota-gen/ --layouts perturb --verify
      accelerate launch -m ccaug synth --source dota --n 50000 --out synth-dota/ --batch-size 32 --precision bf16
    """
    import dataclasses as dc

    from ccaug.detect import DetectorSettings
    from ccaug.pipeline.synth import synthesize

    settings = _load_recipe(recipe)
    changes = {
        "layouts": layouts.value if layouts else None, "batch_size": batch_size, "scheduler": scheduler,
        "steps": steps, "guidance_scale": guidance_scale, "verify": verify_policy.value if verify else None,
    }  # fmt: skip
    synth_settings = dc.replace(settings.synth, **{key: value for key, value in changes.items() if value is not None})
    result = synthesize(
        source, n, out, model=model, fmt=fmt.value if fmt else None, seed=seed, settings=synth_settings,
        constraints=settings.constraints, perturb=settings.perturb, num_shards=num_shards, shard_index=shard_index,
        precision=precision, verify_detector=verify_detector,
        detector_settings=DetectorSettings(epochs=verify_epochs, imgsz=verify_imgsz, device=verify_device),
        log=lambda line: console.print(f"[bold cyan]{line}[/]", highlight=False),
    )  # fmt: skip
    console.print(
        f"rendered {result.rendered} images in {result.seconds:.0f} s ({result.images_per_second:.2f} images/s); "
        f"{result.done} of {result.n} done"
    )
    if not result.complete:
        console.print(
            "stopped: rerun the same command to render the rest" if result.stopped
            else "this shard is done; the last shard to finish writes manifest.jsonl and the other formats"
        )  # fmt: skip
        return
    console.print("instances per class: " + ", ".join(f"{name} {count}" for name, count in result.per_class.items()))
    if verify:
        console.print(f"verification kept {100 * result.kept_share:.1f}% of the instances laid out")
    for name, path in result.files.items():
        console.print(f"{name:>12}: {path}")


def _split_list(values: list[str] | None) -> list[str]:
    """``--augment a --augment b`` and ``--augment a,b`` both give ``[a, b]``."""
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


@app.command("demo")
@friendly_errors
def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes; a rerun reuses finished work.")] = Path("ccaug-demo"),
    model: Annotated[Path | None, typer.Option(help="Generator: a train-generator run folder or its checkpoint/ (default: the one shipped in the package, if any).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    quick: Annotated[bool, typer.Option(help="A much smaller budget (used by the tests).")] = False,
) -> None:
    """The whole job on the embedded aerial data set, end to end, within 20 minutes on a 2-core CPU.

    Renders the data set, tiles large scenes, prints statistics and draws preview grids, fits and samples
    layouts, synthesises images with the generator, trains detectors on 50 real images (real only,
    + synthetic, + copy-paste; same budget) and prints the report table. Without a generator the synthesis
    is skipped and the other two detectors still train.

    [bold]Examples[/]

      ccaug demo --out ccaug-demo/
      ccaug demo --out ccaug-demo/ --model runs/gen/
    """
    from ccaug.demo import run_demo

    run_demo(out, seed=seed, quick=quick, model=model, console=console)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
