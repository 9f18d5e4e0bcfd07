"""Verification of rendered instances (``ccaug synth --verify``): does a detector trained on real data find them?

A rendered instance is *found* when a prediction of its class overlaps it with IoU at or above a threshold,
predictions matched one-to-one in descending score order, as in COCO-style evaluation. The synth loop then
applies one of `VERIFY_POLICIES` to the instances that were not found.

* `match_instances`: the matching alone, on arrays (pure, no detector);
* `InstanceVerifier`: a local Ultralytics YOLO detector run on a batch of rendered images, its classes mapped
  by name onto the layout's categories;
* `verify_detector`: the weights of that detector, trained once on the real set's ``train`` split and reused.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
import yaml

from ccaug.data.geometry import hbb_to_polygon, polygon_to_hbb
from ccaug.detect.experiment import read_with_classes
from ccaug.detect.mixing import fill_epoch
from ccaug.detect.offline import use_offline_ultralytics
from ccaug.detect.yolo import TASKS, DetectorSettings, train
from ccaug.fileio import write_text
from ccaug.metrics.yoloscore import _write_for_ultralytics

VERIFY_POLICIES = ("drop", "rerender")  # drop: unfound instances leave the labels; rerender: a new seed
# The fewest training images the verifier sees in all: a small real set is repeated within each epoch to reach
# it. 24,000 is the trainability experiment's budget (100 epochs of 240 images), where YOLOv8n reaches 0.59
# mAP50 on 50 real aerial images; 100 epochs of those 50 alone (5,000 seen) reached 0.08 (BENCHMARKS.md).
VERIFIER_MIN_IMAGES_SEEN = 24_000


def match_instances(
    true_labels: np.ndarray,
    true_polygons: np.ndarray,
    pred_labels: np.ndarray,
    pred_polygons: np.ndarray,
    pred_scores: np.ndarray,
    *,
    iou: float = 0.5,
    oriented: bool = False,
) -> np.ndarray:
    """(n,) bool: instance i is found by a prediction of its class with IoU >= iou. Predictions are taken in
    descending score order and each matches at most one instance (its best-IoU unmatched instance of the same
    class), as in COCO-style evaluation. oriented=True: IoU of the polygons (shapely); else IoU of the
    polygons' axis-aligned bounding boxes. Polygons are (k, 8) x1 y1 ... x4 y4 pixels; labels int class indices."""
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], not {iou}")
    true_labels, true_polygons = _checked(true_labels, true_polygons, "true")
    pred_labels, pred_polygons = _checked(pred_labels, pred_polygons, "predicted")
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    if len(pred_scores) != len(pred_labels):
        raise ValueError(f"{len(pred_labels)} predicted labels but {len(pred_scores)} scores")
    found = np.zeros(len(true_labels), dtype=bool)
    if len(true_labels) == 0 or len(pred_labels) == 0:
        return found
    overlap = _same_class_iou(true_labels, true_polygons, pred_labels, pred_polygons, oriented)
    for prediction in np.argsort(-pred_scores, kind="stable"):
        candidates = np.where(found, -1.0, overlap[:, prediction])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou:
            found[best] = True
    return found


