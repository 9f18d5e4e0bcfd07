"""Training the CC-Diff generator: `train_generator` reads top to bottom, from data to the last checkpoint.

A run owns one output folder (Ultralytics-style)::

    out/
      run.json                 data, format, generator and training settings of the run
      banks/                   instance and background banks built from the train split (reused when they match)
      metrics.jsonl            one JSON object per logged step: step, epoch, loss, lr, images_per_second, …
      checkpoint/              the latest checkpoint (replaced atomically):
        config.json, model.safetensors       the generator (EMA weights when EMA is on): from_pretrained reads it
        training_state.safetensors/.json     raw weights, EMA, optimizer, LR schedule, step, data position
        rng_state_<rank>.safetensors         each process's noise generator
      samples/step_XXXXXX.png  validation layouts drawn beside what the generator renders for them

Decisions:

* **Everything that trains is one module under DDP.** `CCDiffGenerator` has no ``forward``; DDP synchronises
  gradients of the module whose forward ran, so `_Objective` (an ``nn.Module`` holding the whole generator,
  forward = `CCDiffGenerator.training_loss`) is what ``accelerator.prepare`` wraps, together with the
  optimizer (AdamW over every trainable parameter), the data loader and the LR schedule. The reference wraps
  only the UNet, so its resampler's gradients are never all-reduced (§8.1). Gradient clipping covers every
  trainable parameter too (the reference clips only the UNet's). ``find_unused_parameters`` is on because a
  batch whose rows are all dropped (or empty) leaves the resampler out of the graph.
* **Checkpoints are safetensors and JSON only.** ``accelerator.save_state`` pickles the optimizer, the
  schedule and the RNG states (and reloads custom objects with ``weights_only=False``), and saves the frozen
  backbone with every checkpoint; here the optimizer's tensors, the EMA and the RNG states go into
  safetensors, the rest into JSON, and only what trains is saved.
* **EMA** is diffusers' `EMAModel` over the trainable parameters (its decay warms up as
  ``(1 + n) / (10 + n)``, capped at ``ema_decay``); samples and the checkpoint's model weights use it.
* **Data order** is a function of ``(seed, epoch)``: `EpochSampler` permutes the images per epoch and
  `GeneratorTrainingData.set_epoch` fixes the references drawn, and the checkpoint records the epoch and how
  many batches of it were used, so ``resume=True`` continues with exactly the batches the run would have
  seen. The noise, timesteps and condition dropout come from a per-process ``torch.Generator`` that is
  checkpointed too.
* **Steps** count optimizer steps (``max_steps``); one step is ``gradient_accumulation`` batches of
  ``batch_size`` per process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.torch
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from ccaug.data.draw import draw_instances
from ccaug.data.geometry import POLY_COLUMNS
from ccaug.fileio import save_image, write_json
from ccaug.layouts.captions import captions as layout_captions
from ccaug.layouts.layout import layouts_from_dataset, read_layout_dataset
from ccaug.model.background_bank import BackgroundBank
from ccaug.model.batch import GeneratorBatch
from ccaug.model.generator import CCDiffGenerator
from ccaug.model.generator_config import GeneratorConfig
from ccaug.model.instance_bank import InstanceBank
from ccaug.pipeline.data import GeneratorTrainingData, check_training_categories, collate, layout_batches
from ccaug.pipeline.sampling import SCHEDULERS, CCDiffPipeline
from ccaug.pipeline.text_embedding import HashedCaptionEmbedder

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


@dataclass
class TrainResult:
    """What a run wrote and how it went. `loss` is the last logged loss; `images_per_second` the mean
    training throughput of this call (all processes, checkpoints and samples excluded)."""

    out: Path
    checkpoint: Path
    metrics: Path
    samples: list[Path]
    step: int
    loss: float
    images_per_second: float
    seconds: float


def train_generator(
    data_path: str | Path,
    fmt: str | None,
    out: str | Path,
    *,
    generator_config: GeneratorConfig,
    training_config: TrainingConfig,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a CC-Diff generator on the data set at `data_path` (format `fmt`, detected when None) into `out`.

    The train split is used for training and the banks (the whole set when there is no ``train`` split);
    the sample grids show ``val`` layouts (train ones when there is no ``val`` split). `max_steps` overrides
    the config's. ``resume=True`` continues the run in `out` from its checkpoint; without it, a folder
    holding a run is refused. Launch with ``accelerate launch`` for several GPUs.
    """
    out = Path(out)
    config = training_config
    if max_steps is not None:
        config = dataclasses.replace(config, max_steps=max_steps)
    started = time.perf_counter()

    # ---------------------------------------------------------------------------------------- the run folder and model
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation,
        mixed_precision=config.mixed_precision,
        project_dir=str(out),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    run = {
        "format": RUN_FORMAT,
        "data": str(Path(data_path).resolve()),
        "data_format": fmt,
        "generator": generator_config.to_dict(),
        "training": dataclasses.asdict(config),
    }
    claim_run_folder(out, run, resume)
    torch.manual_seed(config.seed)  # the same initial weights on every process and every run
    generator = CCDiffGenerator(generator_config)  # first: a missing model path fails before any work
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(out / "run.json", run, indent=2)

    # ---------------------------------------------------------------------------------------- data
    dataset = read_layout_dataset(data_path, fmt)
    train_set = dataset.split("train") if "train" in dataset.splits else dataset
    val_set = dataset.split("val") if "val" in dataset.splits else train_set
    check_training_categories(train_set, generator_config.categories)  # before any bank is built
    embed_text = HashedCaptionEmbedder()
    with accelerator.main_process_first():
        instance_bank, background_bank = load_or_build_banks(
            train_set, out / "banks", generator_config, embed_text, progress and accelerator.is_main_process
        )
    data = GeneratorTrainingData(
        train_set,
        categories=generator_config.categories,
        resolution=generator_config.resolution,
        max_instances=generator_config.max_instances,
        instance_bank=instance_bank,
        background_bank=background_bank,
        embed_text=embed_text,
        top_k=config.top_k,
        seed=config.seed,
        flip=config.flip,
    )
    if len(data) < config.batch_size * accelerator.num_processes:
        raise ValueError(
            f"the train split has {len(data)} images, fewer than one batch of {config.batch_size} per process "
            f"× {accelerator.num_processes} processes; lower training.batch_size"
        )
    sampler = EpochSampler(len(data), seed=config.seed)
    loader = torch.utils.data.DataLoader(
        data, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
        num_workers=config.num_workers, drop_last=True,
    )  # fmt: skip
    sample_batch = validation_batch(
        val_set, generator_config, instance_bank, background_bank, embed_text, config
    )

    # ---------------------------------------------------------------------------------------- optimizer
    objective = _Objective(generator)
    optimizer = torch.optim.AdamW(
        generator.trainable_parameters(),
        lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay,
    )  # fmt: skip
    # The prepared schedule steps once per process for every optimizer step, so its lengths are in those units.
    lr_schedule = get_scheduler(
        config.lr_schedule,
        optimizer,
        num_warmup_steps=config.warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_steps * accelerator.num_processes,
    )
    objective, optimizer, loader, lr_schedule = accelerator.prepare(objective, optimizer, loader, lr_schedule)
    parameters = generator.trainable_parameters()  # the same Parameter objects, now on the device
    ema = EMAModel(parameters, decay=config.ema_decay) if config.ema_decay > 0 else None
    noise_generator = torch.Generator().manual_seed(_process_seed(config.seed, accelerator.process_index))

    position = TrainingPosition()
    if resume:
        position = load_training_state(
            out / "checkpoint",
            generator,
            optimizer,
            lr_schedule,
            ema,
            noise_generator,
            accelerator.process_index,
        )
        truncate_metrics(out / "metrics.jsonl", position.step, accelerator.is_main_process)
    if position.step >= config.max_steps:
        raise ValueError(
            f"the run in {out} is at step {position.step} already, not before max_steps={config.max_steps}; "
            "pass a larger max_steps to train on"
        )

    # ---------------------------------------------------------------------------------------- the loop
    images_per_step = config.batch_size * config.gradient_accumulation * accelerator.num_processes
    samples_written: list[Path] = []
    window_loss, window_batches = torch.zeros((), device=accelerator.device), 0
    window_start, train_seconds, trained_images = time.perf_counter(), 0.0, 0
    last_loss = math.nan
    columns = (
        TextColumn("train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[ips]:.1f} img/s"),
        TimeRemainingColumn(),
    )  # fmt: skip
    objective.train()
    with Progress(*columns, disable=not (progress and accelerator.is_main_process)) as bar:
        task = bar.add_task("steps", total=config.max_steps, completed=position.step, loss=math.nan, ips=0.0)
        while position.step < config.max_steps:
            sampler.set_epoch(position.epoch)
            data.set_epoch(position.epoch)
            batches = accelerator.skip_first_batches(loader, position.batch) if position.batch else loader
            # accelerate's loader passes its own epoch counter to the data set when iterated (it starts at 0
            # after a resume), so it is set to the run's epoch too.
            batches.set_epoch(position.epoch)
            for batch in batches:
                position.batch += 1
                with accelerator.accumulate(objective):
                    loss = objective(batch, noise_generator)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
                    optimizer.step()
                    lr_schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                window_loss += loss.detach()
                window_batches += 1
                if not accelerator.sync_gradients:
                    continue  # within an accumulation window
                position.step += 1
                if ema is not None:
                    ema.step(parameters)

                if position.step % config.log_every == 0 or position.step == config.max_steps:
                    last_loss = accelerator.reduce(window_loss / window_batches, reduction="mean").item()
                    seconds = time.perf_counter() - window_start
                    images = window_batches * config.batch_size * accelerator.num_processes
                    train_seconds += seconds
                    trained_images += images
                    record = {
                        "step": position.step,
                        "epoch": position.epoch,
                        "loss": last_loss,
                        "lr": lr_schedule.get_last_lr()[0],
                        "images_per_second": images / seconds,
                        "seconds_per_step": seconds / (window_batches / config.gradient_accumulation),
                    }
                    if accelerator.is_main_process:
                        append_metrics(out / "metrics.jsonl", record)
                    bar.update(task, completed=position.step, loss=last_loss, ips=images / seconds)
                    window_loss, window_batches = torch.zeros_like(window_loss), 0
                    window_start = time.perf_counter()
                else:
                    bar.update(task, completed=position.step)

                paused = time.perf_counter()  # checkpoints and samples do not count as training time
                if position.step % config.checkpoint_every == 0 or position.step == config.max_steps:
                    save_checkpoint(
                        out / "checkpoint", accelerator, generator, optimizer, lr_schedule, ema, noise_generator,
                        position, images_per_step,
                    )  # fmt: skip
                if config.sample_every and position.step % config.sample_every == 0:
                    if accelerator.is_main_process:
                        path = out / "samples" / f"step_{position.step:06d}.png"
                        with ema_weights(ema, parameters):
                            write_sample_grid(path, generator, sample_batch, config)
                        samples_written.append(path)
                    accelerator.wait_for_everyone()
                window_start += time.perf_counter() - paused
                if position.step >= config.max_steps:
                    break
            else:  # the epoch ran out
                position.epoch += 1
                position.batch = 0

    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(
        out=out,
        checkpoint=out / "checkpoint",
        metrics=out / "metrics.jsonl",
        samples=samples_written,
        step=position.step,
        loss=last_loss,
        images_per_second=trained_images / train_seconds if train_seconds else math.nan,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------------------------------------
# the objective and the data order


class _Objective(nn.Module):
    """The whole generator, with the training loss as ``forward``, so that DDP (which synchronises the
    module whose forward ran) and mixed-precision autocast (which wraps ``forward``) cover all of it."""

    def __init__(self, generator: CCDiffGenerator) -> None:
        super().__init__()
        self.generator = generator
        self.noise_schedule = generator.make_scheduler()

    def forward(self, batch: GeneratorBatch, noise_generator: torch.Generator) -> torch.Tensor:
        return self.generator.training_loss(batch, self.noise_schedule, noise_generator)


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation of ``range(size)`` that depends only on ``(seed, epoch)``; call `set_epoch` per epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch])).permutation(self.size)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.size


