"""Training checkpoints in safetensors and JSON only, replaced atomically, and the EMA weights swap."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from torch import nn

from ccaug.fileio import swap_in_folder, write_json
from ccaug.model.generator import CCDiffGenerator


@dataclass
class TrainingPosition:
    """Where a run stands: optimizer steps done, the epoch, and the batches of that epoch already used."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


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
        swap_in_folder(staging, folder)
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
