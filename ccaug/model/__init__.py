"""CC-Diff's trainable modules: box embeddings, resamplers and the conditional generation module.

Only torch is imported here; the diffusers-facing pieces live in their own modules.
"""

from ccaug.model.embeddings import FourierEmbedder, PositionNet
from ccaug.model.resampler import (
    CoResampler,
    DualResampler,
    Resampler,
    ResamplerConfig,
    ResamplerOutput,
    build_resampler,
)

__all__ = [
    "CoResampler",
    "DualResampler",
    "FourierEmbedder",
    "PositionNet",
    "Resampler",
    "ResamplerConfig",
    "ResamplerOutput",
    "build_resampler",
]
