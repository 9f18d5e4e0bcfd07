"""The CC-Diff Conditional Generation Module as attention processors on a tiny random UNet (CPU)."""

import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models import attention_processor
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ccaug.model.cgm import (
    CCDiffAttnProcessor,
    PlainAttnProcessor,
    ccdiff_parameters,
    ccdiff_processors,
    install_ccdiff_processors,
)
from ccaug.model.conditions import LayoutConditions
from ccaug.model.fusion import weighted_instance_attention
from ccaug.model.masks import (
    MIN_INSTANCE_WEIGHT,
    InstanceCells,
    LayoutMasks,
    background_mask,
    polygon_masks,
    soft_ellipse_maps,
)

D = 32  # cross-attention dim of the tiny UNet = width of every condition token
UNET_CONFIG = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": D,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
FUSED = {
    "mid_block.attentions.0.transformer_blocks.0.attn2.processor",
    "up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor",
    "up_blocks.1.attentions.1.transformer_blocks.0.attn2.processor",
}


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**UNET_CONFIG).eval()


def rectangle(cx: float, cy: float, w: float, h: float, angle: float) -> list[float]:
    c, s = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]:
        corners += [cx + c * dx - s * dy, cy + s * dx + c * dy]
    return corners


def random_layout(
    batch: int, slots: int, valid_counts: list[int], seed: int = 0, length: int = 5, width: int = D
) -> LayoutConditions:
    """Random conditions; slots past each sample's valid count hold large garbage (and a NaN)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    boxes = []
    for _ in range(batch * slots):
        cx, cy, w, h, angle = (torch.rand(5, generator=g) * torch.tensor([0.6, 0.6, 0.3, 0.2, 3.0])).tolist()
        boxes.append(rectangle(0.2 + cx, 0.2 + cy, 0.1 + w, 0.05 + h, angle))
    valid = torch.arange(slots)[None, :] < torch.tensor(valid_counts)[:, None]
    layout = LayoutConditions(
        polygons=torch.tensor(boxes).view(batch, slots, 8),
        valid=valid,
        instance_text=rand(batch, slots, length, width),
        instance_pooled=rand(batch, slots, width),
        global_pooled=rand(batch, width),
        fg_tokens=rand(batch, slots, 4, width),
        bg_tokens=rand(batch, 3, width),
        rel_tokens=rand(batch, 2, width),
    )
    return with_garbage_in_padding(layout, seed)


def with_garbage_in_padding(layout: LayoutConditions, seed: int) -> LayoutConditions:
    """The same conditions built from tensors whose padded slots hold garbage (including a NaN)."""
    g = torch.Generator().manual_seed(seed + 1000)
    pad = ~layout.valid

    def dirty(tensor: torch.Tensor) -> torch.Tensor:
        noise = 100 * torch.randn(tensor.shape, generator=g)
        mask = pad.view(*pad.shape, *([1] * (tensor.ndim - 2)))
        out = torch.where(mask, noise, tensor)
        if pad.any():
            out[tuple(pad.nonzero()[0].tolist())] = float("nan")
        return out

    return LayoutConditions(
        polygons=dirty(layout.polygons),
        valid=layout.valid,
        instance_text=dirty(layout.instance_text),
        instance_pooled=dirty(layout.instance_pooled),
        global_pooled=layout.global_pooled,
        fg_tokens=dirty(layout.fg_tokens),
        bg_tokens=layout.bg_tokens,
        rel_tokens=layout.rel_tokens,
        guided=layout.guided,
        latent_size=layout.latent_size,
    )


def unet_inputs(
    batch: int, seed: int = 0, size: tuple[int, int] = (16, 16)
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, *size, generator=g), torch.randn(batch, 6, D, generator=g)


def run(unet: UNet2DConditionModel, latents, tokens, layout=None) -> torch.Tensor:
    kwargs = None if layout is None else {"layout": layout}
    with torch.no_grad():
        return unet(latents, 10, encoder_hidden_states=tokens, cross_attention_kwargs=kwargs).sample


# ----------------------------------------------------------------------------- installation


def test_install_fuses_exactly_the_cross_attention_of_mid_and_up1() -> None:
    unet = tiny_unet()
    fused = install_ccdiff_processors(unet, "ccdiff")
    assert set(fused) == FUSED
    processors = unet.attn_processors
    assert len(processors) == 14
    for name, processor in processors.items():
        expected = CCDiffAttnProcessor if name in FUSED else PlainAttnProcessor
        assert type(processor) is expected, name
    assert ccdiff_processors(unet) == fused
    assert fused[next(iter(sorted(FUSED)))].hidden_dim == 64


def test_install_takes_a_list_of_block_prefixes() -> None:
    unet = tiny_unet()
    assert set(install_ccdiff_processors(unet, "ccdiff_pp", layers=["mid_block"])) == {
        "mid_block.attentions.0.transformer_blocks.0.attn2.processor"
    }
    assert len(install_ccdiff_processors(unet, "ccdiff", layers="all")) == 7
    with pytest.raises(ValueError, match="up_blocks.0"):
        install_ccdiff_processors(unet, layers=["up_blocks.0"])
    with pytest.raises(ValueError, match="presets"):
        install_ccdiff_processors(unet, layers="mid")
    with pytest.raises(ValueError, match="variant"):
        install_ccdiff_processors(unet, variant="ccdiff++")


def test_state_dict_keys_mirror_the_reference_names() -> None:
    unet = tiny_unet()
    fused = install_ccdiff_processors(unet, "ccdiff_pp")
    keys = set(next(iter(fused.values())).state_dict())
    for module in ("ea_obj", "ea2", "ea_rel", "la"):
        for part in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"):
            assert f"fusion.{module}.{part}" in keys
    for norm in ("norm_obj", "norm2", "norm_rel"):
        assert f"fusion.{norm}.weight" in keys
    for index in (0, 2, 4):
        assert f"fusion.pos_net.linears_position.{index}.weight" in keys
    assert not any(k.endswith("bias") and ".to_q" in k for k in keys)  # q/k/v have no bias
    assert (
        "mid_block.attentions.0.transformer_blocks.0.attn2.processor.fusion.ea_obj.to_q.weight"
        in unet.state_dict()
    )
    v1 = CCDiffAttnProcessor(64, D, "ccdiff").state_dict()
    assert not any("ea_rel" in k or "norm_rel" in k for k in v1)


# ----------------------------------------------------------------------------- UNet behaviour


def test_without_layout_the_unet_is_unchanged() -> None:
    latents, tokens = unet_inputs(2)
    unet = tiny_unet()
    before = run(unet, latents, tokens)
    install_ccdiff_processors(unet, "ccdiff_pp")
    torch.testing.assert_close(run(unet, latents, tokens), before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_layout_changes_the_output_and_keeps_its_shape(variant: str, monkeypatch) -> None:
    warnings = []
    monkeypatch.setattr(
        attention_processor.logger, "warning", lambda message, *a, **k: warnings.append(message)
    )
    latents, tokens = unet_inputs(2)
    unet = tiny_unet()
    install_ccdiff_processors(unet, variant)
    plain = run(unet, latents, tokens)
    fused = run(unet, latents, tokens, random_layout(2, 3, [3, 1]))
    assert fused.shape == plain.shape == (2, 4, 16, 16)
    assert torch.isfinite(fused).all()
    assert (fused - plain).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    assert warnings == []  # every processor declares `layout`, so diffusers drops nothing


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_padding_slots_change_nothing(variant: str) -> None:
    latents, tokens = unet_inputs(2)
    unet = tiny_unet()
    install_ccdiff_processors(unet, variant)
    compact = random_layout(2, 2, [2, 1], seed=3)
    padded = LayoutConditions(
        polygons=torch.cat([compact.polygons, torch.rand(2, 3, 8)], dim=1),
        valid=torch.cat([compact.valid, torch.zeros(2, 3, dtype=torch.bool)], dim=1),
        instance_text=torch.cat([compact.instance_text, 50 * torch.randn(2, 3, 5, D)], dim=1),
        instance_pooled=torch.cat([compact.instance_pooled, 50 * torch.randn(2, 3, D)], dim=1),
        global_pooled=compact.global_pooled,
        fg_tokens=torch.cat([compact.fg_tokens, torch.full((2, 3, 4, D), float("nan"))], dim=1),
        bg_tokens=compact.bg_tokens,
        rel_tokens=compact.rel_tokens,
    )
    torch.testing.assert_close(
        run(unet, latents, tokens, padded), run(unet, latents, tokens, compact), rtol=0, atol=1e-5
    )


def test_a_sample_gives_the_same_output_alone_and_in_a_batch() -> None:
    latents, tokens = unet_inputs(3)
    unet = tiny_unet()
    install_ccdiff_processors(unet, "ccdiff")
    layout = random_layout(3, 4, [4, 2, 0], seed=5)
    batched = run(unet, latents, tokens, layout)
    for row in range(3):
        alone = run(unet, latents[row : row + 1], tokens[row : row + 1], layout.select([row]))
        torch.testing.assert_close(alone[0], batched[row], rtol=0, atol=1e-5)


def test_unguided_rows_equal_the_plain_unet() -> None:
    latents, tokens = unet_inputs(2)
    negative, prompt = tokens[:1], tokens[1:]
    unet = tiny_unet()
    install_ccdiff_processors(unet, "ccdiff_pp")
    conditions = random_layout(1, 3, [2], seed=7).concat_for_guidance()
    assert conditions.guided.tolist() == [False, True]
    doubled = torch.cat([latents[:1]] * 2)
    uncond, cond = run(unet, doubled, torch.cat([negative, prompt]), conditions).chunk(2)
    torch.testing.assert_close(uncond, run(unet, latents[:1], negative), rtol=0, atol=1e-5)
    assert (cond - run(unet, latents[:1], prompt)).abs().max() > 1e-3
    # An unguided row in the middle of a batch, too.
    layout = random_layout(3, 2, [2, 2, 1], seed=8)
    layout = LayoutConditions.concatenate(
        [layout.select([0]), layout.select([1]).unguided(), layout.select([2])]
    )
    mixed = run(unet, latents[[0, 1, 0]], tokens[[0, 1, 1]], layout)
    torch.testing.assert_close(mixed[1], run(unet, latents[1:2], tokens[1:2])[0], rtol=0, atol=1e-5)
    guided_only = run(unet, latents[[0, 0]], tokens[[0, 1]], layout.select([0, 2]))
    torch.testing.assert_close(mixed[[0, 2]], guided_only, rtol=0, atol=1e-5)


def test_masks_are_computed_once_per_resolution_and_reused_across_steps(monkeypatch) -> None:
    computed = []
    original = LayoutMasks._compute

    def counting(self, height, width):
        computed.append((height, width))
        return original(self, height, width)

    monkeypatch.setattr(LayoutMasks, "_compute", counting)
    latents, tokens = unet_inputs(1)
    unet = tiny_unet()
    install_ccdiff_processors(unet, "ccdiff")
    layout = random_layout(1, 2, [2])
    run(unet, latents, tokens, layout)
    run(unet, latents, tokens, layout)
    assert sorted(computed) == [(4, 4), (8, 8)]  # mid block at 4×4, both up_blocks.1 layers at 8×8


def test_instance_cells_are_found_once_per_resolution_and_reused_across_steps(monkeypatch) -> None:
    """Finding them waits for the device; each fused layer makes two instance attention calls."""
    found = []
    original = InstanceCells.where.__func__

    def counting(cls, weights):
        found.append(tuple(weights.shape))
        return original(cls, weights)

    monkeypatch.setattr(InstanceCells, "where", classmethod(counting))
    latents, tokens = unet_inputs(1)
    unet = tiny_unet()
    install_ccdiff_processors(unet, "ccdiff")
    layout = random_layout(1, 2, [2])
    first = run(unet, latents, tokens, layout)
    second = run(unet, latents, tokens, layout)
    assert sorted(found) == [(1, 2, 16), (1, 2, 64)]
    torch.testing.assert_close(second, first)


def test_weighted_instance_attention_with_cells_found_beforehand_is_the_same() -> None:
    torch.manual_seed(2)
    projection = torch.nn.Linear(8, 6)
    query, key, value = torch.randn(2, 2, 12, 4), torch.randn(2, 3, 2, 5, 4), torch.randn(2, 3, 2, 5, 4)
    weights = torch.rand(2, 3, 12) * (torch.rand(2, 3, 12) > 0.5)
    cells = InstanceCells.where(weights)
    assert cells.longest == int((weights > MIN_INSTANCE_WEIGHT).sum(-1).max())
    torch.testing.assert_close(
        weighted_instance_attention(query, key, value, weights, projection, cells),
        weighted_instance_attention(query, key, value, weights, projection),
    )


def test_non_square_latents_need_the_latent_size() -> None:
    latents, tokens = unet_inputs(1, size=(16, 8))
    unet = tiny_unet()
    install_ccdiff_processors(unet, "ccdiff")
    layout = random_layout(1, 2, [2])
    with pytest.raises(ValueError, match="latent_size"):
        run(unet, latents, tokens, layout)
    sized = LayoutConditions(**{**vars_of(layout), "latent_size": (16, 8)})
    assert run(unet, latents, tokens, sized).shape == (1, 4, 16, 8)


def vars_of(layout: LayoutConditions) -> dict:
    return layout.tensor_fields()


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_gradients_reach_every_cgm_parameter_and_no_frozen_one(variant: str) -> None:
    latents, tokens = unet_inputs(2)
    unet = tiny_unet()
    install_ccdiff_processors(unet, variant)
    unet.requires_grad_(False)
    trainable = ccdiff_parameters(unet)
    for parameter in trainable:
        parameter.requires_grad_(True)
    layout = random_layout(2, 3, [3, 2], seed=2)
    unet(
        latents, 10, encoder_hidden_states=tokens, cross_attention_kwargs={"layout": layout}
    ).sample.square().mean().backward()
    trainable_ids = {id(p) for p in trainable}
    assert len(trainable) == 3 * len(list(CCDiffAttnProcessor(64, D, variant).parameters()))
    for name, parameter in unet.named_parameters():
        if id(parameter) in trainable_ids:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name


def test_batch_mismatch_points_to_concat_for_guidance() -> None:
    latents, tokens = unet_inputs(2)
    unet = tiny_unet()
    install_ccdiff_processors(unet, "ccdiff")
    with pytest.raises(ValueError, match="concat_for_guidance"):
        run(unet, latents, tokens, random_layout(1, 2, [2]))


# ----------------------------------------------------------------------------- one fused layer


C_LAYER, HEADS = 32, 4


def layer(variant: str, init: str = "default", seed: int = 0) -> tuple[Attention, CCDiffAttnProcessor]:
    torch.manual_seed(seed)
    attn = Attention(query_dim=C_LAYER, cross_attention_dim=D, heads=HEADS, dim_head=C_LAYER // HEADS)
    return attn, CCDiffAttnProcessor(C_LAYER, D, variant, heads=HEADS, init=init)


def terms(attn: Attention, processor: CCDiffAttnProcessor, x: torch.Tensor, tokens: torch.Tensor, layout):
    grid = layout.masks.for_tokens(x.shape[1])
    query = attn.to_q(x)
    global_ca = processor._frozen_cross_attention(attn, query, tokens, None)
    weighted = processor._instance_cross_attention(attn, query, layout, grid)
    return processor.fusion(x, global_ca, weighted, layout, grid), grid


def reference_output(attn, processor, x, tokens, layout, height, width) -> torch.Tensor:
    """The fused layer written out per sample and per instance, straight from the formulas (§2.6)."""
    fusion, plain = processor.fusion, AttnProcessor2_0()
    soft = soft_ellipse_maps(layout.polygons, layout.valid, height, width).flatten(2)
    masks = polygon_masks(layout.polygons, layout.valid, height, width).flatten(2)
    background = background_mask(masks.view(*masks.shape[:2], height, width), layout.valid).flatten(1)
    outputs = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        global_ca = plain(attn, xb, tokens[b : b + 1])
        foreground = torch.zeros_like(xb)
        regions = [background[b]]
        for i in range(layout.num_slots):
            if not layout.valid[b, i]:
                continue
            weight = soft[b, i][None, :, None]
            ca = plain(attn, xb, layout.instance_text[b : b + 1, i])
            box = fusion.pos_net(layout.polygons[b, i])
            context = torch.cat([layout.instance_pooled[b, i][None], layout.fg_tokens[b, i], box[None]])[None]
            ea = fusion.ea_obj(fusion.norm_obj(xb), context)
            foreground = foreground + weight * ca + weight * ea
            regions.append(masks[b, i])
        bg_context = torch.cat([layout.global_pooled[b][None], layout.bg_tokens[b]])[None]
        bg_query = foreground if processor.variant == "ccdiff" else xb
        bg = fusion.ea2(fusion.norm2(bg_query), bg_context)
        allowed = sum(torch.outer(m, m) for m in regions) > 0
        la = fusion.la
        q, k, v = (
            proj(xb)[0].view(-1, HEADS, C_LAYER // HEADS).transpose(0, 1)
            for proj in (la.to_q, la.to_k, la.to_v)
        )
        scores = (q @ k.transpose(1, 2) / math.sqrt(C_LAYER // HEADS)).masked_fill(~allowed, float("-inf"))
        la_out = la.to_out[0]((scores.softmax(-1) @ v).transpose(0, 1).reshape(1, -1, C_LAYER))
        fused = global_ca + bg + foreground
        out = fused + la_out
        if processor.variant == "ccdiff_pp":
            out = out + fusion.ea_rel(fusion.norm_rel(fused), layout.rel_tokens[b : b + 1])
        outputs.append(out)
    return torch.cat(outputs)


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_fused_layer_matches_the_per_instance_formulas(variant: str) -> None:
    attn, processor = layer(variant)
    layout = random_layout(2, 3, [3, 1], seed=11)
    x = torch.randn(2, 64, C_LAYER)
    tokens = torch.randn(2, 6, D)
    with torch.no_grad():
        out = processor(attn, x, tokens, layout=layout)
        expected = reference_output(attn, processor, x, tokens, layout, 8, 8)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def dense_instance_attention(query, key, value, weights, projection):
    """Every instance attended at every cell, projected, weighted and summed: the formula, spelled out."""
    total = 0
    for i in range(key.shape[1]):
        out = torch.nn.functional.scaled_dot_product_attention(query, key[:, i], value[:, i])  # (B, h, HW, d)
        out = out.transpose(1, 2).flatten(2)  # (B, HW, h·d)
        total = total + weights[:, i].unsqueeze(-1) * projection(out)
    return total


@pytest.mark.parametrize("wrapped", [False, True])
def test_weighted_instance_attention_equals_attending_every_instance_everywhere(wrapped: bool) -> None:
    torch.manual_seed(0)
    projection = torch.nn.Linear(8, 6)
    if wrapped:  # e.g. a LoRA wrapper: applied row-wise, not folded into the sum
        projection = torch.nn.Sequential(projection, torch.nn.Tanh())
    query, key, value = torch.randn(2, 2, 12, 4), torch.randn(2, 3, 2, 5, 4), torch.randn(2, 3, 2, 5, 4)
    weights = torch.rand(2, 3, 12) * (torch.rand(2, 3, 12) > 0.6)  # sparse, like soft maps of small objects
    weights[1, 2] = 0.0  # a padded slot
    weights[0, 0, :3] = 1e-12  # below MIN_INSTANCE_WEIGHT: skipped, and negligible
    expected = dense_instance_attention(query, key, value, weights, projection)
    got = weighted_instance_attention(query, key, value, weights, projection)
    torch.testing.assert_close(got, expected)


def test_weighted_instance_attention_gradients_match_the_dense_formula() -> None:
    torch.manual_seed(1)
    projection = torch.nn.Linear(8, 6)
    tensors = [torch.randn(2, 2, 12, 4), torch.randn(2, 3, 2, 5, 4), torch.randn(2, 3, 2, 5, 4)]
    weights = torch.rand(2, 3, 12) * (torch.rand(2, 3, 12) > 0.5)
    grads = []
    for function in (dense_instance_attention, weighted_instance_attention):
        leaves = [t.clone().requires_grad_() for t in tensors]
        projection.zero_grad()
        function(*leaves, weights, projection).square().sum().backward()
        grads.append([leaf.grad for leaf in leaves] + [projection.weight.grad.clone()])
    for dense, sparse in zip(*grads):
        torch.testing.assert_close(sparse, dense)


def test_weighted_instance_attention_without_any_instance_is_zero() -> None:
    projection = torch.nn.Linear(8, 6)
    query, key = torch.randn(2, 2, 12, 4), torch.randn(2, 3, 2, 5, 4)
    out = weighted_instance_attention(query, key, key, torch.zeros(2, 3, 12), projection)
    assert out.shape == (2, 12, 6) and not out.any()


def test_moving_an_instance_changes_the_foreground_only_near_its_old_and_new_box() -> None:
    attn, processor = layer("ccdiff")
    base = random_layout(1, 2, [2], seed=4)
    polygons = torch.tensor([[rectangle(0.2, 0.25, 0.15, 0.1, 0.3), rectangle(0.7, 0.7, 0.12, 0.08, 1.0)]])
    moved = polygons.clone()
    moved[0, 1] = torch.tensor(rectangle(0.78, 0.62, 0.12, 0.08, 0.2))
    fields = vars_of(base)
    before = LayoutConditions(**{**fields, "polygons": polygons})
    after = LayoutConditions(**{**fields, "polygons": moved})
    x = torch.randn(1, 256, C_LAYER)  # a 16×16 layer
    tokens = torch.randn(1, 6, D)
    with torch.no_grad():
        old_terms, old_grid = terms(attn, processor, x, tokens, before)
        new_terms, new_grid = terms(attn, processor, x, tokens, after)
    change = (new_terms.foreground - old_terms.foreground).abs().amax(dim=-1)[0]  # (HW,)
    support = torch.maximum(old_grid.soft[0, 1], new_grid.soft[0, 1])
    far = support < 1e-7
    assert far.sum() > 150
    assert change[far].max() < 1e-5
    assert change[support > 0.5].min() > 1e-4
    torch.testing.assert_close(old_terms.global_ca, new_terms.global_ca)


@pytest.mark.parametrize("variant, background_moves", [("ccdiff", True), ("ccdiff_pp", False)])
def test_background_depends_on_foreground_tokens_only_in_ccdiff(variant: str, background_moves: bool) -> None:
    attn, processor = layer(variant)
    layout = random_layout(1, 2, [2], seed=6)
    fields = vars_of(layout)
    other_fg = LayoutConditions(
        **{**fields, "fg_tokens": fields["fg_tokens"] + torch.randn_like(fields["fg_tokens"])}
    )
    x, tokens = torch.randn(1, 64, C_LAYER), torch.randn(1, 6, D)
    with torch.no_grad():
        first, _ = terms(attn, processor, x, tokens, layout)
        second, _ = terms(attn, processor, x, tokens, other_fg)
    assert (first.foreground - second.foreground).abs().max() > 1e-3
    moved = (first.background - second.background).abs().max()
    assert (moved > 1e-4) if background_moves else (moved == 0)


def test_zero_init_adds_only_the_frozen_instance_terms_at_first() -> None:
    attn, processor = layer("ccdiff_pp", init="zero")
    layout = random_layout(1, 2, [2], seed=9)
    x, tokens = torch.randn(1, 64, C_LAYER), torch.randn(1, 6, D)
    with torch.no_grad():
        result, grid = terms(attn, processor, x, tokens, layout)
        weighted = processor._instance_cross_attention(attn, attn.to_q(x), layout, grid)
    for term in (result.background, result.relation, result.layout):
        assert term.abs().max() == 0
    torch.testing.assert_close(result.foreground, weighted)
    with pytest.raises(ValueError, match="init"):
        CCDiffAttnProcessor(C_LAYER, D, init="zeros")


def test_ccdiff_pp_needs_relation_tokens() -> None:
    attn, processor = layer("ccdiff_pp")
    layout = LayoutConditions(**{**vars_of(random_layout(1, 2, [2])), "rel_tokens": None})
    with pytest.raises(ValueError, match="rel_tokens"):
        processor(attn, torch.randn(1, 64, C_LAYER), torch.randn(1, 6, D), layout=layout)


# ----------------------------------------------------------------------------- conditions


def test_conditions_report_wrong_shapes_by_name() -> None:
    fields = vars_of(random_layout(2, 3, [3, 1]))
    with pytest.raises(ValueError, match=r"fg_tokens must be \(B, N, Qf, D\)"):
        LayoutConditions(**{**fields, "fg_tokens": torch.zeros(2, 4, 4, D)})
    with pytest.raises(ValueError, match="valid must be a bool"):
        LayoutConditions(**{**fields, "valid": fields["valid"].float()})
    with pytest.raises(ValueError, match="instance_pooled"):
        LayoutConditions(**{**fields, "instance_pooled": torch.zeros(2, 3, D + 1)})
    with pytest.raises(ValueError, match="guided"):
        LayoutConditions(**{**fields, "guided": torch.ones(3, dtype=torch.bool)})


def test_conditions_zero_padded_slots_and_move_between_dtypes() -> None:
    layout = random_layout(2, 3, [3, 1])
    assert torch.isfinite(layout.fg_tokens).all() and layout.fg_tokens[1, 1:].abs().sum() == 0
    doubled = layout.to(dtype=torch.float64)
    assert doubled.fg_tokens.dtype == torch.float64 and doubled.polygons.dtype == torch.float32
    assert doubled.valid.dtype == torch.bool and doubled.masks is not layout.masks
    both = LayoutConditions.concatenate([layout, layout.select([1])])
    assert both.batch_size == 3 and torch.equal(both.polygons[2], layout.polygons[1])
    with pytest.raises(ValueError, match="pad the instances"):
        LayoutConditions.concatenate([layout, random_layout(1, 4, [1])])


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_a_batch_without_instance_slots_runs(variant):
    """Layouts with no objects at all (N = 0 slots) are legal: only the background terms act."""
    torch.manual_seed(0)
    unet = tiny_unet()
    install_ccdiff_processors(unet, variant=variant)
    layout = LayoutConditions(
        polygons=torch.zeros(2, 0, 8),
        valid=torch.zeros(2, 0, dtype=torch.bool),
        instance_text=torch.zeros(2, 0, 4, D),
        instance_pooled=torch.zeros(2, 0, D),
        global_pooled=torch.randn(2, D),
        fg_tokens=torch.zeros(2, 0, 4, D),
        bg_tokens=torch.randn(2, 4, D),
        rel_tokens=torch.randn(2, 4, D) if variant == "ccdiff_pp" else None,
    )
    context = torch.randn(2, 5, D)
    out = unet(torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), encoder_hidden_states=context, cross_attention_kwargs={"layout": layout}).sample
    assert out.shape == (2, 4, 16, 16) and torch.isfinite(out).all()
