"""Why does the synthetic arm lose? Resolution and rendering, told apart on the same layouts (issue 8, point 2).

The trainability experiment's generator draws 64 px images and the detector trains at 256 px, so Ultralytics
upsamples every synthetic image 4x. This probe trains nothing: it validates the finished detectors of a
trainability experiment on three views of the same 60 real validation layouts,

  native    the real validation images as they are (256 px): the experiment's own score;
  64px      the same images after a round trip through the generator's resolution (area filter, saved at
            64 px; the labels are normalised, so they stay, and Ultralytics upsamples the images exactly as it
            did the synthetic ones): what a perfect generator at 64 px could at best look like;
  rendered  (with --model) the generator's own images of those layouts (``ccaug synth --layouts real`` on
            the validation split): real layouts, generated pixels, at 64 px.

native → 64px is what the resolution costs; 64px → rendered is what the rendering costs. The rendered view's
reference banks are built from the validation images themselves (synth builds them from its source), which
can only flatter the rendering.

Usage: python benchmarks/fidelity_probe.py --experiment runs/trainability/detect/main [--model runs/gen-real-50]
       (writes <experiment>/fidelity-probe/{val-64px/, val-layouts/, rendered/, probe.json}, prints a table)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import yaml
from trainability import GENERATOR_RESOLUTION, downsample

from ccaug.data.formats import read_dataset, write_dataset
from ccaug.detect import DetectorSettings
from ccaug.detect.yolo import evaluate
from ccaug.fileio import copy_file, write_json, write_text


def round_trip_val(real: Path, out: Path, size: int) -> Path:
    """A copy of the experiment's YOLO ``val`` split whose images are `size` px; returns its data YAML."""
    if (out / "data.yaml").is_file():
        return out / "data.yaml"
    config = yaml.safe_load((real / "data.yaml").read_text())
    images = out / "images" / "val"
    shutil.rmtree(out, ignore_errors=True)
    images.mkdir(parents=True)
    shutil.copytree(real / "labels" / "val", out / "labels" / "val", ignore=shutil.ignore_patterns("*.cache"))
    for path in sorted((real / "images" / "val").iterdir()):
        downsample(path, images / f"{path.stem}.png", size)
    write_text(out / "data.yaml", yaml.safe_dump({"train": "images/val", "val": "images/val", "names": config["names"]}))
    return out / "data.yaml"


def val_layouts_source(scarce: Path, out: Path) -> Path:
    """The scarce set's validation split as a source for ``synth --layouts real`` (which reads the train
    split), with the scene list re-keyed to match, so each layout keeps its scene caption."""
    if (out / "scenes.json").is_file():
        return out
    val = read_dataset(scarce, "dota").split("val")
    shutil.rmtree(out, ignore_errors=True)
    write_dataset(val.replace(images=val.images.assign(split="train")), out, "dota")
    copy_file(scarce / "terrain_classes.json", out / "terrain_classes.json")
    scenes = json.loads((scarce / "scenes.json").read_text())
    write_json(out / "scenes.json", {f"train/{key.removeprefix('val/')}": kind for key, kind in scenes.items() if key.startswith("val/")}, indent=1)
    return out


def render_val_layouts(scarce: Path, model: str, probe: Path, task: str) -> Path:
    """The generator's images of the validation layouts (resumable); returns their YOLO data YAML."""
    from ccaug.pipeline.synth import synthesize  # imports diffusers
    from ccaug.pipeline.synth_plan import SynthSettings

    source = val_layouts_source(scarce, probe / "val-layouts")
    n = int((read_dataset(source, "dota").images["split"] == "train").sum())
    result = synthesize(str(source), n, probe / "rendered", model=model, seed=0, settings=SynthSettings(layouts="real"))
    if not result.complete:
        raise SystemExit(f"{probe / 'rendered'}: synthesis stopped at {result.done} of {n} images; rerun to finish")
    return probe / "rendered" / ("yolo-obb" if task == "obb" else "yolo") / "data.yaml"


def finished_runs(experiment: Path) -> list[tuple[str, int, Path]]:
    """(arm, seed, final weights) of every run whose result.json exists."""
    runs = []
    for result in sorted((experiment / "runs").glob("*/seed*/result.json")):
        arm, seed = result.parent.parent.name, int(result.parent.name.removeprefix("seed"))
        runs.append((arm, seed, result.parent / "weights" / "last.pt"))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, required=True, help="A trainability experiment folder.")
    parser.add_argument("--model", help="The experiment's generator: also score its images of the val layouts.")
    parser.add_argument("--size", type=int, default=GENERATOR_RESOLUTION, help="The generator's resolution (px).")
    args = parser.parse_args()
    experiment = json.loads((args.experiment / "experiment.json").read_text())
    settings = experiment["detector"]
    detector = DetectorSettings(task=settings["task"], imgsz=settings["imgsz"], batch=settings["batch"], workers=0)
    real = args.experiment / "data" / "real"
    probe = args.experiment / "fidelity-probe"
    views = {"native": real / "data.yaml", f"{args.size}px": round_trip_val(real, probe / f"val-{args.size}px", args.size)}
    if args.model:
        views["rendered"] = render_val_layouts(Path(experiment["real"]), args.model, probe, detector.task)

    results = []
    for arm, seed, weights in finished_runs(args.experiment):
        for view, data_yaml in views.items():
            evaluation = evaluate(weights, data_yaml, detector, probe / "val" / f"{arm}-seed{seed}-{view}")
            results.append({"arm": arm, "seed": seed, "view": view, **evaluation.to_dict()})
            print(f"{arm} seed {seed} on the {view} view: mAP50 {evaluation.map50:.3f}", flush=True)
    write_json(probe / "probe.json", results, indent=1)
    print(render_table(results, list(views)))


def render_table(results: list[dict], views: list[str]) -> str:
    """mAP50 and mAP50-95 (mean ± std over seeds) of each arm's detectors on each view."""
    arms = list(dict.fromkeys(row["arm"] for row in results))
    header = " | ".join(f"{view}: mAP50 | {view}: mAP50-95" for view in views)
    lines = [f"| arm | seeds | {header} |", "|---|---|" + "---|" * 2 * len(views)]
    for arm in arms:
        cells = []
        for view in views:
            for key in ("map50", "map50_95"):
                values = [row[key] for row in results if row["arm"] == arm and row["view"] == view]
                spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
                cells.append(f"{statistics.mean(values):.3f}{spread}")
        seeds = sorted({row["seed"] for row in results if row["arm"] == arm})
        lines.append(f"| {arm} | {', '.join(map(str, seeds))} | {' | '.join(cells)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
