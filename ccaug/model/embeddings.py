"""Box embeddings: Fourier features of an oriented box's corners and the MLP that turns them into a token.

CC-Diff encodes every oriented box (OBB) as one token: the 8 normalised corner coordinates of its polygon,
Fourier features of them, and a 3-layer MLP (GLIGEN's position net). The conditional generation module
(one copy per fused layer) and both resamplers own one each.

Shapes (``...`` is any leading shape, typically ``(B, N)`` = batch × instance slots):

    polygons  (..., 8)          x1 y1 x2 y2 x3 y3 x4 y4, normalised to [0, 1]
    Fourier   (..., 2·F·8)      F frequencies, sin then cos → 128 for F = 8
    token     (..., out_dim)    768 in the CGM and the v1 resampler, 1024 in the ++ resampler

Checkpoint keys (§2.9 of the reference): ``linears_position.{0,2,4}.{weight,bias}``; the Fourier
frequencies are not stored.
"""

from __future__ import annotations

import torch
from torch import nn

NULL_MODES = ("none", "learned")

# The reference feeds the polygon to the Fourier embedder as all x first, then all y.
_XS_THEN_YS = (0, 2, 4, 6, 1, 3, 5, 7)


class FourierEmbedder(nn.Module):
    """Sin/cos features at geometrically spaced frequencies; no parameters.

    Frequencies are ``max_freq ** (k / num_freqs)`` for ``k = 0 .. num_freqs - 1`` (1 … 100^(7/8) by
    default). For each frequency, the sines of all inputs come first, then their cosines:
    ``[sin(f0·x), cos(f0·x), sin(f1·x), cos(f1·x), …]`` with each block ``D_in`` wide.

    Input ``(..., D_in)`` → output ``(..., 2 · num_freqs · D_in)``. Computed in at least float32 and
    returned in the input's dtype.
    """

    def __init__(self, num_freqs: int = 8, max_freq: float = 100.0) -> None:
        super().__init__()
        if num_freqs < 1:
            raise ValueError(f"num_freqs must be at least 1, not {num_freqs}")
        self.num_freqs = num_freqs
        self.max_freq = max_freq

    def frequencies(
        self, dtype: torch.dtype = torch.float32, device: torch.device | None = None
    ) -> torch.Tensor:
        """``(num_freqs,)``. Made on the fly, not a buffer: ``module.to(torch.bfloat16)`` would round a
        stored copy (100^(7/8) = 56.23 becomes 56.0), and the reference's checkpoints store none."""
        exponents = torch.arange(self.num_freqs, dtype=dtype, device=device) / self.num_freqs
        return self.max_freq**exponents

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D_in)`` → ``(..., 2 · num_freqs · D_in)``."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        angles = x.to(dtype).unsqueeze(-2) * self.frequencies(dtype, x.device).unsqueeze(-1)  # (..., F, D_in)
        features = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (..., F, 2·D_in)
        return features.flatten(-2).to(x.dtype)


class PositionNet(nn.Module):
    """One token per oriented box: Fourier features of its corners through an MLP.

    Input ``polygons (..., 8)`` as ``x1 y1 x2 y2 x3 y3 x4 y4`` normalised to [0, 1]; they are reordered to
    ``x1 x2 x3 x4 y1 y2 y3 y4`` (as the authors' code does, so their weights load), Fourier-embedded
    (``2 · fourier_freqs · 8`` = 128 features) and passed through
    ``Linear(128→hidden) · SiLU · Linear(hidden→hidden) · SiLU · Linear(hidden→out_dim)``.
    Output ``(..., out_dim)``.

    Padding: `valid (...)` bool (True = a real box) says which slots are real. With ``null="none"`` (the
    reference's parameters) a padded slot's token is exactly zero, so whatever its box holds cannot leak;
    callers still mask padded slots out of attention, the zero is only a safe placeholder. With
    ``null="learned"`` a padded slot gets a learned ``null_embedding (out_dim,)`` instead (initialised at
    zero), for modules that let the model see "no box here". Without `valid` every slot is embedded.
    """

    def __init__(self, out_dim: int, fourier_freqs: int = 8, hidden: int = 512, null: str = "none") -> None:
        super().__init__()
        if null not in NULL_MODES:
            raise ValueError(f"null must be one of {NULL_MODES}, not {null!r}")
        self.out_dim = out_dim
        self.null = null
        self.fourier = FourierEmbedder(num_freqs=fourier_freqs)
        in_dim = 2 * fourier_freqs * len(_XS_THEN_YS)
        self.linears_position = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )
        self.null_embedding = nn.Parameter(torch.zeros(out_dim)) if null == "learned" else None
        self.register_buffer("order", torch.tensor(_XS_THEN_YS), persistent=False)

    def forward(self, polygons: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``polygons (..., 8)``, ``valid (...)`` bool or None → ``(..., out_dim)``."""
        if polygons.shape[-1] != len(_XS_THEN_YS):
            raise ValueError(
                f"polygons must end in 8 coordinates (x1 y1 … x4 y4), got {tuple(polygons.shape)}"
            )
        if valid is None and self.null == "learned":
            raise ValueError('PositionNet(null="learned") needs `valid` to know which slots are padding')
        if valid is not None:
            if valid.shape != polygons.shape[:-1]:
                raise ValueError(
                    f"valid {tuple(valid.shape)} must match polygons {tuple(polygons.shape)}[:-1]"
                )
            # Padded boxes may hold anything (even inf); embedding zeros keeps NaN out of the gradients.
            polygons = torch.where(valid.unsqueeze(-1), polygons, polygons.new_zeros(()))
        coordinates = polygons.index_select(-1, self.order)
        tokens = self.linears_position(self.fourier(coordinates))
        if valid is None:
            return tokens
        filler = self.null_embedding if self.null_embedding is not None else tokens.new_zeros(())
        return torch.where(valid.unsqueeze(-1), tokens, filler.to(tokens.dtype))
