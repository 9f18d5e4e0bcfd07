"""The sampling pipeline: a trained `CCDiffGenerator` plus a diffusers scheduler turn layouts into images.

Diffusers' split: the generator is the model, the scheduler owns the noise schedule and the update rule,
and `CCDiffPipeline` is the loop that composes them:

    pipeline = CCDiffPipeline(generator, scheduler="dpm++", steps=20, guidance_scale=7.5)
    images = pipeline(batch, seeds=[0, 1, 2, 3])        # (B, H, W, 3) uint8

Schedulers are built ``from_config`` of the generator's training schedule (`make_scheduler`), so they
share its betas and prediction type:

* ``"euler"``: `EulerDiscreteScheduler`, the reference's sampler (50 steps, guidance 7.5, §4.1);
* ``"dpm++"``: `DPMSolverMultistepScheduler` (DPM-Solver++ 2M), about as good in ~20 steps, the default;
* ``"ddim"``: `DDIMScheduler` (eta 0).

A schedule that clips its samples (the tiny pixel-space one: cosine, ``clip_sample``) ends where
alpha_bar is ~2e-9, so turning a noise prediction into an image at the first step divides its error by
~5e-5. DDIM clips that image to [-1, 1]; DPM++ and Euler do not on their own, and there a 2% error in the
prediction feeds the UNet values of ~130 where pure noise peaks at ~4 (pure-noise images). `stable_schedule`
gives them the options that keep them in range.

All three are deterministic given the initial noise, so an image depends only on its layout, its
references and its seed: the noise of each image is drawn from its own ``torch.Generator`` seeded with its
seed, on the CPU (the same numbers on every device), so the same layout and seed give the same image in any
batch and on any machine. (The reference seeds once globally, so its images depend on processing order,
§4.2.)

The conditions (`CCDiffGenerator.encode`) do not depend on the timestep, so they are encoded once per batch
and reused at every step; classifier-free guidance is `CCDiffGenerator.denoise`'s, against the empty
caption with no layout terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ccaug.model.batch import GeneratorBatch
from ccaug.model.generator import CCDiffGenerator

SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "dpm++": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "ddim": DDIMScheduler,
}
EDM_SIGMA_MAX = 80.0  # Karras et al. 2022's largest noise level for images in [-1, 1]


def stable_schedule(name: str, training_schedule: dict) -> dict:
    """The options that keep sampler `name` inside the image range when the training schedule clips samples:
    DPM-Solver++ clamps its image estimate to [-1, 1] (its ``thresholding`` at 1), Euler starts at
    sigma 80 on Karras' spacing instead of at sigma ~2e4. Nothing changes for a schedule that does not clip
    (SD's latent one)."""
    if not training_schedule.get("clip_sample", False):
        return {}
    bound = float(training_schedule.get("clip_sample_range", 1.0))
    if name == "dpm++":
        return {"thresholding": True, "sample_max_value": bound}
    if name == "euler":
        return {"use_karras_sigmas": True, "sigma_max": EDM_SIGMA_MAX}
    return {}


class CCDiffPipeline:
    """Layouts → images with a trained generator.

    Args:
        generator: the trained generator (its device is used; call ``generator.to(device)`` first).
        scheduler: ``"dpm++"`` (default, ~20 steps), ``"euler"`` (the reference's, 50 steps) or ``"ddim"``.
        steps: denoising steps.
        guidance_scale: classifier-free guidance scale; 1 turns guidance off (one UNet pass per step).
    """

    def __init__(
        self,
        generator: CCDiffGenerator,
        scheduler: str = "dpm++",
        steps: int = 20,
        guidance_scale: float = 7.5,
    ) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {tuple(SCHEDULERS)}, not {scheduler!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, not {steps!r}")
        if guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be 1 (off) or more, not {guidance_scale}")
        self.generator = generator
        self.scheduler_name = scheduler
        self.steps = steps
        self.guidance_scale = float(guidance_scale)

    def make_scheduler(self) -> SchedulerMixin:
        """A fresh scheduler (schedulers keep per-run state, e.g. DPM++'s previous outputs)."""
        training_schedule = self.generator.make_scheduler().config
        return SCHEDULERS[self.scheduler_name].from_config(
            training_schedule, **stable_schedule(self.scheduler_name, training_schedule)
        )

    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """``(B, C, h, w)`` float32 standard normal noise on the CPU, image i's from a generator seeded
        with ``seeds[i]``."""
        shape = (self.generator.latent_channels, self.generator.latent_size, self.generator.latent_size)
        noise = [
            torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed))) for seed in seeds
        ]
        return torch.stack(noise)

    @torch.no_grad()
    def __call__(self, batch: GeneratorBatch, seeds: Sequence[int]) -> np.ndarray:
        """Render the B layouts of `batch` (no images needed), image i from ``seeds[i]`` → ``(B, H, W, 3)``
        uint8 RGB."""
        if len(seeds) != batch.batch_size:
            raise ValueError(
                f"{len(seeds)} seeds for a batch of {batch.batch_size} layouts; give one per layout"
            )
        if any(int(seed) < 0 for seed in seeds):
            raise ValueError(f"seeds must be non-negative integers, got {list(seeds)}")
        generator = self.generator
        was_training = generator.training
        generator.eval()
        try:
            device = generator.device
            scheduler = self.make_scheduler()
            scheduler.set_timesteps(self.steps, device=device)

            caption_tokens, layout = generator.encode(batch)  # once: the conditions do not depend on t
            uncond_tokens = generator.unconditional_tokens(1) if self.guidance_scale != 1.0 else None
            x = self.initial_noise(seeds).to(device) * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                model_input = scheduler.scale_model_input(x, t)
                prediction = generator.denoise(
                    model_input, t, caption_tokens, layout, self.guidance_scale, uncond_tokens
                )
                x = scheduler.step(prediction, t, x).prev_sample
            images = generator.decode_images(x)
        finally:
            generator.train(was_training)
        return to_uint8(images)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` float in [-1, 1] → ``(B, H, W, 3)`` uint8."""
    pixels = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()
