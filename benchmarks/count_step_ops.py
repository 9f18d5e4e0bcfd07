"""How many operations one generator training step dispatches, and how many of them wait for the device.

On a GPU every dispatched operation costs host time (Python, the dispatcher, autograd, a kernel launch)
whatever its size, so a small model at a small batch is bound by this count, not by arithmetic. The count
is the same on any device, so this runs on the CPU: one warmed-up training step (forward and backward) of a
recipe's generator on a real batch, under torch.profiler.

    python benchmarks/count_step_ops.py --data runs/trainability/real-50 --format dota [--recipe tiny-aerial]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from ccaug.layouts.layout import read_layout_dataset
from ccaug.model.generator import CCDiffGenerator
from ccaug.pipeline.data import GeneratorTrainingData, collate
from ccaug.pipeline.run_folder import load_or_build_banks
from ccaug.pipeline.text_embedding import HashedCaptionEmbedder
from ccaug.recipes import load_recipe

# the host waits for the device: .item(), int(tensor), bool(tensor), and every output whose size depends on the data
HOST_SYNCS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::unique_consecutive")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--format", default=None)
    parser.add_argument("--recipe", default="tiny-aerial")
    parser.add_argument("--batch", type=int, help="default: the recipe's batch size")
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    config, training = recipe.generator, recipe.training
    torch.manual_seed(0)
    generator = CCDiffGenerator(config)
    dataset = read_layout_dataset(args.data, args.format)
    dataset = dataset.split("train") if "train" in dataset.splits else dataset
    embed = HashedCaptionEmbedder()
    with tempfile.TemporaryDirectory() as banks:
        instance_bank, background_bank = load_or_build_banks(dataset, Path(banks), config, embed, False)
    data = GeneratorTrainingData(
        dataset, categories=config.categories, resolution=config.resolution, max_instances=config.max_instances,
        instance_bank=instance_bank, background_bank=background_bank, embed_text=embed, top_k=training.top_k,
        seed=0, flip=training.flip,
    )  # fmt: skip
    batch = collate([data[i % len(data)] for i in range(args.batch or training.batch_size)])
    schedule = generator.make_scheduler()
    noise = torch.Generator().manual_seed(0)
    generator.training_loss(batch, schedule, noise).backward()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        generator.training_loss(batch, schedule, noise).backward()

    events = profiler.events()
    leaves = collections.Counter(event.name for event in events if not event.cpu_children)
    named = collections.Counter(event.name for event in events)  # nonzero and unique_consecutive are not leaves
    syncs = sum(named[name] for name in HOST_SYNCS)
    print(f"{args.recipe}, batch {batch.valid.shape[0]}: {len(events)} profiled events, "
          f"{sum(leaves.values())} leaf operations, {syncs} host syncs")  # fmt: skip
    print("most frequent leaf operations:", ", ".join(f"{name} {n}" for name, n in leaves.most_common(12)))
    print("host syncs:", ", ".join(f"{name} {named[name]}" for name in HOST_SYNCS))


if __name__ == "__main__":
    main()
