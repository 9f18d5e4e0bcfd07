"""The batch the generator consumes: layouts, captions, references and (for training) the target images.

The data pipeline (`ccaug.pipeline.data`) builds it from a data set or from sampled layouts; the generator
(`ccaug.model.generator`) encodes it into the UNet's inputs. Instances are padded to ``N`` slots per image
with a validity mask: padding is a mask, never a magic value, and padded slots hold zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class GeneratorBatch:
    """One batch of B layouts with N instance slots each.

    captions
        ``B`` global captions (the paper's templated caption of each layout).
    labels
        ``(B, N)`` long: each slot's class index in the generator's category list (0 where padded).
    valid
        ``(B, N)`` bool: which slots hold an instance.
    polygons
        ``(B, N, 8)`` float: corners ``x1 y1 … x4 y4`` normalised by the image width and height (0 where
        padded).
    references
        ``(B, N, 3, S, S)`` float in [0, 1]: the reference crop of each slot from the instance bank (0 where
        padded).
    background
        ``(B, 3, S_bg, S_bg)`` float in [0, 1]: the retrieved background reference of each layout.
    images
        ``(B, 3, H, W)`` float in [-1, 1]: the target images (training only; None when sampling).
    image_ids
        ``B`` source image ids (training: for excluding a sample's own image from retrieval), or None.
    reference_rows
        ``(B, N)`` long: the instance-bank row of each slot's reference (-1 where padded), or None. With
        `background_rows`, the key to cached reference features (`ccaug.model.frozen_cache`).
    background_rows
        ``(B,)`` long: the background-bank row of each layout's background reference, or None.
    """

    captions: list[str]
    labels: torch.Tensor
    valid: torch.Tensor
    polygons: torch.Tensor
    references: torch.Tensor
    background: torch.Tensor
    images: torch.Tensor | None = None
    image_ids: list[int] | None = None
    reference_rows: torch.Tensor | None = None
    background_rows: torch.Tensor | None = None

    def __post_init__(self) -> None:
        batch, slots = self.valid.shape
        expected = {
            "labels": (batch, slots),
            "polygons": (batch, slots, 8),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"GeneratorBatch.{name} must be {shape}, got {tuple(getattr(self, name).shape)}")
        if self.references.shape[:3] != (batch, slots, 3):
            raise ValueError(f"GeneratorBatch.references must be (B, N, 3, S, S), got {tuple(self.references.shape)}")
        if self.background.shape[:2] != (batch, 3):
            raise ValueError(f"GeneratorBatch.background must be (B, 3, S, S), got {tuple(self.background.shape)}")
        if len(self.captions) != batch:
            raise ValueError(f"GeneratorBatch has {len(self.captions)} captions for {batch} layouts")
        if self.reference_rows is not None and tuple(self.reference_rows.shape) != (batch, slots):
            raise ValueError(
                f"GeneratorBatch.reference_rows must be {(batch, slots)}, got {tuple(self.reference_rows.shape)}"
            )
        if self.background_rows is not None and tuple(self.background_rows.shape) != (batch,):
            raise ValueError(
                f"GeneratorBatch.background_rows must be {(batch,)}, got {tuple(self.background_rows.shape)}"
            )
        if self.images is not None and self.images.shape[:2] != (batch, 3):
            raise ValueError(f"GeneratorBatch.images must be (B, 3, H, W), got {tuple(self.images.shape)}")

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def num_slots(self) -> int:
        return self.valid.shape[1]

    def to(self, device: torch.device | str) -> GeneratorBatch:
        """The batch with every tensor on `device`."""
        moved = {
            field.name: value.to(device) if isinstance(value := getattr(self, field.name), torch.Tensor) else value
            for field in fields(self)
        }
        return GeneratorBatch(**moved)
