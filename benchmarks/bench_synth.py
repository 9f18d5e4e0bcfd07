"""Synthesis throughput of `ccaug synth`, and where its time goes (issue 7).

Runs the whole `synthesize` call (plan, banks, rendering, PNG and label writes, manifest, every output
format, preview) with a generator of a recipe's architecture and random weights (speed does not depend on
the weights), and times the UNet's forward calls with hooks. Target: the UNet is at least 90 % of the time
spent rendering.

    python benchmarks/bench_synth.py --out /tmp/bench-synth [--recipe tiny-aerial] [--n 128] [--batch-size 32]
        [--steps 20] [--scheduler dpm++] [--precision no|bf16]

On a GPU, with the SD-1.x-size architecture, pass a recipe whose generator section names local SD and DINOv2
folders (e.g. recipes/sd-dota.yaml with their paths set).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from ccaug.datasets import make_aerial
from ccaug.model.generator import CCDiffGenerator
from ccaug.pipeline import synth
from ccaug.recipes import load_recipe


class UnetTimer:
    """Wall time inside the UNet's forward calls (synchronised on CUDA, so that it is the GPU's time)."""

    def __init__(self) -> None:
        self.seconds, self.calls, self._start = 0.0, 0, 0.0

    def attach(self, unet: torch.nn.Module) -> None:
        unet.register_forward_pre_hook(self._before)
        unet.register_forward_hook(self._after)

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def _before(self, *_) -> None:
        self._sync()
        self._start = time.perf_counter()

    def _after(self, *_) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._start
        self.calls += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", default="tiny-aerial")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scheduler", default="dpm++")
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--precision", default="no")
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    data = args.out / "aerial"
    if not (data / "scenes.json").is_file():
        make_aerial(data, n=300, seed=0, progress=False)
    model = args.out / "generator"
    if not (model / "config.json").is_file():
        torch.manual_seed(0)
        CCDiffGenerator(recipe.generator).save_pretrained(model)
    target = args.out / "synth"
    shutil.rmtree(target, ignore_errors=True)
    settings = dataclasses.replace(
        recipe.synth, batch_size=args.batch_size, steps=args.steps, scheduler=args.scheduler,
        guidance_scale=args.guidance_scale,
    )  # fmt: skip

    timer = UnetTimer()
    original_init = synth.Renderer.__init__

    def init_and_time(self, *a, **k):
        original_init(self, *a, **k)
        timer.attach(self.generator.unet)

    synth.Renderer.__init__ = init_and_time
    started = time.perf_counter()
    result = synth.synthesize(
        data, args.n, target, model=model, settings=settings, constraints=recipe.constraints, perturb=recipe.perturb,
        precision=args.precision, progress=False, log=lambda line: None,
    )  # fmt: skip
    wall = time.perf_counter() - started
    render = sum(json.loads(line)["seconds"] for line in (target / "manifest.jsonl").read_text().splitlines())
    loop = result.loop_seconds  # rendering + writing images, labels and manifest lines
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    report = {
        "device": device,
        "recipe": args.recipe,
        "resolution": recipe.generator.resolution,
        "n": args.n,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "scheduler": args.scheduler,
        "guidance_scale": args.guidance_scale,
        "precision": args.precision,
        "wall_seconds": round(wall, 2),
        "loop_seconds": round(loop, 2),
        "render_seconds": round(render, 2),
        "unet_seconds": round(timer.seconds, 2),
        "unet_calls": timer.calls,
        "images_per_second_loop": round(result.rendered / loop, 3),
        "images_per_second_wall": round(result.rendered / wall, 3),
        "unet_share_of_loop": round(timer.seconds / loop, 3),
        "unet_share_of_rendering": round(timer.seconds / render, 3),
        "unet_share_of_wall": round(timer.seconds / wall, 3),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
