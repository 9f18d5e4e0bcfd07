"""The layout model: per-class statistics of a real data set, fitted once, saved as one small JSON file.

What is fitted (`LayoutModel.fit`), per class unless said otherwise:

* **counts and co-occurrence**: the count vector of every real image (instances per class, with its scene
  when the images table has a ``scene`` column). Sampling bootstraps a whole vector, so classes appear
  together exactly as often as in the real data; ``cooccurrence`` (share of images holding both classes)
  and ``count_correlation`` are kept for reports;
* **size and aspect**: samples of ``(log long side, log long/short)``, drawn with Gaussian kernel jitter
  (Scott's bandwidth), so size and aspect stay correlated;
* **orientation**: a histogram of the le90 angle over ``[-90, 90)`` degrees;
* **position**: a histogram of box centres over the image, in coordinates normalised by the image size;
* **arrangement**: rows and clusters of same-class neighbours (`ccaug.layouts.groups`).

What scales. Positions are stored normalised, so they follow the image size. Sizes are stored in pixels at
the fitted resolution; sampling at another image size zooms: sizes (and with them the spacing of groups,
which is relative to box size) scale by ``sqrt(width / fitted_width * height / fitted_height)``, and
counts do not change.

A class with fewer than ``min_instances`` instances gets a warning and a broader prior instead of its own
histograms: its sizes with a wide kernel (or, without any instance, the sizes of all classes), a uniform
orientation, the position histogram of all classes pooled, and no groups.

The file is ``{"format": "ccaug-layout-model", "version": 1, ...}``; `LayoutModel.load` refuses any
other format or version, and a corrupted or truncated file, with a message naming the file.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ccaug.data.dataset import Dataset
from ccaug.fileio import write_json
from ccaug.layouts.constraints import LayoutConstraints
from ccaug.layouts.groups import GroupSettings, GroupStats, fit_groups
from ccaug.layouts.sampling import SampleResult, sample_layouts

FORMAT = "ccaug-layout-model"
VERSION = 1
KEEP_SAMPLES = 256  # samples kept per distribution and class: the file stays small
MAX_COUNT_VECTORS = 4096
DEFAULT_BANDWIDTH = (0.5, 0.3)  # log long side, log aspect: the broad prior
# Sizes always get a little jitter; aspect only as much as the data has (round tanks stay round).
MIN_BANDWIDTH = (0.02, 0.0)


@dataclass(frozen=True)
class LayoutFitSettings:
    """Knobs of `LayoutModel.fit` (a recipe section): ``LayoutModel.fit(dataset, **vars(settings))``."""

    min_instances: int = 20
    position_bins: int = 16
    orientation_bins: int = 36
    groups: GroupSettings = GroupSettings()

    def __post_init__(self) -> None:
        for name in ("min_instances", "position_bins", "orientation_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is a whole number, at least 1, not {value!r}")


@dataclass
class ClassModel:
    """One class's fitted distributions; array shapes below, angles in degrees."""

    name: str
    instances: int
    fallback: bool
    size: np.ndarray  # (S, 2) samples of log long side (px), log aspect
    bandwidth: np.ndarray  # (2,) kernel sigma for size samples
    orientation: np.ndarray  # (B,) probabilities of angle bins over [-90, 90)
    position: np.ndarray  # (P, P) probabilities, rows top to bottom, columns left to right
    groups: GroupStats = field(default_factory=GroupStats)

    def __post_init__(self) -> None:
        self.size = np.asarray(self.size, dtype=np.float64).reshape(-1, 2)
        self.bandwidth = np.asarray(self.bandwidth, dtype=np.float64).reshape(2)
        self.orientation = np.asarray(self.orientation, dtype=np.float64).reshape(-1)
        self.position = np.asarray(self.position, dtype=np.float64)
        if len(self.size) == 0 or not np.isfinite(self.size).all():
            raise ValueError(f"class {self.name!r} needs finite size samples")
        if not np.isfinite(self.bandwidth).all() or (self.bandwidth < 0).any():
            raise ValueError(f"class {self.name!r}: size bandwidth must be finite and non-negative")
        if self.position.ndim != 2 or self.position.shape[0] != self.position.shape[1]:
            raise ValueError(
                f"class {self.name!r}: position histogram must be square, got {self.position.shape}"
            )
        for name, histogram in (("orientation", self.orientation), ("position", self.position)):
            if not np.isfinite(histogram).all() or (histogram < 0).any() or histogram.sum() <= 0:
                raise ValueError(f"class {self.name!r}: {name} histogram must hold non-negative weights")


