"""The trainability experiment of issue 8, point 2: do CC-Diff synthetic images buy mAP on scarce real data?

Main experiment, on the embedded aerial set (240 train / 60 val real images): 50 real training images,
real-only vs + CC-Diff synthetic vs + copy-paste, both at mix 0.5, every arm with the same budget
(--epochs x 240 images seen), YOLOv8n from its YAML, 3 seeds, once with horizontal boxes (detect) and once
with oriented boxes (obb). Then the sweep (--sweep) asks what moves the gain, one change at a time against
the main HBB experiment: the layout source (sample / perturb only), the mix ratio, the number of synthetic
images drawn from, verification (re-render until the instances are found) and the guidance scale, beside a
control (real-at-64px: the 50 real images themselves at the generator's 64 px, mixed in like synthetic ones).

The scarce set is one fixed draw of 50 of the 240 real training images, written with the 60 real val images
(and their terrain maps, for copy-paste) as OUT/real-50. Everything that learns from real data learns from
those 50 only: the detector, copy-paste's donors, the layouts that synthesis samples and perturbs, and the
generator, which must be trained on OUT/real-50 (a generator trained on all 240 images, like the shipped
default, would smuggle the other 190 into the synthetic arm). So the first run stops after writing OUT/real-50
and prints the command that trains that generator; rerun with --model pointing at it (or without --model:
train-generator registers the run as OUT/real-50's default). The seeds vary the detector's initialisation and
image order and the synthetic images drawn, not the scarce set: a user with scarce data has one such set.

Every variant is an ordinary ``ccaug synth`` folder plus an ordinary ``ccaug train-detector`` experiment,
so each row of the table can be reproduced with the CLI alone, for example the main HBB row:

  ccaug train-generator --recipe tiny-aerial --data OUT/real-50 --format dota --out runs/gen-real-50
  ccaug synth --source OUT/real-50 --model runs/gen-real-50 --n 240 --out OUT/synth/main --layouts mix --seed 0
  ccaug train-detector --real OUT/real-50 --synthetic OUT/synth/main --mix 0.5 --augment copy-paste \
      --epoch-images 240 --epochs 100 --seeds 3 --out OUT/detect/main

The real-only runs of a seed do not depend on the synthetic set (same 50 images, budget and seed), nor its
copy-paste runs at the same mix, so each trains once per task, in whichever experiment needs it first, and is
recorded under the no-generator experiment of its task; the others read it from there.
Everything is resumable: rerun the same command after an interruption. Every finished run is also recorded
in the repository (benchmarks/results/trainability/, see trainability_results.py) and restored from there on a
new machine, and the tables are built from those records, so commit them as the runs finish.

Usage:
  python benchmarks/trainability.py --out /tmp/trainability          # writes /tmp/trainability/real-50, stops
  python benchmarks/trainability.py --out /tmp/trainability --model GEN_DIR [--epochs 100] [--device 0]
  python benchmarks/trainability.py --out /tmp/trainability --sweep          # main + the sweep
  python benchmarks/trainability.py --out /tmp/trainability --jobs 2 --arms synthetic   # those arms only
  python benchmarks/trainability.py --out /tmp/trainability --table          # print the tables only
  python benchmarks/trainability.py --out /tmp/trainability --table --model GEN_DIR --curve curve.png
  python benchmarks/trainability.py --out /tmp/trainability --sweep --device 0 --jobs 6   # one GPU, 6 at once

--jobs N runs N detector trainings at once, each its own process with its own seed: one YOLOv8n on 256 px
images leaves an H100 mostly idle, so independent runs share it (6 at once kept it 96-99 % busy).

A finished synth folder is used as it is, so the detector runs can go to another machine without the
generator. Render the folders here (--render-only), copy OUT/synth/*/ there without their banks/ (OUT/real-50
is rewritten identically from the embedded set), and run the same command there with --device 0 --jobs 6.
--no-generator runs only the arms that need no synthetic images (real-only, copy-paste), in their own folders.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from trainability_results import STORE, load_runs, record_folder, record_generator, restore_runs, save_run

from ccaug.data.formats import read_dataset, write_dataset
from ccaug.data.geometry import POLY_COLUMNS
from ccaug.detect import DetectorSettings, TrainabilityConfig, run_trainability
from ccaug.detect.experiment import BASELINE, COPY_PASTE, SYNTHETIC
from ccaug.detect.report import build_report, per_class_table
from ccaug.fileio import copy_file
from ccaug.pipeline.synth_plan import SynthSettings
from ccaug.workspace import EMBEDDED, resolve_source

REAL_N = 50
SCARCE_SEED = 0  # which 50 of the 240
EPOCH_IMAGES = 240  # the full train split: the 50-image arms repeat images to see as many per epoch


@dataclass(frozen=True)
class Variant:
    """One row of the sweep: the synthetic folder it trains on and the experiment's settings."""

    name: str
    synth: str | None  # name of the synthetic folder under OUT/synth; None: the arms that need no generator
    mix: float = 0.5
    task: str = "detect"
    copy_paste: bool = False


