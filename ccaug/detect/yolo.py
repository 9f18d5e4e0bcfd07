"""One Ultralytics YOLO training run and one validation, offline, with results as plain data.

The run is built from a model YAML (from scratch: ``yolov8n.yaml``, ``yolov8n-obb.yaml``; Ultralytics ships
these, nothing is downloaded) or from a weights file the user names, which must exist locally. Validation is
always a separate call on the final weights (``last.pt``): the report never picks a checkpoint by its score
on the split it then reports.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ccaug.detect.offline import prepare_amp_check, use_offline_ultralytics

TASKS = ("detect", "obb")
DEFAULT_MODELS = {"detect": "yolov8n.yaml", "obb": "yolov8n-obb.yaml"}


@dataclass(frozen=True)
class DetectorSettings:
    """Everything that decides a detector run except the data and the seed; identical for every arm."""

    task: str = "detect"
    model: str | None = None  # a model YAML (trained from scratch) or a local weights file; None: yolov8n
    epochs: int = 30
    imgsz: int = 256
    batch: int = 16
    device: str = "cpu"  # "cpu", "0", or "0,1,2,3" for Ultralytics' multi-GPU (DDP) training
    workers: int = 2
    overrides: dict = field(default_factory=dict)  # further Ultralytics training arguments, passed as given

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, not {self.task!r}")
        for name in ("epochs", "imgsz", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, not {getattr(self, name)}")

    @property
    def model_source(self) -> str:
        return self.model or DEFAULT_MODELS[self.task]

    def to_dict(self) -> dict:
        return {**asdict(self), "model": self.model_source}


@dataclass(frozen=True)
class Evaluation:
    """Ultralytics' validation of one detector on one labelled image set."""

    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]  # class -> {"ap50", "ap50_95", "instances"}

    def to_dict(self) -> dict:
        return asdict(self)


def check_model_source(settings: DetectorSettings) -> str:
    """Fail before any training when the model is neither a known YAML nor a local weights file."""
    source = settings.model_source
    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        if path.is_file() or _packaged_model_yaml(path.name):
            return source
        raise ValueError(f"--model {source}: no such model YAML (neither a file nor one Ultralytics ships)")
    if path.suffix != ".pt":
        raise ValueError(f"--model {source}: expected a model YAML or a local .pt weights file")
    if not path.is_file():
        raise ValueError(
            f"--model {source}: weights must be a local file (ccaug never downloads them); "
            "give the path of a .pt you have, or a model YAML such as yolov8n.yaml to train from scratch"
        )
    return source


def train(data_yaml: Path, run_dir: Path, settings: DetectorSettings, seed: int) -> Path:
    """Train one detector into `run_dir` (Ultralytics' own folder layout); returns the final weights.

    An interrupted run resumes from its ``last.pt``; a finished one is not trained again.
    """
    use_offline_ultralytics()
    from ultralytics import YOLO

    run_dir = Path(run_dir)
    last = run_dir / "weights" / "last.pt"
    if last.is_file() and finished_epochs(run_dir) >= settings.epochs:
        return last
    prepare_amp_check(settings.device)
    if last.is_file():
        YOLO(str(last)).train(resume=True)
        return last
    source = check_model_source(settings)
    model = YOLO(source, task=settings.task)
    arguments = dict(
        data=str(data_yaml),
        epochs=settings.epochs,
        imgsz=settings.imgsz,
        batch=settings.batch,
        device=settings.device,
        workers=settings.workers,
        seed=seed,
        deterministic=True,
        pretrained=source.endswith(".pt"),
        patience=0,  # no early stop: every arm spends its whole budget
        plots=False,  # our report draws its own; Ultralytics' plots would want a font per label
        project=str(run_dir.parent.resolve()),
        name=run_dir.name,
        exist_ok=True,
        verbose=False,
    )
    arguments.update(settings.overrides)
    model.train(**arguments)
    return last


def evaluate(weights: Path, data_yaml: Path, settings: DetectorSettings, out: Path) -> Evaluation:
    """Validate `weights` on the ``val`` split of `data_yaml`; numbers as Ultralytics computes them."""
    use_offline_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(weights), task=settings.task)
    metrics = model.val(
        data=str(data_yaml),
        split="val",
        imgsz=settings.imgsz,
        batch=settings.batch,
        device=settings.device.split(",")[0],
        workers=settings.workers,
        plots=False,
        verbose=False,
        project=str(Path(out).parent.resolve()),
        name=Path(out).name,
        exist_ok=True,
    )
    return _evaluation_from(metrics)


def finished_epochs(run_dir: Path) -> int:
    """Epochs recorded in Ultralytics' ``results.csv`` (0 when the run has not started)."""
    return len(read_curve(run_dir).get("epoch", []))


def read_curve(run_dir: Path) -> dict[str, list[float]]:
    """Ultralytics' per-epoch ``results.csv`` as columns (losses, validation mAP, learning rates)."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key.strip(): [float(row[key]) for row in rows] for key in rows[0]}


def _evaluation_from(metrics) -> Evaluation:
    box = metrics.box
    names = metrics.names
    counts = getattr(metrics, "nt_per_class", None)
    per_class = {}
    for row, class_index in enumerate(box.ap_class_index):
        class_index = int(class_index)
        per_class[names[class_index]] = {
            "ap50": float(box.all_ap[row, 0]),
            "ap50_95": float(box.all_ap[row].mean()),
            "instances": int(counts[class_index]) if counts is not None else -1,
        }
    return Evaluation(float(box.map50), float(box.map), per_class)


def _packaged_model_yaml(name: str) -> bool:
    """Ultralytics resolves ``yolov8n.yaml`` to ``cfg/models/v8/yolov8.yaml`` with scale n."""
    use_offline_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    try:
        yaml_model_load(name)
    except (FileNotFoundError, OSError):
        return False
    return True
