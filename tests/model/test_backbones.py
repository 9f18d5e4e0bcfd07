"""Backbones: the tiny UNet's layout, the ``sd`` loader on tiny random SD-like and DINOv2 folders with the
network blocked, the latent-space autoencoder, and the errors that name the option to set."""

from __future__ import annotations

import json
import shutil
import socket
import string
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

from ccaug.model.backbones import load_sd_backbone
from ccaug.model.cgm import ccdiff_processors
from ccaug.model.generator import CCDiffGenerator
from tests.model.test_generator import loss_of, make_batch, tiny_config

WIDTH = 32  # the tiny CLIP width = the SD UNet's cross-attention dim


def write_clip_tokenizer(folder: Path) -> int:
    """A minimal byte-level BPE vocabulary for CLIPTokenizer: single characters, a few merges, the two
    special tokens. Returns the vocabulary size."""
    folder.mkdir(parents=True)
    chars = list(string.ascii_lowercase) + list(".,-0123456789")
    merges = ["s h", "i p</w>", "sh ip</w>", "t h", "th e</w>"]
    tokens = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return len(tokens)


@pytest.fixture(scope="module")
def sd_folders(tmp_path_factory) -> tuple[Path, Path]:
    """A random SD-1.x-shaped diffusers folder (32 px → 16×16×4 latents) and a DINOv2 folder (28 px input,
    patch 14: 5 tokens)."""
    root = tmp_path_factory.mktemp("models")
    sd, dino = root / "sd", root / "dinov2"
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WIDTH, attention_head_dim=4, norm_num_groups=8,
    ).save_pretrained(sd / "unet")  # fmt: skip
    AutoencoderKL(
        block_out_channels=(16, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=32,
    ).save_pretrained(sd / "vae")  # fmt: skip
    vocab_size = write_clip_tokenizer(sd / "tokenizer")
    CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        )
    ).save_pretrained(sd / "text_encoder")  # fmt: skip
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        sd / "scheduler"
    )
    Dinov2Model(
        Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     image_size=28, patch_size=14)
    ).save_pretrained(dino)  # fmt: skip
    processor = {"crop_size": {"height": 28, "width": 28}, "image_mean": [0.5] * 3, "image_std": [0.25] * 3}
    (dino / "preprocessor_config.json").write_text(json.dumps(processor))
    return sd, dino


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a socket fails."""

    def refuse(*args, **kwargs):
        raise OSError("the network is blocked in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def sd_config(sd: Path, dino: Path, **changes):
    return tiny_config(backbone="sd", sd_path=str(sd), dinov2_path=str(dino), **changes)


# ------------------------------------------------------------------------------------------------- tiny


def test_tiny_unet_has_cross_attention_in_the_fused_blocks_but_no_attention_at_full_resolution():
    generator = CCDiffGenerator(tiny_config())
    unet = generator.unet
    assert not hasattr(unet.down_blocks[0], "attentions") and not hasattr(unet.up_blocks[-1], "attentions")
    fused = ccdiff_processors(unet)
    assert fused and all(name.startswith(("mid_block.", "up_blocks.1.")) for name in fused)
    assert unet.config.in_channels == 3 and generator.latent_size == 32 and generator.vae is None


# --------------------------------------------------------------------------------------------------- sd


@pytest.mark.filterwarnings("ignore:a text of .* tokens was truncated")  # the toy BPE spells words out
def test_sd_backbone_loads_offline_and_only_the_ccdiff_modules_train(sd_folders, offline, tmp_path):
    sd, dino = sd_folders
    torch.manual_seed(0)
    generator = CCDiffGenerator(sd_config(sd, dino, condition_dropout=0.0))
    assert generator.frozen == {"unet", "vae", "text_encoder", "image_encoder"}
    assert generator.latent_size == 16 and generator.caption_length == generator.label_length == 77
    for name in generator.frozen:
        module = getattr(generator, name)
        frozen = [p for n, p in module.named_parameters() if ".processor." not in n]
        assert frozen and not any(p.requires_grad for p in frozen), name
    trainable = {n for n, p in generator.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("resampler.") or ".processor.fusion." in n for n in trainable)

    batch = make_batch(batch=2, slots=3, counts=[3, 1])
    tokens, layout = generator.encode(batch)
    assert tokens.shape == (2, 77, WIDTH) and layout.instance_text.shape == (2, 3, 77, WIDTH)
    loss = loss_of(generator, batch)
    loss.backward()
    assert all(p.grad is not None for n, p in generator.named_parameters() if n in trainable)
    assert all(p.grad is None for n, p in generator.named_parameters() if n not in trainable)

    generator.save_pretrained(tmp_path / "checkpoint")
    saved = CCDiffGenerator.from_pretrained(tmp_path / "checkpoint")
    assert set(saved.checkpoint_state()) == set(generator.checkpoint_state())
    assert not any(
        key.startswith(("vae.", "text_encoder.", "image_encoder.", "unet.conv_in"))
        for key in saved.checkpoint_state()
    )
    with torch.no_grad():
        assert torch.equal(loss_of(saved, batch), loss_of(generator, batch))


def test_sd_generator_keeps_frozen_parts_in_eval_mode(sd_folders):
    generator = CCDiffGenerator(sd_config(*sd_folders)).train()
    assert (
        generator.resampler.training and not generator.image_encoder.training and not generator.vae.training
    )


def test_a_missing_sd_or_dinov2_path_names_the_option(sd_folders, tmp_path):
    sd, dino = sd_folders
    with pytest.raises(FileNotFoundError, match="--sd-path .*generator.sd_path"):
        CCDiffGenerator(tiny_config(backbone="sd", dinov2_path=str(dino)))
    with pytest.raises(FileNotFoundError, match="--dinov2-path .*generator.dinov2_path"):
        load_sd_backbone(sd, None)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_sd_backbone(tmp_path / "nowhere", dino)
    partial = tmp_path / "sd"
    shutil.copytree(sd, partial)
    (partial / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="lacks text_encoder/model.safetensors") as error:
        load_sd_backbone(partial, dino)
    assert "unet/diffusion_pytorch_model.safetensors" in str(error.value)  # what the folder must hold


def test_a_prediction_type_other_than_the_sd_unets_is_refused(sd_folders):
    with pytest.raises(ValueError, match="predicts 'epsilon'"):
        CCDiffGenerator(sd_config(*sd_folders, prediction_type="v_prediction"))


# ----------------------------------------------------------------------------------------------- latent


def test_tiny_latent_space_loads_a_local_frozen_autoencoder(sd_folders, offline):
    sd, _ = sd_folders
    torch.manual_seed(0)
    generator = CCDiffGenerator(tiny_config(space="latent", vae_path=str(sd / "vae")))
    assert generator.frozen == {"vae"} and not any(p.requires_grad for p in generator.vae.parameters())
    assert generator.unet.config.in_channels == 4 and generator.latent_size == 16
    assert generator.make_scheduler().config.beta_schedule == "scaled_linear"
    loss_of(generator, make_batch()).backward()
    x0 = generator.encode_images(make_batch().images)
    assert x0.shape == (2, 4, 16, 16) and generator.decode_images(x0).shape == (2, 3, 32, 32)


def test_latent_space_without_an_autoencoder_names_the_option():
    with pytest.raises(FileNotFoundError, match="--vae-path"):
        CCDiffGenerator(tiny_config(space="latent"))
