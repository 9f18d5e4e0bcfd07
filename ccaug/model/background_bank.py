"""The background bank: training images keyed by the embedding of their caption, the background reference.

CC-Diff conditions the background of a generated image on a real image of a similar scene, found by its
caption. The bank holds one entry per training image: the L2-normalised embedding of its global caption and
the image itself, small. `retrieve` finds, for each query caption embedding, the most similar entries by
cosine similarity and draws one of the `top_k` best.

Differences from the reference (§3.2, §4.3, §8.6), all deliberate:

* the keys are **caption** embeddings from the backbone's own text encoder (the CLIP text tower for ``sd``,
  the tiny text encoder for ``tiny``), compared with caption embeddings (text to text), where the reference
  compares CLIP text with CLIP image features; the tiny backbone has no image tower, and captions written
  by one captioner are compared like with like;
* retrieval samples from the top k instead of always taking the best, so a caption does not always get the
  same background;
* in training the sample's own image (and its near-duplicates) is excluded: otherwise the background
  reference can be the target itself, which never happens at inference;
* the images are stored in the bank, so retrieval reads no file from disk.

Arrays (M = bank entries, D = embedding width, S = ``image_size``):

    embeddings  (M, D)        float32, rows of unit length
    pixels      (M, S, S, 3)  uint8 RGB, each image resized to S×S (aspect ignored, like the training target)
    image_ids   (M,)          int64, the data set's image ids
    groups      (M,)          int64, near-duplicate group of each entry (its own index without `group_by`)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from ccaug.data.dataset import Dataset
from ccaug.model.references import check_lengths, read_bank, write_bank
from ccaug.progress import progress_bar

_KIND = "background_bank"


@dataclass
class BackgroundBank:
    embeddings: np.ndarray
    pixels: np.ndarray
    image_ids: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.image_ids = np.asarray(self.image_ids, dtype=np.int64)
        self.groups = np.asarray(self.groups, dtype=np.int64)
        if self.embeddings.ndim != 2 or self.pixels.ndim != 4 or self.pixels.shape[3] != 3:
            raise ValueError(
                f"embeddings must be (M, D) and pixels (M, S, S, 3), got {self.embeddings.shape} and "
                f"{self.pixels.shape}"
            )
        lengths = {len(self.embeddings), len(self.pixels), len(self.image_ids), len(self.groups)}
        if len(lengths) != 1:
            raise ValueError("embeddings, pixels, image_ids and groups must have one row per entry")
        self._group_of_image = dict(zip(self.image_ids.tolist(), self.groups.tolist()))

    @classmethod
    def build(
        cls,
        dataset: Dataset,
        embed_text: Callable[[list[str]], np.ndarray],
        captions: list[str],
        *,
        image_size: int = 64,
        group_by: str | None = None,
        batch_size: int = 256,
        progress: bool = True,
    ) -> BackgroundBank:
        """One entry per image of `dataset` (pass the training split), in images-table order.

        `captions` are the images' global captions in the same order; `embed_text` maps a list of strings to
        ``(len, D)`` embeddings and is called on batches of `batch_size`; its rows are L2-normalised here.
        `group_by` names an images-table column whose equal values mark near-duplicates (e.g. overlapping
        tiles of one scene), which `retrieve` then excludes together.
        """
        if len(captions) != len(dataset.images):
            raise ValueError(f"{len(captions)} captions for {len(dataset.images)} images; give one per image")
        if len(captions) == 0:
            raise ValueError("the data set has no images to build a background bank from")
        embeddings = _normalise_rows(
            np.concatenate(
                [
                    _embed_batch(embed_text, list(captions[start : start + batch_size]))
                    for start in range(0, len(captions), batch_size)
                ]
            )
        )
        pixels = np.zeros((len(captions), image_size, image_size, 3), dtype=np.uint8)
        columns = (TextColumn("background bank"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with progress_bar(*columns, enabled=progress) as bar:
            task = bar.add_task("resize", total=len(captions))
            for index, (_, image) in enumerate(dataset.images.iterrows()):
                with Image.open(dataset.image_path(image)) as file:
                    resized = file.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
                pixels[index] = np.asarray(resized)
                bar.advance(task)
        image_ids = dataset.images["image_id"].to_numpy()
        if group_by is None:
            groups = np.arange(len(image_ids))
        elif group_by in dataset.images.columns:
            groups = pd.factorize(dataset.images[group_by])[0]
        else:
            raise ValueError(
                f"group_by={group_by!r} is not a column of the images table {list(dataset.images)}"
            )
        return cls(embeddings, pixels, image_ids, groups)

    def retrieve(
        self,
        query_embeddings: np.ndarray,
        rng: np.random.Generator,
        top_k: int = 5,
        exclude: list[int | None] | None = None,
    ) -> np.ndarray:
        """``(B, D)`` query caption embeddings -> ``(B,)`` bank rows, one of the `top_k` most similar each.

        Similarity is cosine (queries are normalised here). ``exclude[b]`` is an image id whose entry, and
        its near-duplicate group, query b must not get: in **training pass each sample's own image id**; at
        inference leave it None (a new layout is no bank image). Ties are broken by bank order, and the
        draw is uniform among the candidates, so a seed fixes the result.
        """
        queries = np.asarray(query_embeddings, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"query embeddings must be (B, {self.embeddings.shape[1]}) from the bank's text encoder, "
                f"got {queries.shape}"
            )
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k}")
        similarity = _normalise_rows(queries) @ self.embeddings.T  # (B, M)
        allowed = np.ones(similarity.shape, dtype=bool)
        if exclude is not None:
            if len(exclude) != len(queries):
                raise ValueError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
            for row, image_id in enumerate(exclude):
                if image_id is not None and int(image_id) in self._group_of_image:
                    allowed[row] = self.groups != self._group_of_image[int(image_id)]
        candidates = allowed.sum(axis=1)
        if (candidates == 0).any():
            raise ValueError(
                "the background bank holds only the excluded image(s); build it from more training images"
            )
        order = np.argsort(np.where(allowed, -similarity, np.inf), axis=1, kind="stable")
        k = np.minimum(top_k, candidates)
        choice = np.floor(rng.random(len(queries)) * k).astype(np.int64)
        return order[np.arange(len(queries)), choice]

    def images(self, indices: np.ndarray) -> torch.Tensor:
        """``(B,)`` bank rows -> ``(B, 3, S, S)`` float32 RGB in [0, 1]."""
        pixels = torch.from_numpy(self.pixels[np.asarray(indices, dtype=np.int64)])
        return pixels.permute(0, 3, 1, 2).float().div_(255.0)

    def __len__(self) -> int:
        return len(self.embeddings)

    def __repr__(self) -> str:
        return (
            f"BackgroundBank({len(self)} images of {self.pixels.shape[1]}², "
            f"{self.embeddings.shape[1]}-d caption embeddings)"
        )

    def save(self, path: str | Path) -> None:
        """One safetensors file holding the four arrays (see the module docstring)."""
        arrays = {
            "embeddings": self.embeddings,
            "pixels": self.pixels,
            "image_ids": self.image_ids,
            "groups": self.groups,
        }
        write_bank(path, _KIND, arrays, {"entries": len(self)})

    @classmethod
    def load(cls, path: str | Path) -> BackgroundBank:
        arrays, header = read_bank(path, _KIND)
        check_lengths(path, header["entries"], arrays)
        return cls(arrays["embeddings"], arrays["pixels"], arrays["image_ids"], arrays["groups"])


def _embed_batch(embed_text: Callable[[list[str]], np.ndarray], captions: list[str]) -> np.ndarray:
    embeddings = embed_text(captions)
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().float().cpu().numpy()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(captions):
        raise ValueError(f"embed_text must return ({len(captions)}, D) embeddings, got {embeddings.shape}")
    return embeddings


def _normalise_rows(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        raise ValueError("embeddings must be finite and nonzero to be compared by cosine similarity")
    return (embeddings / norms).astype(np.float32)