@dataclass
class LayoutModel:
    """A fitted layout model; see the module docstring for what it holds and how it scales."""

    categories: list[str]
    image_size: tuple[int, int]  # (width, height) of the fitted images (median)
    count_vectors: np.ndarray  # (V, K) int: distinct per-image instance counts
    count_weights: np.ndarray  # (V,) how many images had each vector
    count_scenes: list[str] | None  # (V,) scene of each vector, when the data set had scenes
    classes: list[ClassModel]
    cooccurrence: np.ndarray  # (K, K) share of images holding both classes
    count_correlation: np.ndarray  # (K, K) correlation of per-image counts
    images: int = 0
    warnings: list[str] = field(default_factory=list)
    settings: LayoutFitSettings = LayoutFitSettings()

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        k = len(self.categories)
        self.count_vectors = np.asarray(self.count_vectors, dtype=np.int64).reshape(-1, k)
        self.count_weights = np.asarray(self.count_weights, dtype=np.float64).reshape(-1)
        self.cooccurrence = np.asarray(self.cooccurrence, dtype=np.float64).reshape(k, k)
        self.count_correlation = np.asarray(self.count_correlation, dtype=np.float64).reshape(k, k)
        if len(self.count_vectors) == 0 or len(self.count_weights) != len(self.count_vectors):
            raise ValueError("a layout model needs at least one count vector, with one weight each")
        if (self.count_vectors < 0).any() or (self.count_weights <= 0).any():
            raise ValueError("counts must be non-negative and weights positive")
        if self.count_scenes is not None and len(self.count_scenes) != len(self.count_vectors):
            raise ValueError(f"{len(self.count_scenes)} scenes for {len(self.count_vectors)} count vectors")
        if not self.categories or [c.name for c in self.classes] != list(self.categories):
            raise ValueError("the class models must follow the (non-empty) category list")
        if (
            len({c.orientation.shape for c in self.classes}) > 1
            or len({c.position.shape for c in self.classes}) > 1
        ):
            raise ValueError("all classes must share the orientation bins and the position grid")
        if min(self.image_size) < 1:
            raise ValueError(f"image size must be positive, got {self.image_size}")

    @property
    def mean_counts(self) -> np.ndarray:
        """``(K,)`` mean instances per image of each class in the fitted data."""
        return self.count_weights @ self.count_vectors / self.count_weights.sum()

    # ----------------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        *,
        min_instances: int = 20,
        position_bins: int = 16,
        orientation_bins: int = 36,
        groups: GroupSettings = GroupSettings(),
    ) -> LayoutModel:
        """Fit every distribution of the module docstring to `dataset` (deterministic: no seed needed)."""
        settings = LayoutFitSettings(min_instances, position_bins, orientation_bins, groups)
        if len(dataset.images) == 0 or not dataset.categories:
            raise ValueError("cannot fit a layout model to a data set without images or categories")
        return _fit(dataset, settings)

    def sample(
        self,
        n: int,
        *,
        seed: int,
        size: int | tuple[int, int] | None = None,
        constraints: LayoutConstraints = LayoutConstraints(),
        arrangement: str = "groups",
    ) -> SampleResult:
        """Sample `n` layouts; layout i depends only on (`seed`, i), never on `n`.

        `size` is the image side or ``(width, height)`` (default: the fitted size). `arrangement` is
        ``"groups"`` (rows and clusters as fitted) or ``"scatter"`` (every instance placed on its own).
        """
        return sample_layouts(self, n, seed=seed, size=size, constraints=constraints, arrangement=arrangement)

    # ----------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model as one JSON file, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LayoutModel:
        """Read a model written by `save`; any other format, version or a damaged file is a ValueError."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: not a readable layout model (corrupted or truncated JSON: {error})"
            ) from error
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not a layout model (not UTF-8 text)") from error
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: not a ccaug layout model (format {found!r}, expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(
                f"{path}: layout model written by version {data.get('version')!r}; this ccaug reads version {VERSION}"
            )
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            problem = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise ValueError(f"{path}: corrupted layout model ({problem})") from error

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "categories": list(self.categories),
            "image_size": list(self.image_size),
            "images": self.images,
            "settings": asdict(self.settings),
            "counts": {
                "vectors": self.count_vectors.tolist(),
                "weights": self.count_weights.tolist(),
                "scenes": self.count_scenes,
            },
            "cooccurrence": self.cooccurrence.tolist(),
            "count_correlation": self.count_correlation.tolist(),
            "classes": [_class_to_dict(model) for model in self.classes],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict) -> LayoutModel:
        settings = dict(data["settings"])
        settings["groups"] = GroupSettings(**settings["groups"])
        counts = data["counts"]
        return cls(
            categories=[str(name) for name in data["categories"]],
            image_size=tuple(data["image_size"]),
            count_vectors=counts["vectors"],
            count_weights=counts["weights"],
            count_scenes=counts["scenes"],
            classes=[_class_from_dict(entry) for entry in data["classes"]],
            cooccurrence=data["cooccurrence"],
            count_correlation=data["count_correlation"],
            images=int(data["images"]),
            warnings=[str(line) for line in data["warnings"]],
            settings=LayoutFitSettings(**settings),
        )


def _class_to_dict(model: ClassModel) -> dict:
    groups = model.groups
    return {
        "name": model.name,
        "instances": model.instances,
        "fallback": model.fallback,
        "size": model.size.tolist(),
        "bandwidth": model.bandwidth.tolist(),
        "orientation": model.orientation.tolist(),
        "position": model.position.tolist(),
        "groups": {
            "fraction": groups.fraction,
            "shapes": groups.shapes.tolist(),
            "gap": groups.gap.tolist(),
            "phi": groups.phi.tolist(),
            "line_gap": groups.line_gap.tolist(),
            "theta_jitter": groups.theta_jitter,
            "size_jitter": groups.size_jitter,
            "neighbours": groups.neighbours,
        },
    }


def _class_from_dict(entry: dict) -> ClassModel:
    return ClassModel(
        name=str(entry["name"]),
        instances=int(entry["instances"]),
        fallback=bool(entry["fallback"]),
        size=entry["size"],
        bandwidth=entry["bandwidth"],
        orientation=entry["orientation"],
        position=entry["position"],
        groups=GroupStats(**entry["groups"]),
    )


# --------------------------------------------------------------------------------------------------------
# fitting
def _fit(dataset: Dataset, settings: LayoutFitSettings) -> LayoutModel:
    images = dataset.images
    k = len(dataset.categories)
    rng = np.random.default_rng(
        0
    )  # only subsamples stored distributions; fixed so that a fit is reproducible
    row_of = pd.Index(images["image_id"]).get_indexer(dataset.instances["image_id"])
    labels = dataset.category_index()
    boxes = dataset.le90
    usable = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0)
    row_of, labels, boxes = row_of[usable], labels[usable], boxes[usable]
    width = images["width"].to_numpy(dtype=np.float64)
    height = images["height"].to_numpy(dtype=np.float64)
    centre = np.clip(boxes[:, :2] / np.column_stack([width[row_of], height[row_of]]), 0, 1 - 1e-9)

    counts = np.zeros((len(images), k), dtype=np.int64)
    np.add.at(counts, (row_of, labels), 1)
    scenes = _scenes(images)
    vectors, weights, vector_scenes = _count_vectors(counts, scenes, rng)

    pooled_position = _position_histogram(centre, settings.position_bins)
    pooled_size = _size_samples(boxes)
    messages: list[str] = []
    classes = []
    for label, name in enumerate(dataset.categories):
        mine = labels == label
        fallback = int(mine.sum()) < settings.min_instances
        if fallback:
            message = (
                f"class {name!r} has {int(mine.sum())} instances, fewer than min_instances="
                f"{settings.min_instances}: using a broad prior (wide size kernel, uniform orientation, "
                "the position histogram of all classes, no groups)"
            )
            messages.append(message)
            warnings.warn(message, stacklevel=3)
            classes.append(_fallback_class(name, boxes[mine], pooled_size, pooled_position, settings, rng))
        else:
            classes.append(_fit_class(name, boxes[mine], centre[mine], row_of[mine], settings, rng))

    present = (counts > 0).astype(np.float64)
    return LayoutModel(
        categories=list(dataset.categories),
        image_size=(int(np.median(width)), int(np.median(height))),
        count_vectors=vectors,
        count_weights=weights,
        count_scenes=vector_scenes,
        classes=classes,
        cooccurrence=(present.T @ present / len(images)).round(4),
        count_correlation=_correlation(counts).round(4),
        images=len(images),
        warnings=messages,
        settings=settings,
    )


def _scenes(images: pd.DataFrame) -> np.ndarray | None:
    if "scene" not in images.columns:
        return None
    return images["scene"].fillna("").astype(str).to_numpy()


def _count_vectors(
    counts: np.ndarray, scenes: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Distinct ``(scene, count vector)`` pairs and how many images had each.

    Above `MAX_COUNT_VECTORS` images, a bootstrap of that many images stands for them (an unbiased draw
    that keeps the file small for data sets of tens of thousands of tiles).
    """
    if len(counts) > MAX_COUNT_VECTORS:
        pick = np.sort(rng.choice(len(counts), MAX_COUNT_VECTORS, replace=True))
        counts, scenes = counts[pick], (scenes[pick] if scenes is not None else None)
    if scenes is None:
        vectors, weights = np.unique(counts, axis=0, return_counts=True)
        return vectors, weights.astype(np.float64), None
    names, scene_code = np.unique(scenes, return_inverse=True)
    keyed, weights = np.unique(np.column_stack([scene_code, counts]), axis=0, return_counts=True)
    return keyed[:, 1:], weights.astype(np.float64), names[keyed[:, 0]].tolist()


