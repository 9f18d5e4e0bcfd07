"""Resamplers: reference-image features → a few tokens per instance and for the background.

Both CC-Diff variants compress the image-encoder tokens of every reference (one crop per instance slot, one
background image) into a handful of query tokens with a Perceiver resampler (IP-Adapter-Plus / Flamingo):

* ``variant="ccdiff"`` (v1, "Dual Re-sampler", :class:`DualResampler`): a foreground resampler per instance,
  then a zero-gated *context bridge* turns the foreground tokens and box embeddings of all instances into
  relation queries that join the background resampler's own queries.
* ``variant="ccdiff_pp"`` (CC-Diff++, "Co-Resampler", :class:`CoResampler`): one resampler whose attention
  mask keeps foreground, background and relation query groups apart, run once over everything.

Instances are batched and padded: ``(B, N, ...)`` with ``valid (B, N)`` bool (True = a real instance).
Padded slots are masked out of every attention, their outputs are exactly zero, and what they hold (any
features, any box) changes nothing else. Shapes used below:

    B  batch              N  instance slots        T  encoder tokens per reference (257 for DINOv2-L/14)
    E  encoder width      dim  resampler width     D  output width (the UNet's cross-attention width)
    Q  queries per group (v1: fg 16, bg 8 + 8 relation; ++: 8 for each of fg, bg, rel)

Attribute names mirror the authors' checkpoints (§2.9 of the reference), so a key map is a rename of the
top-level prefix at most:

    Resampler          latents, proj_in, proj_out, norm_out,
                       layers.<i>.0.{norm1,norm2,to_q,to_kv,to_out}, layers.<i>.1.{0,1,3}
    DualResampler      fg_resampler.*, bg_resampler.* (as above), point_net.linears_position.{0,2,4},
                       coherent_bridge.{linear, attn.{to_q,to_k,to_v,to_out.0}, ff.net.{0.proj,2},
                       norm1, norm2, alpha_attn, alpha_dense}, coherent_queries
    CoResampler        latents (3, Q, dim), proj_in, proj_out, norm_out, layers.* (as above),
                       point_net.linears_position.{0,2,4}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ccaug.model.embeddings import NULL_MODES, PositionNet

VARIANTS = ("ccdiff", "ccdiff_pp")
BACKBONES = ("sd", "tiny")


@dataclass(frozen=True)
class ResamplerConfig:
    """Every size of a resampler; the defaults are the paper's v1 resampler on Stable Diffusion 1.x.

    `heads` × `dim_head` is the attention width (it need not equal `dim`). The v1 variant uses all three
    query counts (fg, bg, relation); ++ keeps its queries in one ``(3, Q, dim)`` tensor, so the three must
    be equal. `box_null` is :class:`~ccaug.model.embeddings.PositionNet`'s padding mode.
    """

    variant: str = "ccdiff"
    dim: int = 1280
    depth: int = 4
    dim_head: int = 64
    heads: int = 20
    embedding_dim: int = 1024
    output_dim: int = 768
    ff_mult: int = 4
    fg_queries: int = 16
    bg_queries: int = 8
    rel_queries: int = 8
    fourier_freqs: int = 8
    position_hidden: int = 512
    box_null: str = "none"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if self.box_null not in NULL_MODES:
            raise ValueError(f"box_null must be one of {NULL_MODES}, not {self.box_null!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{field.name} must be a positive integer, not {value!r}")
        if self.variant == "ccdiff_pp" and not self.fg_queries == self.bg_queries == self.rel_queries:
            raise ValueError(
                "ccdiff_pp keeps fg, bg and relation queries in one tensor, so fg_queries, bg_queries and "
                f"rel_queries must be equal, not {self.fg_queries}, {self.bg_queries}, {self.rel_queries}"
            )

    @classmethod
    def preset(cls, backbone: str, variant: str) -> ResamplerConfig:
        """The paper's sizes (``"sd"``: DINOv2-L tokens in, SD-1.x width out) or a CPU-sized ``"tiny"``."""
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, not {backbone!r}")
        queries = {"fg_queries": 16} if variant == "ccdiff" else {"fg_queries": 8}
        if backbone == "sd":
            heads = 20 if variant == "ccdiff" else 16
            return cls(variant=variant, heads=heads, **queries)
        return cls(
            variant=variant, dim=128, depth=2, dim_head=32, heads=4, embedding_dim=64, output_dim=128,
            position_hidden=128, **queries,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ResamplerConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown resampler setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)


