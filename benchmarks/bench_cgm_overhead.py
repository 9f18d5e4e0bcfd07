"""Benchmark: UNet step time with the CC-Diff modules (CGM processors) versus the same UNet without them.

Builds a small diffusers UNet (random weights), installs the CGM on ``mid_block`` and ``up_blocks.1``, and
times, in one run and interleaved, the plain UNet (``layout=None``) and the fused UNet with 0, 8 and 32
instance slots per image: forward only (a sampling step, no grad) and forward + backward (a training step).
Prints one line per instance count with the median times and their ratio.

    python benchmarks/bench_cgm_overhead.py --batch 8 --variant ccdiff
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import UNet2DConditionModel

from ccaug.model.cgm import install_ccdiff_processors
from ccaug.model.conditions import LayoutConditions


def tiny_unet(context_dim: int, sample: int, channels: tuple[int, ...]) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=sample,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        cross_attention_dim=context_dim,
        attention_head_dim=8,
    )


def random_conditions(batch: int, slots: int, dim: int, variant: str, generator: torch.Generator) -> LayoutConditions:
    centre = torch.rand(batch, slots, 1, 2, generator=generator) * 0.8 + 0.1
    half = torch.rand(batch, slots, 1, 2, generator=generator) * 0.08 + 0.02
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    polygons = (centre + half * corners).reshape(batch, slots, 8)
    queries = 16 if variant == "ccdiff" else 8
    return LayoutConditions(
        polygons=polygons,
        valid=torch.ones(batch, slots, dtype=torch.bool),
        instance_text=torch.randn(batch, slots, 4, dim, generator=generator),
        instance_pooled=torch.randn(batch, slots, dim, generator=generator),
        global_pooled=torch.randn(batch, dim, generator=generator),
        fg_tokens=torch.randn(batch, slots, queries, dim, generator=generator),
        bg_tokens=torch.randn(batch, 16 if variant == "ccdiff" else 8, dim, generator=generator),
        rel_tokens=torch.randn(batch, 8, dim, generator=generator) if variant == "ccdiff_pp" else None,
    )


def time_step(unet, latents, timesteps, context, layout, train: bool) -> float:
    kwargs = {"cross_attention_kwargs": {"layout": layout}} if layout is not None else {}
    started = time.perf_counter()
    if train:
        unet(latents, timesteps, encoder_hidden_states=context, **kwargs).sample.square().mean().backward()
        unet.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            unet(latents, timesteps, encoder_hidden_states=context, **kwargs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sample", type=int, default=32, help="latent side")
    parser.add_argument("--channels", type=int, nargs=3, default=(64, 128, 256))
    parser.add_argument("--context-dim", type=int, default=128)
    parser.add_argument("--variant", choices=("ccdiff", "ccdiff_pp"), default="ccdiff")
    parser.add_argument("--slots", type=int, nargs="+", default=(0, 8, 32))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    unet = tiny_unet(args.context_dim, args.sample, tuple(args.channels))
    plain_params = sum(p.numel() for p in unet.parameters())
    install_ccdiff_processors(unet, variant=args.variant)
    cgm_params = sum(p.numel() for p in unet.parameters()) - plain_params
    latents = torch.randn(args.batch, 4, args.sample, args.sample, generator=generator)
    timesteps = torch.randint(0, 1000, (args.batch,), generator=generator)
    context = torch.randn(args.batch, 16, args.context_dim, generator=generator)
    print(
        f"UNet {plain_params / 1e6:.1f} M params + CGM {cgm_params / 1e6:.1f} M ({args.variant}), batch {args.batch}, "
        f"{args.sample}x{args.sample} latents, {torch.get_num_threads()} threads"
    )
    for slots in args.slots:
        layout = random_conditions(args.batch, slots, args.context_dim, args.variant, generator)
        for train in (False, True):
            time_step(unet, latents, timesteps, context, None, train)  # warm-up
            time_step(unet, latents, timesteps, context, layout, train)
            plain, fused = [], []
            for _ in range(args.repeats):
                plain.append(time_step(unet, latents, timesteps, context, None, train))
                fused.append(time_step(unet, latents, timesteps, context, layout, train))
            p, f = statistics.median(plain), statistics.median(fused)
            mode = "train (fwd+bwd)" if train else "sample (fwd)   "
            print(f"{slots:>3} instances, {mode}: plain {p * 1000:7.0f} ms, CC-Diff {f * 1000:7.0f} ms, ratio {f / p:.2f}x")


if __name__ == "__main__":
    main()
