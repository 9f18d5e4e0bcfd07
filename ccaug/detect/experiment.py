"""The trainability experiment behind ``ccaug train-detector``: arms x seeds, same budget, one report.

Arms (each trained once per seed, on the same scarce real subset for that seed):

- ``real-only``: the real subset alone (the baseline);
- ``synthetic``: the real subset plus synthetic images at the share ``--mix``;
- ``copy-paste``: the real subset plus copy-paste images made from that same subset, at the same share.

Every arm gets the same model, hyper-parameters and budget (see `ccaug.detect.mixing`), and is validated on
the real validation split only. The experiment folder is resumable: a finished run (its ``result.json``)
is never trained again, an interrupted one resumes from its last checkpoint, and a folder that holds a
different experiment is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ccaug.data.dataset import Dataset
from ccaug.data.formats import read_dataset, write_dataset
from ccaug.detect import mixing
from ccaug.detect.offline import prepare_amp_check, use_offline_ultralytics
from ccaug.detect.yolo import DetectorSettings, check_model_source, evaluate, read_curve, train
from ccaug.fileio import write_json, write_text
from ccaug.workspace import resolve_source

BASELINE = "real-only"
SYNTHETIC = "synthetic"
COPY_PASTE = "copy-paste"
AUGMENTS = (COPY_PASTE,)
CONFIG_FILE = "experiment.json"


@dataclass(frozen=True)
class TrainabilityConfig:
    """One experiment; saved as ``experiment.json`` so that a rerun can tell whether it is the same one."""

    real: str
    synthetic: str | None = None
    mix: float = 0.5
    real_fraction: float | None = None
    real_n: int | None = None
    augment: tuple[str, ...] = ()
    seeds: int = 3
    epoch_images: int | None = None  # images per epoch in every arm; None: the largest arm's size
    real_format: str | None = None
    synthetic_format: str | None = None
    detector: DetectorSettings = field(default_factory=DetectorSettings)

    def __post_init__(self) -> None:
        mixing.check_mix(self.mix)
        unknown = set(self.augment) - set(AUGMENTS)
        if unknown:
            raise ValueError(f"--augment {', '.join(sorted(unknown))}: known augmentations are {', '.join(AUGMENTS)}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, not {self.seeds}")
        if (self.synthetic or self.augment) and self.mix == 0:
            raise ValueError("--mix 0 adds no synthetic or copy-paste images; give a share such as --mix 0.5")

    @property
    def arms(self) -> list[str]:
        return [BASELINE] + ([SYNTHETIC] if self.synthetic else []) + list(self.augment)

    def to_dict(self) -> dict:
        return {**asdict(self), "augment": list(self.augment), "detector": self.detector.to_dict()}


@dataclass
class RunResult:
    arm: str
    seed: int
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]
    real_images: int
    extra_images: int
    images_seen: int
    seconds: float
    curve: dict[str, list[float]]


@dataclass
class PreparedData:
    """The data of the experiment, written in Ultralytics' layout under ``OUT/data``."""

    categories: list[str]
    real_train: list[str]  # image paths, sorted
    real_val_dir: Path
    synthetic: list[str]
    real_dataset: Dataset  # the real training split, for copy-paste


def run_trainability(
    config: TrainabilityConfig,
    out: str | Path,
    *,
    log: Callable[[str], None] = print,
    only: Collection[tuple[str, int]] | None = None,
) -> dict:
    """Run every arm for every seed into `out` and write the report; returns the report as a dict.

    `only` runs just those (arm, seed) pairs and writes no report (an empty one only prepares the data):
    after one call with ``only=()``, several processes can share a GPU that one small detector leaves idle,
    each running its own runs of the same folder; a final call without `only` reads them into the report.
    """
    from ccaug.detect.report import write_report

    out = Path(out)
    _claim_folder(out, config)
    use_offline_ultralytics(out / "ultralytics")
    check_model_source(config.detector)
    data = prepare_data(config, out / "data", log=log)
    if only is not None:
        prepare_amp_check(config.detector.device)  # once, before processes could race to write its file
    results = []
    for seed in range(config.seeds):
        arms = plan_arms(config, data, seed, out / "data")
        size = max(mixing.epoch_size(list(arms.values())), config.epoch_images or 0)
        for name, arm in arms.items():
            if only is not None and (name, seed) not in only:
                continue
            log(f"[{len(results) + 1}/{len(config.arms) * config.seeds}] {name}, seed {seed}: "
                f"{len(arm.real)} real + {len(arm.extra)} extra images, {size} per epoch")  # fmt: skip
            results.append(run_arm(config, data, arm, seed, size, out))
    if only is not None:
        return {}
    return write_report(config, results, out)