@dataclass
class ResamplerOutput:
    """Tokens for the conditional generation module.

    fg   (B, N, Qf, D)  per instance slot; exactly zero at padded slots
    bg   (B, Qb, D)     v1: 8 background + 8 relation queries (Qb = 16); ++: 8
    rel  (B, Qr, D)     ++ only (None for v1, whose relation queries live inside `bg`)
    """

    fg: torch.Tensor
    bg: torch.Tensor
    rel: torch.Tensor | None = None


def build_resampler(config: ResamplerConfig) -> DualResampler | CoResampler:
    """The resampler of `config.variant`."""
    return DualResampler(config) if config.variant == "ccdiff" else CoResampler(config)


# ---------------------------------------------------------------------------------------------------------
# Building blocks


def _multi_head_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, attn_mask: torch.Tensor | None
) -> torch.Tensor:
    """``q (B, L, H·d)``, ``k, v (B, S, H·d)``, `attn_mask` bool broadcastable to ``(B, L, S)`` (True = may
    attend) → ``(B, L, H·d)``. Softmax and weighting run in at least float32 whatever the input dtype."""
    batch, length, width = q.shape
    dtype = torch.promote_types(q.dtype, torch.float32)

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype).unflatten(-1, (heads, width // heads)).transpose(1, 2)  # (B, H, ·, d)

    mask = None if attn_mask is None else attn_mask.unsqueeze(1)  # broadcast over heads
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return out.transpose(1, 2).reshape(batch, length, width).to(q.dtype)


class PerceiverAttention(nn.Module):
    """Latents read from ``[image tokens ; latents]`` (Flamingo's Perceiver attention, no biases).

    ``x (B, S, dim)`` image tokens, ``latents (B, L, dim)`` queries, `attn_mask` bool broadcastable to
    ``(B, L, S + L)`` (True = the query may attend the key; keys are the S tokens then the L latents)
    → ``(B, L, dim)``. Every query must be allowed at least one key. Keys: ``norm1`` (tokens), ``norm2``
    (latents), ``to_q``, ``to_kv`` (k then v), ``to_out``.
    """

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, x: torch.Tensor, latents: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        return self.to_out(_multi_head_attention(self.to_q(latents), k, v, self.heads, attn_mask))


class FeedForward(nn.Sequential):
    """``LayerNorm · Linear(dim→mult·dim) · GELU · Linear(mult·dim→dim)``, no biases; ``(..., dim)`` →
    ``(..., dim)``. A Sequential so that the keys are ``{0,1,3}`` as in the authors' checkpoints."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, mult * dim, bias=False),
            nn.GELU(),
            nn.Linear(mult * dim, dim, bias=False),
        )


class Resampler(nn.Module):
    """Perceiver resampler: learned queries read the encoder tokens of one reference image.

    ``x (B, T, E)`` encoder tokens, `extra_queries` ``(B, Q2, dim)`` or None (appended after the learned
    queries; v1's relation queries), `key_mask` ``(B, T)`` bool or None (False = a token to ignore)
    → ``(B, Q + Q2, output_dim)``.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        dim_head: int,
        heads: int,
        num_queries: int,
        embedding_dim: int,
        output_dim: int,
        ff_mult: int = 4,
    ) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), FeedForward(dim, ff_mult)])
            for _ in range(depth)
        )
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)

    def forward(
        self,
        x: torch.Tensor,
        extra_queries: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        latents = self.latents.expand(x.shape[0], -1, -1)
        if extra_queries is not None:
            latents = torch.cat([latents, extra_queries], dim=1)
        attn_mask = None
        if key_mask is not None:
            latents_visible = key_mask.new_ones(key_mask.shape[0], latents.shape[1])
            attn_mask = torch.cat([key_mask, latents_visible], dim=1).unsqueeze(1)  # (B, 1, T + L)
        x = self.proj_in(x)
        for attention, feed_forward in self.layers:
            latents = latents + attention(x, latents, attn_mask)
            latents = latents + feed_forward(latents)
        return self.norm_out(self.proj_out(latents))


class Attention(nn.Module):
    """Multi-head attention of ``queries (B, L, dim)`` over ``context (B, S, dim)`` with a boolean
    `attn_mask` broadcastable to ``(B, L, S)`` (True = may attend) → ``(B, L, dim)``.

    Keys ``to_q``, ``to_k``, ``to_v`` (no bias) and ``to_out.0`` (with bias), as in GLIGEN/diffusers.
    """

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])  # a list only so the key reads to_out.0

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = _multi_head_attention(
            self.to_q(queries), self.to_k(context), self.to_v(context), self.heads, attn_mask
        )
        return self.to_out[0](out)


