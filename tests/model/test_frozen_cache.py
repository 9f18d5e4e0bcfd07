"""FrozenFeatures: the sd backbone's frozen encoder outputs, cached once (reference tokens, texts, VAE
posteriors), give the same encodings and loss as computing them; the cache is reused, is not shared with
another encoder, and is not built for the tiny backbone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ccaug.model.frozen_cache import FrozenFeatures, encoder_fingerprint
from ccaug.model.generator import CCDiffGenerator
from tests.model.test_backbones import offline, sd_config, sd_folders  # noqa: F401  (fixtures)
from tests.model.test_generator import CAPTIONS, CATEGORIES, loss_of, make_batch, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:a text of .* tokens was truncated")


class Bank:
    """What FrozenFeatures reads of a bank: ``len`` and ``images(rows)`` in [0, 1]."""

    def __init__(self, rows: int, seed: int) -> None:
        self.pixels = torch.rand(rows, 3, 32, 32, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.pixels)

    def images(self, rows: np.ndarray) -> torch.Tensor:
        return self.pixels[torch.as_tensor(np.asarray(rows, dtype=np.int64))].clone()


class Images:
    """What FrozenFeatures reads of the training data: ids, files, images in [-1, 1], the flip mode."""

    def __init__(self, folder: Path, count: int = 3, flip: str = "none") -> None:
        self.flip = flip
        self.image_ids = np.arange(count) + 10
        self.pixels = torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (folder / f"{i}.png").write_bytes(b"image %d" % i)
        self.folder = folder

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.folder / f"{index}.png"

    def read_image(self, index: int) -> torch.Tensor:
        return self.pixels[index].clone()


@pytest.fixture
def inputs(tmp_path):
    instances, backgrounds, images = Bank(7, 1), Bank(4, 2), Images(tmp_path / "images")
    return instances, backgrounds, images


def batch_from(instances: Bank, backgrounds: Bank, images: Images):
    """A batch of 2 layouts whose references, backgrounds and images are bank rows and training images."""
    batch = make_batch(batch=2, slots=3, counts=[3, 1])
    reference_rows = torch.tensor([[4, 0, 6], [2, -1, -1]])
    background_rows = torch.tensor([3, 1])
    references = torch.zeros_like(batch.references)
    references[batch.valid] = instances.images(reference_rows[batch.valid].numpy())
    return dataclasses.replace(
        batch,
        references=references,
        background=backgrounds.images(background_rows.numpy()),
        images=images.pixels[[2, 0]].clone(),
        image_ids=[int(images.image_ids[2]), int(images.image_ids[0])],
        reference_rows=reference_rows,
        background_rows=background_rows,
    )


def build(generator, folder, instances, backgrounds, images) -> FrozenFeatures:
    return FrozenFeatures.build(
        generator, folder, instance_bank=instances, background_bank=backgrounds, captions=CAPTIONS,
        training_data=images, batch_size=3,
    )  # fmt: skip


def sd_generator(folders, seed: int = 0) -> CCDiffGenerator:
    torch.manual_seed(seed)
    return CCDiffGenerator(sd_config(*folders, condition_dropout=0.0))


def test_cached_features_give_the_same_encoding_and_loss(sd_folders, offline, inputs, tmp_path):  # noqa: F811
    generator = sd_generator(sd_folders)
    batch = batch_from(*inputs)
    with torch.no_grad():
        tokens, layout = generator.encode(batch)
        loss = loss_of(generator, batch, seed=3)
        features = build(generator, tmp_path / "cache", *inputs)
        assert features.instance_tokens.shape[0] == 7 and features.background_tokens.shape[0] == 4
        assert set(features.texts) == {None, generator.label_length} and features.latent_mean.shape[0] == 3
        generator.attach_frozen_features(features)
        calls = count_calls(generator)
        cached_tokens, cached_layout = generator.encode(batch)
        cached_loss = loss_of(generator, batch, seed=3)
    assert calls == {"image_encoder": 0, "text_encoder": 0, "vae": 0}  # everything came from the cache
    torch.testing.assert_close(cached_tokens, tokens, rtol=1e-5, atol=1e-5)
    for name in ("instance_text", "instance_pooled", "global_pooled", "fg_tokens", "bg_tokens", "rel_tokens"):
        torch.testing.assert_close(getattr(cached_layout, name), getattr(layout, name), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached_loss, loss, rtol=1e-5, atol=1e-6)
    # a dropped row and a batch without rows fall back to (or match) the computed encodings
    drop = torch.tensor([True, False])
    with torch.no_grad():
        _, dropped = generator.encode(batch, drop)
        generator.attach_frozen_features(None)
        _, computed = generator.encode(batch, drop)
    torch.testing.assert_close(dropped.fg_tokens, computed.fg_tokens, rtol=1e-5, atol=1e-5)


def count_calls(generator: CCDiffGenerator) -> dict[str, int]:
    """Counts (live, in the returned dict) the forward calls of the frozen encoders."""
    calls = {"image_encoder": 0, "text_encoder": 0, "vae": 0}
    for name in calls:

        def hook(*_, name=name) -> None:
            calls[name] += 1

        module = getattr(generator, name)
        (module.encoder if name == "vae" else module).register_forward_hook(hook)
    return calls


def test_the_cache_is_written_once_and_reused(sd_folders, offline, inputs, tmp_path):  # noqa: F811
    first = build(sd_generator(sd_folders), tmp_path / "cache", *inputs)
    assert len(first.files) == 5 and all(path.is_file() for path in first.files)
    stamps = [path.stat().st_mtime_ns for path in first.files]
    generator = sd_generator(sd_folders)  # the same weights
    calls = count_calls(generator)
    second = build(generator, tmp_path / "cache", *inputs)
    assert calls == {"image_encoder": 0, "text_encoder": 0, "vae": 0}
    assert second.files == first.files and [path.stat().st_mtime_ns for path in second.files] == stamps
    assert torch.equal(second.instance_tokens, first.instance_tokens)
    assert torch.equal(second.latent_std, first.latent_std)


def test_another_encoder_gets_another_fingerprint_and_cache(sd_folders, offline, inputs, tmp_path):  # noqa: F811
    generator = sd_generator(sd_folders)
    first = build(generator, tmp_path / "cache", *inputs)
    other = sd_generator(sd_folders)
    with torch.no_grad():
        for parameter in other.image_encoder.parameters():
            parameter.add_(torch.randn_like(parameter))  # re-initialised
    assert encoder_fingerprint(other.image_encoder) != encoder_fingerprint(generator.image_encoder)
    assert encoder_fingerprint(other.text_encoder) == encoder_fingerprint(generator.text_encoder)
    calls = count_calls(other)
    second = build(other, tmp_path / "cache", *inputs)
    assert calls["image_encoder"] > 0 and calls["text_encoder"] == 0 and calls["vae"] == 0
    assert set(second.files[:2]).isdisjoint(first.files) and second.files[2:] == first.files[2:]
    assert not torch.allclose(second.instance_tokens, first.instance_tokens)


def test_augmented_images_get_no_latent_cache(sd_folders, offline, tmp_path):  # noqa: F811
    images = Images(tmp_path / "images", flip="hv")
    features = build(sd_generator(sd_folders), tmp_path / "cache", Bank(2, 0), Bank(2, 1), images)
    assert features.latent_mean is None and features.instance_tokens is not None


def test_the_tiny_backbone_caches_nothing(inputs, tmp_path):
    generator = CCDiffGenerator(tiny_config())
    features = build(generator, tmp_path / "cache", *inputs)
    assert features.is_empty and not (tmp_path / "cache").exists()
    generator.attach_frozen_features(features)
    assert generator.frozen_features is None
    assert len(CATEGORIES) == len(generator.config.categories)


def test_a_training_run_on_the_sd_backbone_caches_its_frozen_features(sd_folders, offline, tmp_path):  # noqa: F811
    from ccaug.datasets import make_aerial
    from ccaug.layouts.layout import read_layout_dataset
    from ccaug.pipeline.train import train_generator
    from ccaug.pipeline.training_config import TrainingConfig

    aerial = tmp_path / "aerial"
    make_aerial(aerial, n=6, size=64, seed=0, workers=1, progress=False)
    train = read_layout_dataset(aerial, "dota").split("train")
    present = set(train.instances["category"].astype(str))
    config = sd_config(
        *sd_folders, categories=tuple(c for c in train.categories if c in present), max_instances=8,
        condition_dropout=0.0,
    )  # fmt: skip
    training = TrainingConfig(batch_size=2, max_steps=2, log_every=1, checkpoint_every=2, sample_every=0)
    result = train_generator(
        aerial, "dota", tmp_path / "run", generator_config=config, training_config=training, progress=False
    )
    assert result.step == 2 and np.isfinite(result.loss)
    cached = sorted((tmp_path / "run" / "cache").rglob("*.safetensors"))
    assert len(cached) == 5  # instance and background references, captions, labels, VAE posteriors