def prepare_data(config: TrainabilityConfig, folder: Path, *, log: Callable[[str], None] = print) -> PreparedData:
    """Read and check the real and synthetic sets, and write them once for Ultralytics (YOLO or YOLO-OBB)."""
    real_path, real_format = resolve_source(config.real, config.real_format)
    real = read_dataset(real_path, real_format)
    _check_real_splits(real, real_path)
    yolo_format = "yolo-obb" if config.detector.task == "obb" else "yolo"
    real_folder = folder / "real"
    if not (real_folder / "data.yaml").is_file():
        log(f"writing the real data set ({len(real)} images) for Ultralytics")
        write_dataset(real.subset(_ids_of(real, ("train", "val"))), real_folder, yolo_format)
    synthetic_images: list[str] = []
    if config.synthetic:
        synthetic_folder = folder / "synthetic"
        if not (synthetic_folder / "data.yaml").is_file():
            synthetic = load_synthetic(config, real.categories)
            log(f"writing the synthetic data set ({len(synthetic)} images) for Ultralytics")
            write_dataset(synthetic, synthetic_folder, yolo_format)
        synthetic_images = _images_in(synthetic_folder / "images" / "train")
    return PreparedData(
        categories=list(real.categories),
        real_train=_images_in(real_folder / "images" / "train"),
        real_val_dir=real_folder / "images" / "val",
        synthetic=synthetic_images,
        real_dataset=real.split("train"),
    )


def load_synthetic(config: TrainabilityConfig, categories: list[str]) -> Dataset:
    """The synthetic set as one training split, its classes checked against (and ordered as) the real ones."""
    synthetic = read_with_classes(config.synthetic, config.synthetic_format, categories, "synthetic")
    return synthetic.replace(images=synthetic.images.assign(split="train"))


def read_with_classes(source: str | Path, fmt: str | None, categories: list[str] | None, role: str) -> Dataset:
    """A non-empty data set whose classes are among `categories` (if given), indexed in their order (as YOLO
    needs)."""
    path, fmt = resolve_source(source, fmt)
    dataset = read_dataset(path, fmt)
    if len(dataset) == 0:
        raise ValueError(f"{path}: the {role} data set has no images")
    if categories is None or dataset.categories == categories:
        return dataset
    unknown = sorted(set(dataset.instances["category"].astype(str)) - set(categories))
    if unknown:
        raise ValueError(
            f"{path}: the {role} set has classes the real set does not: {', '.join(unknown)} "
            f"(real classes: {', '.join(categories)}); it must be drawn from layouts of the real set's classes"
        )
    return read_dataset(path, fmt, categories=categories)


def plan_arms(config: TrainabilityConfig, data: PreparedData, seed: int, folder: Path) -> dict[str, mixing.ArmImages]:
    """The distinct images of every arm for `seed`; copy-paste images are made here, from the real subset."""
    rng = np.random.default_rng([seed, 0])
    n_real = mixing.scarce_real_count(len(data.real_train), fraction=config.real_fraction, n=config.real_n)
    real = mixing.draw(data.real_train, n_real, rng)
    n_extra = mixing.extra_count(n_real, config.mix)
    arms = {BASELINE: mixing.ArmImages(BASELINE, real)}
    if config.synthetic:
        if n_extra > len(data.synthetic):
            raise ValueError(
                f"--mix {config.mix} with {n_real} real images needs {n_extra} synthetic images, but the "
                f"synthetic set has {len(data.synthetic)}; render more, or lower --mix"
            )
        extra = mixing.draw(data.synthetic, n_extra, np.random.default_rng([seed, 1]))
        arms[SYNTHETIC] = mixing.ArmImages(SYNTHETIC, real, extra)
    if COPY_PASTE in config.augment:
        arms[COPY_PASTE] = mixing.ArmImages(COPY_PASTE, real, make_copy_paste(config, data, real, n_extra, seed, folder))
    return arms


