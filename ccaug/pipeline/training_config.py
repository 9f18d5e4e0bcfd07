"""The ``training`` section of a recipe: every knob of a generator training run, validated."""

from __future__ import annotations

from dataclasses import dataclass

from ccaug.pipeline.sampling import SCHEDULERS

LR_SCHEDULES = ("constant", "cosine", "linear")
MIXED_PRECISION = ("no", "bf16")
FLIPS = ("none", "hv")
RUN_FORMAT = "ccaug.generator-run"
# Settings that may change when a run is resumed: they do not change what the run computes.
RESUMABLE_CHANGES = frozenset({"max_steps", "log_every", "checkpoint_every", "sample_every", "num_workers"})


@dataclass(frozen=True)
class TrainingConfig:
    """The recipe's ``training`` section.

    batch_size: images per process per batch.
    gradient_accumulation: batches per optimizer step (effective batch = batch_size × this × processes).
    learning_rate, weight_decay: AdamW's (betas 0.9/0.999, eps 1e-8 as the reference).
    lr_schedule, warmup_steps: ``"constant"`` (the reference's), ``"cosine"`` or ``"linear"`` decay to 0 at
        `max_steps`, after a linear warm-up of `warmup_steps` optimizer steps.
    max_grad_norm: clip the gradient norm of all trainable parameters (0 = off).
    max_steps: optimizer steps of the run.
    ema_decay: EMA of the trainable parameters (0 = off).
    mixed_precision: ``"no"`` (fp32) or ``"bf16"`` (autocast, fp32 master weights).
    log_every, checkpoint_every, sample_every: in optimizer steps; ``sample_every: 0`` draws no samples.
        The last step is always logged and checkpointed.
    samples, sample_steps, sample_scheduler, guidance_scale: the sample grids: validation layouts, denoising
        steps, scheduler (see `ccaug.pipeline.sampling`) and guidance.
    num_workers: DataLoader worker processes.
    seed: initialisation, data order, references and noise.
    top_k: references and backgrounds are drawn among the top_k matches.
    flip: ``"none"`` (the reference) or ``"hv"`` (random horizontal and vertical mirroring of image and layout).
    """

    batch_size: int = 16
    gradient_accumulation: int = 1
    learning_rate: float = 3e-4
    weight_decay: float = 1e-2
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    max_steps: int = 10_000
    ema_decay: float = 0.999
    mixed_precision: str = "no"
    log_every: int = 10
    checkpoint_every: int = 500
    sample_every: int = 500
    samples: int = 4
    sample_steps: int = 20
    sample_scheduler: str = "dpm++"
    guidance_scale: float = 3.0
    num_workers: int = 0
    seed: int = 0
    top_k: int = 5
    flip: str = "none"

    def __post_init__(self) -> None:
        positive = ("batch_size", "gradient_accumulation", "max_steps", "log_every", "checkpoint_every",
                    "samples", "sample_steps", "top_k")  # fmt: skip
        non_negative = ("warmup_steps", "sample_every", "num_workers", "seed")
        for name in positive + non_negative:
            value = getattr(self, name)
            least = 1 if name in positive else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                kind = "a positive" if least else "a non-negative"
                raise ValueError(f"training.{name} must be {kind} integer, not {value!r}")
        choices = {
            "lr_schedule": LR_SCHEDULES,
            "mixed_precision": MIXED_PRECISION,
            "sample_scheduler": tuple(SCHEDULERS),
            "flip": FLIPS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"training.{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"training.learning_rate must be positive, not {self.learning_rate}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("training.weight_decay and training.max_grad_norm must be 0 or more")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"training.ema_decay must be in [0, 1) (0 = off), not {self.ema_decay}")
        if self.guidance_scale < 1.0:
            raise ValueError(f"training.guidance_scale must be 1 (off) or more, not {self.guidance_scale}")