class GEGLU(nn.Module):
    """``(..., dim_in)`` → ``(..., dim_out)``: one projection to twice the width, value · GELU(gate)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class GEGLUFeedForward(nn.Module):
    """``(..., dim)`` → ``(..., dim)`` through a GEGLU of width ``mult · dim``; keys ``net.0.proj``,
    ``net.2`` (slot 1 is the dropout of diffusers' FeedForward, kept empty so the indices match)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, mult * dim), nn.Identity(), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GatedSelfAttentionDense(nn.Module):
    """GLIGEN's gated self-attention: queries ``x (B, L, dim)`` read themselves and a set of objects.

    ``objs (B, M, context_dim)`` are projected to `dim` (``linear``); ``x ← x + tanh(α_attn) ·
    SelfAttn(LN([x ; objs]))[:L]`` with padded objects (`objs_mask (B, M)` False) masked out of the keys;
    then ``x ← x + tanh(α_dense) · FF(LN(x))``. Both gates start at zero, so at initialisation the output
    is `x` itself. Returns ``(B, L, dim)``.
    """

    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int, ff_mult: int = 4) -> None:
        super().__init__()
        self.linear = nn.Linear(context_dim, dim)
        self.attn = Attention(dim, heads, dim_head)
        self.ff = GEGLUFeedForward(dim, ff_mult)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))

    def forward(
        self, x: torch.Tensor, objs: torch.Tensor, objs_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        length = x.shape[1]
        tokens = self.norm1(torch.cat([x, self.linear(objs)], dim=1))
        attn_mask = None
        if objs_mask is not None:
            queries_visible = objs_mask.new_ones(objs_mask.shape[0], length)
            attn_mask = torch.cat([queries_visible, objs_mask], dim=1).unsqueeze(1)  # (B, 1, L + M)
        # Only the first L rows of the self-attention are kept, so only they are computed.
        x = x + torch.tanh(self.alpha_attn) * self.attn(tokens[:, :length], tokens, attn_mask)
        return x + torch.tanh(self.alpha_dense) * self.ff(self.norm2(x))


# ---------------------------------------------------------------------------------------------------------
# The two variants


def _check_inputs(
    inst_feats: torch.Tensor, bg_feats: torch.Tensor, polygons: torch.Tensor, valid: torch.Tensor
) -> None:
    if inst_feats.ndim != 4:
        raise ValueError(f"inst_feats must be (B, N, T, E), got {tuple(inst_feats.shape)}")
    batch, slots, tokens, width = inst_feats.shape
    if bg_feats.shape != (batch, tokens, width):
        raise ValueError(
            f"bg_feats must be (B, T, E) = {(batch, tokens, width)}, got {tuple(bg_feats.shape)}"
        )
    if polygons.shape != (batch, slots, 8):
        raise ValueError(f"polygons must be (B, N, 8) = {(batch, slots, 8)}, got {tuple(polygons.shape)}")
    if valid.shape != (batch, slots) or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor (B, N) = {(batch, slots)}, got {valid.dtype} {tuple(valid.shape)}"
        )