def _correlation(counts: np.ndarray) -> np.ndarray:
    spread = counts.std(axis=0)
    centred = counts - counts.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = (centred.T @ centred / len(counts)) / np.outer(spread, spread)
    return np.nan_to_num(correlation, nan=0.0)


def _fit_class(
    name: str,
    boxes: np.ndarray,
    centre: np.ndarray,
    image_of: np.ndarray,
    settings: LayoutFitSettings,
    rng: np.random.Generator,
) -> ClassModel:
    """Histograms, size samples and groups of one class with enough instances; `boxes` ``(N, 5)`` le90."""
    samples = _size_samples(boxes)
    bins = settings.orientation_bins
    angle = np.degrees(boxes[:, 4])
    orientation = np.histogram(angle, bins=bins, range=(-90, 90))[0] / len(boxes)
    return ClassModel(
        name=name,
        instances=len(boxes),
        fallback=False,
        size=_subsample_rows(samples, rng).round(4),
        bandwidth=_scott_bandwidth(samples),
        orientation=orientation.round(6),
        position=_position_histogram(centre, settings.position_bins),
        groups=fit_groups(boxes, image_of, settings.groups, rng, KEEP_SAMPLES),
    )


def _fallback_class(
    name: str,
    boxes: np.ndarray,
    pooled_size: np.ndarray,
    pooled_position: np.ndarray,
    settings: LayoutFitSettings,
    rng: np.random.Generator,
) -> ClassModel:
    """The broad prior of a class with too few instances (see the module docstring)."""
    samples = _size_samples(boxes) if len(boxes) else pooled_size
    if len(samples) == 0:  # a data set without any instance: boxes a twentieth of an image side, aspect 2
        samples = np.array([[np.log(16.0), np.log(2.0)]])
    bandwidth = np.maximum(_scott_bandwidth(samples), DEFAULT_BANDWIDTH)
    bins, cells = settings.orientation_bins, settings.position_bins
    return ClassModel(
        name=name,
        instances=len(boxes),
        fallback=True,
        size=_subsample_rows(samples, rng).round(4),
        bandwidth=bandwidth,
        orientation=np.full(bins, 1.0 / bins).round(6),
        position=pooled_position if pooled_position.sum() > 0 else np.full((cells, cells), 1.0 / cells**2),
    )