def _process_seed(seed: int, process_index: int) -> int:
    """Each process draws other noise and timesteps, deterministically."""
    return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])


@dataclass
class TrainingPosition:
    """Where a run stands: optimizer steps done, the epoch, and the batches of that epoch already used."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


# --------------------------------------------------------------------------------------------------------
# the run folder


def claim_run_folder(out: Path, run: dict[str, Any], resume: bool) -> None:
    """Refuse to start over a run (unless `resume`) and to resume another run (other data or settings)."""
    path = out / "run.json"
    if not resume:
        if path.is_file():
            raise FileExistsError(
                f"{out} holds a generator run already (run.json); pass --resume to continue it, or another --out"
            )
        if out.is_dir() and any(child.name != "banks" for child in out.iterdir()):
            raise FileExistsError(f"{out} is not empty; give an empty or new folder for the run")
        return
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {out} holds no run (no run.json)")
    if not (out / "checkpoint").is_dir() and not (out / "checkpoint.old").is_dir():
        raise FileNotFoundError(f"nothing to resume: the run in {out} has not written a checkpoint yet")
    saved = json.loads(path.read_text())
    differences = [key for key in ("data", "data_format", "generator") if saved.get(key) != run[key]]
    differences += [
        f"training.{key}"
        for key in run["training"]
        if key not in RESUMABLE_CHANGES and saved.get("training", {}).get(key) != run["training"][key]
    ]
    if differences:
        raise ValueError(
            f"cannot resume the run in {out} with other settings: {', '.join(differences)} differ from its run.json "
            f"(only {sorted(RESUMABLE_CHANGES)} may change)"
        )


def load_or_build_banks(
    train_set, folder: Path, config: GeneratorConfig, embed_text: HashedCaptionEmbedder, progress: bool
) -> tuple[InstanceBank, BackgroundBank]:
    """The instance and background banks of the train split, read from `folder` when they were built from
    the same data with the same settings, else built and saved there."""
    key = {
        "data": _fingerprint(train_set),
        "reference_size": config.reference_size,
        "background_size": config.background_size,
        "embedding": f"{type(embed_text).__name__}({embed_text.dim})",
    }
    instances, backgrounds, index = (
        folder / "instances.safetensors",
        folder / "backgrounds.safetensors",
        folder / "banks.json",
    )
    if (
        index.is_file()
        and json.loads(index.read_text()) == key
        and instances.is_file()
        and backgrounds.is_file()
    ):
        return InstanceBank.load(instances), BackgroundBank.load(backgrounds)
    instance_bank = InstanceBank.build(train_set, crop_size=config.reference_size, progress=progress)
    texts = layout_captions(layouts_from_dataset(train_set), train_set.categories)
    background_bank = BackgroundBank.build(
        train_set, embed_text, texts, image_size=config.background_size, progress=progress
    )
    folder.mkdir(parents=True, exist_ok=True)
    instance_bank.save(instances)
    background_bank.save(backgrounds)
    write_json(index, key, indent=2)
    return instance_bank, background_bank


def _fingerprint(dataset) -> str:
    """A hash of the images and instances tables: the banks' data, without reading any pixel."""
    digest = hashlib.sha256()
    digest.update(dataset.images[["image_id", "file", "width", "height"]].to_csv(index=False).encode())
    digest.update(dataset.instances[["image_id", "category", *POLY_COLUMNS]].to_csv(index=False).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------
# metrics


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int, is_main_process: bool) -> None:
    """Drop the records after `step`: a resumed run computes those steps again."""
    if not is_main_process or not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))


