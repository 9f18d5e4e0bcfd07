"""CC-Diff's Conditional Generation Module (CGM) as a diffusers attention processor.

The CGM replaces the cross-attention (``attn2``) of a few transformer blocks of a frozen UNet (by default
the paper's placement: ``mid_block`` and ``up_blocks.1``, 4 layers in SD 1.x). It is not a UNet fork: it
is a processor registered on those layers, whose parameters (the ``fusion`` submodule) are the trainable
CGM; every other attention gets :class:`PlainAttnProcessor`.

How the conditions arrive: the UNet is called with ``cross_attention_kwargs={"layout": conditions}``
(a :class:`~ccaug.model.conditions.LayoutConditions`). diffusers 0.42 passes ``cross_attention_kwargs``
to every attention module, and ``Attention.forward`` keeps only the keys named in its processor's
``__call__`` signature: a processor without a ``layout`` parameter (e.g. the stock ``AttnProcessor2_0``)
gets the key dropped **and logs a warning on every call**. So both processors here declare ``layout``;
:func:`install_ccdiff_processors` sets one or the other on every attention of the UNet.

In a fused layer, for the guided rows (X = the block's normed hidden states ``(B, HW, C)``):

    CA_0 = frozen attn2(X, global caption tokens)             the plain cross-attention
    CA_i = frozen attn2(X, label tokens of instance i)        same to_q/to_k/to_v/to_out, batched over i
    EA_i = ea_obj(norm_obj(X), [pooled_i ; fg_i ; pos_net(polygon_i)])
    R_i  = S_i ⊙ CA_i + S_i ⊙ EA_i                            S_i = soft ellipse map of instance i
    BG   = ea2(norm2(Σ_i R_i), [global_pooled ; bg])          "ccdiff": foreground-aware query
    BG   = ea2(norm2(X),       [global_pooled ; bg])          "ccdiff_pp": parallel query
    R_0  = CA_0 + BG
    LA   = la(X, X) with allowed(p, q) ⇔ p and q share an instance mask or the background mask
    "ccdiff":    out = R_0 + Σ_i R_i + LA
    "ccdiff_pp": F = R_0 + Σ_i R_i;  out = F + ea_rel(norm_rel(F), rel) + LA

Unguided rows (the unconditional half of classifier-free guidance) and calls without ``layout`` get the
plain cross-attention CA_0 only, exactly as diffusers' ``AttnProcessor2_0``.

Padded instance slots contribute exactly nothing: their S_i and masks are zero, their inputs are zeroed
by ``LayoutConditions`` (so ``0 · x`` is an exact zero), and they are in no attention mask. All slots are
computed (static shapes, one batched call) and masked, rather than gathered (which would need a device
sync per layer).

Parameter names mirror the reference checkpoints (§2.9): ``fusion.{ea_obj,ea2,ea_rel,la}.{to_q,to_k,to_v,
to_out.0}``, ``fusion.{norm_obj,norm2,norm_rel}``, ``fusion.pos_net.linears_position.{0,2,4}``
(``ea_rel``/``norm_rel`` exist only in ``"ccdiff_pp"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from ccaug.model.conditions import LayoutConditions
from ccaug.model.embeddings import PositionNet
from ccaug.model.masks import GridMasks

VARIANTS = ("ccdiff", "ccdiff_pp")
INITS = ("default", "zero")
LAYER_PRESETS: dict[str, tuple[str, ...]] = {
    # The paper's (and MIGC's) placement: 1 + 3 cross-attentions in SD 1.x.
    "mid_and_up1": ("mid_block", "up_blocks.1"),
    # Every cross-attention of the UNet.
    "all": ("down_blocks", "mid_block", "up_blocks"),
}


# ----------------------------------------------------------------------------- attention helpers


def _split_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """``(..., L, heads·d)`` → ``(..., heads, L, d)``."""
    *lead, length, inner = tensor.shape
    return tensor.view(*lead, length, heads, inner // heads).transpose(-3, -2)


def _merge_heads(tensor: torch.Tensor) -> torch.Tensor:
    """``(..., heads, L, d)`` → ``(..., L, heads·d)``."""
    *lead, heads, length, dim = tensor.shape
    return tensor.transpose(-3, -2).reshape(*lead, length, heads * dim)


def _attend_per_instance(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """One shared query against N separate contexts, in one SDPA call.

    Args:
        query: ``(B, h, HW, d)`` head-split queries (the same for every instance).
        key, value: ``(B, N, h, T, d)`` head-split keys and values of each instance's context.

    Returns:
        ``(B, N, HW, h·d)``: the attention output for each instance, before the output projection.
    """
    batch, slots = key.shape[:2]
    queries = query.unsqueeze(1).expand(batch, slots, *query.shape[1:])
    out = F.scaled_dot_product_attention(
        queries.reshape(batch * slots, *query.shape[1:]),
        key.reshape(batch * slots, *key.shape[2:]),
        value.reshape(batch * slots, *value.shape[2:]),
    )
    return _merge_heads(out.view(batch, slots, *out.shape[1:]))


def _weighted_projection(projection: nn.Module, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i weights_i ⊙ projection(values_i), with one projection instead of N.

    The projection is affine, so Σ_i w_i (W v_i + b) = W (Σ_i w_i v_i) + (Σ_i w_i) b: the same value for
    1/N of the matmuls (the output projections dominate the per-instance cost at C = 1280).

    Args:
        projection: a Linear ``inner → C`` (any other module, e.g. a LoRA wrapper, is applied to each
            instance instead).
        values: ``(B, N, HW, inner)`` per-instance attention outputs.
        weights: ``(B, N, HW)`` per-instance spatial weights (zero in padded slots).

    Returns:
        ``(B, HW, C)``.
    """
    if type(projection) is not nn.Linear:  # e.g. a LoRA-wrapped layer: its weight alone is not the map
        return (weights.unsqueeze(-1) * projection(values)).sum(dim=1)
    mixed = torch.einsum("bnp,bnpc->bpc", weights, values)
    out = F.linear(mixed, projection.weight)
    if projection.bias is not None:
        out = out + weights.sum(dim=1).unsqueeze(-1) * projection.bias
    return out


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
        query = _split_heads(self.to_q(hidden_states), self.heads)
        key = _split_heads(self.to_k(context), self.heads)
        value = _split_heads(self.to_v(context), self.heads)
        attn_mask = mask.unsqueeze(1) if mask is not None else None
        out = _merge_heads(F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask))
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
        query = _split_heads(attention.to_q(self.norm_obj(x)), attention.heads)  # (B, h, HW, d)
        key = _split_heads(attention.to_k(context), attention.heads)  # (B, N, h, T, d)
        value = _split_heads(attention.to_v(context), attention.heads)
        per_instance = _attend_per_instance(query, key, value)  # (B, N, HW, C)
        enhanced = attention.to_out[1](_weighted_projection(attention.to_out[0], per_instance, grid.soft))
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