MAIN = [
    Variant("main", "main", task="detect", copy_paste=True),
    Variant("main-obb", "main", task="obb", copy_paste=True),
]
# real-only and copy-paste alone: runnable (and timed) before a generator exists
NO_GENERATOR = [
    Variant("no-generator", None, copy_paste=True),
    Variant("no-generator-obb", None, task="obb", copy_paste=True),
]
SWEEP = [
    Variant("layouts-sample", "layouts-sample"),
    Variant("layouts-perturb", "layouts-perturb"),
    Variant("mix-0.25", "main", mix=0.25),
    Variant("mix-0.75", "main", mix=0.75),
    Variant("n-50", "n-50"),
    Variant("verify-rerender", "verify-rerender"),
    Variant("guidance-1.5", "guidance-1.5"),
    Variant("guidance-6", "guidance-6"),
    # a control, not a CC-Diff setting: the 50 real training images themselves at the generator's 64 px, i.e.
    # what a generator that reproduced its training set perfectly at its own resolution would add
    Variant("real-at-64px", "real-at-64px"),
]
MAIN_NAMES = {variant.name for variant in NO_GENERATOR + MAIN}  # per-class tables for these; the sweep's would flood
VARIANTS = {variant.name: variant for variant in NO_GENERATOR + MAIN + SWEEP}  # sources before their reusers
GENERATOR_RECORD = STORE / f"generator-real-{REAL_N}"  # the scarce set's generator, kept in the repository
GENERATOR_RESOLUTION = 64  # tiny-aerial's; the detector sees synthetic images upsampled 4x to --imgsz 256


