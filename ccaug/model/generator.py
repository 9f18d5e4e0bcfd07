"""The CC-Diff generator: a backbone with CC-Diff's resampler and conditional generation module, as one module.

`CCDiffGenerator` holds every part that trains (the backbone's trainable parts, the resampler, and the CGM
processors inside the UNet) in one ``nn.Module``, so that ``accelerator.prepare(generator)`` synchronises
all of them under DDP (the reference wraps only the UNet, §8.1). It turns a `GeneratorBatch` into the UNet's
inputs (`encode`), gives the training loss (`training_loss`) and one guided denoising evaluation
(`denoise`); the noise schedule and the sampling loop stay with the scheduler and the pipeline.

Shapes: B layouts, N instance slots, L caption tokens, D context width (the UNet's cross-attention dim),
T reference tokens of width E, ``(C, h, w)`` the UNet's input (pixels in [-1, 1] or VAE latents).

Classifier-free guidance: the reference has no condition dropout and guides against frozen SD's
negative-prompt prediction (§3.3). The tiny backbone learns from scratch and has no unconditional model
unless it is trained for one, so training drops the whole condition of a row (caption, labels,
references, boxes) with probability ``condition_dropout``: the row gets the empty caption and
``guided=False``, exactly the unconditional input `denoise` uses. (With the frozen ``sd`` backbone a dropped
row trains nothing, so its recipes set ``condition_dropout: 0``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors import safe_open
from torch import nn

from ccaug.fileio import atomic_path, write_json
from ccaug.model.backbones import Backbone, build_backbone
from ccaug.model.batch import GeneratorBatch
from ccaug.model.cgm import install_ccdiff_processors
from ccaug.model.conditions import LayoutConditions
from ccaug.model.frozen_cache import FrozenFeatures
from ccaug.model.generator_config import GeneratorConfig
from ccaug.model.resampler import build_resampler
from ccaug.model.text import TextEncoding, WordTokenizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "ccaug.generator"
FORMAT_VERSION = 1


class CCDiffGenerator(nn.Module):
    """CC-Diff on a backbone. Submodules: ``unet`` (with the CGM processors), ``text_encoder``,
    ``image_encoder``, ``vae`` (None in pixel space) and ``resampler``.

    Args:
        config: the settings.
        backbone: prebuilt networks; by default `build_backbone(config)`.
    """

    def __init__(self, config: GeneratorConfig, backbone: Backbone | None = None) -> None:
        super().__init__()
        backbone = backbone or build_backbone(config)
        if backbone.kind != config.backbone:
            raise ValueError(f"config.backbone is {config.backbone!r} but the backbone is {backbone.kind!r}")
        trained_for = backbone.scheduler_config.get("prediction_type", "epsilon")
        if trained_for != config.prediction_type:
            raise ValueError(
                f"the {backbone.kind} UNet predicts {trained_for!r}; set generator.prediction_type to it"
            )
        self.config = config
        self.tokenizer = backbone.tokenizer
        self.frozen = frozenset(backbone.frozen)
        self.scheduler_config = dict(backbone.scheduler_config)
        self.latent_channels = backbone.latent_channels
        self.latent_size = backbone.latent_size
        self.caption_length = backbone.caption_length
        self.label_length = backbone.label_length

        self.unet = backbone.unet
        self.text_encoder = backbone.text_encoder
        self.image_encoder = backbone.image_encoder
        self.vae = backbone.vae
        for name in self.frozen:
            getattr(self, name).requires_grad_(False)
        install_ccdiff_processors(
            self.unet,
            config.variant,
            layers=config.fused_layers,
            context_dim=backbone.context_dim,
            init=config.cgm_init,
            heads=config.cgm_heads,
        )
        self.resampler = build_resampler(
            config.resampler_config(backbone.embedding_dim, backbone.context_dim)
        )
        self.frozen_features: FrozenFeatures | None = None

    def attach_frozen_features(self, features: FrozenFeatures | None) -> None:
        """Serve the frozen parts' outputs from `features` (built for this generator by
        `FrozenFeatures.build`) wherever a request is cached; None detaches them."""
        self.frozen_features = None if features is None or features.is_empty else features

    # ------------------------------------------------------------------------------------------ basics

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter that trains: the backbone's unfrozen parts, the resampler and the CGM."""
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> CCDiffGenerator:
        """Frozen parts stay in eval mode."""
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    def make_scheduler(self) -> DDPMScheduler:
        """The training noise schedule of this generator's UNet."""
        return DDPMScheduler.from_config(self.scheduler_config)

    def _frozen_context(self, part: str) -> contextlib.AbstractContextManager:
        return torch.no_grad() if part in self.frozen else contextlib.nullcontext()

    # ------------------------------------------------------------------------------------------ encoding

    def encode_text(
        self, texts: list[str] | tuple[str, ...], length: int | None = None, cached: bool = True
    ) -> TextEncoding:
        """``token_states (len(texts), length, D)`` and ``pooled (len(texts), D)``; `length` defaults to
        the caption length. Served from the attached `FrozenFeatures` when all `texts` are there (and
        `cached`)."""
        device = self.device
        if cached and self.frozen_features is not None and "text_encoder" in self.frozen:
            hit = self.frozen_features.text(list(texts), length)
            if hit is not None:
                dtype = _dtype_of(self.text_encoder)
                return TextEncoding(hit.token_states.to(device, dtype), hit.pooled.to(device, dtype))
        tokens = self.tokenizer(list(texts), length)
        with self._frozen_context("text_encoder"):
            return self.text_encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device))

    def unconditional_tokens(self, batch_size: int = 1) -> torch.Tensor:
        """``(batch_size, L, D)`` token states of the empty caption: the unconditional input."""
        return self.encode_text([""]).token_states.expand(batch_size, -1, -1)

    def encode_references(
        self, references: torch.Tensor, background: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``references (B, N, 3, S, S)``, ``background (B, 3, S', S')`` in [0, 1], ``valid (B, N)`` →
        instance tokens ``(B, N, T, E)`` (zero at slots that are not valid, which are never encoded) and
        background tokens ``(B, T, E)``."""
        batch, slots = valid.shape
        with self._frozen_context("image_encoder"):
            background_tokens = self.image_encoder(background)
            instance_tokens = background_tokens.new_zeros(batch, slots, *background_tokens.shape[1:])
            if valid.any():
                crops = self.image_encoder(references[valid])  # (M, T, E), M = valid slots
                instance_tokens = instance_tokens.index_put((valid,), crops)
        return instance_tokens, background_tokens

    def encode(
        self, batch: GeneratorBatch, drop: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, LayoutConditions]:
        """The UNet's conditions for `batch`: caption tokens ``(B, L, D)`` and the `LayoutConditions`.

        `drop` ``(B,)`` bool marks rows to encode unconditionally: the empty caption, ``guided=False``,
        and no instances (so their references are not even encoded).
        """
        device = self.device
        batch_size, slots = batch.valid.shape
        if slots > self.config.max_instances:
            raise ValueError(
                f"the batch has {slots} instance slots, more than max_instances={self.config.max_instances}"
            )
        # the labels are checked on the host, where the batch was built: on a GPU the check would wait for it
        drop = torch.zeros(batch_size, dtype=torch.bool) if drop is None else drop.bool().cpu()
        valid = batch.valid.cpu() & ~drop[:, None]
        labels = batch.labels.cpu()
        if not ((labels[valid] >= 0) & (labels[valid] < len(self.config.categories))).all():
            raise ValueError(
                f"labels must index the {len(self.config.categories)} categories of the generator"
            )
        captions = ["" if dropped else text for text, dropped in zip(batch.captions, drop.tolist())]
        labels = torch.where(valid, labels, 0).to(device)
        valid, drop = valid.to(device), drop.to(device)
        caption = self.encode_text(captions)
        label_text = self.encode_text(self.config.categories, self.label_length)  # (C, L', D): once per call
        hit = None
        if self.frozen_features is not None and "image_encoder" in self.frozen:
            hit = self.frozen_features.references(batch.reference_rows, batch.background_rows, valid)
        if hit is not None:
            dtype = _dtype_of(self.image_encoder)
            instance_tokens, background_tokens = (tokens.to(device, dtype) for tokens in hit)
        else:
            instance_tokens, background_tokens = self.encode_references(
                batch.references.to(device), batch.background.to(device), valid
            )
        polygons = batch.polygons.to(device=device, dtype=torch.float32)
        tokens = self.resampler(instance_tokens, background_tokens, polygons, valid)
        layout = LayoutConditions(
            polygons=polygons,
            valid=valid,
            instance_text=label_text.token_states[labels],
            instance_pooled=label_text.pooled[labels],
            global_pooled=caption.pooled,
            fg_tokens=tokens.fg,
            bg_tokens=tokens.bg,
            rel_tokens=tokens.rel,
            guided=~drop,
            latent_size=(self.latent_size, self.latent_size),
        )
        return caption.token_states, layout

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``images (B, 3, H, W)`` in [-1, 1] → the UNet's clean input ``(B, C, h, w)``."""
        size = self.config.resolution
        if images.shape[-2:] != (size, size):
            raise ValueError(
                f"images must be {size}×{size} (generator.resolution), got {tuple(images.shape[-2:])}"
            )
        if self.vae is None:
            return images
        with self._frozen_context("vae"):
            latents = self.vae.encode(images.to(self.vae.dtype)).latent_dist.sample(generator)
        return latents * self.vae.config.scaling_factor

    def decode_images(self, x0: torch.Tensor) -> torch.Tensor:
        """The UNet's clean output ``(B, C, h, w)`` → images ``(B, 3, H, W)`` in [-1, 1]."""
        if self.vae is not None:
            x0 = self.vae.decode(x0.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return x0.clamp(-1, 1)

    # ------------------------------------------------------------------------------------------ training

    def training_loss(
        self, batch: GeneratorBatch, scheduler: DDPMScheduler, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Plain MSE between the UNet's prediction and its target (ε, or v), over all elements (§3.3).

        Per row, in this order from `generator` (on its own device): condition dropout, the timestep
        ``t ~ U{0, …, T-1}``, (the VAE's posterior sample,) the noise.
        """
        if batch.images is None:
            raise ValueError("training_loss needs batch.images (the target images)")
        if scheduler.config.prediction_type != self.config.prediction_type:
            raise ValueError(
                f"the scheduler predicts {scheduler.config.prediction_type!r}, the generator "
                f"{self.config.prediction_type!r}"
            )
        device = self.device
        draw = generator.device if generator is not None else device
        batch_size = batch.batch_size
        drop = torch.rand(batch_size, generator=generator, device=draw) < self.config.condition_dropout
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator, device=draw
        ).to(device)
        x0 = None
        if self.frozen_features is not None and "vae" in self.frozen and self.vae is not None:
            latents = self.frozen_features.sample_latents(batch.image_ids, generator, device)
            if latents is not None:
                x0 = latents.to(self.vae.dtype) * self.vae.config.scaling_factor
        if x0 is None:
            x0 = self.encode_images(batch.images.to(device), generator)
        noise = torch.randn(x0.shape, generator=generator, device=draw, dtype=x0.dtype).to(device)

        caption_tokens, layout = self.encode(batch, drop.to(device))
        noisy = scheduler.add_noise(x0, noise, timesteps)
        prediction = self.unet(
            noisy, timesteps, encoder_hidden_states=caption_tokens, cross_attention_kwargs={"layout": layout}
        ).sample
        if self.config.prediction_type == "epsilon":
            target = noise
        else:
            target = scheduler.get_velocity(x0, noise, timesteps)
        return F.mse_loss(prediction.float(), target.float())

    # ------------------------------------------------------------------------------------------ sampling

    def denoise(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        caption_tokens: torch.Tensor,
        layout: LayoutConditions,
        guidance_scale: float = 1.0,
        uncond_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One (guided) UNet evaluation: ``x_t (B, C, h, w)`` (already scaled by the scheduler), `t` a
        timestep or ``(B,)``, ``caption_tokens (B, L, D)`` and `layout` (B rows) from `encode`,
        ``uncond_tokens (1 or B, L, D)`` (`unconditional_tokens`, or a negative prompt's) → ``(B, C, h, w)``.

        With ``guidance_scale != 1`` the UNet runs once on the ``[uncond; cond]`` batch and returns
        ``uncond + s · (cond − uncond)``; the unconditional rows get no layout terms.
        """
        if guidance_scale == 1.0:
            return self.unet(
                x_t, t, encoder_hidden_states=caption_tokens, cross_attention_kwargs={"layout": layout}
            ).sample
        if uncond_tokens is None:
            raise ValueError("guidance needs uncond_tokens (generator.unconditional_tokens())")
        batch_size = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 1:
            t = torch.cat([t, t])
        uncond_tokens = uncond_tokens.expand(batch_size, -1, -1)
        out = self.unet(
            torch.cat([x_t, x_t]),
            t,
            encoder_hidden_states=torch.cat([uncond_tokens, caption_tokens]),
            cross_attention_kwargs={"layout": layout.concat_for_guidance()},
        ).sample
        uncond, cond = out.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    # ------------------------------------------------------------------------------------------ files

    def _is_saved(self, key: str) -> bool:
        """A state-dict key goes into checkpoints unless it belongs to a frozen part (which is referenced
        by its path instead); the CGM processors inside a frozen UNet are saved."""
        return key.split(".", 1)[0] not in self.frozen or ".processor." in key

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint holds (see `_is_saved`)."""
        return {key: value for key, value in self.state_dict().items() if self._is_saved(key)}

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` (settings, tokenizer vocabulary) and ``model.safetensors`` into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().contiguous().cpu() for key, value in self.checkpoint_state().items()}
        metadata = {"format": FORMAT, "variant": self.config.variant, "backbone": self.config.backbone}
        with atomic_path(folder / WEIGHTS_NAME) as tmp:
            safetensors.torch.save_file(state, str(tmp), metadata=metadata)
        tokenizer = self.tokenizer.to_dict() if isinstance(self.tokenizer, WordTokenizer) else None
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "tokenizer": tokenizer,
        }
        write_json(folder / CONFIG_NAME, document, indent=2)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        variant: str | None = None,
        sd_path: str | None = None,
        dinov2_path: str | None = None,
        vae_path: str | None = None,
    ) -> CCDiffGenerator:
        """The generator saved in `folder` (on the CPU). `variant`, when given, must be the saved one;
        the paths replace the saved ones (models moved since)."""
        document = read_saved_config(folder)
        config = GeneratorConfig.from_dict(document["config"])
        if variant is not None and variant != config.variant:
            raise ValueError(f"{folder} holds a {config.variant!r} generator, not {variant!r}")
        paths = {"sd_path": sd_path, "dinov2_path": dinov2_path, "vae_path": vae_path}
        config = dataclasses.replace(config, **{k: v for k, v in paths.items() if v is not None})
        tokenizer = WordTokenizer.from_dict(document["tokenizer"]) if document.get("tokenizer") else None
        generator = cls(config, build_backbone(config, tokenizer))
        generator.load_weights(folder)
        return generator

    def load_weights(self, folder: str | Path) -> None:
        """Load the weights of the checkpoint in `folder` into this generator, refusing another variant,
        backbone or category list, and any missing, unexpected or reshaped tensor (listed)."""
        document = read_saved_config(folder)
        saved = document["config"]
        problems = [
            f"{name} is {saved.get(name)!r} there, {mine!r} here"
            for name, mine in (
                ("variant", self.config.variant),
                ("backbone", self.config.backbone),
                ("categories", list(self.config.categories)),
            )
            if saved.get(name) != mine
        ]
        path = Path(folder) / WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}")
        expected = {key: tuple(value.shape) for key, value in self.checkpoint_state().items()}
        with safe_open(str(path), framework="pt") as file:
            found = {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        reshaped = [
            f"{key} {found[key]} there, {expected[key]} here"
            for key in sorted(set(expected) & set(found))
            if found[key] != expected[key]
        ]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", reshaped)):
            if keys:
                shown = "\n    ".join(keys[:20]) + (
                    f"\n    … {len(keys) - 20} more" if len(keys) > 20 else ""
                )
                problems.append(f"{len(keys)} {title}:\n    {shown}")
        if problems:
            raise ValueError(f"cannot load {path} into this generator:\n  " + "\n  ".join(problems))
        state = safetensors.torch.load_file(str(path), device=str(self.device))
        self.load_state_dict(state, strict=False)


def _dtype_of(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def read_saved_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved generator: it has no {CONFIG_NAME}")
    document = json.loads(path.read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ccaug generator config (format {document.get('format')!r})")
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {document.get('version')}, this ccaug reads {FORMAT_VERSION}"
        )
    return document
