"""The default generator shipped for the embedded aerial data set (issue 8): train, export, curve, quality.

One resumable command. Each stage is skipped when its output is there and current, so a run cut off by a
time limit is finished by the same command (training continues from its last checkpoint, every 1,000 steps):

  1. train    the recipe (tiny-aerial) on the embedded ``aerial`` set (300 images of 256 px, seed 0) into RUN;
  2. export   RUN/checkpoint's config.json + model.safetensors (EMA weights) into the package folder
              (--ship-to, default ccaug/datasets/aerial/generator/), refused above 40 MB, with sampling.json
              beside them: the sampler it was previewed with (synth reads the guidance there) and provenance;
  3. curve    training loss against step, raw and smoothed, from RUN/metrics.jsonl (--curve);
  4. quality  --eval-n images synthesized with the exported generator (RUN/eval-synth), then YOLOScore: a
              YOLOv8n trained on the real train split (or --detector) scored on them against their layouts,
              beside the same detector on the real val images (the ceiling) and on the real val images shrunk
              to the generator's resolution (the ceiling at that resolution) -> RUN/quality.json.
It ends with a Markdown block for BENCHMARKS.md (also written to RUN/benchmarks.md).

The shipped generator (one GPU, found automatically; bf16 autocast):

    python benchmarks/train_default_generator.py --run runs/default-generator --precision bf16 --num-workers 8

Training alone is the same as ``ccaug train-generator --recipe tiny-aerial --data aerial --out RUN`` with the
recipe's ``training.mixed_precision`` set to ``bf16``. Several GPUs: ``accelerate launch`` trains, exports and
draws; YOLOScore then runs in one process, from the same command without the launcher (stages done are skipped).
The effective batch is then 16 per GPU, so it is not the shipped recipe:

    accelerate launch --num_processes 4 benchmarks/train_default_generator.py --run runs/dg-4gpu --precision bf16
    python benchmarks/train_default_generator.py --run runs/dg-4gpu --precision bf16

A toy run that checks every stage on a CPU in minutes (never ship it into the package folder):

    CCAUG_HOME=/tmp/toy/home python benchmarks/train_default_generator.py --run /tmp/toy/run --max-steps 2 \\
        --eval-n 4 --detector-epochs 1 --ship-to /tmp/toy/generator --curve /tmp/toy/curve.png
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import json
import os
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from PIL import Image

import ccaug
from ccaug.data import read_dataset, write_dataset
from ccaug.data.dataset import Dataset
from ccaug.data.geometry import POLY_COLUMNS
from ccaug.data.stats_plots import new_figure
from ccaug.datasets.aerial.shipped import (
    SHIPPED_GENERATOR,
    SamplingDefaults,
    read_sampling_defaults,
    write_sampling_defaults,
)
from ccaug.detect import DetectorSettings
from ccaug.fileio import atomic_path, copy_file, save_image, swap_in_folder, write_json, write_text
from ccaug.metrics.yoloscore import yolo_score
from ccaug.pipeline.synth import find_generator, synthesize
from ccaug.recipes import Recipe, load_recipe
from ccaug.workspace import EMBEDDED, resolve_source

REPO = Path(__file__).resolve().parents[1]
MAX_SHIPPED_BYTES = 40_000_000  # issue 8: the package carries at most ~40 MB of weights
SHIPPED_FILES = ("config.json", "model.safetensors", "sampling.json")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=REPO / "runs" / "default-generator",
        help="The training run folder; the evaluation goes inside it.",
    )
    parser.add_argument("--recipe", default="tiny-aerial")
    parser.add_argument("--max-steps", type=int, help="Optimizer steps (default: the recipe's).")
    parser.add_argument(
        "--precision",
        choices=("no", "bf16"),
        help="Training autocast (default: the recipe's; bf16 on a GPU).",
    )
    parser.add_argument("--num-workers", type=int, help="Data-loader workers (default: the recipe's).")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        help="Steps between checkpoints (default: the recipe's; a CPU run cut off by a session limit "
        "wants fewer, e.g. 250, so that less is lost).",
    )
    parser.add_argument(
        "--ship-to", type=Path, default=SHIPPED_GENERATOR, help="Folder the generator is exported into."
    )
    parser.add_argument("--curve", type=Path, default=REPO / "docs" / "default-generator-curve.png")
    parser.add_argument("--eval-n", type=int, default=200, help="Images synthesized for YOLOScore.")
    parser.add_argument(
        "--detector",
        type=Path,
        help="A local .pt detector trained on the real train split (default: train one).",
    )
    parser.add_argument("--detector-epochs", type=int, default=30)
    args = parser.parse_args()
    command = shlex.join(["python", "benchmarks/train_default_generator.py", *sys.argv[1:]])

    recipe = load_recipe(args.recipe)
    changes = {
        "mixed_precision": args.precision,
        "num_workers": args.num_workers,
        "checkpoint_every": args.checkpoint_every,
    }
    training = dataclasses.replace(recipe.training, **{k: v for k, v in changes.items() if v is not None})
    max_steps = args.max_steps or training.max_steps
    state = PartialState()  # one process, or one per GPU under accelerate launch

    data_seconds = render_embedded_set() if state.is_main_process else None  # once, not by every process
    state.wait_for_everyone()
    train_stage(args.run, recipe, training, max_steps, command)
    if state.is_main_process:
        # recorded only now: a new run folder must be empty when training claims it
        if data_seconds is not None:
            record_stage(args.run, "data", data_seconds, device=device_name())
        step, planned = checkpoint_step(args.run), recipe.training.max_steps
        if args.ship_to.resolve() == SHIPPED_GENERATOR.resolve() and step < planned:
            print(f"note: shipping a checkpoint of {step} steps, short of the recipe's {planned}")
        export_stage(args.run, args.ship_to, recipe)
        draw_curve(args.run / "metrics.jsonl", args.curve, title=f"{recipe.name} on {EMBEDDED}")
        print(f"curve: {args.curve}")
    state.wait_for_everyone()
    if state.num_processes > 1:
        print("the quality stage runs in one process: run the same command without accelerate launch")
        return
    quality = quality_stage(args.run, args.ship_to, recipe, args.eval_n, args.detector, args.detector_epochs)
    block = benchmarks_block(args.run, args.ship_to, args.curve, recipe, quality)
    write_text(args.run / "benchmarks.md", block)
    print(block)


# --------------------------------------------------------------------------------------------------------
# 1. train


def render_embedded_set() -> float | None:
    """Render the embedded set into the workspace if it is not there yet; the seconds it took, or None."""
    folder, _ = resolve_source(EMBEDDED, render=False)
    if (folder / "scenes.json").is_file():
        return None
    started = time.perf_counter()
    resolve_source(EMBEDDED)
    seconds = time.perf_counter() - started
    print(f"data: rendered the embedded set into {folder} in {seconds:.0f} s")
    return seconds


def train_stage(run: Path, recipe: Recipe, training, max_steps: int, command: str) -> None:
    """Train into `run`, or continue the run there; nothing when it has reached `max_steps`."""
    from ccaug.pipeline.train import train_generator

    step = checkpoint_step(run)
    if step >= max_steps:
        print(f"train: done already ({run} is at step {step})")
        return
    if step == 0 and (run / "run.json").is_file() and PartialState().is_main_process:
        # Killed before its first checkpoint: nothing to resume. The reference banks are kept and reused.
        for name in ("run.json", "metrics.jsonl", "samples", "checkpoint.tmp"):
            if (run / name).is_dir():
                shutil.rmtree(run / name)
            else:
                (run / name).unlink(missing_ok=True)
    PartialState().wait_for_everyone()
    started = time.perf_counter()
    result = train_generator(
        EMBEDDED, None, run, generator_config=recipe.generator, training_config=training, resume=step > 0,
        max_steps=max_steps,
    )  # fmt: skip
    if PartialState().is_main_process:
        record_stage(run, "train", time.perf_counter() - started, command=command, device=device_name(),
                     steps=[step, result.step], images_per_second=result.images_per_second)  # fmt: skip
    print(f"train: step {result.step}, loss {result.loss:.4f}, {result.images_per_second:.3g} images/s")


def checkpoint_step(run: Path) -> int:
    """The step of the run's checkpoint (0 when it has none yet)."""
    for name in ("checkpoint", "checkpoint.old"):  # .old: a crash between the two renames of a save
        state = run / name / "training_state.json"
        if state.is_file():
            return int(json.loads(state.read_text())["step"])
    return 0


