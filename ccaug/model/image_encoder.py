"""The tiny backbone's reference encoder: a small CNN that turns an image into DINOv2-shaped tokens.

CC-Diff reads its references (instance crops and the background image) through DINOv2, whose output is a
CLS token followed by one token per patch. `TinyImageEncoder` keeps that shape at CPU size and trains
with the generator: a 64×64 image becomes 4×4 patch tokens plus CLS, 17 tokens of width 64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccaug.model.text import Block

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TinyImageEncoder(nn.Module):
    """Conv stem (stride 4) → patch embedding (stride `patch` / 4) → CLS + positions → blocks → LayerNorm.

    ``images (B, 3, S, S)`` in [0, 1] → ``(B, T, dim)`` with ``T = 1 + (image_size / patch)²``, the CLS
    token first (DINOv2's ``last_hidden_state`` layout). Images of another size are resized (bilinear,
    antialiased) to `image_size` first; ImageNet normalisation happens inside.
    """

    def __init__(
        self, image_size: int = 64, dim: int = 64, patch: int = 16, layers: int = 1, heads: int = 4
    ) -> None:
        super().__init__()
        if patch % 4 or image_size % patch:
            raise ValueError(f"patch ({patch}) must be a multiple of 4 dividing image_size ({image_size})")
        self.image_size = image_size
        self.dim = dim
        self.num_tokens = 1 + (image_size // patch) ** 2
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        half = max(dim // 2, 8)
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(half, dim, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.patch_embedding = nn.Conv2d(dim, dim, patch // 4, stride=patch // 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn(1, self.num_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", antialias=True
            )
        x = (images - self.mean) / self.std
        patches = self.patch_embedding(self.stem(x)).flatten(2).transpose(1, 2)  # (B, P, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], dim=1) + self.position_embedding
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)