def synth_settings(name: str) -> SynthSettings:
    """The synthesis of each synthetic folder: the main one (mixed layouts, the generator's own guidance) or
    one change to it."""
    main = SynthSettings(layouts="mix", mix={"sample": 0.5, "perturb": 0.5})
    changes = {
        "main": {},
        "layouts-sample": {"layouts": "sample"},
        "layouts-perturb": {"layouts": "perturb"},
        "verify-rerender": {"verify": "rerender"},
        "guidance-1.5": {"guidance_scale": 1.5},
        "guidance-6": {"guidance_scale": 6.0},
    }
    return dataclasses.replace(main, **changes[name])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--model",
        help="Generator trained on OUT/real-50 only (default: the one train-generator registered for that folder).",
    )
    parser.add_argument("--n-synthetic", type=int, default=240, help="Synthetic images rendered per folder.")
    # 100 epochs of 240 images: at 30 the 50- and 240-image baselines are step-limited and within noise of
    # each other (BENCHMARKS.md, headroom), so no augmentation could show a gain there
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="Ultralytics device: cpu, 0, or 0,1 (DDP).")
    parser.add_argument("--synth-batch", type=int, default=32)
    parser.add_argument("--sweep", action="store_true", help="Also run the sweep (HBB only).")
    parser.add_argument(
        "--table", action="store_true", help="Only print the tables of the finished experiments."
    )
    parser.add_argument(
        "--curve", type=Path, metavar="PNG", help="With --table: draw --model's training loss here."
    )
    parser.add_argument(
        "--no-generator", action="store_true", help="Only the real-only and copy-paste arms (no synthesis)."
    )
    parser.add_argument(
        "--render-only", action="store_true", help="Render the synthetic folders, train no detector."
    )
    parser.add_argument(
        "--variants", nargs="+", metavar="NAME", help="Only these experiments (default: all chosen)."
    )
    parser.add_argument(
        "--arms", nargs="+", metavar="ARM", choices=[BASELINE, SYNTHETIC, COPY_PASTE],
        help="Only these arms (default: every arm of each experiment), e.g. `--arms synthetic` first when a "
        "session may end before all the runs do.",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="Detector trainings run at once (processes).")
    parser.add_argument(
        "--record-generator", action="store_true",
        help="Keep --model (a finished train-generator run) in the repository, at "
        "benchmarks/results/trainability/generator-real-50 "
        "(fp16 weights, 15 MB), and stop; commit it, then render with --model pointing there.",
    )  # fmt: skip
    parser.add_argument("--run", nargs=3, metavar=("VARIANT", "ARM", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    variants = NO_GENERATOR if args.no_generator else MAIN + (SWEEP if args.sweep else [])
    if args.variants:
        unknown = set(args.variants) - set(VARIANTS)
        if unknown:
            raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}")
        variants = [variant for name, variant in VARIANTS.items() if name in args.variants]
    if args.record_generator:
        if args.model is None:
            raise SystemExit("--record-generator keeps --model: give the train-generator run folder")
        print(f"recorded: {record_generator(Path(args.model), GENERATOR_RECORD)}")
        return
    if args.run:
        name, arm, seed = args.run
        run_trainability(
            experiment_config(VARIANTS[name], args), args.out / "detect" / name, only={(arm, int(seed))}
        )
        return
    if not args.table:
        scarce = write_scarce_set(scarce_folder(args.out))
        if args.model is None and needs_rendering(variants, args) and not has_generator(scarce):
            raise SystemExit(
                f"{scarce} is written. Train the generator on it alone, then rerun this command:\n"
                f"  ccaug train-generator --recipe tiny-aerial --data {scarce} --format dota --out runs/gen-real-{REAL_N}"
            )
        started = time.perf_counter()
        if args.render_only:
            for variant in variants:
                make_synthetic(variant.synth, args)
            print(f"synthetic folders rendered in {(time.perf_counter() - started) / 60:.1f} min")
            return
        if args.jobs > 1:
            for variant in variants:
                make_synthetic(variant.synth, args)
            run_in_parallel(variants, args)
        for variant in variants:
            make_synthetic(variant.synth, args)
            run_variant(variant, args)
        print(f"all experiments done in {(time.perf_counter() - started) / 60:.1f} min")
    print_tables(list(VARIANTS.values()), args)
    if args.curve:
        if args.model is None:
            raise SystemExit("--curve draws the generator's training loss: give its run folder as --model")
        from train_default_generator import draw_curve  # lazy: it imports the generator (diffusers)

        print(
            f"curve: {draw_curve(Path(args.model) / 'metrics.jsonl', args.curve, title=f'generator of {REAL_N} real')}"
        )


# --------------------------------------------------------------------------------------------------------
# the scarce real set


def write_scarce_set(folder: Path, n: int = REAL_N, seed: int = SCARCE_SEED) -> Path:
    """`n` of the embedded set's training images (one seeded draw) and all of its val images, as a DOTA set
    with the scene list and terrain maps that copy-paste and captions read; written once."""
    if (folder / "done").is_file():
        return folder
    source, _ = resolve_source(EMBEDDED)
    dataset = read_dataset(source, "dota")
    images = dataset.images.sort_values("image_id")
    train_ids = images.loc[images["split"] == "train", "image_id"].to_numpy()
    chosen = np.sort(np.random.default_rng(seed).permutation(train_ids)[:n])
    keep = sorted([*chosen.tolist(), *images.loc[images["split"] == "val", "image_id"].tolist()])
    shutil.rmtree(folder, ignore_errors=True)
    scarce = dataset.subset(keep)
    write_dataset(scarce, folder, "dota")
    for name in ("scenes.json", "terrain_classes.json"):
        copy_file(source / name, folder / name)
    for row in scarce.images.itertuples():
        stem = Path(row.file).stem
        copy_file(
            source / row.split / "terrain" / f"{stem}.png", folder / row.split / "terrain" / f"{stem}.png"
        )
    (folder / "done").write_text("")
    return folder


def scarce_folder(out: Path) -> Path:
    return out / f"real-{REAL_N}"


def has_generator(folder: Path) -> bool:
    from ccaug.pipeline.synth import find_generator

    try:
        find_generator(None, folder, str(folder))
    except FileNotFoundError:
        return False
    return True


# --------------------------------------------------------------------------------------------------------
# synthetic folders


def make_synthetic(name: str | None, args: argparse.Namespace) -> Path | None:
    """Render (or resume) the synthetic folder `name`; ``n-50`` is the first 50 images of ``main``."""
    if name is None:
        return None
    folder = args.out / "synth" / name
    if name == "n-50":
        return first_images_of(make_synthetic("main", args), folder, 50)
    if name == "real-at-64px":
        return downsampled_real(scarce_folder(args.out), folder, GENERATOR_RESOLUTION)
    if is_finished(folder, args.n_synthetic):
        return folder  # rendered here or elsewhere: a machine that only trains detectors needs no generator
    from ccaug.pipeline.synth import synthesize  # imports diffusers

    settings = dataclasses.replace(synth_settings(name), batch_size=args.synth_batch)
    detector = DetectorSettings(epochs=args.epochs, imgsz=args.imgsz, device=args.device)
    result = synthesize(
        str(scarce_folder(args.out)), args.n_synthetic, folder, model=args.model, seed=0, settings=settings,
        precision="bf16" if args.device != "cpu" else "no", detector_settings=detector,
    )  # fmt: skip
    if not result.complete:
        raise SystemExit(
            f"{folder}: synthesis stopped at {result.done} of {result.n} images; rerun to finish"
        )
    return folder


def needs_rendering(variants: list[Variant], args: argparse.Namespace) -> bool:
    names = {"main" if variant.synth == "n-50" else variant.synth for variant in variants if variant.synth}
    names.discard("real-at-64px")
    return any(not is_finished(args.out / "synth" / name, args.n_synthetic) for name in names)


def is_finished(folder: Path, n: int) -> bool:
    """A synth folder whose last file (the summary) is written, with `n` images in its manifest."""
    manifest = folder / "manifest.jsonl"
    return (
        (folder / "summary.json").is_file()
        and manifest.is_file()
        and len(manifest.read_text().splitlines()) == n
    )


def first_images_of(source: Path, folder: Path, n: int) -> Path:
    """The first `n` images of a finished synth folder, as a DOTA set (a layout's place in the plan does
    not depend on --n, so these are the images ``ccaug synth --n 50`` would render)."""
    if (folder / "done").is_file():
        return folder
    dataset = read_dataset(source, "dota")
    ids = sorted(dataset.images["image_id"].tolist())[:n]
    shutil.rmtree(folder, ignore_errors=True)
    write_dataset(dataset.subset(ids), folder, "dota")
    (folder / "done").write_text("")
    return folder


def downsampled_real(scarce: Path, folder: Path, size: int) -> Path:
    """The scarce set's training images at `size` px (area filter) with their boxes scaled to match, as a
    DOTA set shaped like a synth folder: the resolution control of the sweep."""
    if (folder / "done").is_file():
        return folder
    real = read_dataset(scarce, "dota").split("train")
    shutil.rmtree(folder, ignore_errors=True)
    staging = folder / "staging"
    images, instances = [], []
    for row, boxes in real.iter_images():
        file = f"images/{Path(row.file).stem}.png"
        (staging / file).parent.mkdir(parents=True, exist_ok=True)
        downsample(real.image_path(row), staging / file, size)
        images.append({"image_id": row.image_id, "file": file, "width": size, "height": size, "split": ""})
        scaled = boxes.copy()
        scaled[POLY_COLUMNS] = boxes[POLY_COLUMNS].to_numpy() * np.array(
            [size / row.width, size / row.height] * 4
        )
        instances.append(scaled)
    dataset = real.replace(images=pd.DataFrame(images), instances=pd.concat(instances), root=staging)
    write_dataset(dataset, folder, "dota")
    shutil.rmtree(staging)
    (folder / "done").write_text("")
    return folder


def downsample(source: Path, target: Path, size: int) -> None:
    """`source` as a `size` x `size` RGB image (area filter: what a generator trained at `size` px saw)."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").resize((size, size), Image.Resampling.BOX).save(target)


# --------------------------------------------------------------------------------------------------------
# experiments


def experiment_config(variant: Variant, args: argparse.Namespace) -> TrainabilityConfig:
    detector = DetectorSettings(task=variant.task, epochs=args.epochs, imgsz=args.imgsz, device=args.device)
    return TrainabilityConfig(
        real=str(scarce_folder(args.out)), real_format="dota",
        synthetic=str(synthetic_folder(variant, args)) if variant.synth else None, synthetic_format="dota",
        mix=variant.mix, epoch_images=EPOCH_IMAGES, augment=(COPY_PASTE,) if variant.copy_paste else (),
        seeds=args.seeds, detector=detector,
    )  # fmt: skip


def synthetic_folder(variant: Variant, args: argparse.Namespace) -> Path | None:
    return args.out / "synth" / variant.synth if variant.synth else None


def record_owner(variant: Variant, arm: str) -> Variant:
    """The experiment whose records hold `variant`'s runs of `arm`. A seed's real-only run does not depend on
    the synthetic set or the mix (same 50 images, budget, seed and epoch size), nor its copy-paste run at the
    same mix, so each trains once per task and is recorded under the experiment that needs no generator."""
    shared = VARIANTS["no-generator-obb" if variant.task == "obb" else "no-generator"]
    if arm == BASELINE or (arm == COPY_PASTE and variant.mix == shared.mix):
        return shared
    return variant


def records_of(variant: Variant, args: argparse.Namespace) -> Path:
    return record_folder(variant.name, experiment_config(variant, args))


def restore_variant(variant: Variant, args: argparse.Namespace) -> None:
    """Bring the recorded runs of `variant` back into its claimed output folder, so that only the missing
    runs train."""
    runs = args.out / "detect" / variant.name / "runs"
    restored = left_out = 0
    for arm in experiment_config(variant, args).arms:
        records = records_of(record_owner(variant, arm), args)
        counts = restore_runs(records, runs, arm, synthetic_folder(variant, args))
        restored, left_out = restored + counts["restored"], left_out + counts["other synthetic images"]
    if restored or left_out:
        print(f"{variant.name}: {restored} finished runs restored from {STORE}"
              + (f"; {left_out} synthetic runs on other images train again" if left_out else ""))  # fmt: skip


def save_variant(variant: Variant, args: argparse.Namespace) -> None:
    """Record every finished run of `variant` in the repository (benchmarks/results/), under its owner."""
    for run_folder in sorted((args.out / "detect" / variant.name / "runs").glob("*/seed*/")):
        owner = record_owner(variant, run_folder.parent.name)
        save_run(
            run_folder,
            records_of(owner, args),
            experiment_config(owner, args),
            synthetic_folder(variant, args),
        )


def chosen_arms(variant: Variant, args: argparse.Namespace) -> list[str]:
    return [arm for arm in experiment_config(variant, args).arms if not args.arms or arm in args.arms]


def run_variant(variant: Variant, args: argparse.Namespace) -> dict:
    """Train the missing runs of `variant` and write its report; with --arms, only those arms' runs and no
    report (a report needs every arm)."""
    folder = args.out / "detect" / variant.name
    config = experiment_config(variant, args)
    run_trainability(config, folder, only=())  # claims the folder and writes its data
    restore_variant(variant, args)
    only = {(arm, seed) for arm in chosen_arms(variant, args) for seed in range(args.seeds)} if args.arms else None
    started = time.perf_counter()
    try:
        report = run_trainability(config, folder, only=only)
    finally:
        save_variant(variant, args)
    print(f"{variant.name}: {time.perf_counter() - started:.0f} s")
    return report


def run_in_parallel(variants: list[Variant], args: argparse.Namespace) -> None:
    """Every unfinished run of `variants`, `args.jobs` at a time, each in its own process (logs beside its
    run folder), seed by seed, each recorded as soon as it finishes. A run that several experiments share
    (`record_owner`) trains in the first of them; `run_variant` restores it into the others afterwards."""
    pending, owned = [], set()
    for variant in variants:
        folder = args.out / "detect" / variant.name
        run_trainability(experiment_config(variant, args), folder, only=())  # writes the shared data once
        restore_variant(variant, args)
        for seed in range(args.seeds):
            for arm in chosen_arms(variant, args):
                owner = (record_owner(variant, arm).name, arm, seed)
                if owner in owned or (folder / "runs" / arm / f"seed{seed}" / "result.json").is_file():
                    continue
                owned.add(owner)
                pending.append((variant.name, arm, seed))
    pending.sort(key=lambda job: job[2])  # seed 0 of every variant first: a stopped chain leaves whole seeds
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{len(pending)} detector runs, {args.jobs} at a time, {threads} CPU threads each")
    started = time.perf_counter()

    def run_one(job: tuple[str, str, int]) -> int:
        name, arm, seed = job
        command = [sys.executable, __file__, "--out", str(args.out), "--epochs", str(args.epochs), "--seeds",
                   str(args.seeds), "--imgsz", str(args.imgsz), "--device", args.device, "--run", name, arm, str(seed)]  # fmt: skip
        if args.model:
            command += ["--model", args.model]
        log_file = args.out / "detect" / name / "runs" / arm / f"seed{seed}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": str(threads)})  # fmt: skip
        if code == 0:
            save_variant(VARIANTS[name], args)
        print(
            f"{name} {arm} seed {seed}: {'done' if code == 0 else f'FAILED ({code}), see {log_file}'} "
            f"at {(time.perf_counter() - started) / 60:.1f} min",
            flush=True,
        )
        return code

    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(run_one, pending))
    if any(codes):
        raise SystemExit(f"{sum(1 for code in codes if code)} detector runs failed; rerun to retry them")


# --------------------------------------------------------------------------------------------------------
# tables


def print_tables(variants: list[Variant], args: argparse.Namespace) -> None:
    """One Markdown table of every experiment with recorded runs (benchmarks/results/), ready for
    BENCHMARKS.md; an experiment with fewer finished seeds than --seeds is marked partial."""
    print("\n| experiment | arm | seeds | mAP50 | mAP50-95 | gain mAP50 (paired) | gain mAP50-95 (paired) |")
    print("|---|---|---|---|---|---|---|")
    reports = {}
    for variant in variants:
        report = reports[variant.name] = recorded_report(variant, args)
        if report is None:
            continue
        partial = " (partial)" if len(report["arms"][BASELINE]["seeds"]) < args.seeds else ""
        for arm, entry in report["arms"].items():
            if arm == BASELINE and variant in SWEEP:
                continue  # the sweep's baseline is the main one
            print(
                f"| {variant.name} ({variant.task}){partial} | {arm} | {len(entry['seeds'])} | {score(entry['map50'])} | "
                f"{score(entry['map50_95'])} | {gain(entry.get('gain_map50'))} | {gain(entry.get('gain_map50_95'))} |"
            )
    for name, report in reports.items():
        if report is not None and name in MAIN_NAMES:
            print(f"\n{name}: AP50 per class, mean of the seeds above\n\n{per_class_table(report['arms'])}")


def recorded_report(variant: Variant, args: argparse.Namespace) -> dict | None:
    """The report of `variant` over its seeds whose every arm is recorded, or None if there is no such seed:
    gains are paired by seed, so a seed with a missing arm cannot count."""
    config = experiment_config(variant, args)
    runs = {}
    for arm in config.arms:
        for run in load_runs(records_of(record_owner(variant, arm), args), arm):
            runs[arm, run.seed] = run
    seeds = [seed for seed in range(args.seeds) if all((arm, seed) in runs for arm in config.arms)]
    if not seeds:
        return None
    return build_report(config.to_dict(), [runs[arm, seed] for seed in seeds for arm in config.arms])


def score(summary: dict) -> str:
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def gain(entry: dict | None) -> str:
    if entry is None:
        return "—"
    p_value = "" if entry.get("p_value") is None else f", p={entry['p_value']:.2f}"
    return f"{entry['mean']:+.3f} ± {entry['std']:.3f}{p_value}"


if __name__ == "__main__":
    main()