def _size_samples(boxes: np.ndarray) -> np.ndarray:
    """``(N, 2)`` log long side and log aspect of le90 boxes (short sides floored at 0.1 px)."""
    long = boxes[:, 2]
    short = np.clip(boxes[:, 3], 0.1, None)
    return np.column_stack([np.log(long), np.log(np.maximum(long / short, 1.0))])


def _scott_bandwidth(samples: np.ndarray) -> np.ndarray:
    """Per-dimension Gaussian kernel sigma by Scott's rule for two dimensions (``sigma n^(-1/6)``)."""
    spread = samples.std(axis=0) if len(samples) > 1 else np.zeros(2)
    return np.maximum(spread * len(samples) ** (-1 / 6), MIN_BANDWIDTH).round(4)


def _subsample_rows(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= KEEP_SAMPLES:
        return values
    return values[np.sort(rng.choice(len(values), KEEP_SAMPLES, replace=False))]


def _position_histogram(centre: np.ndarray, cells: int) -> np.ndarray:
    """``(cells, cells)`` share of normalised centres per cell; rows are y (top first), columns x."""
    if len(centre) == 0:
        return np.zeros((cells, cells))
    histogram = np.histogram2d(centre[:, 1], centre[:, 0], bins=cells, range=[[0, 1], [0, 1]])[0]
    return (histogram / len(centre)).round(6)