class DualResampler(nn.Module):
    """CC-Diff v1's Dual Re-sampler (``variant="ccdiff"``).

    Inputs: ``inst_feats (B, N, T, E)`` encoder tokens of each slot's reference crop, ``bg_feats (B, T, E)``
    of the background reference, ``polygons (B, N, 8)`` normalised oriented boxes, ``valid (B, N)`` bool.
    Output (:class:`ResamplerOutput`): ``fg (B, N, Qf, D)``, ``bg (B, Qb + Qr, D)``, ``rel`` None.

    1. ``fg_resampler`` (Qf = 16 queries) runs on the valid slots only (gathered, then scattered back
       into zeros), so padded slots cost nothing and their output is exactly zero.
    2. ``point_net`` embeds each box to D; the objects ``fg.detach() + box`` of the valid slots (N · Qf
       tokens, padded ones masked out of the keys) feed the zero-gated ``coherent_bridge``, whose queries
       are ``coherent_queries (1, Qr, dim)``. The detach keeps bridge gradients out of the FG resampler;
       they do reach the box MLP.
    3. ``bg_resampler`` reads the background with its Qb learned queries followed by the Qr relation
       queries from the bridge.
    """

    def __init__(self, config: ResamplerConfig) -> None:
        super().__init__()
        if config.variant != "ccdiff":
            raise ValueError(f'DualResampler is the "ccdiff" variant; got a {config.variant!r} config')
        self.config = config
        shared = dict(
            dim=config.dim, depth=config.depth, dim_head=config.dim_head, heads=config.heads,
            embedding_dim=config.embedding_dim, output_dim=config.output_dim, ff_mult=config.ff_mult,
        )  # fmt: skip
        self.fg_resampler = Resampler(num_queries=config.fg_queries, **shared)
        self.bg_resampler = Resampler(num_queries=config.bg_queries, **shared)
        self.point_net = PositionNet(
            config.output_dim, config.fourier_freqs, config.position_hidden, null=config.box_null
        )
        self.coherent_bridge = GatedSelfAttentionDense(
            config.dim, config.output_dim, config.heads, config.dim_head, config.ff_mult
        )
        self.coherent_queries = nn.Parameter(torch.randn(1, config.rel_queries, config.dim) / config.dim**0.5)

    def forward(
        self, inst_feats: torch.Tensor, bg_feats: torch.Tensor, polygons: torch.Tensor, valid: torch.Tensor
    ) -> ResamplerOutput:
        _check_inputs(inst_feats, bg_feats, polygons, valid)
        batch, slots = valid.shape
        fg_valid = self.fg_resampler(inst_feats[valid])  # (M, Qf, D), M = valid slots in the batch
        fg = fg_valid.new_zeros(batch, slots, *fg_valid.shape[1:]).index_put((valid,), fg_valid)

        box = self.point_net(polygons, valid)  # (B, N, D)
        objs = (fg.detach() + box.unsqueeze(2)).flatten(1, 2)  # (B, N·Qf, D)
        objs_mask = valid.repeat_interleave(fg.shape[2], dim=1)  # (B, N·Qf)
        rel = self.coherent_bridge(self.coherent_queries.expand(batch, -1, -1), objs, objs_mask)
        bg = self.bg_resampler(bg_feats, extra_queries=rel)  # (B, Qb + Qr, D)
        return ResamplerOutput(fg=fg, bg=bg)


def co_attention_mask(valid: torch.Tensor, num_tokens: int, num_queries: int) -> torch.Tensor:
    """The Co-Resampler's block mask, built on `valid`'s device in one go.

    ``valid (B, N)`` → bool ``(B, (N + 2)·Q, (N + 1)·T + (N + 2)·Q)``; True = the query may attend the key.
    Queries are the groups ``[fg_0 … fg_{N-1} ; bg ; rel]`` of Q latents each. Keys are the encoder tokens
    of groups ``[inst_0 … inst_{N-1} ; bg]`` (T each), then the latents of all N + 2 groups.

    * an fg or bg group sees only its own tokens and its own latents (a padded fg group too, so that its
      softmax is defined; its output is discarded);
    * the rel group sees the tokens and latents of every valid instance and of the background, but not
      the rel latents (as in the reference) nor anything of a padded slot.
    """
    batch, slots = valid.shape
    device = valid.device
    rel_group = slots + 1
    token_groups = torch.arange(slots + 1, device=device).repeat_interleave(num_tokens)
    latent_groups = torch.arange(slots + 2, device=device).repeat_interleave(num_queries)
    key_groups = torch.cat([token_groups, latent_groups])  # (S,)
    query_groups = latent_groups  # (L,)

    own_group = query_groups.unsqueeze(1) == key_groups.unsqueeze(0)  # (L, S)
    group_valid = torch.cat([valid, valid.new_ones(batch, 2)], dim=1)  # (B, N + 2): instances, bg, rel
    rel_sees = group_valid[:, key_groups] & (key_groups != rel_group)  # (B, S)
    is_rel_query = (query_groups == rel_group).view(1, -1, 1)
    return torch.where(is_rel_query, rel_sees.unsqueeze(1), own_group.unsqueeze(0))