# ----------------------------------------------------------------------------- processors


class PlainAttnProcessor(AttnProcessor2_0):
    """diffusers' ``AttnProcessor2_0`` that declares (and ignores) the ``layout`` kwarg.

    Declaring it keeps ``Attention.forward`` from logging "cross_attention_kwargs ['layout'] are not
    expected" on every call of every unfused attention.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        layout: LayoutConditions | None = None,
        **kwargs,
    ) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


_PLAIN = PlainAttnProcessor()


class CCDiffAttnProcessor(nn.Module):
    """The CGM on one cross-attention layer: plain cross-attention plus the CC-Diff layout terms.

    Args:
        hidden_dim: C, the attention's query width.
        context_dim: D, the token width of the conditions (the UNet's cross-attention dim).
        variant: ``"ccdiff"`` or ``"ccdiff_pp"``.
        heads: heads of the CGM's own attentions (8); the frozen attention keeps its own.
        init: ``"default"`` or ``"zero"`` (see :class:`CCDiffFusion`).

    Called by diffusers' ``Attention.forward`` as ``processor(attn, hidden_states, encoder_hidden_states,
    attention_mask, layout=...)`` with ``hidden_states (B, HW, C)`` (the block's normed states) and
    ``encoder_hidden_states (B, L, D)`` (the caption tokens, or the negative prompt's on unguided rows).
    Returns ``(B, HW, C)``.
    """

    def __init__(
        self,
        hidden_dim: int,
        context_dim: int,
        variant: str = "ccdiff",
        heads: int = 8,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.context_dim = context_dim
        self.variant = variant
        self.fusion = CCDiffFusion(hidden_dim, context_dim, variant=variant, heads=heads, init=init)

    # diffusers reads the signature of __call__ to decide which cross_attention_kwargs to pass, so the
    # processor defines __call__ itself (as diffusers' own nn.Module processors do), not forward.
    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        layout: LayoutConditions | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if layout is None:
            return _PLAIN(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if encoder_hidden_states is None:
            raise ValueError("a CC-Diff fused layer is a cross-attention and needs encoder_hidden_states")

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if layout.batch_size != batch:
            raise ValueError(
                f"LayoutConditions has {layout.batch_size} rows but the latent batch has {batch}; under "
                f"classifier-free guidance pass conditions.concat_for_guidance()"
            )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(
                attention_mask, encoder_hidden_states.shape[1], batch
            )
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        x = hidden_states
        query = attn.to_q(x)
        global_ca = self._frozen_cross_attention(attn, query, encoder_hidden_states, attention_mask)
        out = global_ca
        rows = layout.guided_rows
        if rows.numel() > 0:
            guided = layout.guided_subset()
            if not layout.all_guided:
                x, query, global_ca = x[rows], query[rows], global_ca[rows]
            if input_ndim == 4:  # the grid is known
                grid = guided.masks.at(height, width, dtype=x.dtype)
            else:
                grid = guided.masks.for_tokens(x.shape[1], dtype=x.dtype)
            weighted_ca = self._instance_cross_attention(attn, query, guided, grid)
            fused = self.fusion(x, global_ca, weighted_ca, guided, grid).output
            out = fused if layout.all_guided else out.index_copy(0, rows, fused)

        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    @staticmethod
    def _frozen_cross_attention(
        attn: Attention, query: torch.Tensor, context: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """CA_0: the frozen attention's own cross-attention, as ``AttnProcessor2_0`` computes it.

        ``query (B, HW, inner)`` (already projected), ``context (B, L, D)``, ``attention_mask`` prepared
        ``(B, heads, 1 or HW, L)`` or None → ``(B, HW, C)``.
        """
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query = _split_heads(query, attn.heads)
        key = _split_heads(attn.to_k(context), attn.heads)
        value = _split_heads(attn.to_v(context), attn.heads)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        out = _merge_heads(out).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))

    @staticmethod
    def _instance_cross_attention(
        attn: Attention, query: torch.Tensor, layout: LayoutConditions, grid: GridMasks
    ) -> torch.Tensor:
        """Σ_i S_i ⊙ CA_i: the frozen attention on every instance's label tokens, batched over instances.

        ``query (B, HW, inner)`` (projected by the frozen ``to_q``, shared by all instances), the label
        tokens ``layout.instance_text (B, N, L, D)``, ``grid.soft (B, N, HW)`` → ``(B, HW, C)``.
        The frozen output dropout is applied once to the weighted sum.
        """
        batch, slots, length, width = layout.instance_text.shape
        tokens = layout.instance_text.to(query.dtype).reshape(batch * slots, length, width)
        if attn.norm_cross:
            tokens = attn.norm_encoder_hidden_states(tokens)
        key = _split_heads(attn.to_k(tokens), attn.heads)  # (B·N, h, L, d)
        value = _split_heads(attn.to_v(tokens), attn.heads)
        query = _split_heads(query, attn.heads)  # (B, h, HW, d)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        key = key.view(batch, slots, *key.shape[1:])
        value = value.view(batch, slots, *value.shape[1:])
        per_instance = _attend_per_instance(query, key, value)  # (B, N, HW, inner)
        return attn.to_out[1](_weighted_projection(attn.to_out[0], per_instance, grid.soft))


# ----------------------------------------------------------------------------- installation


def _fused_prefixes(layers: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(layers, str):
        if layers not in LAYER_PRESETS:
            raise ValueError(
                f"layers must be one of the presets {tuple(LAYER_PRESETS)} or a list of block name prefixes "
                f"such as ['mid_block', 'up_blocks.1'], not {layers!r}"
            )
        return LAYER_PRESETS[layers]
    prefixes = tuple(layers)
    if not prefixes:
        raise ValueError("layers is empty: name at least one block, e.g. ['mid_block']")
    return prefixes


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def install_ccdiff_processors(
    unet: nn.Module,
    variant: str = "ccdiff",
    layers: str | Sequence[str] = "mid_and_up1",
    context_dim: int | None = None,
    init: str = "default",
    heads: int = 8,
) -> dict[str, CCDiffAttnProcessor]:
    """Put the CGM on the cross-attention of the chosen blocks and a plain processor everywhere else.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (or any module made of diffusers ``Attention``).
        variant: ``"ccdiff"`` or ``"ccdiff_pp"``.
        layers: ``"mid_and_up1"`` (the paper's placement: every ``attn2`` under ``mid_block`` and
            ``up_blocks.1``), ``"all"``, or a list of module-name prefixes (e.g. ``["mid_block",
            "up_blocks.1.attentions.0"]``); every prefix must select at least one ``attn2``.
        context_dim: D of the conditions; defaults to each attention's own context width
            (``cross_attention_dim``).
        init: ``"default"`` (reference) or ``"zero"`` (zero output projections, §2.8).
        heads: heads of the CGM attentions (8 in the reference).

    Returns:
        ``{processor name: processor}`` of the fused layers, named like ``unet.attn_processors``
        (``"mid_block.attentions.0.transformer_blocks.0.attn2.processor"``). Their parameters are the
        trainable CGM and live in ``unet.state_dict()`` under ``<name>.fusion.…``. New processors take the
        device and dtype of the attention they are set on.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    prefixes = _fused_prefixes(layers)
    attentions = [(name, module) for name, module in unet.named_modules() if isinstance(module, Attention)]
    cross_names = [
        name for name, module in attentions if name.endswith(".attn2") and module.is_cross_attention
    ]
    unmatched = [p for p in prefixes if not any(_matches(name, p) for name in cross_names)]
    if unmatched:
        blocks = sorted({name.rsplit(".transformer_blocks", 1)[0] for name in cross_names})
        raise ValueError(f"no cross-attention (attn2) under {unmatched}; the UNet's are under {blocks}")

    fused: dict[str, CCDiffAttnProcessor] = {}
    for name, module in attentions:
        if name in cross_names and any(_matches(name, p) for p in prefixes):
            weight = module.to_q.weight
            processor = CCDiffAttnProcessor(
                hidden_dim=module.to_q.in_features,
                context_dim=context_dim if context_dim is not None else module.to_k.in_features,
                variant=variant,
                heads=heads,
                init=init,
            ).to(device=weight.device, dtype=weight.dtype)
            module.set_processor(processor)
            fused[f"{name}.processor"] = processor
        else:
            module.set_processor(PlainAttnProcessor())
    return fused


def ccdiff_processors(unet: nn.Module) -> dict[str, CCDiffAttnProcessor]:
    """``{processor name: processor}`` of the CGM layers installed in `unet`."""
    return {
        f"{name}.processor": module.processor
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and isinstance(module.processor, CCDiffAttnProcessor)
    }


def ccdiff_parameters(unet: nn.Module) -> list[nn.Parameter]:
    """The trainable CGM parameters of every fused layer of `unet` (everything else stays frozen)."""
    return [p for processor in ccdiff_processors(unet).values() for p in processor.parameters()]
