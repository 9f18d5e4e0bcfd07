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
by ``LayoutConditions`` (so ``0 · x`` is an exact zero), and they are in no attention mask. The per-instance
attentions (CA_i, EA_i) are computed only on the cells where S_i is not ~0 (see
:func:`~ccaug.model.fusion.weighted_instance_attention`): computing every slot at every cell and masking
afterwards spent about 40% of a CPU training step of the tiny generator on products multiplied by ~0.

Parameter names mirror the reference checkpoints (§2.9): ``fusion.{ea_obj,ea2,ea_rel,la}.{to_q,to_k,to_v,
to_out.0}``, ``fusion.{norm_obj,norm2,norm_rel}``, ``fusion.pos_net.linears_position.{0,2,4}``
(``ea_rel``/``norm_rel`` exist only in ``"ccdiff_pp"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from ccaug.model.conditions import LayoutConditions
from ccaug.model.fusion import (
    VARIANTS,
    CCDiffFusion,
    merge_heads,
    split_heads,
    weighted_instance_attention,
)
from ccaug.model.masks import GridMasks

LAYER_PRESETS: dict[str, tuple[str, ...]] = {
    # The paper's (and MIGC's) placement: 1 + 3 cross-attentions in SD 1.x.
    "mid_and_up1": ("mid_block", "up_blocks.1"),
    # Every cross-attention of the UNet.
    "all": ("down_blocks", "mid_block", "up_blocks"),
}

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
        query = split_heads(query, attn.heads)
        key = split_heads(attn.to_k(context), attn.heads)
        value = split_heads(attn.to_v(context), attn.heads)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        out = merge_heads(out).to(query.dtype)
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
        key = split_heads(attn.to_k(tokens), attn.heads)  # (B·N, h, L, d)
        value = split_heads(attn.to_v(tokens), attn.heads)
        query = split_heads(query, attn.heads)  # (B, h, HW, d)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        key = key.view(batch, slots, *key.shape[1:])
        value = value.view(batch, slots, *value.shape[1:])
        out = weighted_instance_attention(query, key, value, grid.soft, attn.to_out[0], grid.instance_cells)
        return attn.to_out[1](out)


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
