"""Headroom of the embedded aerial data set, and the copy-paste baseline on scarce data (issue 6, point 6).

Two trainability experiments with one budget (EPOCHS x 240 images seen per run) and 3 seeds:

  full:   YOLOv8n from scratch on all 240 real training images (real-only)
  scarce: YOLOv8n from scratch on 50 real images, real-only and + copy-paste at mix 0.5
          (--epoch-images 240 gives the 50-image arms the same budget as the full set)

Equivalent CLI commands (what this script runs):

  ccaug data make-aerial --out aerial/ --n 300 --seed 0
  ccaug train-detector --real aerial/ --out headroom/full --epochs 30 --seeds 3
  ccaug train-detector --real aerial/ --out headroom/scarce --real-n 50 --augment copy-paste --mix 0.5 \
      --epoch-images 240 --epochs 30 --seeds 3

Usage: python benchmarks/detector_headroom.py --out /tmp/headroom [--epochs 30] [--only full|scarce] [--real-only]
       python benchmarks/detector_headroom.py --out /tmp/headroom --plot docs/detector-headroom.png
       (--plot draws the finished runs' validation curves and prints their table, without training)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ccaug.datasets.aerial import make_aerial
from ccaug.detect import DetectorSettings, TrainabilityConfig, run_trainability
from ccaug.detect.experiment import RunResult
from ccaug.detect.report import summarise
from ccaug.detect.report_plots import plot_curves

LABELS = {("full", "real-only"): "240 real", ("scarce", "real-only"): "50 real", ("scarce", "copy-paste"): "50 real + 50 copy-paste"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scarce-n", type=int, default=50)
    parser.add_argument("--only", choices=("full", "scarce"))
    parser.add_argument("--real-only", action="store_true", help="Skip the copy-paste arm (the headroom question only).")
    parser.add_argument("--device", default="cpu", help="Ultralytics device: cpu, 0, or 0,1 (its own DDP).")
    parser.add_argument("--plot", type=Path, help="Only draw the finished runs' validation curves into this PNG.")
    args = parser.parse_args()
    if args.plot:
        plot_finished_runs(args.out, args.plot)
        return
    data = args.out / "aerial"
    if not (data / "scenes.json").is_file():
        make_aerial(data, n=300, seed=0)
    workers = 2 if args.device == "cpu" else 8  # Ultralytics uses no loader workers on a CPU anyway
    detector = DetectorSettings(epochs=args.epochs, imgsz=256, batch=16, workers=workers, device=args.device)
    experiments = {
        "full": TrainabilityConfig(real=str(data), real_format="dota", seeds=args.seeds, detector=detector),
        "scarce": TrainabilityConfig(
            real=str(data), real_format="dota", seeds=args.seeds, detector=detector, real_n=args.scarce_n,
            augment=() if args.real_only else ("copy-paste",), mix=0.5, epoch_images=240,
        ),
    }  # fmt: skip
    for name, config in experiments.items():
        if args.only and name != args.only:
            continue
        started = time.perf_counter()
        report = run_trainability(config, args.out / name)
        summary = {arm: (entry["map50"], entry["map50_95"]) for arm, entry in report["arms"].items()}
        print(name, f"{time.perf_counter() - started:.0f} s", json.dumps(summary, indent=1))


def plot_finished_runs(out: Path, target: Path) -> None:
    """Every finished run of both experiments, one curve per arm (mean over its seeds, band = min..max)."""
    results = []
    for (experiment, arm), label in LABELS.items():
        for path in sorted((out / experiment / "runs" / arm).glob("seed*/result.json")):
            result = RunResult(**json.loads(path.read_text()))
            result.arm = label
            results.append(result)
    plot_curves(results, target)
    print(f"{len(results)} runs drawn into {target}\n")
    print("| arm | seeds | mAP50 per seed | mAP50 mean ± std | mAP50-95 mean ± std | wall time per run |")
    print("|---|---|---|---|---|---|")
    for label in dict.fromkeys(LABELS.values()):
        runs = [result for result in results if result.arm == label]
        if runs:
            map50, map95 = summarise([r.map50 for r in runs]), summarise([r.map50_95 for r in runs])
            seeds = ", ".join(f"{r.map50:.3f}" for r in runs)
            minutes = sum(r.seconds for r in runs) / len(runs) / 60
            print(f"| {label} | {len(runs)} | {seeds} | {map50['mean']:.3f} ± {map50['std']:.3f} | "
                  f"{map95['mean']:.3f} ± {map95['std']:.3f} | {minutes:.1f} min |")


if __name__ == "__main__":
    main()
