"""Resamplers: shapes, padding and batch invariance, the v1 bridge gate and detach, the ++ block mask."""

from __future__ import annotations

import pytest
import torch

from ccaug.model.resampler import (
    CoResampler,
    DualResampler,
    Resampler,
    ResamplerConfig,
    ResamplerOutput,
    build_resampler,
    co_attention_mask,
)

VARIANTS = ["ccdiff", "ccdiff_pp"]
T, E = 5, 32  # encoder tokens per reference, encoder width


def tiny_config(variant: str) -> ResamplerConfig:
    fg_queries = 4 if variant == "ccdiff" else 3
    return ResamplerConfig(
        variant=variant, dim=32, depth=2, dim_head=8, heads=4, embedding_dim=E, output_dim=24,
        fg_queries=fg_queries, bg_queries=3, rel_queries=3, position_hidden=32,
    )  # fmt: skip


def make_model(variant: str, gate: float = 0.0) -> DualResampler | CoResampler:
    torch.manual_seed(0)
    model = build_resampler(tiny_config(variant)).double()
    if variant == "ccdiff" and gate:
        with torch.no_grad():
            model.coherent_bridge.alpha_attn.fill_(gate)
            model.coherent_bridge.alpha_dense.fill_(gate)
    return model


def make_layout(seed: int, slots: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inst_feats (1, N, T, E), bg_feats (1, T, E), polygons (1, N, 8)) of one sample."""
    generator = torch.Generator().manual_seed(seed)
    inst = torch.randn(1, slots, T, E, generator=generator, dtype=torch.float64)
    bg = torch.randn(1, T, E, generator=generator, dtype=torch.float64)
    polygons = torch.rand(1, slots, 8, generator=generator, dtype=torch.float64)
    return inst, bg, polygons


def outputs(result: ResamplerOutput) -> list[torch.Tensor]:
    return [result.fg, result.bg] + ([] if result.rel is None else [result.rel])


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes(variant: str) -> None:
    model = make_model(variant)
    config = model.config
    inst, bg, polygons = (torch.cat([a, b]) for a, b in zip(make_layout(0, 3), make_layout(1, 3)))
    valid = torch.tensor([[True, False, True], [True, True, True]])
    result = model(inst, bg, polygons, valid)
    D = config.output_dim
    assert result.fg.shape == (2, 3, config.fg_queries, D)
    if variant == "ccdiff":
        assert result.bg.shape == (2, config.bg_queries + config.rel_queries, D)
        assert result.rel is None
    else:
        assert result.bg.shape == (2, config.bg_queries, D)
        assert result.rel.shape == (2, config.rel_queries, D)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_slots_change_nothing_and_stay_zero(variant: str) -> None:
    model = make_model(variant, gate=0.7)
    inst, bg, polygons = make_layout(0, 2)
    compact = model(inst, bg, polygons, torch.ones(1, 2, dtype=torch.bool))

    # The same two instances in slots 1 and 3 of five; the other slots hold garbage, even non-finite values.
    garbage, _, garbage_boxes = make_layout(99, 5)
    padded_inst, padded_polygons = 100 * garbage, 3 * garbage_boxes - 1
    padded_inst[0, 4, 0, 0] = float("inf")
    padded_polygons[0, 2, 0] = float("nan")
    real_slots = [1, 3]
    padded_inst[0, real_slots], padded_polygons[0, real_slots] = inst[0], polygons[0]
    valid = torch.zeros(1, 5, dtype=torch.bool)
    valid[0, real_slots] = True
    padded = model(padded_inst, bg, padded_polygons, valid)

    assert torch.allclose(padded.fg[:, real_slots], compact.fg, atol=1e-6)
    assert torch.equal(padded.fg[~valid], torch.zeros_like(padded.fg[~valid]))
    assert torch.allclose(padded.bg, compact.bg, atol=1e-6)
    if variant == "ccdiff_pp":
        assert torch.allclose(padded.rel, compact.rel, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_sample_gives_the_same_tokens_alone_and_in_a_batch(variant: str) -> None:
    model = make_model(variant, gate=0.7)
    layouts = [make_layout(seed, 4) for seed in range(3)]
    inst, bg, polygons = (torch.cat(parts) for parts in zip(*layouts))
    valid = torch.tensor(
        [[True, True, False, False], [True, False, True, True], [False, False, False, False]]
    )
    batched = model(inst, bg, polygons, valid)
    alone = model(*layouts[1], valid[1:2])
    for together, single in zip(outputs(batched), outputs(alone)):
        assert torch.allclose(together[1:2], single, atol=1e-6)


def test_v1_bridge_is_closed_at_init_and_opens_with_its_gates() -> None:
    inst, bg, polygons = make_layout(0, 3)
    valid = torch.ones(1, 3, dtype=torch.bool)
    other_inst, _, other_polygons = make_layout(1, 3)
    for gate, depends in ((0.0, False), (0.5, True)):
        model = make_model("ccdiff", gate=gate)
        first = model(inst, bg, polygons, valid).bg
        second = model(other_inst, bg, other_polygons, valid).bg
        assert torch.allclose(first, second, atol=1e-9) is not depends


def test_v1_bridge_gradients_reach_the_box_mlp_but_not_the_fg_resampler() -> None:
    model = make_model("ccdiff", gate=0.5)
    inst, bg, polygons = make_layout(0, 3)
    result = model(inst, bg, polygons, torch.tensor([[True, False, True]]))
    result.bg.square().sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.fg_resampler.parameters())
    assert all(p.grad is not None and p.grad.any() for p in model.point_net.parameters())


def test_pp_instance_features_reach_only_their_own_fg_tokens_and_the_relation_tokens() -> None:
    model = make_model("ccdiff_pp")
    inst, bg, polygons = make_layout(0, 3)
    valid = torch.ones(1, 3, dtype=torch.bool)
    before = model(inst, bg, polygons, valid)
    changed = inst.clone()
    changed[0, 1] = torch.randn(T, E, dtype=torch.float64)
    after = model(changed, bg, polygons, valid)
    assert torch.equal(after.fg[:, [0, 2]], before.fg[:, [0, 2]])
    assert torch.equal(after.bg, before.bg)
    assert not torch.allclose(after.fg[:, 1], before.fg[:, 1], atol=1e-4)
    assert not torch.allclose(after.rel, before.rel, atol=1e-4)


def test_pp_background_reaches_only_the_bg_and_relation_tokens() -> None:
    model = make_model("ccdiff_pp")
    inst, bg, polygons = make_layout(0, 2)
    valid = torch.ones(1, 2, dtype=torch.bool)
    before = model(inst, bg, polygons, valid)
    after = model(inst, bg + 1, polygons, valid)
    assert torch.equal(after.fg, before.fg)
    assert not torch.allclose(after.bg, before.bg, atol=1e-4)
    assert not torch.allclose(after.rel, before.rel, atol=1e-4)


def test_co_attention_mask_by_hand() -> None:
    # Two slots (slot 1 padded), one token per reference, one query per group.
    # Keys: tok0 tok1 tok_bg | lat0 lat1 lat_bg lat_rel.  Queries: fg0 fg1 bg rel.
    mask = co_attention_mask(torch.tensor([[True, False]]), num_tokens=1, num_queries=1)
    expected = torch.tensor(
        [
            [1, 0, 0, 1, 0, 0, 0],  # fg0: its token and latent
            [0, 1, 0, 0, 1, 0, 0],  # fg1 (padded): only itself, so its softmax is defined
            [0, 0, 1, 0, 0, 1, 0],  # bg
            [1, 0, 1, 1, 0, 1, 0],  # rel: every valid group, never the padded slot nor rel latents
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected.unsqueeze(0))


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_backward_reaches_every_trainable_parameter(variant: str) -> None:
    model = make_model(variant, gate=0.5)
    inst, bg, polygons = make_layout(0, 3)
    result = model(inst, bg, polygons, torch.tensor([[True, False, True]]))
    weights = torch.Generator().manual_seed(1)
    loss = sum(
        (out * torch.randn(out.shape, generator=weights, dtype=out.dtype)).sum() for out in outputs(result)
    )
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_state_dict_keys_mirror_the_reference_checkpoints() -> None:
    v1 = set(make_model("ccdiff").state_dict())
    for key in [
        "fg_resampler.latents",
        "bg_resampler.proj_in.weight",
        "bg_resampler.norm_out.weight",
        "fg_resampler.layers.1.0.to_kv.weight",
        "fg_resampler.layers.0.0.norm2.bias",
        "fg_resampler.layers.0.1.0.weight",
        "fg_resampler.layers.0.1.1.weight",
        "fg_resampler.layers.0.1.3.weight",
        "point_net.linears_position.4.weight",
        "coherent_bridge.linear.weight",
        "coherent_bridge.attn.to_out.0.weight",
        "coherent_bridge.attn.to_q.weight",
        "coherent_bridge.ff.net.0.proj.weight",
        "coherent_bridge.ff.net.2.weight",
        "coherent_bridge.alpha_attn",
        "coherent_bridge.alpha_dense",
        "coherent_bridge.norm1.weight",
        "coherent_queries",
    ]:
        assert key in v1, key
    assert "fg_resampler.layers.0.0.to_q.bias" not in v1  # no biases in the Perceiver attention

    pp = make_model("ccdiff_pp").state_dict()
    assert pp["latents"].shape == (3, 3, 32)
    for key in [
        "proj_in.weight",
        "layers.1.0.to_out.weight",
        "layers.1.1.3.weight",
        "point_net.linears_position.0.bias",
    ]:
        assert key in pp, key


def test_paper_sizes_match_the_reference_parameter_counts() -> None:
    # §1.1 of the reference: SerialSampler ≈ 189.9 M, CoSampler ≈ 76.6 M parameters.
    with torch.device("meta"):
        v1 = build_resampler(ResamplerConfig.preset("sd", "ccdiff"))
        pp = build_resampler(ResamplerConfig.preset("sd", "ccdiff_pp"))
    assert round(sum(p.numel() for p in v1.parameters()) / 1e6, 1) == 189.9
    assert round(sum(p.numel() for p in pp.parameters()) / 1e6, 1) == 76.6
    assert pp.latents.shape == (3, 8, 1280)


def test_resampler_key_mask_is_the_same_as_dropping_the_tokens() -> None:
    torch.manual_seed(0)
    resampler = Resampler(
        dim=16, depth=2, dim_head=4, heads=2, num_queries=3, embedding_dim=8, output_dim=12
    ).double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    extra = torch.randn(1, 2, 16, dtype=torch.float64)
    keep = torch.tensor([[True, False, True, True, False, True]])
    masked = resampler(torch.where(keep[..., None], x, 1e3), extra_queries=extra, key_mask=keep)
    assert masked.shape == (1, 5, 12)
    assert torch.allclose(masked, resampler(x[keep].unsqueeze(0), extra_queries=extra), atol=1e-9)


def test_a_batch_without_any_instance_still_gives_background_tokens() -> None:
    for variant in VARIANTS:
        model = make_model(variant, gate=0.5)
        inst, bg, polygons = make_layout(0, 2)
        result = model(inst, bg, polygons, torch.zeros(1, 2, dtype=torch.bool))
        assert not result.fg.any()
        assert all(torch.isfinite(out).all() for out in outputs(result))


def test_config_round_trips_and_refuses_bad_values() -> None:
    config = ResamplerConfig.preset("tiny", "ccdiff_pp")
    assert ResamplerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        ResamplerConfig.from_dict({**config.to_dict(), "width": 3})
    with pytest.raises(ValueError, match="variant"):
        ResamplerConfig(variant="ccdiff++")
    with pytest.raises(ValueError, match="must be equal"):
        ResamplerConfig(variant="ccdiff_pp", fg_queries=16)
    with pytest.raises(ValueError, match="depth"):
        ResamplerConfig(depth=0)
    with pytest.raises(ValueError, match="ccdiff_pp"):
        CoResampler(ResamplerConfig.preset("tiny", "ccdiff"))


def test_inputs_of_the_wrong_shape_are_refused() -> None:
    model = make_model("ccdiff")
    inst, bg, polygons = make_layout(0, 2)
    with pytest.raises(ValueError, match="valid"):
        model(inst, bg, polygons, torch.ones(1, 2))
    with pytest.raises(ValueError, match="polygons"):
        model(inst, bg, polygons[..., :4], torch.ones(1, 2, dtype=torch.bool))
