"""The trainability experiment's finished detector runs, kept in the repository so that a lost machine
loses none of them.

A run of the experiment is 30-40 min of this project's CPU, and the whole experiment is more than one
session's work; its output folder (under the ignored ``runs/``) does not survive a machine being replaced.
So every finished run's ``result.json`` (a few kB: scores, per-class AP, the validation curve) is also
written to ``benchmarks/results/trainability/<variant>-<experiment>/<arm>/seed<k>.json`` and committed.
``<experiment>`` is a short hash of the experiment's settings (detector, device, budget, mix, arms; not the
paths of its data), whose full text lies beside the runs as ``experiment.json``: runs of one experiment are
comparable, runs of another (other epochs, a GPU instead of the CPU, whose numerics differ) are kept apart.

A later run of ``benchmarks/trainability.py`` on another machine copies the records of its experiments back
into its output folder before it trains anything, so it trains only the runs that are missing, and its
tables are built from the records alone. A synthetic arm's record also carries the SHA-256 of the synthetic
images and labels it trained on: a generator trained again renders other images, so its synthetic arms are
not restored, and a table uses the synthetic runs of one rendering only.

The scarce set's generator is kept here too (`record_generator`), since retraining it costs ~2 h of this
CPU and, not being bit for bit repeatable, renders other images: its checkpoint's weights in half precision
(15 MB instead of 30; they load into the fp32 model unchanged otherwise), its config, ``run.json`` and
``metrics.jsonl``. ``--model benchmarks/results/trainability/generator-real-50`` then renders from it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from pathlib import Path

from ccaug.detect.experiment import SYNTHETIC, RunResult, TrainabilityConfig
from ccaug.fileio import atomic_path, copy_file, write_json

STORE = Path(__file__).resolve().parent / "results" / "trainability"
PATH_KEYS = ("real", "synthetic")  # where the data lay on the machine that ran it: not part of the experiment


def experiment_key(config: TrainabilityConfig) -> dict:
    """What makes two runs comparable: the experiment without the paths of its data."""
    wanted = json.loads(json.dumps(config.to_dict()))
    return {key: value for key, value in wanted.items() if key not in PATH_KEYS}


def record_folder(variant: str, config: TrainabilityConfig, store: Path = STORE) -> Path:
    digest = hashlib.sha256(json.dumps(experiment_key(config), sort_keys=True).encode()).hexdigest()[:8]
    return store / f"{variant}-{digest}"


def synthetic_fingerprint(folder: Path | None) -> str | None:
    """SHA-256 over the names and bytes of a synthetic folder's images and DOTA labels (None: no folder)."""
    if folder is None or not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted([*(folder / "images").glob("*"), *(folder / "labelTxt").glob("*")]):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def save_run(run_folder: Path, records: Path, config: TrainabilityConfig, synthetic: Path | None) -> bool:
    """Record the finished run in `run_folder` (its ``result.json``) under `records`; False if there is
    nothing new to record."""
    result_file = run_folder / "result.json"
    if not result_file.is_file():
        return False
    result = json.loads(result_file.read_text())
    target = records / result["arm"] / f"seed{result['seed']}.json"
    fingerprint = synthetic_fingerprint(synthetic) if result["arm"] == SYNTHETIC else None
    if target.is_file() and json.loads(target.read_text())["synthetic_sha256"] == fingerprint:
        return False
    if not (records / "experiment.json").is_file():
        write_json(records / "experiment.json", experiment_key(config), indent=1)
    write_json(target, {"synthetic_sha256": fingerprint, "commit": _commit(), "result": result}, indent=1)
    return True


def restore_runs(records: Path, runs: Path, arm: str, synthetic: Path | None) -> dict[str, int]:
    """Copy every record of `arm` under `records` that `runs` (an experiment's ``runs/`` folder) lacks back
    as its ``result.json``; returns how many were restored and how many were left out for their synthetic
    images."""
    counts = {"restored": 0, "other synthetic images": 0}
    fingerprint = None
    for record_file in sorted(records.glob(f"{arm}/seed*.json")):
        target = runs / record_file.parent.name / record_file.stem / "result.json"
        if target.is_file():
            continue
        record = json.loads(record_file.read_text())
        if record["result"]["arm"] == SYNTHETIC:
            fingerprint = fingerprint or synthetic_fingerprint(synthetic)
            if record["synthetic_sha256"] != fingerprint:
                counts["other synthetic images"] += 1
                continue
        write_json(target, record["result"], indent=1)
        counts["restored"] += 1
    return counts


def load_runs(records: Path, arm: str) -> list[RunResult]:
    """The recorded runs of `arm` under `records`; of the synthetic arm, only those of its most recorded
    rendering (the synthetic images that most seeds trained on)."""
    loaded = [json.loads(path.read_text()) for path in sorted(records.glob(f"{arm}/seed*.json"))]
    renderings = Counter(record["synthetic_sha256"] for record in loaded)
    chosen = renderings.most_common(1)[0][0] if arm == SYNTHETIC and renderings else None
    return [RunResult(**record["result"]) for record in loaded if record["synthetic_sha256"] == chosen]


def record_generator(run: Path, target: Path) -> Path:
    """Copy the generator of the train-generator run folder `run` into `target` (its ``checkpoint/``
    with the weights stored as fp16, and the run's ``run.json`` and ``metrics.jsonl``); returns the
    checkpoint folder written. Floating-point tensors are halved, others are kept as they are."""
    import safetensors.torch  # lazy: the run records need no tensors

    source = run / "checkpoint"
    for path in (source / "config.json", source / "model.safetensors", run / "run.json", run / "metrics.jsonl"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a finished train-generator run (--model RUN_DIR)")
    checkpoint = target / "checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    state = safetensors.torch.load_file(str(source / "model.safetensors"))
    halved = {key: value.half() if value.is_floating_point() else value for key, value in state.items()}
    with safetensors.safe_open(str(source / "model.safetensors"), framework="pt") as file:
        metadata = file.metadata()
    with atomic_path(checkpoint / "model.safetensors") as tmp:
        safetensors.torch.save_file(halved, str(tmp), metadata=metadata)
    for source_file, copy in (
        (source / "config.json", checkpoint / "config.json"),
        (run / "run.json", target / "run.json"),
        (run / "metrics.jsonl", target / "metrics.jsonl"),
    ):
        copy_file(source_file, copy)
    return checkpoint


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
