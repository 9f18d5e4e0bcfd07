"""Training the CC-Diff generator: `train_generator` reads top to bottom, from data to the last checkpoint.

A run owns one output folder (Ultralytics-style)::

    out/
      run.json                 data, format, generator and training settings of the run
      banks/                   instance and background banks built from the train split (reused when they match)
      cache/                   the frozen encoders' features (sd backbone: reference tokens, text, VAE posteriors)
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
* **Frozen features are computed once.** When the backbone has frozen parts, `FrozenFeatures` computes
  their outputs for every bank row, caption and (with ``flip="none"``) training image before the loop, or
  reads them from ``out/cache/`` (keyed by encoder fingerprint and content), and the generator is served
  from them; the loss is the same as without. The ``tiny`` backbone trains everything: nothing is cached.
* **Steps** count optimizer steps (``max_steps``); one step is ``gradient_accumulation`` batches of
  ``batch_size`` per process.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedDataParallelKwargs
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from torch import nn

from ccaug.fileio import write_json
from ccaug.layouts.layout import read_layout_dataset
from ccaug.model.batch import GeneratorBatch
from ccaug.model.frozen_cache import FrozenFeatures
from ccaug.model.generator import CCDiffGenerator
from ccaug.model.generator_config import GeneratorConfig
from ccaug.pipeline.checkpoints import TrainingPosition, ema_weights, load_training_state, save_checkpoint
from ccaug.pipeline.data import GeneratorTrainingData, check_training_categories, collate
from ccaug.pipeline.previews import validation_batch, write_sample_grid
from ccaug.pipeline.run_folder import append_metrics, claim_run_folder, load_or_build_banks, truncate_metrics
from ccaug.pipeline.text_embedding import HashedCaptionEmbedder
from ccaug.pipeline.training_config import RUN_FORMAT, TrainingConfig
from ccaug.progress import progress_bar
from ccaug.workspace import register_generator, resolve_source


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
    """Train a CC-Diff generator on the data set `data_path` (a folder, a registered name or ``aerial``; format
    `fmt`, detected when None) into `out`.

    The train split is used for training and the banks (the whole set when there is no ``train`` split);
    the sample grids show ``val`` layouts (train ones when there is no ``val`` split). `max_steps` overrides
    the config's. ``resume=True`` continues the run in `out` from its checkpoint; without it, a folder
    holding a run is refused. Launch with ``accelerate launch`` for several GPUs. The checkpoint becomes the
    workspace's default generator for this data set (``ccaug synth --source DATA`` without ``--model``).
    """
    out = Path(out)
    data_path, data_format = resolve_source(data_path, fmt)  # a folder, a registered name or "aerial"
    config = training_config
    if max_steps is not None:
        config = dataclasses.replace(config, max_steps=max_steps)
    started = time.perf_counter()

    # ---------------------------------------------------------------------------------------- the run folder and model
    # accelerate keeps its settings in a process-wide singleton; forget the previous run's (e.g. another
    # mixed_precision) so that train_generator can be called again in one process. The process group
    # (PartialState) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation,
        mixed_precision=config.mixed_precision,
        project_dir=str(out),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    refuse_unsynchronised_launch(accelerator)
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
    dataset = read_layout_dataset(data_path, data_format)
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
    if generator.frozen:  # after prepare: computed on the device; the main process writes, the others read
        with accelerator.main_process_first():
            features = FrozenFeatures.build(
                generator, out / "cache", instance_bank=instance_bank, background_bank=background_bank,
                captions=data.all_captions, training_data=data, batch_size=config.batch_size,
                progress=progress and accelerator.is_main_process,
            )  # fmt: skip
        generator.attach_frozen_features(features)
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
    with progress_bar(*columns, enabled=progress and accelerator.is_main_process) as bar:
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
    if accelerator.is_main_process:  # `ccaug synth --source <this data>` renders with it by default
        register_generator(data_path, out / "checkpoint")
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


def refuse_unsynchronised_launch(accelerator: Accelerator | PartialState) -> None:
    """Several processes that each believe they run alone would train copies and overwrite one run folder.

    That happens on CPU when torchrun starts processes but accelerate is not told to use them
    (accelerate turns multi-process CPU on only with ``ACCELERATE_USE_CPU=1`` in the environment).
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes == 1:
        raise RuntimeError(
            f"{launched} processes were launched but accelerate runs each alone (distributed type "
            f"{accelerator.distributed_type}); on a CPU machine launch with ACCELERATE_USE_CPU=1 in the "
            "environment (e.g. `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m ccaug train-generator ...`), "
            "on GPUs check the accelerate config"
        )
