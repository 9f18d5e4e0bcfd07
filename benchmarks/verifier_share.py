"""What share of laid-out instances the `ccaug synth --verify` detector finds, on real and on synthetic images.

The share kept by ``--verify`` mixes two things: how well the generator draws an instance, and how well the
verifier sees at that resolution. This script separates them by scoring, with the same detector and the same
matching rule as ``ccaug synth`` (a detection of the instance's class with IoU >= 0.5 at score >= 0.25):

  - real images at their own size and shrunk to the generator's resolution (the ceiling at that size),
  - a synthetic folder (images at the generator's resolution against their layouts).

Usage (the trainability sweep's verifier, the scarce set's val images, the main synthetic folder):

  python benchmarks/verifier_share.py \
      --weights runs/trainability/synth/verify-rerender/verify-detector/weights/last.pt \
      --real runs/trainability/real-50 --synthetic runs/trainability/synth/main --size 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.formats import read_dataset
from ccaug.pipeline.synth_plan import SynthSettings
from ccaug.pipeline.verify import InstanceVerifier

BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="the verifier's weights (last.pt)")
    parser.add_argument("--real", type=Path, required=True, help="a DOTA set; its 'val' split is scored")
    parser.add_argument("--synthetic", type=Path, nargs="*", default=[], help="ccaug synth folders")
    parser.add_argument("--size", type=int, default=64, help="the generator's resolution, in pixels")
    parser.add_argument("--imgsz", type=int, default=256, help="the verifier's input size (synth's default)")
    args = parser.parse_args()

    real = read_dataset(args.real, "dota").split("val")
    rows = [(f"{args.real} val, own size", share_found(real, args, None))]
    rows.append((f"{args.real} val, shrunk to {args.size} px", share_found(real, args, args.size)))
    for folder in args.synthetic:
        rows.append((f"{folder} ({args.size} px)", share_found(read_dataset(folder, "dota"), args, None)))

    categories = list(real.categories)
    print("| images | instances | found | " + " | ".join(categories) + " |")
    print("|---|---|---|" + "---|" * len(categories))
    for name, (found, per_class) in rows:
        shares = " | ".join(f"{per_class[c][0] / per_class[c][1]:.2f}" if per_class[c][1] else "—" for c in categories)
        total = sum(n for _, n in per_class.values())
        print(f"| {name} | {total:,} | {found / total:.3f} | {shares} |")


def share_found(dataset: Dataset, args: argparse.Namespace, size: int | None) -> tuple[int, dict[str, list[int]]]:
    """(instances found, {category: [found, laid out]}) over `dataset`'s images, shrunk to `size` if given."""
    settings = SynthSettings()
    verifier = InstanceVerifier(
        args.weights, list(dataset.categories), imgsz=args.imgsz, conf=settings.verify_conf, iou=settings.verify_iou
    )
    per_class = {name: [0, 0] for name in dataset.categories}
    batch: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def score() -> None:
        images, labels, polygons = zip(*batch)
        for mask, codes in zip(verifier.found(np.stack(images), labels, polygons), labels):
            for code, hit in zip(codes, mask):
                name = dataset.categories[code]
                per_class[name][0] += int(hit)
                per_class[name][1] += 1
        batch.clear()

    for row, instances in dataset.iter_images():
        image, scale = load(dataset.image_path(row), size)
        polygons = dataset.replace(instances=instances).polygons * scale
        batch.append((image, instances["category"].cat.codes.to_numpy(), polygons))
        if len(batch) == BATCH:
            score()
    if batch:
        score()
    return sum(hit for hit, _ in per_class.values()), per_class


def load(path: Path, size: int | None) -> tuple[np.ndarray, float]:
    """An RGB image, shrunk to `size` x `size` with the area filter the generator's training data had, and the
    factor its coordinates scale by (square images)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is None:
            return np.asarray(image), 1.0
        return np.asarray(image.resize((size, size), Image.Resampling.BOX)), size / image.width


if __name__ == "__main__":
    main()