def make_copy_paste(
    config: TrainabilityConfig, data: PreparedData, real: tuple[str, ...], count: int, seed: int, folder: Path
) -> tuple[str, ...]:
    """Copy-paste images made only from the seed's real subset (no instance leaks in from unseen images)."""
    from ccaug.detect.copy_paste import TerrainMaps, copy_paste_dataset

    target = folder / COPY_PASTE / f"seed{seed}"
    yolo_folder = target / "yolo"
    if not (yolo_folder / "data.yaml").is_file():
        stems = {Path(path).stem for path in real}
        donors = data.real_dataset
        keep = donors.images.loc[donors.images["file"].map(lambda file: Path(file).stem in stems), "image_id"]
        donors = donors.subset(keep.tolist())
        terrain = TerrainMaps.find(donors.root, donors) if donors.root is not None else None
        pasted = copy_paste_dataset(donors, target / "dota", n_images=count, seed=seed, terrain=terrain)
        write_dataset(pasted, yolo_folder, "yolo-obb" if config.detector.task == "obb" else "yolo")
    return tuple(_images_in(yolo_folder / "images" / "train"))


def run_arm(
    config: TrainabilityConfig, data: PreparedData, arm: mixing.ArmImages, seed: int, epoch_size: int, out: Path
) -> RunResult:
    """Train and validate one arm for one seed, or read its result if it is already done."""
    run_dir = out / "runs" / arm.name / f"seed{seed}"
    result_file = run_dir / "result.json"
    if result_file.is_file():
        return RunResult(**json.loads(result_file.read_text()))
    data_yaml = write_arm_yaml(data, arm, seed, epoch_size, out / "data" / "lists")
    started = time.perf_counter()
    weights = train(data_yaml, run_dir, config.detector, seed)
    evaluation = evaluate(weights, data_yaml, config.detector, run_dir / "final-val")
    result = RunResult(
        arm=arm.name,
        seed=seed,
        map50=evaluation.map50,
        map50_95=evaluation.map50_95,
        per_class=evaluation.per_class,
        real_images=len(arm.real),
        extra_images=len(arm.extra),
        images_seen=epoch_size * config.detector.epochs,
        seconds=round(time.perf_counter() - started, 1),
        curve=read_curve(run_dir),
    )
    write_json(result_file, asdict(result), indent=1)
    return result


def write_arm_yaml(data: PreparedData, arm: mixing.ArmImages, seed: int, epoch_size: int, folder: Path) -> Path:
    """The arm's image list, filled to the epoch size, and the data YAML that trains on it."""
    images = mixing.fill_epoch(arm.real + arm.extra, epoch_size, np.random.default_rng([seed, 2]))
    listing = folder / f"{arm.name}-seed{seed}.txt"
    write_text(listing, "".join(f"{Path(path).resolve()}\n" for path in images))
    config = {
        "train": str(listing.resolve()),
        "val": str(data.real_val_dir.resolve()),
        "names": dict(enumerate(data.categories)),
    }
    data_yaml = folder / f"{arm.name}-seed{seed}.yaml"
    write_text(data_yaml, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return data_yaml


def _claim_folder(out: Path, config: TrainabilityConfig) -> None:
    """Refuse a folder that holds a different experiment; record this one.

    The number of seeds may change: more seeds extend the experiment, fewer report on the first ones.
    """
    path = out / CONFIG_FILE
    wanted = json.loads(json.dumps(config.to_dict()))
    if path.is_file():
        existing = json.loads(path.read_text())
        changed = sorted(key for key in wanted if key != "seeds" and existing.get(key) != wanted[key])
        if changed:
            raise FileExistsError(
                f"{out} holds a different experiment (differs in: {', '.join(changed)}); "
                "use a new --out, or delete the folder to start over"
            )
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no {CONFIG_FILE}; use a new --out")
    write_json(path, wanted, indent=1)


def _check_real_splits(real: Dataset, path: Path) -> None:
    for split in ("train", "val"):
        if not (real.images["split"] == split).any():
            raise ValueError(
                f"{path}: the real data set has no '{split}' images (splits: {', '.join(map(repr, real.splits))}); "
                "the detector trains on 'train' and is validated on 'val' only"
            )


def _ids_of(dataset: Dataset, splits: tuple[str, ...]) -> list[int]:
    return dataset.images.loc[dataset.images["split"].isin(splits), "image_id"].tolist()


def _images_in(folder: Path) -> list[str]:
    return sorted(str(path) for path in Path(folder).iterdir() if path.is_file())
