"""The networks CC-Diff's modules sit on: a UNet, a text encoder and tokenizer, a reference encoder and an
optional autoencoder, in one of two kinds (design decision 5).

* ``"tiny"`` (`build_tiny_backbone`): a small diffusers ``UNet2DConditionModel``, `TinyTextEncoder` with
  the caption-grammar `WordTokenizer`, and `TinyImageEncoder`, all trained from scratch with the CC-Diff
  modules. Pixel space by default (a 64 px image is the UNet input); ``space="latent"`` puts a small
  ``AutoencoderKL`` in front, loaded (frozen) from a local folder.
* ``"sd"`` (`load_sd_backbone`): a local diffusers Stable Diffusion 1.x folder (UNet, VAE, CLIP text encoder
  and tokenizer, scheduler config) and a local DINOv2 folder, all frozen, as in the paper (§1.1).

Nothing here reaches the network: every ``from_pretrained`` is ``local_files_only=True`` on a folder that
was checked first, and weights are read from safetensors only. A missing folder or file is a
`FileNotFoundError` that names the option to set and lists what the folder must hold.

Every text encoder here is called the same way, ``text_encoder(input_ids, attention_mask) ->
TextEncoding``, with ids from ``tokenizer(texts, length) -> TokenBatch``; every image encoder maps
``(B, 3, S, S)`` images in [0, 1] to ``(B, T, E)`` tokens, CLS first.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from ccaug.model.image_encoder import IMAGENET_MEAN, IMAGENET_STD, TinyImageEncoder
from ccaug.model.text import TextEncoding, TinyTextEncoder, TokenBatch, WordTokenizer

if TYPE_CHECKING:
    from ccaug.model.generator_config import GeneratorConfig

SD_OPTION = "--sd-path (recipe key generator.sd_path)"
DINOV2_OPTION = "--dinov2-path (recipe key generator.dinov2_path)"
VAE_OPTION = "--vae-path (recipe key generator.vae_path)"

SD_FILES = (
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "scheduler/scheduler_config.json",
)
DINOV2_FILES = ("config.json", "model.safetensors")
VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


@dataclass(eq=False)
class Backbone:
    """The networks of one backbone kind and the sizes the CC-Diff modules need.

    kind: ``"tiny"`` or ``"sd"``.
    unet: the denoiser, ``(B, latent_channels, latent_size, latent_size)`` in and out.
    text_encoder, tokenizer: see the module docstring; D = `context_dim`.
    image_encoder: reference encoder, ``(B, 3, S, S)`` in [0, 1] → ``(B, T, embedding_dim)``.
    vae: the autoencoder of latent space, or None for pixel space (the UNet denoises images in [-1, 1]).
    caption_length, label_length: token lengths the captions and the class labels are padded to.
    scheduler_config: the noise schedule the UNet is (or will be) trained with, for
        ``DDPMScheduler.from_config``.
    frozen: names of the parts that do not train (``"unet"``, ``"vae"``, ``"text_encoder"``,
        ``"image_encoder"``); the CC-Diff processors installed in a frozen UNet still train.
    """

    kind: str
    unet: UNet2DConditionModel
    text_encoder: nn.Module
    tokenizer: Any
    image_encoder: nn.Module
    vae: AutoencoderKL | None
    latent_channels: int
    latent_size: int
    context_dim: int
    embedding_dim: int
    caption_length: int
    label_length: int
    scheduler_config: dict[str, Any]
    frozen: set[str] = field(default_factory=set)


def build_backbone(config: GeneratorConfig, tokenizer: WordTokenizer | None = None) -> Backbone:
    """The backbone `config.backbone` names (`tokenizer`: a saved vocabulary for ``"tiny"``)."""
    if config.backbone == "sd":
        return load_sd_backbone(config.sd_path, config.dinov2_path, config.resolution)
    return build_tiny_backbone(config, tokenizer)


# ------------------------------------------------------------------------------------------------- tiny


def tiny_unet_config(config: GeneratorConfig, in_channels: int, sample_size: int) -> dict[str, Any]:
    """A small ``UNet2DConditionModel`` config with attention in every level but the finest one.

    ``mid_block`` and ``up_blocks.1`` (the paper's fused blocks) have cross-attention. Attention at the
    input resolution is left out because self-attention over 64×64 pixels costs more than everything
    else together (on 2 CPU cores, batch 16 at 64 px: 0.6 images/s with it, 3 without).
    """
    levels = len(config.unet_channels)
    return {
        "sample_size": sample_size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "block_out_channels": tuple(config.unet_channels),
        "layers_per_block": config.layers_per_block,
        "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        "up_block_types": ("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        "cross_attention_dim": config.text_dim,
        "attention_head_dim": config.unet_heads,  # diffusers reads this as the number of heads
        "norm_num_groups": 8,
    }


def tiny_scheduler_config(space: str, prediction_type: str) -> dict[str, Any]:
    """Pixel space: the cosine schedule (improved DDPM), which keeps small images from being noised away
    early, with samples clipped to the image range [-1, 1]; latent space: SD's scaled-linear schedule,
    unclipped."""
    if space == "pixel":
        schedule = {"beta_schedule": "squaredcos_cap_v2", "clip_sample": True}
    else:
        schedule = {
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "clip_sample": False,
        }
    return {"num_train_timesteps": 1000, "prediction_type": prediction_type, **schedule}


def build_tiny_backbone(config: GeneratorConfig, tokenizer: WordTokenizer | None = None) -> Backbone:
    """Randomly initialised tiny networks (and the frozen local autoencoder when ``space="latent"``).

    `tokenizer` is the saved one of a checkpoint; by default it is built from the caption grammar and
    ``config.categories``.
    """
    tokenizer = tokenizer or WordTokenizer.for_captions(config.categories, max_length=config.caption_length)
    text_encoder = TinyTextEncoder(
        len(tokenizer), config.text_dim, config.text_layers, config.text_heads, tokenizer.max_length
    )
    image_encoder = TinyImageEncoder(config.reference_size, config.image_dim, layers=config.image_layers)
    vae, frozen = None, set()
    channels, size = 3, config.resolution
    if config.space == "latent":
        vae = load_vae(config.vae_path)
        channels = vae.config.latent_channels
        size = config.resolution // vae_scale_factor(vae)
        frozen.add("vae")
    downsampling = 2 ** (len(config.unet_channels) - 1)
    if size % downsampling:
        raise ValueError(
            f"the UNet input ({size} px) must be divisible by {downsampling} for {len(config.unet_channels)} "
            f"levels (unet_channels {tuple(config.unet_channels)}); change resolution or unet_channels"
        )
    unet = UNet2DConditionModel(**tiny_unet_config(config, channels, size))
    label_length = max(len(tokenizer.encode(category)) for category in config.categories)
    return Backbone(
        kind="tiny",
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        vae=vae,
        latent_channels=channels,
        latent_size=size,
        context_dim=config.text_dim,
        embedding_dim=config.image_dim,
        caption_length=tokenizer.max_length,
        label_length=label_length,
        scheduler_config=tiny_scheduler_config(config.space, config.prediction_type),
        frozen=frozen,
    )


def vae_scale_factor(vae: AutoencoderKL) -> int:
    """How many pixels one latent cell covers along a side."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def load_vae(path: str | Path | None) -> AutoencoderKL:
    """A diffusers ``AutoencoderKL`` from a local folder (``config.json`` + safetensors weights), frozen."""
    folder = _require_folder(
        path, VAE_FILES, "the latent-space autoencoder", VAE_OPTION, "a diffusers AutoencoderKL"
    )
    vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    return vae.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------------- sd


def load_sd_backbone(
    sd_path: str | Path | None, dinov2_path: str | Path | None, resolution: int = 512
) -> Backbone:
    """Stable Diffusion 1.x and DINOv2 from local folders, all frozen.

    `sd_path` is a diffusers SD 1.x folder (`SD_FILES`), `dinov2_path` a transformers ``Dinov2Model``
    folder (`DINOV2_FILES`, plus optionally ``preprocessor_config.json`` for its input size and
    normalisation). `resolution` is the image size in pixels.
    """
    from transformers import CLIPTextModel, CLIPTokenizer, Dinov2Model

    sd = _require_folder(
        sd_path, SD_FILES, "the Stable Diffusion backbone", SD_OPTION, "a diffusers Stable Diffusion 1.x"
    )
    dino = _require_folder(
        dinov2_path, DINOV2_FILES, "the DINOv2 reference encoder", DINOV2_OPTION, "a transformers Dinov2Model"
    )
    local = {"local_files_only": True, "use_safetensors": True}
    unet = UNet2DConditionModel.from_pretrained(str(sd), subfolder="unet", **local)
    vae = AutoencoderKL.from_pretrained(str(sd), subfolder="vae", **local)
    clip = CLIPTextModel.from_pretrained(str(sd), subfolder="text_encoder", **local)
    clip_tokenizer = CLIPTokenizer.from_pretrained(str(sd), subfolder="tokenizer", local_files_only=True)
    dinov2 = Dinov2Model.from_pretrained(str(dino), **local)
    scheduler_config = json.loads((sd / "scheduler/scheduler_config.json").read_text())

    context_dim = unet.config.cross_attention_dim
    if clip.config.hidden_size != context_dim:
        raise ValueError(
            f"{sd}: the text encoder's width {clip.config.hidden_size} is not the UNet's cross-attention "
            f"width {context_dim}; the folder mixes models"
        )
    scale = vae_scale_factor(vae)
    if resolution % scale:
        raise ValueError(f"resolution {resolution} must be a multiple of the VAE's scale factor {scale}")
    text_encoder = ClipTextEncoder(clip)
    tokenizer = ClipTokenizer(clip_tokenizer, clip.config.max_position_embeddings)
    image_encoder = Dinov2Encoder(dinov2, _read_json(dino / "preprocessor_config.json"))
    frozen = {"unet", "vae", "text_encoder", "image_encoder"}
    for module in (unet, vae, text_encoder, image_encoder):
        module.eval().requires_grad_(False)
    return Backbone(
        kind="sd",
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        vae=vae,
        latent_channels=unet.config.in_channels,
        latent_size=resolution // scale,
        context_dim=context_dim,
        embedding_dim=dinov2.config.hidden_size,
        caption_length=tokenizer.max_length,
        label_length=tokenizer.max_length,  # the reference pads every instance label to 77 as well
        scheduler_config=scheduler_config,
        frozen=frozen,
    )


class ClipTextEncoder(nn.Module):
    """SD's CLIP text tower as a ccaug text encoder: ``last_hidden_state (B, 77, 768)`` and the final-LN
    EOS state ``pooler_output (B, 768)`` (not projected, §2.1). Like SD 1.x, it reads no attention mask:
    the padding tokens take part, as in the checkpoints the UNet was trained with."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextEncoding:
        out = self.model(input_ids=input_ids)
        return TextEncoding(out.last_hidden_state, out.pooler_output)


class ClipTokenizer:
    """A transformers ``CLIPTokenizer`` as a ccaug tokenizer: padded to `length` (default 77), truncated
    with a single warning."""

    def __init__(self, tokenizer: Any, max_positions: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = min(tokenizer.model_max_length, max_positions)
        self._warned = False

    def __call__(self, texts: Sequence[str], length: int | None = None) -> TokenBatch:
        length = self.max_length if length is None else length
        if not self._warned:
            longest = max((len(ids) for ids in self.tokenizer(list(texts)).input_ids), default=0)
            if longest > length:
                warnings.warn(
                    f"a text of {longest} tokens was truncated to {length} (further truncations are not "
                    f"reported)",
                    stacklevel=2,
                )
                self._warned = True
        out = self.tokenizer(
            list(texts), padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        )
        return TokenBatch(out.input_ids, out.attention_mask.bool())


class Dinov2Encoder(nn.Module):
    """DINOv2 as a reference encoder: ``(B, 3, S, S)`` in [0, 1] → ``last_hidden_state (B, 1 + P, E)``.

    The square reference is resized (bicubic, antialiased) to the processor's crop size (224 → 16×16
    patches, T = 257 for ViT-L/14) and normalised once with the processor's mean and std (ImageNet by
    default): no centre crop and no double normalisation (the reference's §8.4 issue).
    """

    def __init__(self, model: nn.Module, processor: dict[str, Any] | None = None) -> None:
        super().__init__()
        processor = processor or {}
        crop = processor.get("crop_size", 224)
        self.model = model
        self.image_size = int(crop["height"] if isinstance(crop, dict) else crop)
        self.dim = model.config.hidden_size
        self.num_tokens = 1 + (self.image_size // model.config.patch_size) ** 2
        mean = torch.tensor(processor.get("image_mean", IMAGENET_MEAN)).view(1, 3, 1, 1)
        std = torch.tensor(processor.get("image_std", IMAGENET_STD)).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.image_size, self.image_size)
        images = F.interpolate(images, size=size, mode="bicubic", antialias=True).clamp(0, 1)
        return self.model(pixel_values=(images - self.mean) / self.std).last_hidden_state


# ---------------------------------------------------------------------------------------------- folders


def _require_folder(path: str | Path | None, files: Sequence[str], what: str, option: str, kind: str) -> Path:
    """`path` as a Path, after checking that it holds every one of `files`."""
    needs = f"{kind} folder holding {', '.join(files)}"
    if path is None:
        raise FileNotFoundError(f"{what} needs a local folder: set {option} to {needs}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: {folder} is not a folder; set {option} to {needs}")
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{what}: {folder} lacks {', '.join(missing)}; set {option} to {needs} (weights as safetensors)"
        )
    return folder


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None
