"""The generator shipped inside the package: the default model of ``ccaug synth --source aerial`` and of
``ccaug demo``.

It is a `CCDiffGenerator.save_pretrained` folder (``config.json`` + ``model.safetensors``) at
``ccaug/datasets/aerial/generator/``, produced by ``benchmarks/train_default_generator.py`` (the command and
its training curve are in BENCHMARKS.md). A build of the package without it simply has no default.

Beside the weights lies ``sampling.json``: the sampler the generator was trained and previewed with, and
where it came from. A training run keeps its guidance scale in ``run.json`` beside its checkpoint; a shipped
folder has no run around it, so without this file it would be sampled at another guidance than it was
judged at::

    {"format": "ccaug.sampling-defaults", "version": 1,
     "guidance_scale": 3.0, "scheduler": "dpm++", "steps": 20,
     "provenance": {"command": "...", "steps": 20000, "images_seen": 320000, "final_loss": 0.05, ...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccaug.fileio import write_json

SHIPPED_GENERATOR = Path(__file__).with_name("generator")
# How manifests name it: stable across install locations (the model hash beside it tells versions apart).
SHIPPED_ID = "shipped:aerial"
SAMPLING_FILE = "sampling.json"
SAMPLING_FORMAT = "ccaug.sampling-defaults"
SAMPLING_VERSION = 1


def shipped_generator() -> Path | None:
    """The shipped checkpoint folder, or None when this build of the package holds none."""
    folder = SHIPPED_GENERATOR
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    return None


@dataclass(frozen=True)
class SamplingDefaults:
    """How a generator is meant to be sampled, and (for the record only) how it was made."""

    guidance_scale: float
    scheduler: str
    steps: int
    provenance: dict[str, Any] = field(default_factory=dict)


def write_sampling_defaults(folder: str | Path, defaults: SamplingDefaults) -> Path:
    """Write ``sampling.json`` into the generator folder `folder` (atomically)."""
    path = Path(folder) / SAMPLING_FILE
    document = {
        "format": SAMPLING_FORMAT,
        "version": SAMPLING_VERSION,
        "guidance_scale": float(defaults.guidance_scale),
        "scheduler": defaults.scheduler,
        "steps": int(defaults.steps),
        "provenance": defaults.provenance,
    }
    write_json(path, document, indent=2)
    return path


def read_sampling_defaults(folder: str | Path) -> SamplingDefaults | None:
    """The ``sampling.json`` of a generator folder, or None when it has none; a broken file is an error."""
    path = Path(folder) / SAMPLING_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); export the generator again") from error
    if document.get("format") != SAMPLING_FORMAT or document.get("version") != SAMPLING_VERSION:
        raise ValueError(
            f"{path}: not a {SAMPLING_FORMAT} file of version {SAMPLING_VERSION} "
            f"(format {document.get('format')!r}, version {document.get('version')!r})"
        )
    return SamplingDefaults(
        guidance_scale=float(document["guidance_scale"]),
        scheduler=str(document["scheduler"]),
        steps=int(document["steps"]),
        provenance=dict(document.get("provenance", {})),
    )