# --------------------------------------------------------------------------------------------------------
# 2. export


def export_stage(run: Path, ship_to: Path, recipe: Recipe) -> None:
    checkpoint = run / "checkpoint"
    if (ship_to / "sampling.json").is_file() and all(
        (ship_to / name).is_file() and filecmp.cmp(checkpoint / name, ship_to / name, shallow=False)
        for name in ("config.json", "model.safetensors")
    ):
        print(f"export: {ship_to} holds this checkpoint already")
        return
    synth = recipe.synth
    guidance = synth.guidance_scale if synth.guidance_scale is not None else recipe.training.guidance_scale
    export_generator(run, ship_to, guidance_scale=guidance, scheduler=synth.scheduler, steps=synth.steps,
                     recipe=recipe.name)  # fmt: skip
    print(f"export: {ship_to}")


def export_generator(
    run: Path, ship_to: Path, *, guidance_scale: float, scheduler: str, steps: int, recipe: str
) -> Path:
    """Copy the run's generator into `ship_to` with its ``sampling.json``; the folder is swapped in whole,
    so a reader sees the old generator or the new one, never a mix."""
    checkpoint = run / "checkpoint"
    size = (checkpoint / "model.safetensors").stat().st_size
    if size > MAX_SHIPPED_BYTES:
        raise ValueError(
            f"{checkpoint}/model.safetensors is {size / 1e6:.1f} MB, over the {MAX_SHIPPED_BYTES / 1e6:.0f} MB the "
            "package may carry; ship a smaller architecture (fewer unet_channels or max_instances)"
        )
    others = (
        sorted(p.name for p in ship_to.iterdir() if p.name not in SHIPPED_FILES) if ship_to.is_dir() else []
    )
    if others:
        raise FileExistsError(
            f"{ship_to} holds other files ({', '.join(others[:5])}); give an empty or generator folder"
        )
    staging = ship_to.with_name(ship_to.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for name in ("config.json", "model.safetensors"):
        copy_file(checkpoint / name, staging / name)
    defaults = SamplingDefaults(guidance_scale, scheduler, steps, provenance(run, recipe))
    write_sampling_defaults(staging, defaults)
    swap_in_folder(staging, ship_to)
    return ship_to


def provenance(run: Path, recipe: str) -> dict[str, Any]:
    """Where the checkpoint of `run` came from: the command, its steps and loss, when and on what."""
    state = json.loads((run / "checkpoint" / "training_state.json").read_text())
    steps, losses = read_losses(run / "metrics.jsonl")
    calls = read_stages(run).get("train", [])
    return {
        "command": calls[-1]["command"] if calls else None,
        "recipe": recipe,
        "data": f"{EMBEDDED} (the embedded set: 300 images of 256 px, seed 0; its train split)",
        "steps": state["step"],
        "images_seen": state["images_seen"],
        "final_loss": losses[-1] if losses else None,
        "final_loss_smoothed": float(np.mean(losses[-max(1, len(losses) // 10) :])) if losses else None,
        "train_seconds": round(sum(call["seconds"] for call in calls), 1) if calls else None,
        "device": calls[-1]["device"] if calls else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ccaug": ccaug.__version__,
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------------------------------------
# 3. the training curve


def read_losses(metrics: Path) -> tuple[list[int], list[float]]:
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [int(r["step"]) for r in records], [float(r["loss"]) for r in records]


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over `window` points (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def draw_curve(metrics: Path, png: Path, title: str) -> Path:
    """Loss against step, as logged (every ``log_every`` steps) and smoothed over a twentieth of the run."""
    steps, losses = read_losses(metrics)
    window = max(1, len(losses) // 20)
    figure = new_figure(6.4, 3.6)
    ax = figure.subplots()
    marker = "o" if len(steps) <= 20 else None  # a short run's few points stay visible
    ax.plot(steps, losses, color="#4c72b0", alpha=0.35, linewidth=0.8, marker=marker, label="logged")
    smoothed = smooth(losses, window)
    ax.plot(steps, smoothed, color="#4c72b0", linewidth=2.0, label=f"mean of the last {window} logged")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (MSE to the target)")
    ax.set_title(f"{title}: final loss {losses[-1]:.4f} (smoothed {smoothed[-1]:.4f})")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    with atomic_path(png) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return png


# --------------------------------------------------------------------------------------------------------
# 4. quality: YOLOScore of the exported generator's images


def quality_stage(
    run: Path, ship_to: Path, recipe: Recipe, eval_n: int, detector: Path | None, detector_epochs: int
) -> dict:
    source, _ = resolve_source(EMBEDDED)
    generator = find_generator(ship_to, source, EMBEDDED)
    device = "0" if torch.cuda.is_available() else "cpu"
    workers = min(8, os.cpu_count() or 1)
    settings = DetectorSettings(epochs=detector_epochs, imgsz=256, batch=16, device=device, workers=workers)
    key = {"model_sha256": generator.sha256, "eval_n": eval_n, "detector": str(detector) if detector else None,
           "detector_settings": settings.to_dict()}  # fmt: skip
    path = run / "quality.json"
    if path.is_file() and {k: v for k, v in json.loads(path.read_text()).items() if k in key} == key:
        print(f"quality: done already ({path})")
        return json.loads(path.read_text())

    synth_out = run / "eval-synth"
    if not _holds_synth_of(synth_out, generator.sha256, eval_n):
        shutil.rmtree(synth_out, ignore_errors=True)
    # yolo_score reuses a set it has written; these change with the images
    for stale in (run / "yoloscore" / "data" / "synthetic", run / "yoloscore-lowres" / "data"):
        shutil.rmtree(stale, ignore_errors=True)
    started = time.perf_counter()
    synth_settings = dataclasses.replace(recipe.synth, guidance_scale=None)  # the exported sampling.json's
    result = synthesize(EMBEDDED, eval_n, synth_out, model=ship_to, seed=0, settings=synth_settings)
    record_stage(run, "eval-synth", time.perf_counter() - started, images=result.rendered,
                 images_per_second=result.images_per_second, device=device_name())  # fmt: skip

    started = time.perf_counter()
    score = yolo_score(
        source, synth_out, run / "yoloscore", detector=detector, settings=settings, real_format="dota"
    )
    lowres = shrink_val_split(source, run / "eval-real-lowres", generator.config.resolution)
    at_resolution = yolo_score(source, lowres, run / "yoloscore-lowres", detector=score.detector, settings=settings,
                               real_format="dota", synthetic_format="dota")  # fmt: skip
    record_stage(run, "yoloscore", time.perf_counter() - started, device=device_name())
    quality = {
        **key,
        "resolution": generator.config.resolution,
        "synth": {"images": eval_n, "guidance_scale": generator.guidance_scale, "scheduler": synth_settings.scheduler,
                  "steps": synth_settings.steps, "layouts": synth_settings.layouts, "seed": 0},
        "yoloscore": _scores(score.synthetic),
        "real_val": _scores(score.real),
        "real_val_at_generator_resolution": _scores(at_resolution.synthetic),
        "detector_used": score.detector,
        "files": {"synthetic": str(synth_out), "yoloscore": str(run / "yoloscore" / "yoloscore.md")},
    }  # fmt: skip
    write_json(path, quality, indent=2)
    return quality


def _holds_synth_of(out: Path, sha256: str, n: int) -> bool:
    """Whether `out` is a synth run of this generator with `n` images (finished or not)."""
    if not (out / "synth.json").is_file() or not (out / "plan.json").is_file():
        return False
    return json.loads((out / "synth.json").read_text())["model"]["sha256"] == sha256 and (
        json.loads((out / "plan.json").read_text())["n"] == n
    )


def _scores(evaluation) -> dict[str, float]:
    return {"map50": evaluation.map50, "map50_95": evaluation.map50_95}


def shrink_val_split(source: Path, out: Path, size: int) -> Path:
    """The real val images resized to `size`² (bilinear, as training resizes them) with their boxes scaled:
    what a perfect generator at that resolution would render, so the fair ceiling for its YOLOScore."""
    dataset = read_dataset(source, "dota").split("val")
    shutil.rmtree(out, ignore_errors=True)
    images, instances = [], []
    for image, rows in dataset.iter_images():
        file = f"images/{Path(image['file']).stem}.png"
        with Image.open(dataset.image_path(image)) as pixels:
            save_image(
                out / "shrunk" / file, pixels.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            )
        scale = np.tile([size / image["width"], size / image["height"]], 4)
        images.append(
            {"image_id": image["image_id"], "file": file, "width": size, "height": size, "split": "val"}
        )
        for polygon, category in zip(
            rows[POLY_COLUMNS].to_numpy(dtype=float) * scale, rows["category"].astype(str)
        ):
            instances.append({"image_id": image["image_id"], "category": category, "polygon": polygon})
    shrunk = Dataset.from_records(images, instances, dataset.categories, root=out / "shrunk")
    write_dataset(shrunk, out / "set", "dota")
    return out / "set"


# --------------------------------------------------------------------------------------------------------
# the record: stage timings and the Markdown block


def record_stage(run: Path, stage: str, seconds: float, **details: Any) -> None:
    """Append one call of `stage` to RUN/stages.json (a resumed stage has several)."""
    stages = read_stages(run)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stages.setdefault(stage, []).append({"seconds": round(seconds, 1), "date": now, **details})
    write_json(run / "stages.json", stages, indent=2)


def read_stages(run: Path) -> dict[str, list[dict]]:
    path = run / "stages.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} × {torch.cuda.device_count()}"
    return f"CPU ({os.cpu_count()} cores)"


def benchmarks_block(run: Path, ship_to: Path, curve: Path, recipe: Recipe, quality: dict) -> str:
    """The BENCHMARKS.md section: the command, the run, the shipped files and YOLOScore against its ceilings."""
    defaults = read_sampling_defaults(ship_to)
    origin = defaults.provenance
    stages = read_stages(run)
    _, losses = read_losses(run / "metrics.jsonl")
    rates = [call["images_per_second"] for call in stages.get("train", []) if call.get("images_per_second")]
    size = (ship_to / "model.safetensors").stat().st_size
    train_minutes = (origin["train_seconds"] or 0) / 60
    calls = len(stages.get("train", []))
    synth_seconds = sum(call["seconds"] for call in stages.get("eval-synth", []))
    score_seconds = sum(call["seconds"] for call in stages.get("yoloscore", []))
    res = quality["resolution"]
    rows = [
        ("device", origin["device"]),
        ("steps × batch", f"{origin['steps']:,} steps, {origin['images_seen']:,} images seen (batch {recipe.training.batch_size})"),
        ("training wall time", f"{train_minutes:.1f} min in {calls} call(s), {np.mean(rates) if rates else float('nan'):.3g} images/s"),
        ("final loss", f"{origin['final_loss']:.4f} (mean of the last 10 % of logged steps: {origin['final_loss_smoothed']:.4f}, {len(losses)} logged)"),
        ("shipped weights", f"{size / 1e6:.1f} MB at `{_shown(ship_to)}`, sampled with {defaults.scheduler} {defaults.steps} steps, guidance {defaults.guidance_scale}"),
        ("evaluation", f"{quality['synth']['images']} images of {res} px synthesized in {synth_seconds:.0f} s; YOLOScore (detector included) {score_seconds:.0f} s"),
    ]  # fmt: skip
    ys, real, low = quality["yoloscore"], quality["real_val"], quality["real_val_at_generator_resolution"]
    detector = quality["detector_settings"]
    trained = "given with --detector" if quality["detector"] else "trained here on the 240 real train images"
    lines = [
        f"### Default generator for `{EMBEDDED}` ({recipe.name}, {origin['date'][:10]})",
        "",
        "```",
        origin["command"] or "(trained outside this script)",
        "```",
        "",
        "| what | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        f"YOLOScore: a detector {trained} (`{quality['detector_used']}`; {detector['model']}, "
        f"{detector['epochs']} epochs, imgsz {detector['imgsz']}), scored on the generated images against their layouts.",
        "",
        "| images | mAP50 | mAP50-95 |",
        "|---|---|---|",
        f"| {quality['synth']['images']} generated, {res} px (YOLOScore) | {ys['map50']:.3f} | {ys['map50_95']:.3f} |",
        f"| real val shrunk to {res} px (ceiling at the generator's resolution) | {low['map50']:.3f} | {low['map50_95']:.3f} |",
        f"| real val, 256 px (ceiling) | {real['map50']:.3f} | {real['map50_95']:.3f} |",
        "",
        f"![training curve]({_shown(curve)})",
    ]
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    """A path as BENCHMARKS.md shows it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


if __name__ == "__main__":
    main()
