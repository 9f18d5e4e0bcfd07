"""A training run's folder: claiming it (or resuming in it), the cached reference banks, and metrics.jsonl."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ccaug.data.geometry import POLY_COLUMNS
from ccaug.fileio import write_json
from ccaug.layouts.captions import captions as layout_captions
from ccaug.layouts.layout import layouts_from_dataset
from ccaug.model.background_bank import BackgroundBank
from ccaug.model.generator_config import GeneratorConfig
from ccaug.model.instance_bank import InstanceBank
from ccaug.pipeline.text_embedding import HashedCaptionEmbedder
from ccaug.pipeline.training_config import RESUMABLE_CHANGES

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
        # Reference banks and frozen-feature caches left by an earlier attempt are reused, not in the way.
        if out.is_dir() and any(child.name not in ("banks", "cache") for child in out.iterdir()):
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
