"""The trainable part of CC-Diff's Conditional Generation Module: the fusion of one fused layer.

`CCDiffFusion` computes the foreground renderings R_i, the background term (foreground-aware in
``"ccdiff"``, parallel in ``"ccdiff_pp"``), the relation term (``"ccdiff_pp"``) and the masked layout
attention from a layer's normed hidden states and the frozen cross-attention terms that
`ccaug.model.cgm.CCDiffAttnProcessor` hands it. The formulas are in that module's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ccaug.model.conditions import LayoutConditions
from ccaug.model.embeddings import PositionNet
from ccaug.model.masks import GridMasks, InstanceCells

VARIANTS = ("ccdiff", "ccdiff_pp")
INITS = ("default", "zero")


# ----------------------------------------------------------------------------- attention helpers


def split_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """``(..., L, heads·d)`` → ``(..., heads, L, d)``."""
    *lead, length, inner = tensor.shape
    return tensor.view(*lead, length, heads, inner // heads).transpose(-3, -2)


def merge_heads(tensor: torch.Tensor) -> torch.Tensor:
    """``(..., heads, L, d)`` → ``(..., L, heads·d)``."""
    *lead, heads, length, dim = tensor.shape
    return tensor.transpose(-3, -2).reshape(*lead, length, heads * dim)


def weighted_instance_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    weights: torch.Tensor,
    projection: nn.Module,
    cells: InstanceCells | None = None,
) -> torch.Tensor:
    """Σ_i weights_i ⊙ projection(attention(query, key_i, value_i)): one shared query, N instance contexts.

    Only the cells where an instance's weight is above `MIN_INSTANCE_WEIGHT` attend to its context. Aerial
    instances are small (a car covers one or two cells of a 32×32 layer), so attending from every cell to
    every instance and then multiplying by a map that is ~0 nearly everywhere spent most of a training step on
    products that were thrown away. The cells of each instance are gathered (padded to the largest instance
    of the batch), attended in one SDPA call, projected, weighted and summed back onto the grid. Finding the
    cells makes the host wait for the device, so callers pass the ones their grid found once
    (:attr:`GridMasks.instance_cells`).

    Args:
        query: ``(B, h, HW, d)`` head-split queries (the same for every instance).
        key, value: ``(B, N, h, T, d)`` head-split keys and values of each instance's context.
        weights: ``(B, N, HW)`` per-instance spatial weights (zero in padded slots).
        projection: the output projection ``h·d → C`` (a Linear, or any module applied row-wise).
        cells: ``InstanceCells.where(weights)``, found here when not given.

    Returns:
        ``(B, HW, C)``.
    """
    batch, heads, num_cells, dim = query.shape
    slots, tokens = key.shape[1], key.shape[3]
    kept = InstanceCells.where(weights) if cells is None else cells
    rows, slot, cell, group, position = kept.rows, kept.slot, kept.cell, kept.group, kept.position

    gathered = query.permute(0, 2, 1, 3)[rows, cell]  # (Q, h, d)
    padded = gathered.new_zeros(len(kept.pairs), kept.longest, heads, dim)
    padded = padded.index_put((group, position), gathered)
    out = F.scaled_dot_product_attention(
        padded.transpose(1, 2),
        key.reshape(batch * slots, heads, tokens, dim)[kept.pairs],
        value.reshape(batch * slots, heads, tokens, dim)[kept.pairs],
    )  # (G, h, longest, d)
    attended = out.transpose(1, 2)[group, position].reshape(len(rows), heads * dim)
    weighted = weights[rows, slot, cell].unsqueeze(-1) * projection(attended)  # (Q, C)
    summed = weighted.new_zeros(batch * num_cells, weighted.shape[-1])
    summed = summed.index_add(0, rows * num_cells + cell, weighted)
    return summed.view(batch, num_cells, -1)


class FusionAttention(nn.Module):
    """Multi-head attention of the CGM: queries of width C, keys/values from a context of width D.

    ``heads`` heads of C / heads channels (8 × 160 at C = 1280); q/k/v without bias, output Linear with
    bias, dropout 0 (keys ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` as in the reference).
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        if query_dim % heads != 0:
            raise ValueError(f"query_dim {query_dim} is not divisible by heads {heads}")
        self.heads = heads
        self.to_q = nn.Linear(query_dim, query_dim, bias=False)
        self.to_k = nn.Linear(context_dim, query_dim, bias=False)
        self.to_v = nn.Linear(context_dim, query_dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(query_dim, query_dim), nn.Dropout(0.0)])

    def forward(
        self, hidden_states: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``hidden_states (B, Lq, C)``, ``context (B, Lk, D)``, ``mask (B, Lq, Lk)`` bool (True = may
        attend) or None → ``(B, Lq, C)``."""
        query = split_heads(self.to_q(hidden_states), self.heads)
        key = split_heads(self.to_k(context), self.heads)
        value = split_heads(self.to_v(context), self.heads)
        attn_mask = mask.unsqueeze(1) if mask is not None else None
        out = merge_heads(F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask))
        return self.to_out[1](self.to_out[0](out))


# ----------------------------------------------------------------------------- the fusion module


@dataclass
class FusionTerms:
    """The terms a fused layer adds up, each ``(B, HW, C)`` for the guided rows.

    Attributes:
        global_ca: CA_0, the frozen cross-attention on the global caption.
        foreground: Σ_i R_i = Σ_i S_i ⊙ (CA_i + EA_i).
        background: BG, the background renderer (R_0 = global_ca + background).
        relation: the relation term of CC-Diff++, None for CC-Diff.
        layout: LA, the layout (masked self-) attention.
    """

    global_ca: torch.Tensor
    foreground: torch.Tensor
    background: torch.Tensor
    relation: torch.Tensor | None
    layout: torch.Tensor

    @property
    def output(self) -> torch.Tensor:
        """The layer's output ``(B, HW, C)``: R_0 + Σ_i R_i (+ relation) + LA."""
        fused = self.global_ca + self.background + self.foreground + self.layout
        return fused if self.relation is None else fused + self.relation


class CCDiffFusion(nn.Module):
    """The trainable part of one fused layer (``MIFusion`` in v1, ``CoFusion`` in ++).

    Args:
        hidden_dim: C, the layer's channel width (1280 in SD 1.x mid/up_blocks.1).
        context_dim: D, the width of text and reference tokens (768).
        variant: ``"ccdiff"`` (foreground-aware background query) or ``"ccdiff_pp"`` (parallel background
            query and a relation cross-attention).
        heads: attention heads of every CGM attention (8 in the reference).
        init: ``"default"`` (PyTorch default init, as the reference) or ``"zero"`` (the output projections
            of ea_obj, ea2, ea_rel and la start at zero, so that at step 0 the layer adds only the
            frozen-attention instance terms Σ_i S_i ⊙ CA_i to plain SD; not checkpoint-compatible
            training dynamics, §2.8).
        position_hidden: hidden width of the box MLP (512).
    """

    def __init__(
        self,
        hidden_dim: int,
        context_dim: int,
        variant: str = "ccdiff",
        heads: int = 8,
        init: str = "default",
        position_hidden: int = 512,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, not {init!r}")
        self.variant = variant
        self.ea_obj = FusionAttention(hidden_dim, context_dim, heads)
        self.norm_obj = nn.LayerNorm(hidden_dim)
        self.ea2 = FusionAttention(hidden_dim, context_dim, heads)
        self.norm2 = nn.LayerNorm(hidden_dim)
        if variant == "ccdiff_pp":
            self.ea_rel = FusionAttention(hidden_dim, context_dim, heads)
            self.norm_rel = nn.LayerNorm(hidden_dim)
        self.la = FusionAttention(hidden_dim, hidden_dim, heads)
        self.pos_net = PositionNet(context_dim, hidden=position_hidden)
        if init == "zero":
            for attention in self.output_attentions():
                nn.init.zeros_(attention.to_out[0].weight)
                nn.init.zeros_(attention.to_out[0].bias)

    def output_attentions(self) -> list[FusionAttention]:
        """The attentions whose outputs are added to the layer's output."""
        names = ["ea_obj", "ea2", "ea_rel", "la"] if self.variant == "ccdiff_pp" else ["ea_obj", "ea2", "la"]
        return [getattr(self, name) for name in names]

    def instance_context(self, layout: LayoutConditions, dtype: torch.dtype) -> torch.Tensor:
        """``(B, N, 2 + Qf, D)``: [pooled label ; fg tokens ; box token] of every slot."""
        boxes = self.pos_net(layout.polygons.to(dtype), layout.valid)  # (B, N, D)
        pooled = layout.instance_pooled.to(dtype).unsqueeze(2)
        return torch.cat([pooled, layout.fg_tokens.to(dtype), boxes.unsqueeze(2)], dim=2)

    def foreground(
        self, x: torch.Tensor, weighted_instance_ca: torch.Tensor, layout: LayoutConditions, grid: GridMasks
    ) -> torch.Tensor:
        """Σ_i R_i = Σ_i S_i ⊙ CA_i + Σ_i S_i ⊙ EA_i.

        Args:
            x: ``(B, HW, C)`` normed hidden states.
            weighted_instance_ca: ``(B, HW, C)`` Σ_i S_i ⊙ CA_i from the frozen attention.
            layout: the conditions of these B rows.
            grid: their maps at this layer's resolution (``grid.soft`` is ``(B, N, HW)``).

        Returns:
            ``(B, HW, C)``.
        """
        attention = self.ea_obj
        context = self.instance_context(layout, x.dtype)  # (B, N, T, D)
        query = split_heads(attention.to_q(self.norm_obj(x)), attention.heads)  # (B, h, HW, d)
        key = split_heads(attention.to_k(context), attention.heads)  # (B, N, h, T, d)
        value = split_heads(attention.to_v(context), attention.heads)
        enhanced = weighted_instance_attention(
            query, key, value, grid.soft, attention.to_out[0], grid.instance_cells
        )
        enhanced = attention.to_out[1](enhanced)
        return weighted_instance_ca + enhanced

    def background(self, x: torch.Tensor, foreground: torch.Tensor, layout: LayoutConditions) -> torch.Tensor:
        """BG ``(B, HW, C)``: ea2 on [global pooled ; bg tokens], queried by the foreground sum (v1) or by
        X (++). ``x`` and ``foreground`` are ``(B, HW, C)``."""
        dtype = x.dtype
        context = torch.cat([layout.global_pooled.to(dtype).unsqueeze(1), layout.bg_tokens.to(dtype)], dim=1)
        query = foreground if self.variant == "ccdiff" else x
        return self.ea2(self.norm2(query), context)

    def forward(
        self,
        x: torch.Tensor,
        global_ca: torch.Tensor,
        weighted_instance_ca: torch.Tensor,
        layout: LayoutConditions,
        grid: GridMasks,
    ) -> FusionTerms:
        """All terms of the fused layer for B guided rows.

        Args:
            x: ``(B, HW, C)`` normed hidden states.
            global_ca: ``(B, HW, C)`` CA_0.
            weighted_instance_ca: ``(B, HW, C)`` Σ_i S_i ⊙ CA_i.
            layout: conditions of these B rows (all guided).
            grid: their maps at this resolution (see :class:`~ccaug.model.masks.GridMasks`).
        """
        foreground = self.foreground(x, weighted_instance_ca, layout, grid)
        background = self.background(x, foreground, layout)
        layout_term = self.la(x, x, mask=grid.attention)
        relation = None
        if self.variant == "ccdiff_pp":
            if layout.rel_tokens is None:
                raise ValueError('variant "ccdiff_pp" needs LayoutConditions.rel_tokens (B, Qr, D)')
            fused = global_ca + background + foreground
            relation = self.ea_rel(self.norm_rel(fused), layout.rel_tokens.to(x.dtype))
        return FusionTerms(global_ca, foreground, background, relation, layout_term)