# --------------------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(
    folder: Path,
    accelerator: Accelerator,
    generator: CCDiffGenerator,
    optimizer,
    lr_schedule,
    ema: EMAModel | None,
    noise_generator: torch.Generator,
    position: TrainingPosition,
    images_per_step: int,
) -> None:
    """Write the checkpoint into a fresh folder beside `folder`, then swap it in: a crash leaves the old
    checkpoint (or, between the two renames, ``checkpoint.old``, which `load_training_state` also reads)."""
    staging = folder.with_name(folder.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    safetensors.torch.save_file(
        {"noise_generator": noise_generator.get_state()},
        str(staging / f"rng_state_{accelerator.process_index}.safetensors"),
    )
    if accelerator.is_main_process:
        parameters = generator.trainable_parameters()
        with ema_weights(ema, parameters):
            generator.save_pretrained(staging)
        names = _trainable_names(generator)
        tensors = {f"model.{name}": p.detach().cpu().contiguous() for name, p in zip(names, parameters)}
        optimizer_state = optimizer.state_dict()
        for index, state in optimizer_state["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        ema_state = {}
        if ema is not None:
            ema_state = ema.state_dict()
            for name, shadow in zip(names, ema_state.pop("shadow_params")):
                tensors[f"ema.{name}"] = shadow.detach().cpu().contiguous()
        safetensors.torch.save_file(tensors, str(staging / "training_state.safetensors"))
        state = {
            "step": position.step,
            "epoch": position.epoch,
            "batch": position.batch,
            "images_seen": position.step * images_per_step,
            "num_processes": accelerator.num_processes,
            "optimizer_param_groups": optimizer_state["param_groups"],
            "lr_schedule": lr_schedule.state_dict(),
            "ema": ema_state,
        }
        write_json(staging / "training_state.json", state, indent=2)
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_training_state(
    folder: Path,
    generator: CCDiffGenerator,
    optimizer,
    lr_schedule,
    ema: EMAModel | None,
    noise_generator: torch.Generator,
    process_index: int,
) -> TrainingPosition:
    """Restore what `save_checkpoint` wrote into the (prepared) objects; returns the run's position."""
    if not folder.is_dir() and folder.with_name(folder.name + ".old").is_dir():
        folder = folder.with_name(folder.name + ".old")  # a crash between the two renames
    state = json.loads((folder / "training_state.json").read_text())
    tensors = safetensors.torch.load_file(str(folder / "training_state.safetensors"))
    parameters = generator.trainable_parameters()
    names = _trainable_names(generator)
    missing = [name for name in names if f"model.{name}" not in tensors]
    if missing:
        raise ValueError(f"{folder} does not hold the trainable parameters {missing[:5]} of this generator")
    with torch.no_grad():
        for name, parameter in zip(names, parameters):
            parameter.copy_(tensors[f"model.{name}"])

    optimizer_state: dict[str, Any] = {"state": {}, "param_groups": state["optimizer_param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, field = key.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[field] = value
    optimizer.load_state_dict(optimizer_state)
    lr_schedule.load_state_dict(state["lr_schedule"])
    if ema is not None:
        if not state["ema"]:
            raise ValueError(f"{folder} was trained without EMA; resume with ema_decay: 0")
        ema.load_state_dict({**state["ema"], "shadow_params": [tensors[f"ema.{name}"] for name in names]})
        ema.to(parameters[0].device)
    rng_file = folder / f"rng_state_{process_index}.safetensors"
    if rng_file.is_file():  # absent when resuming on more processes than the run had
        noise_generator.set_state(safetensors.torch.load_file(str(rng_file))["noise_generator"])
    return TrainingPosition(step=state["step"], epoch=state["epoch"], batch=state["batch"])


def _trainable_names(generator: CCDiffGenerator) -> list[str]:
    """Names of `trainable_parameters`, in the same order."""
    return [name for name, parameter in generator.named_parameters() if parameter.requires_grad]


class ema_weights:
    """``with ema_weights(ema, parameters):`` swaps the EMA weights in, and the trained ones back after."""

    def __init__(self, ema: EMAModel | None, parameters: list[nn.Parameter]) -> None:
        self.ema = ema
        self.parameters = parameters

    def __enter__(self) -> None:
        if self.ema is not None:
            self.ema.store(self.parameters)
            self.ema.copy_to(self.parameters)

    def __exit__(self, *exc: object) -> None:
        if self.ema is not None:
            self.ema.restore(self.parameters)


# --------------------------------------------------------------------------------------------------------
# sample grids


def validation_batch(
    val_set, config: GeneratorConfig, instance_bank, background_bank, embed_text, training: TrainingConfig
) -> GeneratorBatch | None:
    """The first `training.samples` validation layouts the generator can render (its classes, at most
    max_instances instances), as one batch; None when there is none."""
    known = set(config.categories)
    layouts = [
        layout
        for layout in layouts_from_dataset(val_set)
        if len(layout) <= config.max_instances
        and {val_set.categories[int(label)] for label in layout.labels} <= known
    ][: training.samples]
    if not layouts:
        return None
    texts = layout_captions(layouts, val_set.categories)
    batches = layout_batches(
        layouts, val_set.categories, texts,
        instance_bank=instance_bank, background_bank=background_bank, embed_text=embed_text,
        batch_size=len(layouts), seed=training.seed, top_k=training.top_k,
        generator_categories=config.categories,
    )  # fmt: skip
    _, batch = next(batches)
    return batch


def write_sample_grid(
    path: Path, generator: CCDiffGenerator, batch: GeneratorBatch | None, config: TrainingConfig
) -> None:
    """One row per layout: the layout drawn on a blank canvas, then the generated image (seed = row)."""
    if batch is None:
        return
    pipeline = CCDiffPipeline(
        generator,
        scheduler=config.sample_scheduler,
        steps=config.sample_steps,
        guidance_scale=config.guidance_scale,
    )
    images = pipeline(batch, seeds=list(range(batch.batch_size)))
    size = images.shape[1]
    gap = max(2, size // 32)
    grid = Image.new("RGB", (2 * size + 3 * gap, batch.batch_size * (size + gap) + gap), (255, 255, 255))
    categories = generator.config.categories
    for row, image in enumerate(images):
        valid = batch.valid[row].cpu().numpy()
        instances = pd.DataFrame(batch.polygons[row].cpu().numpy()[valid] * size, columns=POLY_COLUMNS)
        instances.insert(
            0, "category", [categories[label] for label in batch.labels[row].cpu().numpy()[valid]]
        )
        canvas = np.full((size, size, 3), 40, dtype=np.uint8)
        y = gap + row * (size + gap)
        grid.paste(draw_instances(canvas, instances, categories, labels=size >= 128), (gap, y))
        grid.paste(Image.fromarray(image), (2 * gap + size, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, grid)
