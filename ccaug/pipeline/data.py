"""What the generator eats: `GeneratorBatch`es built from a data set (training) or from layouts (sampling).

Training (`GeneratorTrainingData`, a torch ``Dataset``, batched by `collate`): each item is one image of
the data set with

* the image, decoded with PIL as RGB and resized to ``resolution``² **bilinearly with the aspect ratio
  ignored**, as the reference does (DIOR's 800² and DOTA's square tiles are square anyway; a non-square
  image is stretched, and its normalised polygons stretch with it), mapped to [-1, 1];
* its instances: labels as indices in the generator's category list and polygons normalised by the image's
  width and height;
* its global caption (`ccaug.layouts.captions`), computed once for every image at construction;
* one reference crop per instance from the instance bank, of the instance's class and a similar aspect
  ratio, never from the image itself (or its near-duplicates), and a background reference from the
  background bank, retrieved by caption, never the image itself (the reference's leakage, §8.6).

Decisions:

* **More instances than slots.** An image with more than ``max_instances`` instances keeps its
  ``max_instances`` largest (by polygon area) in the slots; how many images and instances that affects is
  counted at construction and reported once as a warning (`truncated_images`, `dropped_instances`). The
  reference truncates DIOR to the first 6 objects in file order, silently (§8.8). The **caption still counts
  every object**: it describes the target image, which does show the dropped objects, so the text explains
  pixels that no slot explains, instead of telling the model that "three ships" may look like five. At
  sampling a layout has no dropped objects (`layout_batches` refuses a layout with too many), so caption
  and slots agree there.
* **Randomness.** The reference and background draws (and the flips) of item i in epoch e come from
  ``default_rng(SeedSequence([seed, e, i]))``: the same item whatever the worker count, batch or order.
  Call `set_epoch` before iterating each epoch; with ``persistent_workers=True`` the workers keep their
  copy of the epoch, so leave that off.
* **Flips.** ``flip="none"`` (default) is the reference's: no augmentation. ``flip="hv"`` mirrors image
  and layout together, horizontally and vertically each with probability 1/2; the caption is that of the
  mirrored layout (positions and directions mirror too) and the background is retrieved with it. Captions
  and their embeddings are computed for the four variants at construction.
* **Caption embeddings** for retrieval are computed once at construction with `embed_text`, so the text
  encoder never runs in a DataLoader worker (and is never pickled into one).

Sampling (`layout_batches`): batches of layouts without images; layout k's references and background come
from ``default_rng(SeedSequence([seed, k]))``, so a layout gets the same ones whatever batch it is in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.geometry import polygon_area
from ccaug.layouts.captions import captions as layout_captions
from ccaug.layouts.layout import Layout, layouts_from_dataset
from ccaug.model.background_bank import BackgroundBank
from ccaug.model.batch import GeneratorBatch
from ccaug.model.instance_bank import InstanceBank

FLIP_MODES = ("none", "hv")
# The mirrorings of `flip="hv"`, as (horizontal, vertical); variant v of an image is _FLIPS[v].
_FLIPS = ((False, False), (True, False), (False, True), (True, True))
_EMBED_BATCH = 256

EmbedText = Callable[[list[str]], np.ndarray]


@dataclass
class GeneratorItem:
    """One layout before batching, n = its instance count (S, S_bg = the banks' image sizes).

    labels ``(n,)`` long (generator category indices), polygons ``(n, 8)`` float32 normalised, references
    ``(n, 3, S, S)`` and background ``(3, S_bg, S_bg)`` float32 in [0, 1], image ``(3, R, R)`` float32 in
    [-1, 1] (training only). `reference_rows` ``(n,)`` and `background_row` are the bank rows the
    references came from (a key for caching their encoder features).
    """

    caption: str
    labels: torch.Tensor
    polygons: torch.Tensor
    references: torch.Tensor
    background: torch.Tensor
    reference_rows: np.ndarray
    background_row: int
    image: torch.Tensor | None = None
    image_id: int | None = None


class GeneratorTrainingData(torch.utils.data.Dataset):
    """The training images of the generator, one `GeneratorItem` per image of `dataset` (images-table order).

    `categories` is the generator's category list, checked against the data set by
    `check_training_categories`. `embed_text` must be the text embedding `background_bank` was built with.
    Batch with ``DataLoader(data, batch_size=..., collate_fn=collate)``.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        categories: Sequence[str],
        resolution: int,
        max_instances: int,
        instance_bank: InstanceBank,
        background_bank: BackgroundBank,
        embed_text: EmbedText,
        top_k: int = 5,
        seed: int = 0,
        flip: str = "none",
    ) -> None:
        if resolution < 1 or max_instances < 1 or top_k < 1:
            raise ValueError(
                f"resolution, max_instances and top_k must be positive, got {resolution}, {max_instances} "
                f"and {top_k}"
            )
        if flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, not {flip!r}")
        if dataset.root is None:
            raise ValueError("the data set has no root folder, so its images cannot be read")
        _check_seed(seed)
        check_training_categories(dataset, categories)
        self.categories = list(categories)
        _check_bank_has(instance_bank, self.categories)

        self.root = dataset.root
        self.resolution = int(resolution)
        self.max_instances = int(max_instances)
        self.instance_bank = instance_bank
        self.background_bank = background_bank
        self.top_k = int(top_k)
        self.seed = int(seed)
        self.flip = flip
        self.epoch = 0
        self._image_ids = dataset.images["image_id"].to_numpy()
        self._sizes = dataset.images[["width", "height"]].to_numpy()
        self._files = dataset.images["file"].tolist()
        self._to_generator = _label_map(dataset.categories, self.categories)
        self._to_bank = _label_map(dataset.categories, instance_bank.categories)

        full = layouts_from_dataset(dataset)
        variants = _FLIPS if flip == "hv" else _FLIPS[:1]
        # (variants, images): the caption of every mirroring of every full layout, and its embedding
        self._captions = [
            layout_captions([_mirror(layout, *axes) for layout in full], dataset.categories)
            for axes in variants
        ]
        self._embeddings = np.stack([_embed(embed_text, texts, background_bank) for texts in self._captions])
        self._layouts = [keep_largest(layout, self.max_instances) for layout in full]
        counts = np.array([len(layout) for layout in full])
        over = counts > self.max_instances
        self.truncated_images = int(over.sum())
        self.dropped_instances = int((counts[over] - self.max_instances).sum())
        if self.truncated_images:
            warnings.warn(
                f"{self.truncated_images} of {len(full)} images have more than max_instances="
                f"{self.max_instances} instances: their {self.dropped_instances} smallest instances (of "
                f"{int(counts.sum())} in the data set) get no slot; their captions still count them",
                stacklevel=2,
            )

    @property
    def captions(self) -> list[str]:
        """The caption of every image, unmirrored, in images-table order."""
        return self._captions[0]

    @property
    def all_captions(self) -> list[str]:
        """Every caption an item can carry (each mirrored variant's too with ``flip="hv"``), without repeats."""
        variants = self._captions if self.flip == "hv" else self._captions[:1]
        return list(dict.fromkeys(text for texts in variants for text in texts))

    @property
    def image_ids(self) -> np.ndarray:
        """The image id of every item, in images-table order."""
        return self._image_ids

    def image_path(self, index: int) -> Path:
        """The file of item `index`."""
        return self.root / self._files[index]

    def read_image(self, index: int) -> torch.Tensor:
        """``(3, R, R)`` float32 in [-1, 1]: item `index`'s image as training reads it, unmirrored."""
        width, height = (int(side) for side in self._sizes[index])
        return self._read_image(index, width, height)

    def set_epoch(self, epoch: int) -> None:
        """Draw the references (and flips) of `epoch` from now on; call it before each epoch's iteration."""
        _check_seed(epoch)
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._layouts)

    def __getitem__(self, index: int) -> GeneratorItem:
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} of a data set of {len(self)} images")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(index)]))
        horizontal = vertical = False
        if self.flip == "hv":
            horizontal, vertical = (bool(flipped) for flipped in rng.random(2) < 0.5)
        variant = _FLIPS.index((horizontal, vertical))
        width, height = (int(side) for side in self._sizes[index])
        layout = _mirror(self._layouts[index], horizontal, vertical)
        image = self._read_image(index, width, height)
        flipped_dims = [dim for dim, flipped in ((2, horizontal), (1, vertical)) if flipped]
        if flipped_dims:
            image = image.flip(flipped_dims)
        image_id = int(self._image_ids[index])
        reference_rows = self.instance_bank.pick(
            self._to_bank[layout.labels],
            self.instance_bank.aspect_ratios(layout.polygons),
            rng,
            top_k=self.top_k,
            exclude_image=image_id,
        )
        (background_row,) = self.background_bank.retrieve(
            self._embeddings[variant, index][None], rng, top_k=self.top_k, exclude=[image_id]
        )
        return GeneratorItem(
            caption=self._captions[variant][index],
            labels=torch.from_numpy(self._to_generator[layout.labels]),
            polygons=_normalised(layout.polygons, width, height),
            references=_references(self.instance_bank, reference_rows),
            background=self.background_bank.images(np.array([background_row]))[0],
            reference_rows=reference_rows,
            background_row=int(background_row),
            image=image,
            image_id=image_id,
        )

    def _read_image(self, index: int, width: int, height: int) -> torch.Tensor:
        """``(3, R, R)`` float32 in [-1, 1]."""
        path = self.root / self._files[index]
        with Image.open(path) as file:
            if file.size != (width, height):
                raise ValueError(
                    f"{path} is {file.size[0]}x{file.size[1]} but the images table says {width}x{height}; "
                    "its polygons would be normalised wrongly"
                )
            resized = file.convert("RGB").resize(
                (self.resolution, self.resolution), Image.Resampling.BILINEAR
            )
        pixels = torch.from_numpy(np.array(resized)).permute(2, 0, 1)
        return pixels.float().div_(127.5).sub_(1.0)

    def __repr__(self) -> str:
        return (
            f"GeneratorTrainingData({len(self)} images at {self.resolution}², {len(self.categories)} classes, "
            f"max_instances={self.max_instances}, flip={self.flip!r}, seed={self.seed}, epoch={self.epoch})"
        )


