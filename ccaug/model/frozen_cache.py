"""Features of the generator's frozen parts, computed once before training, kept on disk and in memory.

With the ``sd`` backbone the VAE, the CLIP text encoder and DINOv2 are frozen, so their outputs for a given
input never change during training; the reference recomputes them at every step (§8.14). `FrozenFeatures`
computes them once, stores them with `FeatureCache` (safetensors only) and serves them to
`CCDiffGenerator.encode` / `training_loss` from CPU memory, indexed by what the batch carries:

* **reference tokens** of every instance-bank row and every background-bank row (the image encoder's
  ``(T, E)`` tokens), when the image encoder is frozen; looked up by ``batch.reference_rows`` /
  ``batch.background_rows``. One file per bank, keyed by ``cache_key(encoder fingerprint, bank pixels)``.
* **text encodings** (token states and pooled) of the captions, the empty caption and the class labels,
  when the text encoder is frozen; looked up by the text itself (a text not in the cache is encoded as
  before). One file per text length, keyed by ``cache_key(encoder fingerprint, texts, their token ids)``.
* **VAE posteriors** (mean and std of the latent distribution) of every training image, when the VAE is
  frozen and the training data is not augmented (``flip="none"``: the image of an id is always the same);
  looked up by ``batch.image_ids``. The latent is still *sampled* from the cached posterior at every step,
  with the same random draw as ``vae.encode(...).latent_dist.sample(generator)``, so training is unchanged.
  Keyed by ``cache_key(VAE fingerprint, resolution, every image's id, file, size and mtime)``.

An encoder's fingerprint (`encoder_fingerprint`) hashes its class, its config and a strided sample of every
weight tensor and buffer, so another model (or the same one re-initialised) never reuses a cache. Nothing is
cached for parts that train: with the ``tiny`` backbone (everything trains) `FrozenFeatures.build` builds
nothing. The caches are float32, as the frozen encoders compute them outside autocast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from ccaug.model.references import FeatureCache, cache_key
from ccaug.model.text import TextEncoding
from ccaug.progress import progress_bar

if TYPE_CHECKING:
    from ccaug.model.generator import CCDiffGenerator

_SAMPLES_PER_TENSOR = 64


def encoder_fingerprint(module: nn.Module) -> str:
    """A sha1 of `module`'s class, config (when it or a submodule has one) and a strided sample of every
    parameter and buffer (names, shapes, dtypes and about 64 values each): cheap, yet different for another
    model or the same one with other weights."""
    parts: list[Any] = [type(module).__qualname__]
    for sub in module.modules():
        config = getattr(sub, "config", None)
        if config is not None:
            as_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
            as_dict = {
                k: v for k, v in as_dict.items() if not k.startswith("_") and not k.endswith("_version")
            }
            parts.append(json.dumps(as_dict, sort_keys=True, default=str))
            break
    for name, sub in module.named_modules():  # attributes such as an image size or a crop mode
        for attribute in ("image_size", "num_tokens"):
            if isinstance(getattr(sub, attribute, None), int):
                parts.append(f"{name}.{attribute}={getattr(sub, attribute)}")
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in tensors:
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
        parts.extend([name, flat[::step].float().cpu()])
    return cache_key(*parts)


def _batches(total: int, size: int) -> list[range]:
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


@dataclass
class FrozenFeatures:
    """Frozen encoder outputs in CPU memory (see the module docstring). Build with `build`, attach with
    `CCDiffGenerator.attach_frozen_features`; every lookup returns None when it cannot serve a request, and
    the generator then computes as without a cache."""

    instance_tokens: torch.Tensor | None = None  # (R_i, T, E)
    background_tokens: torch.Tensor | None = None  # (R_b, T, E)
    texts: dict[int | None, tuple[dict[str, int], TextEncoding]] = field(default_factory=dict)
    latent_rows: dict[int, int] = field(default_factory=dict)  # image id -> row of latent_mean/std
    latent_mean: torch.Tensor | None = None  # (I, C, h, w)
    latent_std: torch.Tensor | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return (
            self.instance_tokens is None
            and self.background_tokens is None
            and not self.texts
            and self.latent_mean is None
        )

    # ------------------------------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        generator: CCDiffGenerator,
        folder: str | Path,
        *,
        instance_bank: Any = None,
        background_bank: Any = None,
        captions: Sequence[str] = (),
        training_data: Any = None,
        batch_size: int = 32,
        progress: bool = False,
    ) -> FrozenFeatures:
        """Load, or compute and store under `folder`, the features of `generator`'s frozen parts.

        `instance_bank`/`background_bank` (``images(rows)``, ``len``) give the reference tokens, `captions`
        the caption encodings (the empty caption and the class labels are always added), `training_data`
        (a `GeneratorTrainingData` with ``flip="none"``) the VAE posteriors. What is not frozen, or not
        given, is left out. Computation runs on the generator's device, in batches of `batch_size`.
        """
        features = cls()
        frozen = generator.frozen
        if not frozen & {"image_encoder", "text_encoder", "vae"}:
            return features
        cache = FeatureCache(folder)
        device = generator.device
        with progress_bar(enabled=progress, transient=True) as bar, torch.no_grad():

            def run(
                what: str, total: int, compute: Callable[[Callable[[int], None]], dict[str, torch.Tensor]]
            ) -> Callable[[], dict[str, torch.Tensor]]:
                """`compute` with a progress bar of `total` items, shown only if it runs."""

                def tracked() -> dict[str, torch.Tensor]:
                    task = bar.add_task(f"caching {what}", total=total)
                    return compute(lambda n: bar.advance(task, n))

                return tracked

            if "image_encoder" in frozen:
                print_name = encoder_fingerprint(generator.image_encoder)
                for name, bank in (("instance", instance_bank), ("background", background_bank)):
                    if bank is None or len(bank) == 0:
                        continue
                    pixels = bank.images(np.arange(len(bank)))
                    key = cache_key("reference_tokens", print_name, pixels)

                    def compute(advance, bank=bank) -> dict[str, torch.Tensor]:
                        parts = []
                        for rows in _batches(len(bank), batch_size):
                            images = bank.images(np.asarray(rows)).to(device)
                            parts.append(generator.image_encoder(images).float().cpu())
                            advance(len(rows))
                        return {"tokens": torch.cat(parts)}

                    tokens = cache.get_or_compute(key, run(f"{name} references", len(bank), compute))[
                        "tokens"
                    ]
                    features.files.append(cache.path(key))
                    setattr(features, f"{name}_tokens", tokens)

            if "text_encoder" in frozen:
                print_name = encoder_fingerprint(generator.text_encoder)
                groups = {
                    None: list(dict.fromkeys(["", *captions])),
                    generator.label_length: list(dict.fromkeys(generator.config.categories)),
                }
                for length, texts in groups.items():
                    ids = torch.cat(
                        [
                            generator.tokenizer(texts[r.start : r.stop], length).input_ids
                            for r in _batches(len(texts), 256)
                        ]
                    )
                    key = cache_key("text", print_name, length, texts, ids)

                    def compute(advance, texts=texts, length=length) -> dict[str, torch.Tensor]:
                        states, pooled = [], []
                        for rows in _batches(len(texts), batch_size):
                            encoded = generator.encode_text(
                                texts[rows.start : rows.stop], length, cached=False
                            )
                            states.append(encoded.token_states.float().cpu())
                            pooled.append(encoded.pooled.float().cpu())
                            advance(len(rows))
                        return {"token_states": torch.cat(states), "pooled": torch.cat(pooled)}

                    stored = cache.get_or_compute(key, run("texts", len(texts), compute))
                    features.files.append(cache.path(key))
                    index = {text: row for row, text in enumerate(texts)}
                    features.texts[length] = (index, TextEncoding(stored["token_states"], stored["pooled"]))

            if "vae" in frozen and training_data is not None and training_data.flip == "none":
                print_name = encoder_fingerprint(generator.vae)
                count = len(training_data)
                stats = [training_data.image_path(i).stat() for i in range(count)]
                files = [
                    (
                        int(training_data.image_ids[i]),
                        str(training_data.image_path(i)),
                        s.st_size,
                        s.st_mtime_ns,
                    )
                    for i, s in enumerate(stats)
                ]
                key = cache_key("vae_posterior", print_name, generator.config.resolution, files)

                def compute(advance) -> dict[str, torch.Tensor]:
                    means, stds = [], []
                    for rows in _batches(count, batch_size):
                        images = torch.stack([training_data.read_image(i) for i in rows]).to(device)
                        posterior = generator.vae.encode(images.to(generator.vae.dtype)).latent_dist
                        means.append(posterior.mean.float().cpu())
                        stds.append(posterior.std.float().cpu())
                        advance(len(rows))
                    return {"mean": torch.cat(means), "std": torch.cat(stds)}

                stored = cache.get_or_compute(key, run("VAE latents", count, compute))
                features.files.append(cache.path(key))
                features.latent_mean, features.latent_std = stored["mean"], stored["std"]
                features.latent_rows = {image_id: row for row, (image_id, *_) in enumerate(files)}
        return features

    # ------------------------------------------------------------------------------------------ lookups

    def text(self, texts: Sequence[str], length: int | None) -> TextEncoding | None:
        """The cached encodings of `texts` at `length` (None: the caption length), or None unless every
        text is cached."""
        group = self.texts.get(length)
        if group is None:
            return None
        index, encoding = group
        try:
            rows = torch.tensor([index[text] for text in texts], dtype=torch.long)
        except KeyError:
            return None
        return TextEncoding(encoding.token_states[rows], encoding.pooled[rows])

    def references(
        self, reference_rows: torch.Tensor | None, background_rows: torch.Tensor | None, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Instance tokens ``(B, N, T, E)`` (zero where `valid` is False) and background tokens ``(B, T, E)``
        of the given bank rows, on the CPU; None when the rows or the cache are missing."""
        if (
            reference_rows is None
            or background_rows is None
            or self.instance_tokens is None
            or self.background_tokens is None
        ):
            return None
        valid = valid.cpu()
        picked = reference_rows.cpu()[valid]
        background_rows = background_rows.cpu()
        if len(picked) and not (0 <= int(picked.min()) and int(picked.max()) < len(self.instance_tokens)):
            raise IndexError(
                f"reference rows outside the cached instance bank of {len(self.instance_tokens)} rows"
            )
        if not (0 <= int(background_rows.min()) and int(background_rows.max()) < len(self.background_tokens)):
            raise IndexError(
                f"background rows outside the cached background bank of {len(self.background_tokens)} rows"
            )
        background = self.background_tokens[background_rows]
        instances = background.new_zeros(*valid.shape, *background.shape[1:])
        instances[valid] = self.instance_tokens[picked]
        return instances, background

    def sample_latents(
        self, image_ids: Sequence[int] | None, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor | None:
        """Unscaled latents ``(B, C, h, w)`` on `device`, drawn from the cached posteriors of `image_ids`
        exactly as ``latent_dist.sample(generator)`` draws them; None unless every id is cached."""
        if image_ids is None or self.latent_mean is None:
            return None
        try:
            rows = torch.tensor([self.latent_rows[int(i)] for i in image_ids], dtype=torch.long)
        except KeyError:
            return None
        mean = self.latent_mean[rows].to(device)
        std = self.latent_std[rows].to(device)
        noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * noise
