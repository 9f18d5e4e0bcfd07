"""CCDiffPipeline: shapes, seeds, batch invariance and the schedulers, on an untrained 32 px generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccaug.model.batch import GeneratorBatch
from ccaug.model.generator import CCDiffGenerator
from ccaug.model.generator_config import GeneratorConfig
from ccaug.pipeline.sampling import CCDiffPipeline, stable_schedule

CATEGORIES = ("plane", "ship", "storage-tank")
CAPTIONS = [
    "This is an aerial image of harbor. There is one ship in the center of the image.",
    "This is an aerial image of airport. There are two planes in the top edge of the image.",
    "This is an aerial image of industrial area. There are three storage tanks.",
]


@pytest.fixture(scope="module")
def generator() -> CCDiffGenerator:
    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=32, categories=CATEGORIES, unet_channels=(32, 32, 64), text_dim=32, text_layers=1,
        caption_length=40, image_dim=32, reference_size=32, background_size=32, resampler_dim=32,
        resampler_depth=1, resampler_heads=2, cgm_heads=4,
    )  # fmt: skip
    return CCDiffGenerator(config).eval()


def layouts(counts: list[int]) -> list[GeneratorBatch]:
    """One single-layout batch per count: layout i has counts[i] instances (fixed by i alone)."""
    batches = []
    for index, count in enumerate(counts):
        rng = torch.Generator().manual_seed(index)
        centre = torch.rand(count, 2, generator=rng) * 0.6 + 0.2
        offsets = torch.tensor([-0.1, -0.05, 0.1, -0.05, 0.1, 0.05, -0.1, 0.05])
        batches.append(
            GeneratorBatch(
                captions=[CAPTIONS[index % 3]],
                labels=torch.randint(0, 3, (1, count), generator=rng),
                valid=torch.ones(1, count, dtype=torch.bool),
                polygons=(centre.repeat(1, 4) + offsets)[None],
                references=torch.rand(1, count, 3, 32, 32, generator=rng),
                background=torch.rand(1, 3, 32, 32, generator=rng),
            )
        )
    return batches


def stack(batches: list[GeneratorBatch]) -> GeneratorBatch:
    """Batch single layouts, padding their slots (as `collate` does)."""
    slots = max(batch.num_slots for batch in batches)

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        shape = (1, slots - tensor.shape[1], *tensor.shape[2:])
        return torch.cat([tensor, tensor.new_zeros(shape)], dim=1)

    return GeneratorBatch(
        captions=[caption for batch in batches for caption in batch.captions],
        labels=torch.cat([pad(batch.labels) for batch in batches]),
        valid=torch.cat([pad(batch.valid) for batch in batches]),
        polygons=torch.cat([pad(batch.polygons) for batch in batches]),
        references=torch.cat([pad(batch.references) for batch in batches]),
        background=torch.cat([batch.background for batch in batches]),
    )


def test_output_is_uint8_images_of_the_resolution(generator: CCDiffGenerator) -> None:
    images = CCDiffPipeline(generator, steps=2, guidance_scale=2.0)(stack(layouts([1, 2])), seeds=[0, 1])
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8


def test_same_seed_same_image_and_another_seed_another(generator: CCDiffGenerator) -> None:
    pipeline = CCDiffPipeline(generator, steps=2, guidance_scale=2.0)
    (batch,) = layouts([2])
    first, again, other = pipeline(batch, [7]), pipeline(batch, [7]), pipeline(batch, [8])
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 5


def test_an_image_does_not_depend_on_the_batch_it_is_in(generator: CCDiffGenerator) -> None:
    pipeline = CCDiffPipeline(generator, steps=2, guidance_scale=2.0)
    single = layouts([1, 3, 2])
    alone = pipeline(single[0], [5])[0]
    batched = pipeline(stack(single), [5, 6, 7])[0]  # layout 0 padded from 1 to 3 slots
    # Batched matrix products sum in another order than single ones, so values may differ in the last
    # float bits, which can flip a rounding to uint8 by one level.
    assert np.abs(alone.astype(int) - batched.astype(int)).max() <= 1


@pytest.mark.parametrize("scheduler", ["euler", "dpm++", "ddim"])
def test_every_scheduler_runs(generator: CCDiffGenerator, scheduler: str) -> None:
    images = CCDiffPipeline(generator, scheduler=scheduler, steps=3)(stack(layouts([1, 1])), seeds=[0, 1])
    assert images.shape == (2, 32, 32, 3)
    assert images.std() > 0


def test_bad_arguments_are_refused(generator: CCDiffGenerator) -> None:
    with pytest.raises(ValueError, match="scheduler"):
        CCDiffPipeline(generator, scheduler="plms")
    with pytest.raises(ValueError, match="seeds"):
        CCDiffPipeline(generator, steps=1)(stack(layouts([1, 1])), seeds=[0])


@pytest.mark.parametrize("scheduler", ["euler", "dpm++", "ddim"])
def test_a_slightly_wrong_prediction_keeps_the_samples_in_range(generator: CCDiffGenerator, scheduler: str) -> None:
    # An oracle denoiser for one known image, off by 2% of the noise: a trained UNet is never closer.
    # Without clipping, the cosine schedule's first step divides that error by sqrt(alpha_bar) ~ 5e-5,
    # and the UNet is then fed values of ~130 where pure noise peaks at ~4 (the images came out as noise).
    sampler = CCDiffPipeline(generator, scheduler=scheduler, steps=20).make_scheduler()
    alphas_cumprod = generator.make_scheduler().alphas_cumprod
    rng = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 16, 16, generator=rng) * 1.6 - 0.8
    error = 0.02 * torch.randn(image.shape, generator=rng)
    sampler.set_timesteps(20)
    x = torch.randn(image.shape, generator=rng) * sampler.init_noise_sigma
    largest_input = 0.0
    for t in sampler.timesteps:
        model_input = sampler.scale_model_input(x, t)
        largest_input = max(largest_input, model_input.abs().max().item())
        alpha_bar = alphas_cumprod[int(t)]
        noise = (model_input - alpha_bar.sqrt() * image) / (1 - alpha_bar).sqrt() + error
        x = sampler.step(noise, t, x).prev_sample
    assert generator.config.space == "pixel"
    assert largest_input < 6.0  # pure noise of this seed peaks at ~4
    assert (x - image).abs().max() < 0.05


def test_a_schedule_that_does_not_clip_is_sampled_as_trained() -> None:
    latent = {"beta_schedule": "scaled_linear", "clip_sample": False}
    assert stable_schedule("dpm++", latent) == {} and stable_schedule("euler", latent) == {}
    assert stable_schedule("dpm++", {"clip_sample": True})["thresholding"] is True