def check_training_categories(dataset: Dataset, categories: Sequence[str]) -> None:
    """Refuse a data set the generator cannot be trained on with `categories` (its category list).

    Every class with instances in `dataset` must be one of `categories`, and every one of `categories`
    must have an instance: a recipe that names a class the data cannot teach is refused before training
    (and before any bank is built, when called first).
    """
    if len(set(categories)) != len(categories):
        raise ValueError(f"the generator's categories {list(categories)} name a class twice")
    present = set(dataset.instances["category"].astype(str))
    unknown = sorted(present - set(categories))
    if unknown:
        raise ValueError(
            f"the data set has instances of {unknown}, which are not among the generator's categories "
            f"{list(categories)}; add them to the recipe's categories or drop those instances"
        )
    missing = [category for category in categories if category not in present]
    if missing:
        raise ValueError(
            f"the data set has no instance of {missing}, which the generator's categories name: the "
            f"generator could not learn them. Remove them from the recipe or train on data that has them"
        )


def collate(items: Sequence[GeneratorItem], max_instances: int | None = None) -> GeneratorBatch:
    """Pad B items to N slots: the largest instance count among them, or exactly `max_instances`.

    Padded slots hold zeros (label 0, polygon 0, black reference, bank row -1) and are False in ``valid``. Images and
    image ids are stacked when every item has them (training), else left None (sampling).
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    counts = [len(item.labels) for item in items]
    slots = max(counts) if max_instances is None else int(max_instances)
    if max(counts) > slots:
        raise ValueError(f"an item has {max(counts)} instances, more than max_instances={slots}")
    size = items[0].references.shape[-1]
    labels = torch.zeros(len(items), slots, dtype=torch.long)
    valid = torch.zeros(len(items), slots, dtype=torch.bool)
    polygons = torch.zeros(len(items), slots, 8, dtype=torch.float32)
    references = torch.zeros(len(items), slots, 3, size, size, dtype=torch.float32)
    reference_rows = torch.full((len(items), slots), -1, dtype=torch.long)
    for row, (item, count) in enumerate(zip(items, counts)):
        labels[row, :count] = item.labels
        valid[row, :count] = True
        polygons[row, :count] = item.polygons
        references[row, :count] = item.references
        reference_rows[row, :count] = torch.as_tensor(np.asarray(item.reference_rows, dtype=np.int64))
    with_images = all(item.image is not None for item in items)
    return GeneratorBatch(
        captions=[item.caption for item in items],
        labels=labels,
        valid=valid,
        polygons=polygons,
        references=references,
        background=torch.stack([item.background for item in items]),
        images=torch.stack([item.image for item in items]) if with_images else None,
        image_ids=[item.image_id for item in items] if with_images else None,
        reference_rows=reference_rows,
        background_rows=torch.tensor([item.background_row for item in items], dtype=torch.long),
    )


def layout_batches(
    layouts: Sequence[Layout],
    categories: Sequence[str],
    captions: Sequence[str],
    *,
    instance_bank: InstanceBank,
    background_bank: BackgroundBank,
    embed_text: EmbedText,
    batch_size: int,
    seed: int,
    top_k: int = 5,
    generator_categories: Sequence[str] | None = None,
    layout_ids: Sequence[int] | None = None,
    max_instances: int | None = None,
) -> Iterator[tuple[list[int], GeneratorBatch]]:
    """Batches of layouts to sample, each with the ids of its layouts: ``(ids, GeneratorBatch)``, no images.

    `categories` names the layouts' labels; `generator_categories` is the generator's list when it differs
    (labels are mapped by name). `captions` are the layouts' captions, in order. Layout k's references and
    background are drawn with ``default_rng(SeedSequence([seed, layout_ids[k]]))`` (ids default to
    0..L-1; give the global index when passing one shard of a larger set), so a layout gets the same ones
    whatever batch it is in. `max_instances` pads every batch to that many slots, and a layout with more
    instances is refused before anything is drawn: dropping objects at sampling would leave annotations
    the image does not show.
    """
    if len(captions) != len(layouts):
        raise ValueError(f"{len(captions)} captions for {len(layouts)} layouts")
    if batch_size < 1 or top_k < 1:
        raise ValueError(f"batch_size and top_k must be positive, got {batch_size} and {top_k}")
    ids = list(range(len(layouts))) if layout_ids is None else [int(value) for value in layout_ids]
    if len(ids) != len(layouts):
        raise ValueError(f"{len(ids)} layout ids for {len(layouts)} layouts")
    _check_seed(seed, *ids)
    if max_instances is not None:
        crowded = [index for index, layout in enumerate(layouts) if len(layout) > max_instances]
        if crowded:
            raise ValueError(
                f"{len(crowded)} layouts (e.g. {crowded[:5]}) have more than max_instances={max_instances} "
                "instances; sample layouts with at most that many"
            )
    if generator_categories is None:
        generator_categories = categories
    to_generator = _label_map(categories, generator_categories)
    to_bank = _label_map(categories, instance_bank.categories)
    used = [
        categories[label] for label in sorted({int(label) for layout in layouts for label in layout.labels})
    ]
    unknown = [name for name in used if name not in generator_categories]
    if unknown:
        raise ValueError(f"the layouts have instances of {unknown}, which the generator does not know")
    _check_bank_has(instance_bank, used)

    for start in range(0, len(layouts), batch_size):
        chunk = range(start, min(start + batch_size, len(layouts)))
        texts = [captions[index] for index in chunk]
        embeddings = _embed(embed_text, texts, background_bank)
        items = []
        for row, index in enumerate(chunk):
            layout = layouts[index]
            rng = np.random.default_rng(np.random.SeedSequence([seed, ids[index]]))
            reference_rows = instance_bank.pick(
                to_bank[layout.labels], instance_bank.aspect_ratios(layout.polygons), rng, top_k=top_k
            )
            (background_row,) = background_bank.retrieve(embeddings[row][None], rng, top_k=top_k)
            items.append(
                GeneratorItem(
                    caption=texts[row],
                    labels=torch.from_numpy(to_generator[layout.labels]),
                    polygons=_normalised(layout.polygons, layout.width, layout.height),
                    references=_references(instance_bank, reference_rows),
                    background=background_bank.images(np.array([background_row]))[0],
                    reference_rows=reference_rows,
                    background_row=int(background_row),
                )
            )
        yield [ids[index] for index in chunk], collate(items, max_instances)


# --------------------------------------------------------------------------------------------------------
# helpers


def _label_map(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """``(len(source),)`` int64: the index in `target` of each `source` class (-1 where it has none).

    Only classes that occur are checked (by the callers), so an unused class may be missing from `target`.
    """
    position = {name: index for index, name in enumerate(target)}
    return np.array([position.get(name, -1) for name in source], dtype=np.int64)


def _check_bank_has(instance_bank: InstanceBank, names: Sequence[str]) -> None:
    counts = instance_bank.counts()
    lacking = [name for name in names if counts.get(name, 0) == 0]
    if lacking:
        raise ValueError(
            f"the instance bank has no crops of {lacking}, so their slots would get no reference; build it "
            f"from data with such instances (its classes: {instance_bank.categories})"
        )


def _check_seed(*values: int) -> None:
    if any(int(value) < 0 for value in values):
        raise ValueError(f"seeds, epochs and layout ids must be non-negative integers, got {list(values)}")


def keep_largest(layout: Layout, max_instances: int) -> Layout:
    """The layout with only its `max_instances` largest instances (by area), in their original order."""
    if len(layout) <= max_instances:
        return layout
    largest = np.argsort(-polygon_area(layout.polygons), kind="stable")[:max_instances]
    return layout.select(np.sort(largest))


def _mirror(layout: Layout, horizontal: bool, vertical: bool) -> Layout:
    """The layout mirrored left-right and/or top-bottom in its own pixel frame (x -> W - x, y -> H - y)."""
    if not (horizontal or vertical):
        return layout
    polygons = layout.polygons.copy()
    if horizontal:
        polygons[:, 0::2] = layout.width - polygons[:, 0::2]
    if vertical:
        polygons[:, 1::2] = layout.height - polygons[:, 1::2]
    if horizontal != vertical:
        # One mirroring reverses the corners' turning direction; walking them backwards restores it, so a
        # mirrored polygon winds like the data set's own.
        polygons = polygons.reshape(-1, 4, 2)[:, [0, 3, 2, 1]].reshape(-1, 8)
    return layout.with_instances(layout.labels, polygons)


def _normalised(polygons: np.ndarray, width: int, height: int) -> torch.Tensor:
    """``(n, 8)`` pixel corners -> ``(n, 8)`` float32 divided by the image width (x) and height (y)."""
    scale = np.tile([1.0 / width, 1.0 / height], 4)
    return torch.from_numpy((polygons * scale).astype(np.float32))


def _references(instance_bank: InstanceBank, rows: np.ndarray) -> torch.Tensor:
    """``(n,)`` bank rows -> ``(n, 3, S, S)``, also for n = 0."""
    if len(rows) == 0:
        size = instance_bank.crop_size
        return torch.zeros(0, 3, size, size, dtype=torch.float32)
    return instance_bank.images(rows)


def _embed(embed_text: EmbedText, texts: Sequence[str], background_bank: BackgroundBank) -> np.ndarray:
    """``(len(texts), D)`` float32 caption embeddings, computed in batches, checked against the bank's D."""
    width = background_bank.embeddings.shape[1]
    parts = []
    for start in range(0, len(texts), _EMBED_BATCH):
        batch = list(texts[start : start + _EMBED_BATCH])
        embeddings = embed_text(batch)
        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().float().cpu().numpy()
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(batch) or embeddings.shape[1] != width:
            raise ValueError(
                f"embed_text must give ({len(batch)}, {width}) embeddings like the background bank's, got "
                f"{embeddings.shape}; pass the text embedding the bank was built with"
            )
        parts.append(embeddings)
    return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)
