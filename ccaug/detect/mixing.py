"""How many real and extra (synthetic or copy-paste) images each arm trains on, and for how long.

Definitions used everywhere in the detector report:

- **scarce real set**: ``--real-fraction F`` keeps ``round(F * n)`` of the ``n`` real training images, or
  ``--real-n N`` keeps ``N``; the subset is drawn per seed (seed k draws subset k), and every arm of seed k
  uses the same subset, so arms are compared in pairs.
- **mix** ``R``: the share of extra images in an arm's training set, ``n_extra / (n_real + n_extra) = R``,
  so ``n_extra = round(R / (1 - R) * n_real)``; ``R = 0.5`` is the paper's 1:1.
- **budget**: every arm sees the same number of images, ``epochs * epoch_size``, where ``epoch_size`` is
  the size of the largest arm. A smaller arm (the real-only baseline) repeats its images to fill each epoch,
  so all arms run the same number of optimiser steps under the same learning-rate schedule and warm-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmImages:
    """The distinct images of one arm for one seed (paths or ids), before filling the epoch."""

    name: str
    real: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def distinct(self) -> int:
        return len(self.real) + len(self.extra)

    @property
    def mix(self) -> float:
        """The share of extra images actually reached."""
        return len(self.extra) / self.distinct if self.distinct else 0.0


def check_mix(mix: float) -> float:
    if not 0.0 <= mix < 1.0:
        raise ValueError(f"--mix must be in [0, 1) (the share of synthetic images), not {mix}")
    return float(mix)


def scarce_real_count(n_available: int, *, fraction: float | None = None, n: int | None = None) -> int:
    """How many real training images a scarce-data run keeps."""
    if fraction is not None and n is not None:
        raise ValueError("give --real-fraction or --real-n, not both")
    if n_available < 1:
        raise ValueError("the real training split is empty")
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"--real-fraction must be in (0, 1], not {fraction}")
        return max(1, round(fraction * n_available))
    if n is not None:
        if not 1 <= n <= n_available:
            raise ValueError(f"--real-n must be between 1 and the {n_available} real training images, not {n}")
        return n
    return n_available


def extra_count(n_real: int, mix: float) -> int:
    """The number of extra images that make up the share `mix` next to `n_real` real ones."""
    check_mix(mix)
    return round(mix / (1.0 - mix) * n_real)


def draw(items: Sequence[str], count: int, rng: np.random.Generator) -> tuple[str, ...]:
    """`count` distinct items in a seeded random order (the order of `items` does not bias the choice)."""
    if count > len(items):
        raise ValueError(f"asked for {count} images but only {len(items)} are available")
    chosen = rng.permutation(len(items))[:count]
    return tuple(items[i] for i in sorted(chosen))


def fill_epoch(images: Sequence[str], epoch_size: int, rng: np.random.Generator) -> list[str]:
    """`images` repeated to exactly `epoch_size` entries: every image ``epoch_size // n`` times, and a
    seeded choice of distinct images once more for the remainder."""
    if not images:
        raise ValueError("an arm without images cannot fill an epoch")
    if epoch_size < len(images):
        raise ValueError(f"epoch size {epoch_size} is smaller than the arm's {len(images)} images")
    repeats, remainder = divmod(epoch_size, len(images))
    extra = [images[i] for i in sorted(rng.permutation(len(images))[:remainder])]
    return list(images) * repeats + extra


def epoch_size(arms: Sequence[ArmImages]) -> int:
    """The images per epoch for every arm: the size of the largest arm."""
    return max(arm.distinct for arm in arms)
