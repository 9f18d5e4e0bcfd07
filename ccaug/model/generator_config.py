"""The generator's configuration: one validated place for every knob of the CC-Diff generator.

It is the ``generator`` section of a recipe and is saved as ``config.json`` beside the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ccaug.datasets.aerial.classes import AERIAL_CLASSES
from ccaug.model.cgm import LAYER_PRESETS
from ccaug.model.fusion import INITS, VARIANTS
from ccaug.model.resampler import ResamplerConfig

BACKBONES = ("tiny", "sd")
SPACES = ("pixel", "latent")
PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class GeneratorConfig:
    """Every setting of a generator. Sizes marked *tiny* apply to the tiny backbone only (``sd`` takes
    its sizes from the loaded models); ``resampler_*`` left None take `ResamplerConfig.preset`.

    backbone: ``"tiny"`` (trained from scratch, CPU-sized) or ``"sd"`` (frozen SD 1.x + DINOv2 from
        `sd_path` and `dinov2_path`).
    variant: ``"ccdiff"`` (v1: Dual Re-sampler, foreground-aware background) or ``"ccdiff_pp"``.
    resolution: image side in pixels.
    max_instances: most instance slots per layout.
    categories: class names; a batch's labels index them.
    space: *tiny*: ``"pixel"`` (the UNet denoises images) or ``"latent"`` (through the autoencoder at
        `vae_path`, frozen).
    text_dim, text_layers, text_heads, caption_length: *tiny* text encoder width (= the UNet's
        cross-attention dim D), depth, heads, and the token length of captions (BOS and EOS included;
        the aerial captions have a median of 167 words and marks and a 99th percentile of 381, so 384
        truncates few; SD's CLIP stops at 77).
    image_dim, image_layers: *tiny* reference encoder width E and depth.
    reference_size, background_size: sides of the instance crops and of the background reference the
        data pipeline makes; the tiny encoder reads both at `reference_size`.
    unet_channels, layers_per_block, unet_heads: *tiny* UNet.
    resampler_dim, resampler_depth, resampler_heads: resampler width, depth and heads.
    fused_layers, cgm_init, cgm_heads: where the CGM goes (a preset of `ccaug.model.cgm.LAYER_PRESETS`),
        ``"default"`` or ``"zero"`` output projections, and its heads.
    condition_dropout: probability of training a row unconditionally (see the module docstring).
    prediction_type: ``"epsilon"`` (the reference) or ``"v_prediction"``.
    sd_path, dinov2_path, vae_path: local model folders.
    """

    backbone: str = "tiny"
    variant: str = "ccdiff"
    resolution: int = 64
    max_instances: int = 32
    categories: tuple[str, ...] = AERIAL_CLASSES
    space: str = "pixel"
    text_dim: int = 128
    text_layers: int = 2
    text_heads: int = 4
    caption_length: int = 384
    image_dim: int = 64
    image_layers: int = 1
    reference_size: int = 64
    background_size: int = 64
    unet_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    unet_heads: int = 4
    resampler_dim: int | None = None
    resampler_depth: int | None = None
    resampler_heads: int | None = None
    fused_layers: str = "mid_and_up1"
    cgm_init: str = "default"
    cgm_heads: int = 8
    condition_dropout: float = 0.1
    prediction_type: str = "epsilon"
    sd_path: str | None = None
    dinov2_path: str | None = None
    vae_path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "unet_channels", tuple(self.unet_channels))
        for name in ("sd_path", "dinov2_path", "vae_path"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))
        choices = {
            "backbone": BACKBONES,
            "variant": VARIANTS,
            "space": SPACES,
            "fused_layers": tuple(LAYER_PRESETS),
            "cgm_init": INITS,
            "prediction_type": PREDICTION_TYPES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"generator.{name} must be one of {allowed}, not {getattr(self, name)!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            positive = field.type == "int" or (field.type == "int | None" and value is not None)
            if positive and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"generator.{field.name} must be a positive integer, not {value!r}")
        if not self.categories or len(set(self.categories)) != len(self.categories):
            raise ValueError(f"generator.categories must be distinct class names, got {self.categories}")
        if len(self.unet_channels) < 3 or any(c < 1 or c % 8 for c in self.unet_channels):
            raise ValueError(
                "generator.unet_channels must be 3 or more multiples of 8 (the tiny UNet has no attention at "
                f"its finest level, so up_blocks.1 needs a third level to fuse in), got {self.unet_channels}"
            )
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"generator.condition_dropout must be in [0, 1), not {self.condition_dropout}")
        if self.caption_length < 2:
            raise ValueError("generator.caption_length must leave room for [BOS] and [EOS]")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["categories"] = list(self.categories)
        values["unet_channels"] = list(self.unet_channels)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GeneratorConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown generator setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)

    def resampler_config(self, embedding_dim: int, output_dim: int) -> ResamplerConfig:
        """The resampler for encoder tokens of width `embedding_dim` and a UNet context of `output_dim`."""
        overrides: dict[str, Any] = {"embedding_dim": embedding_dim, "output_dim": output_dim}
        for name in ("dim", "depth", "heads"):
            if getattr(self, f"resampler_{name}") is not None:
                overrides[name] = getattr(self, f"resampler_{name}")
        return dataclasses.replace(ResamplerConfig.preset(self.backbone, self.variant), **overrides)
