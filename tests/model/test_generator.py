"""CCDiffGenerator on the tiny backbone at test size (32 px, 3 categories): encoding, invariances, the
unconditional rows, gradients, overfitting one batch, and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from ccaug.model.batch import GeneratorBatch
from ccaug.model.generator import CCDiffGenerator
from ccaug.model.generator_config import GeneratorConfig

CATEGORIES = ("plane", "ship", "storage-tank")
CAPTIONS = [
    "This is an aerial image of harbor. There is one ship towards the east-west direction in the center of the image.",
    "This is an aerial image of airport. There are two planes towards the north-south direction in the top edge of the image.",
    "This is an aerial image. The center of the image holds no salient object.",
    "This is an aerial image of industrial area. There are three storage tanks in the center of the image.",
]


def tiny_config(**changes) -> GeneratorConfig:
    sizes = dict(
        resolution=32, categories=CATEGORIES, unet_channels=(32, 32, 64), text_dim=32, text_layers=1,
        caption_length=40, image_dim=32, reference_size=32, background_size=32, resampler_dim=32,
        resampler_depth=1, resampler_heads=2, cgm_heads=4,
    )  # fmt: skip
    return GeneratorConfig(**{**sizes, **changes})


def make_generator(seed: int = 0, **changes) -> CCDiffGenerator:
    torch.manual_seed(seed)
    return CCDiffGenerator(tiny_config(**changes))


def rectangle(cx: float, cy: float, w: float, h: float, angle: float) -> list[float]:
    """Corners x1 y1 … x4 y4 of a w × h rectangle centred on (cx, cy), turned by `angle`."""
    c, s = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]:
        corners += [cx + c * dx - s * dy, cy + s * dx + c * dy]
    return corners


def make_batch(
    batch: int = 2, slots: int = 4, counts: list[int] | None = None, seed: int = 0
) -> GeneratorBatch:
    """Random layouts with `counts[b]` real instances each (padded slots hold zeros)."""
    g = torch.Generator().manual_seed(seed)
    counts = counts or [min(slots, b + 2) for b in range(batch)]
    valid = torch.arange(slots)[None] < torch.tensor(counts)[:, None]
    centres = torch.rand(batch, slots, 2, generator=g) * 0.6 + 0.2
    polygons = torch.tensor(
        [[rectangle(x, y, 0.2, 0.1, 0.7 * i) for i, (x, y) in enumerate(row)] for row in centres.tolist()]
    )
    return GeneratorBatch(
        captions=[CAPTIONS[b % len(CAPTIONS)] for b in range(batch)],
        labels=torch.randint(0, len(CATEGORIES), (batch, slots), generator=g) * valid,
        valid=valid,
        polygons=polygons * valid[..., None],
        references=torch.rand(batch, slots, 3, 32, 32, generator=g) * valid[..., None, None, None],
        background=torch.rand(batch, 3, 32, 32, generator=g),
        images=torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1,
    )


def pad(batch: GeneratorBatch, slots: int) -> GeneratorBatch:
    """The same layouts with more (zero) slots."""
    extra = slots - batch.num_slots

    def grow(tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat([tensor, tensor.new_zeros(tensor.shape[0], extra, *tensor.shape[2:])], dim=1)

    return dataclasses.replace(
        batch, labels=grow(batch.labels), valid=grow(batch.valid), polygons=grow(batch.polygons),
        references=grow(batch.references),
    )  # fmt: skip


def rows(batch: GeneratorBatch, index: list[int]) -> GeneratorBatch:
    return GeneratorBatch(
        captions=[batch.captions[i] for i in index], labels=batch.labels[index], valid=batch.valid[index],
        polygons=batch.polygons[index], references=batch.references[index], background=batch.background[index],
        images=batch.images[index],
    )  # fmt: skip


def loss_of(generator: CCDiffGenerator, batch: GeneratorBatch, seed: int = 0) -> torch.Tensor:
    return generator.training_loss(batch, generator.make_scheduler(), torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- encode


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_encode_shapes(variant):
    generator = make_generator(variant=variant)
    batch = make_batch(batch=3, slots=4, counts=[1, 4, 0])
    tokens, layout = generator.encode(batch)
    label_length = generator.label_length  # [BOS] storage - tank [EOS]
    assert label_length == 5
    assert tokens.shape == (3, 40, 32)
    assert layout.instance_text.shape == (3, 4, label_length, 32)
    assert layout.instance_pooled.shape == (3, 4, 32) and layout.global_pooled.shape == (3, 32)
    queries = 16 if variant == "ccdiff" else 8
    assert layout.fg_tokens.shape == (3, 4, queries, 32)
    assert layout.bg_tokens.shape == (3, 16 if variant == "ccdiff" else 8, 32)
    assert (layout.rel_tokens is None) == (variant == "ccdiff")
    assert torch.equal(layout.valid, batch.valid) and layout.guided.all()
    assert (layout.fg_tokens[~batch.valid] == 0).all()


def test_only_valid_slots_go_through_the_image_encoder():
    generator = make_generator()
    seen = []
    generator.image_encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    generator.encode(make_batch(batch=3, slots=5, counts=[2, 0, 3]))
    assert sorted(seen) == [3, 5]  # backgrounds, then the 5 valid crops


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_padding_slots_do_not_change_the_loss(variant):
    generator = make_generator(variant=variant, condition_dropout=0.0)
    batch = make_batch(batch=2, slots=4, counts=[2, 4])
    torch.testing.assert_close(
        loss_of(generator, batch), loss_of(generator, pad(batch, 7)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_denoise_of_a_sample_does_not_depend_on_its_batch(variant):
    generator = make_generator(variant=variant).eval()
    batch = make_batch(batch=3, slots=4, counts=[3, 1, 4])
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500, 20, 900])
    with torch.no_grad():
        tokens, layout = generator.encode(batch)
        uncond = generator.unconditional_tokens()
        together = generator.denoise(x, t, tokens, layout, guidance_scale=4.0, uncond_tokens=uncond)
        alone_tokens, alone_layout = generator.encode(rows(batch, [1]))
        alone = generator.denoise(x[1:2], t[1:2], alone_tokens, alone_layout, 4.0, uncond)
    torch.testing.assert_close(alone[0], together[1], rtol=1e-4, atol=1e-5)


def test_dropped_rows_are_the_unconditional_prediction():
    generator = make_generator().eval()
    batch = make_batch(batch=2, slots=4, counts=[3, 2])
    other = make_batch(batch=2, slots=4, counts=[4, 2], seed=5)  # other boxes, labels and references
    changed = dataclasses.replace(
        batch, labels=torch.cat([other.labels[:1], batch.labels[1:]]), valid=torch.cat([other.valid[:1], batch.valid[1:]]),
        polygons=torch.cat([other.polygons[:1], batch.polygons[1:]]),
        references=torch.cat([other.references[:1], batch.references[1:]]),
    )  # fmt: skip
    drop = torch.tensor([True, False])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([300, 300])

    def predict(b: GeneratorBatch) -> torch.Tensor:
        tokens, layout = generator.encode(b, drop)
        assert layout.guided.tolist() == [False, True]
        return generator.denoise(x, t, tokens, layout)

    with torch.no_grad():
        first, second = predict(batch), predict(changed)
        tokens, layout = generator.encode(batch)
        uncond = generator.denoise(x, t, tokens, layout, 0.0, generator.unconditional_tokens())
    torch.testing.assert_close(first[0], second[0], rtol=0, atol=0)
    torch.testing.assert_close(first[0], uncond[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(first[1], uncond[1])


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_one_backward_reaches_every_trainable_parameter(variant):
    generator = make_generator(variant=variant, condition_dropout=0.0)
    assert generator.frozen == frozenset()
    params = dict(generator.named_parameters())
    assert set(params) == {n for n, p in params.items() if p.requires_grad}
    assert any(".processor.fusion." in name for name in params) and any(
        n.startswith("resampler.") for n in params
    )
    loss_of(generator, make_batch(batch=2, slots=4, counts=[4, 3])).backward()
    unreached = [name for name, p in generator.named_parameters() if p.grad is None]
    assert unreached == []
    # Exactly zero only behind v1's zero-initialised context-bridge gates (tanh(0) = 0): the bridge and
    # the box embedding that only feeds it.
    zero = {name for name, p in params.items() if p.grad.abs().sum() == 0}
    behind_gates = {
        name for name in params
        if name.startswith(("resampler.coherent_bridge.", "resampler.point_net.")) and "alpha" not in name
    }  # fmt: skip
    assert zero == (behind_gates if variant == "ccdiff" else set())


def test_condition_dropout_draws_from_the_given_generator():
    generator = make_generator(condition_dropout=0.5)
    batch = make_batch(batch=4, slots=2)
    assert torch.equal(loss_of(generator, batch, seed=3), loss_of(generator, batch, seed=3))
    assert not torch.equal(loss_of(generator, batch, seed=3), loss_of(generator, batch, seed=4))


def test_a_few_steps_on_one_batch_lower_the_loss():
    generator = make_generator(condition_dropout=0.0)
    batch = make_batch(batch=2, slots=3, counts=[3, 2])
    scheduler = generator.make_scheduler()
    optimizer = torch.optim.AdamW(generator.trainable_parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss = generator.training_loss(batch, scheduler, torch.Generator().manual_seed(0))  # the same draw
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_training_refuses_a_scheduler_of_another_prediction_type():
    generator = make_generator()
    scheduler = generator.make_scheduler()
    v_scheduler = type(scheduler).from_config(scheduler.config, prediction_type="v_prediction")
    with pytest.raises(ValueError, match="v_prediction"):
        generator.training_loss(make_batch(), v_scheduler)
    v_generator = make_generator(prediction_type="v_prediction")
    assert v_generator.make_scheduler().config.prediction_type == "v_prediction"
    assert torch.isfinite(loss_of(v_generator, make_batch()))


# -------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("variant", ["ccdiff", "ccdiff_pp"])
def test_save_and_load_give_the_same_loss(tmp_path, variant):
    generator = make_generator(variant=variant)
    batch = make_batch(batch=2, slots=4)
    generator.save_pretrained(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["config"]["variant"] == variant
    assert document["tokenizer"]["vocabulary"] == generator.tokenizer.vocabulary
    reloaded = CCDiffGenerator.from_pretrained(tmp_path)
    assert reloaded.config == generator.config
    with torch.no_grad():
        assert torch.equal(loss_of(generator, batch), loss_of(reloaded, batch))


def test_config_round_trips_through_a_dict_and_rejects_bad_values():
    config = tiny_config(variant="ccdiff_pp")
    assert GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown generator setting"):
        GeneratorConfig.from_dict({"varient": "ccdiff"})
    for bad in [{"variant": "ccdiff3"}, {"backbone": "sdxl"}, {"text_dim": 0}, {"condition_dropout": 1.0},
                {"categories": ("ship", "ship")}, {"space": "voxel"}, {"resampler_dim": -1},
                {"unet_channels": (32, 64)}]:  # fmt: skip
        with pytest.raises(ValueError):
            tiny_config(**bad)


def test_loading_another_variant_is_refused_with_the_keys(tmp_path):
    make_generator(variant="ccdiff").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'ccdiff' generator"):
        CCDiffGenerator.from_pretrained(tmp_path, variant="ccdiff_pp")
    with pytest.raises(ValueError) as error:
        make_generator(variant="ccdiff_pp").load_weights(tmp_path)
    message = str(error.value)
    assert "variant is 'ccdiff' there, 'ccdiff_pp' here" in message
    assert "missing:" in message and "unexpected:" in message
    assert "resampler.latents" in message and "resampler.bg_resampler.latents" in message


def test_loading_changed_shapes_is_refused_with_the_keys(tmp_path):
    make_generator(image_dim=32).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="shape mismatch") as error:
        make_generator(image_dim=16).load_weights(tmp_path)
    assert "image_encoder.cls_token (1, 1, 32) there, (1, 1, 16) here" in str(error.value)
    with pytest.raises(ValueError, match="categories"):
        make_generator(categories=("ship", "plane", "storage-tank")).load_weights(tmp_path)


def test_a_batch_with_too_many_slots_or_bad_labels_is_refused():
    generator = make_generator(max_instances=4)
    with pytest.raises(ValueError, match="max_instances"):
        generator.encode(make_batch(slots=5))
    batch = make_batch(slots=2, counts=[2, 2])
    batch.labels[0, 0] = 3
    with pytest.raises(ValueError, match="3 categories"):
        generator.encode(batch)
    generator.encode(batch, drop=torch.tensor([True, False]))  # a dropped row's labels are never read
    padded = make_batch(slots=3, counts=[2, 2])
    padded.labels[0, 2] = -1  # nor are a padded slot's
    generator.encode(padded)