def _checked(labels: np.ndarray, polygons: np.ndarray, role: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    polygons = np.asarray(polygons, dtype=np.float64)
    if len(labels) == 0 and polygons.size == 0:
        polygons = polygons.reshape(0, 8)
    if polygons.shape != (len(labels), 8):
        raise ValueError(
            f"{len(labels)} {role} labels need polygons of shape ({len(labels)}, 8), not {polygons.shape}"
        )
    return labels, polygons


def _same_class_iou(
    true_labels: np.ndarray,
    true_polygons: np.ndarray,
    pred_labels: np.ndarray,
    pred_polygons: np.ndarray,
    oriented: bool,
) -> np.ndarray:
    """(n, m) IoU of every instance with every prediction of its class; -1 where the classes differ."""
    overlap = np.full((len(true_labels), len(pred_labels)), -1.0)
    rows, columns = np.nonzero(true_labels[:, None] == pred_labels[None, :])
    pair_iou = _polygon_iou if oriented else _box_iou
    overlap[rows, columns] = pair_iou(true_polygons[rows], pred_polygons[columns])
    return overlap


def _box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of the axis-aligned boxes around each pair of polygons ``(k, 8)``, ``(k, 8)`` -> ``(k,)``."""
    a, b = polygon_to_hbb(first), polygon_to_hbb(second)
    sides = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None)
    intersection = sides.prod(axis=1)
    union = (a[:, 2:] - a[:, :2]).prod(axis=1) + (b[:, 2:] - b[:, :2]).prod(axis=1) - intersection
    return _ratio(intersection, union)


def _polygon_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of each pair of polygons ``(k, 8)``, ``(k, 8)`` -> ``(k,)``, by shapely."""
    a, b = _geometries(first), _geometries(second)
    intersection = shapely.area(shapely.intersection(a, b))
    union = shapely.area(a) + shapely.area(b) - intersection
    return _ratio(intersection, union)


def _geometries(polygons: np.ndarray) -> np.ndarray:
    geometries = shapely.polygons(polygons.reshape(-1, 4, 2))
    broken = ~shapely.is_valid(geometries)  # self-crossing annotator polygons: repair before intersecting
    if broken.any():
        geometries[broken] = shapely.make_valid(geometries[broken])
    return geometries


def _ratio(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Intersection over union, 0 where the union is empty (degenerate boxes overlap nothing)."""
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


class InstanceVerifier:
    """A local YOLO detector that says which rendered instances it finds.

    The detector's classes are matched to `categories` by name, so a detector trained with its classes in
    another order (or with more classes) still verifies correctly. `iou` is the matching threshold of
    `match_instances`, not Ultralytics' NMS IoU (left at its default).
    """

    def __init__(
        self,
        weights: str | Path,
        categories: Sequence[str],
        *,
        task: str = "detect",
        imgsz: int = 256,
        conf: float = 0.25,
        iou: float = 0.5,
        device: str = "cpu",
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
        if not Path(weights).is_file():
            # Ultralytics would try to download a missing name, even offline; refuse before it can.
            raise ValueError(
                f"verification detector {weights}: weights must be a local file (never downloaded)"
            )
        use_offline_ultralytics()
        from ultralytics import YOLO

        self.model = YOLO(str(weights))
        if self.model.task != task:
            raise ValueError(f"verification detector {weights} is a {self.model.task!r} model, not {task!r}")
        self.weights = Path(weights)
        self.categories = list(categories)
        self.task = task
        self.imgsz = imgsz
        self.conf = conf
        self.iou = iou
        self.device = device
        self._category_of_class = _category_of_class(self.model.names, self.categories, self.weights)

    def found(
        self, images: np.ndarray, labels: Sequence[np.ndarray], polygons: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """One ``(n_i,)`` bool array per image: which of its instances the detector finds.

        `images` ``(B, H, W, 3)`` uint8 RGB; `labels[i]` ``(n_i,)`` indices into `categories`; `polygons[i]`
        ``(n_i, 8)`` pixels of the image. The batch is one predict call.
        """
        if not len(images) == len(labels) == len(polygons):
            raise ValueError(
                f"{len(images)} images, {len(labels)} label arrays and {len(polygons)} polygon arrays"
            )
        if len(images) == 0:
            return []  # Ultralytics refuses an empty list of images
        # Ultralytics reads numpy images as OpenCV's BGR.
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in images]
        results = self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False)
        found = []
        for result, true_labels, true_polygons in zip(results, labels, polygons):
            predictions = self._predictions(result)
            oriented = self.task == "obb"
            found.append(
                match_instances(true_labels, true_polygons, *predictions, iou=self.iou, oriented=oriented)
            )
        return found

    def _predictions(self, result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One Ultralytics result as (category indices, (k, 8) polygons, scores), classes outside
        `categories` left out."""
        if self.task == "obb":
            boxes = result.obb.cpu().numpy()
            polygons = boxes.xyxyxyxy.reshape(-1, 8)
        else:
            boxes = result.boxes.cpu().numpy()
            polygons = hbb_to_polygon(boxes.xyxy.reshape(-1, 4))
        categories = self._category_of_class[boxes.cls.astype(np.int64).reshape(-1)]
        known = categories >= 0
        return categories[known], polygons[known], boxes.conf.reshape(-1)[known]


def _category_of_class(names: dict[int, str], categories: list[str], weights: Path) -> np.ndarray:
    """Lookup table detector class id -> index in `categories` (-1 for classes not among them)."""
    missing = [name for name in categories if name not in names.values()]
    if missing:
        raise ValueError(
            f"verification detector {weights} does not know the classes {', '.join(map(repr, missing))} "
            f"(it knows {', '.join(map(repr, names.values()))}); train it on data with these classes"
        )
    table = np.full(max(names) + 1, -1, dtype=np.int64)
    for class_id, name in names.items():
        if name in categories:
            table[class_id] = categories.index(name)
    return table


def verify_detector(
    real: str | Path,
    fmt: str | None,
    out: str | Path,
    settings: DetectorSettings,
    *,
    min_images_seen: int = VERIFIER_MIN_IMAGES_SEEN,
) -> Path:
    """The weights of a detector trained on the real data set's 'train' split (validated on its 'val'), trained
    into `out` with ccaug.detect.yolo.train(seed=0) unless a finished run is already there (train() itself skips
    a finished run and resumes an interrupted one). Return the weights path.

    Each epoch holds the train images repeated up to ``ceil(min_images_seen / epochs)`` entries, so a scarce
    real set still gets a verifier that finds instances; a set at least that large is used once per epoch."""
    out = Path(out)
    use_offline_ultralytics(out / "ultralytics")
    real_set = read_with_classes(real, fmt, None, "real")
    for split in ("train", "val"):
        if not (real_set.images["split"] == split).any():
            raise ValueError(f"{real}: the real data set has no '{split}' images to train the verifier on")
    yolo_format = "yolo-obb" if settings.task == "obb" else "yolo"
    data_yaml = _write_for_ultralytics(real_set, out / "data", yolo_format)
    epoch = math.ceil(min_images_seen / settings.epochs)
    filled = _with_filled_epochs(data_yaml, epoch)
    _warn_if_trained_on_unfilled_epochs(out)
    return train(filled, out, settings, seed=0)


def _warn_if_trained_on_unfilled_epochs(out: Path) -> None:
    """A verifier trained by ccaug before it filled the epochs saw a scarce set only once per epoch and can
    find almost nothing (0.08 mAP50 on 50 real images, BENCHMARKS.md); train() would reuse it as it is."""
    args = out / "args.yaml"
    if not args.is_file():
        return
    trained_on = yaml.safe_load(args.read_text()).get("data") or ""
    if Path(trained_on).name != "train.yaml":
        warnings.warn(
            f"{out}: this verifier was trained on {trained_on}, each real image once per epoch, before ccaug "
            f"repeated a small real set up to {VERIFIER_MIN_IMAGES_SEEN:,} images; on a scarce set it finds "
            "few instances. Delete the folder to train the stronger verifier.",
            stacklevel=3,
        )


def _with_filled_epochs(data_yaml: Path, epoch_size: int) -> Path:
    """A copy of `data_yaml` whose train entry lists its train images, repeated to `epoch_size` if fewer."""
    config = yaml.safe_load(data_yaml.read_text())
    images = sorted(str(path.resolve()) for path in (Path(config["path"]) / config["train"]).iterdir() if path.is_file())
    if not images:
        raise ValueError(f"{data_yaml}: no train images to train the verifier on")
    listed = fill_epoch(images, max(epoch_size, len(images)), np.random.default_rng(0))
    listing = data_yaml.with_name("train-epoch.txt")
    write_text(listing, "".join(f"{path}\n" for path in listed))
    filled = data_yaml.with_name("train.yaml")
    write_text(filled, yaml.safe_dump({**config, "train": str(listing.resolve())}, sort_keys=False, allow_unicode=True))
    return filled