class CoResampler(nn.Module):
    """CC-Diff++'s Co-Resampler (``variant="ccdiff_pp"``).

    Inputs as :class:`DualResampler`. Output (:class:`ResamplerOutput`): ``fg (B, N, Q, D)`` (zero at
    padded slots), ``bg (B, Q, D)``, ``rel (B, Q, D)``.

    Each instance's box embedding (``point_net``, width E) is added to every encoder token of that
    instance; the tokens of all instances and the background go through ``proj_in`` together; the query
    groups ``[q_fg × N ; q_bg ; q_rel]`` (from ``latents (3, Q, dim)``) run through one stack of Perceiver
    layers under :func:`co_attention_mask`, so fg and bg groups stay independent and the rel group reads
    every valid instance and the background jointly. Padded slots' features are zeroed and masked out.
    """

    def __init__(self, config: ResamplerConfig) -> None:
        super().__init__()
        if config.variant != "ccdiff_pp":
            raise ValueError(f'CoResampler is the "ccdiff_pp" variant; got a {config.variant!r} config')
        self.config = config
        dim = config.dim
        self.latents = nn.Parameter(torch.randn(3, config.fg_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(config.embedding_dim, dim)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [PerceiverAttention(dim, config.dim_head, config.heads), FeedForward(dim, config.ff_mult)]
            )
            for _ in range(config.depth)
        )
        self.proj_out = nn.Linear(dim, config.output_dim)
        self.norm_out = nn.LayerNorm(config.output_dim)
        self.point_net = PositionNet(
            config.embedding_dim, config.fourier_freqs, config.position_hidden, null=config.box_null
        )

    def forward(
        self, inst_feats: torch.Tensor, bg_feats: torch.Tensor, polygons: torch.Tensor, valid: torch.Tensor
    ) -> ResamplerOutput:
        _check_inputs(inst_feats, bg_feats, polygons, valid)
        batch, slots, num_tokens, _ = inst_feats.shape
        num_queries = self.latents.shape[1]

        box = self.point_net(polygons, valid)  # (B, N, E)
        inst = torch.where(valid[:, :, None, None], inst_feats + box.unsqueeze(2), inst_feats.new_zeros(()))
        x = self.proj_in(torch.cat([inst, bg_feats.unsqueeze(1)], dim=1))  # (B, N + 1, T, dim)
        x = x.flatten(1, 2)  # (B, (N + 1)·T, dim)

        q_fg, q_bg, q_rel = (queries.expand(batch, 1, -1, -1) for queries in self.latents.unsqueeze(1))
        latents = torch.cat([q_fg.expand(-1, slots, -1, -1), q_bg, q_rel], dim=1)  # (B, N + 2, Q, dim)
        latents = latents.flatten(1, 2)  # (B, (N + 2)·Q, dim)

        attn_mask = co_attention_mask(valid, num_tokens, num_queries)
        for attention, feed_forward in self.layers:
            latents = latents + attention(x, latents, attn_mask)
            latents = latents + feed_forward(latents)
        out = self.norm_out(self.proj_out(latents)).unflatten(1, (slots + 2, num_queries))

        fg = torch.where(valid[:, :, None, None], out[:, :slots], out.new_zeros(()))
        return ResamplerOutput(fg=fg, bg=out[:, slots], rel=out[:, slots + 1])
