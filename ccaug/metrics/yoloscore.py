"""YOLOScore: how well generated images match the layouts they were rendered from (``ccdiff-reference.md`` §6).

A detector trained on real images looks at the generated images and is scored against their layouts with
the usual detection mAP. The same detector's score on the real validation images is reported beside it: that
is the ceiling, since a generated image can at best be as recognisable as a real one. Without ``--detector``,
one is trained here on the real training split (the settings are in the result).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ccaug.data.dataset import Dataset
from ccaug.data.formats import write_dataset
from ccaug.detect.experiment import read_with_classes
from ccaug.detect.offline import use_offline_ultralytics
from ccaug.detect.yolo import DetectorSettings, Evaluation, evaluate, train
from ccaug.fileio import write_json, write_text


@dataclass(frozen=True)
class YoloScore:
    synthetic: Evaluation  # the detector on the generated images, against their layouts
    real: Evaluation  # the same detector on the real validation images (the ceiling)
    detector: str
    synthetic_images: int

    def to_dict(self) -> dict:
        return {
            "synthetic": self.synthetic.to_dict(),
            "real_val": self.real.to_dict(),
            "detector": self.detector,
            "synthetic_images": self.synthetic_images,
        }


def yolo_score(
    real: str | Path,
    synthetic: str | Path,
    out: str | Path,
    *,
    detector: str | Path | None = None,
    settings: DetectorSettings = DetectorSettings(),
    real_format: str | None = None,
    synthetic_format: str | None = None,
) -> YoloScore:
    """Score the images of `synthetic` against their own annotations; writes ``yoloscore.json`` and ``.md``."""
    out = Path(out)
    use_offline_ultralytics(out / "ultralytics")
    if detector is not None and not Path(detector).is_file():
        raise ValueError(f"--detector {detector}: weights must be a local .pt file (ccaug never downloads them)")
    real_set = read_with_classes(real, real_format, None, "real")
    categories = list(real_set.categories)
    for split in ("val",) + (("train",) if detector is None else ()):
        if not (real_set.images["split"] == split).any():
            raise ValueError(f"{real}: the real data set has no '{split}' images")
    generated = read_with_classes(synthetic, synthetic_format, categories, "generated")
    yolo_format = "yolo-obb" if settings.task == "obb" else "yolo"
    real_yaml = _write_for_ultralytics(real_set, out / "data" / "real", yolo_format)
    generated_yaml = _write_for_ultralytics(
        generated.replace(images=generated.images.assign(split="val")), out / "data" / "synthetic", yolo_format
    )
    weights = Path(detector) if detector is not None else train(real_yaml, out / "detector", settings, seed=0)
    result = YoloScore(
        synthetic=evaluate(weights, generated_yaml, settings, out / "val-synthetic"),
        real=evaluate(weights, real_yaml, settings, out / "val-real"),
        detector=str(weights),
        synthetic_images=len(generated),
    )
    write_json(out / "yoloscore.json", {**result.to_dict(), "settings": settings.to_dict()}, indent=1)
    write_text(out / "yoloscore.md", render_markdown(result))
    return result


def render_markdown(score: YoloScore) -> str:
    lines = [
        "# YOLOScore",
        "",
        f"Detector `{score.detector}`, trained on real images, on {score.synthetic_images} generated images "
        "scored against their layouts, and on the real validation images (the ceiling).",
        "",
        "| images | mAP50 | mAP50-95 |",
        "|---|---|---|",
        f"| generated (YOLOScore) | {score.synthetic.map50:.3f} | {score.synthetic.map50_95:.3f} |",
        f"| real val (ceiling) | {score.real.map50:.3f} | {score.real.map50_95:.3f} |",
        "",
        "| class | AP50 generated | AP50 real val | instances generated |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys([*score.synthetic.per_class, *score.real.per_class]):
        generated = score.synthetic.per_class.get(name, {})
        real = score.real.per_class.get(name, {})
        lines.append(
            f"| {name} | {_cell(generated, 'ap50')} | {_cell(real, 'ap50')} | {generated.get('instances', 0)} |"
        )
    return "\n".join(lines) + "\n"


def _write_for_ultralytics(dataset: Dataset, folder: Path, fmt: str) -> Path:
    """The set in Ultralytics' layout, with a data YAML whose ``val`` is the images to score."""
    if not (folder / "data.yaml").is_file():
        write_dataset(dataset, folder, fmt)
    config = yaml.safe_load((folder / "data.yaml").read_text())
    config["path"] = str(folder.resolve())
    config.setdefault("train", config["val"])  # Ultralytics wants the key even for validation only
    data_yaml = folder / "score.yaml"
    write_text(data_yaml, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return data_yaml


def _cell(entry: dict, key: str) -> str:
    return f"{entry[key]:.3f}" if key in entry else "—"
