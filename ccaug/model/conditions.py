"""The layout conditions that CC-Diff's fused attention layers read, batched over the latent batch.

A :class:`LayoutConditions` reaches every attention processor of the UNet through
``cross_attention_kwargs``::

    noise = unet(latents, t, encoder_hidden_states=caption_tokens,
                 cross_attention_kwargs={"layout": conditions}).sample

Its batch B is the **latent** batch: row b of every tensor belongs to ``latents[b]``. Instances are padded
to N slots per sample with the ``valid`` mask (padding is a mask, never a magic value): whatever a padded
slot holds, it takes part in no attention and no sum.

Classifier-free guidance: rows with ``guided=False`` get plain cross-attention with their own
``encoder_hidden_states`` row (the negative prompt) and no layout terms, as in the reference's CFG branch
(§2.6): the guidance direction is "layout model with the caption" minus "plain model with the negative
prompt". :meth:`LayoutConditions.concat_for_guidance` builds the ``[uncond; cond]`` batch that matches
diffusers' ``torch.cat([negative_embeds, prompt_embeds])``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ccaug.model.masks import LayoutMasks


@dataclass(eq=False)
class LayoutConditions:
    """Everything the CC-Diff fused layers need, for B samples with N instance slots each.

    D is the context width (the UNet's cross-attention dim, 768 for SD 1.x); L the text length of an
    instance label (77 for CLIP); Qf, Qb, Qr the numbers of foreground, background and relation tokens
    that the resampler makes (v1: 16, 16, none; ++: 8, 8, 8).

    Attributes:
        polygons: ``(B, N, 8)`` oriented boxes as normalised corners x1 y1 … x4 y4 (x right, y down).
        valid: ``(B, N)`` bool, True for a real instance, False for a padded slot.
        instance_text: ``(B, N, L, D)`` token states of each instance's class label, the keys and values
            of the frozen cross-attention's per-instance term CA_i.
        instance_pooled: ``(B, N, D)`` pooled text (final-LN EOS state) of each instance's label.
        global_pooled: ``(B, D)`` pooled text of the global caption.
        fg_tokens: ``(B, N, Qf, D)`` foreground reference tokens of each instance (resampler output).
        bg_tokens: ``(B, Qb, D)`` background reference tokens.
        rel_tokens: ``(B, Qr, D)`` relation tokens (CC-Diff++ only), or None.
        guided: ``(B,)`` bool, False on the unconditional rows of classifier-free guidance; None means
            every row is guided.
        latent_size: ``(h, w)`` of the UNet input latents; needed only for non-square latents (to find
            each layer's grid).
        min_cells: minimum-coverage rule of the instance masks (see :func:`ccaug.model.masks.polygon_masks`).
        min_radius_cells: shortest half-axis of the soft ellipse maps, in cells
            (see :func:`ccaug.model.masks.soft_ellipse_maps`).
        masks: the per-resolution cache of masks, built from polygons and valid on construction.

    On construction the padded slots of polygons, instance_text, instance_pooled and fg_tokens are
    replaced by zeros, so that garbage (even NaN) in them cannot reach an output through ``0 · NaN``.
    """

    polygons: torch.Tensor
    valid: torch.Tensor
    instance_text: torch.Tensor
    instance_pooled: torch.Tensor
    global_pooled: torch.Tensor
    fg_tokens: torch.Tensor
    bg_tokens: torch.Tensor
    rel_tokens: torch.Tensor | None = None
    guided: torch.Tensor | None = None
    latent_size: tuple[int, int] | None = None
    min_cells: int = 1
    min_radius_cells: float = 1.0
    masks: LayoutMasks = field(init=False, repr=False)
    _guided_rows: torch.Tensor | None = field(init=False, repr=False, default=None)
    _guided_subset: LayoutConditions | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._validate()
        if self.guided is None:
            self.guided = torch.ones(self.batch_size, dtype=torch.bool, device=self.valid.device)
        slot = self.valid
        self.polygons = self.polygons.masked_fill(~slot[..., None], 0.0)
        self.instance_text = self.instance_text.masked_fill(~slot[..., None, None], 0.0)
        self.instance_pooled = self.instance_pooled.masked_fill(~slot[..., None], 0.0)
        self.fg_tokens = self.fg_tokens.masked_fill(~slot[..., None, None], 0.0)
        self.masks = LayoutMasks(
            self.polygons,
            self.valid,
            latent_size=self.latent_size,
            min_cells=self.min_cells,
            min_radius_cells=self.min_radius_cells,
        )

    def _validate(self) -> None:
        def shape_of(name: str) -> tuple[int, ...]:
            return tuple(getattr(self, name).shape)

        if self.polygons.ndim != 3 or self.polygons.shape[-1] != 8:
            raise ValueError(f"polygons must be (B, N, 8) = x1 y1 … x4 y4, got {shape_of('polygons')}")
        batch, slots = self.polygons.shape[:2]
        if self.valid.dtype != torch.bool or shape_of("valid") != (batch, slots):
            raise ValueError(
                f"valid must be a bool tensor (B, N) = {(batch, slots)}, got {self.valid.dtype} {shape_of('valid')}"
            )
        width = self.global_pooled.shape[-1]
        expected = {
            "instance_text": (4, (batch, slots, None, width), "(B, N, L, D)"),
            "instance_pooled": (3, (batch, slots, width), "(B, N, D)"),
            "global_pooled": (2, (batch, width), "(B, D)"),
            "fg_tokens": (4, (batch, slots, None, width), "(B, N, Qf, D)"),
            "bg_tokens": (3, (batch, None, width), "(B, Qb, D)"),
            "rel_tokens": (3, (batch, None, width), "(B, Qr, D)"),
        }
        for name, (ndim, dims, spelled) in expected.items():
            tensor = getattr(self, name)
            if tensor is None:
                continue
            ok = tensor.ndim == ndim and all(d is None or d == s for d, s in zip(dims, tensor.shape))
            if not ok:
                wanted = tuple("*" if d is None else d for d in dims)
                raise ValueError(
                    f"{name} must be {spelled} = {wanted} (B={batch} samples, N={slots} slots, D={width} "
                    f"from global_pooled), got {shape_of(name)}"
                )
        if self.guided is not None and (self.guided.dtype != torch.bool or shape_of("guided") != (batch,)):
            raise ValueError(
                f"guided must be a bool tensor (B,) = ({batch},), got {self.guided.dtype} {shape_of('guided')}"
            )
        if self.latent_size is not None and len(self.latent_size) != 2:
            raise ValueError(f"latent_size must be (h, w), got {self.latent_size}")

    # ---------------------------------------------------------------- sizes

    @property
    def batch_size(self) -> int:
        """B, the latent batch."""
        return self.polygons.shape[0]

    @property
    def num_slots(self) -> int:
        """N, instance slots per sample (real + padding)."""
        return self.polygons.shape[1]

    @property
    def context_dim(self) -> int:
        """D, the width of every token."""
        return self.global_pooled.shape[-1]

    # ---------------------------------------------------------------- copies

    def tensor_fields(self) -> dict[str, torch.Tensor | None]:
        """The tensors that define the conditions, by field name (what copies and concatenations carry)."""
        names = [
            "polygons",
            "valid",
            "instance_text",
            "instance_pooled",
            "global_pooled",
            "fg_tokens",
            "bg_tokens",
            "rel_tokens",
            "guided",
        ]
        return {name: getattr(self, name) for name in names}

    def _replace(self, **changes: torch.Tensor | None) -> LayoutConditions:
        return dataclasses.replace(self, **changes)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> LayoutConditions:
        """A copy on `device` with the token tensors in `dtype`.

        Polygons stay float32 (the masks are computed from them in float32) and the masks are rebuilt
        (lazily) on the new device.
        """
        changes: dict[str, torch.Tensor | None] = {}
        for name, tensor in self.tensor_fields().items():
            if tensor is None:
                continue
            cast = (
                dtype if (dtype is not None and tensor.is_floating_point() and name != "polygons") else None
            )
            changes[name] = tensor.to(device=device, dtype=cast)
        return self._replace(**changes)

    def select(self, rows: torch.Tensor | Sequence[int]) -> LayoutConditions:
        """The conditions of the given rows (a long index tensor or a list of ints), in that order."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.polygons.device)
        changes = {
            name: (tensor.index_select(0, index) if tensor is not None else None)
            for name, tensor in self.tensor_fields().items()
        }
        return self._replace(**changes)

    @classmethod
    def concatenate(cls, parts: Sequence[LayoutConditions]) -> LayoutConditions:
        """Stack several conditions along the batch; all must have the same N, L, Qf, Qb, Qr and options."""
        if not parts:
            raise ValueError("concatenate needs at least one LayoutConditions")
        first = parts[0]
        for other in parts[1:]:
            for name, tensor in first.tensor_fields().items():
                theirs = getattr(other, name)
                if (tensor is None) != (theirs is None) or (
                    tensor is not None and tensor.shape[1:] != theirs.shape[1:]
                ):
                    raise ValueError(
                        f"cannot concatenate LayoutConditions whose {name} differ beyond the batch axis: "
                        f"{None if tensor is None else tuple(tensor.shape)} vs "
                        f"{None if theirs is None else tuple(theirs.shape)} (pad the instances to the same N)"
                    )
            if (other.latent_size, other.min_cells, other.min_radius_cells) != (
                first.latent_size,
                first.min_cells,
                first.min_radius_cells,
            ):
                raise ValueError(
                    "cannot concatenate LayoutConditions with different latent_size or mask options"
                )
        changes = {
            name: (torch.cat([getattr(p, name) for p in parts]) if tensor is not None else None)
            for name, tensor in first.tensor_fields().items()
        }
        return first._replace(**changes)

    def unguided(self) -> LayoutConditions:
        """A copy whose rows are all unguided (plain cross-attention, no layout terms)."""
        return self._replace(guided=torch.zeros_like(self.guided))

    def concat_for_guidance(self) -> LayoutConditions:
        """The ``[uncond; cond]`` batch of 2B rows for classifier-free guidance.

        Rows 0..B-1 are unguided copies (their tensors are never read), rows B..2B-1 are these conditions.
        This matches ``latents = torch.cat([latents] * 2)`` with
        ``encoder_hidden_states = torch.cat([negative_embeds, prompt_embeds])``, so that
        ``noise_uncond, noise_cond = unet(...).sample.chunk(2)``.
        """
        return LayoutConditions.concatenate([self.unguided(), self])

    # ---------------------------------------------------------------- guided rows

    @property
    def guided_rows(self) -> torch.Tensor:
        """``(G,)`` long indices of the guided rows (computed once: one device sync per conditions)."""
        if self._guided_rows is None:
            self._guided_rows = self.guided.nonzero().flatten()
        return self._guided_rows

    @property
    def all_guided(self) -> bool:
        """True when every row is guided (training, or sampling without guidance)."""
        return self.guided_rows.numel() == self.batch_size

    def guided_subset(self) -> LayoutConditions:
        """The conditions of the guided rows only (cached, so its mask cache is shared across layers)."""
        if self.all_guided:
            return self
        if self._guided_subset is None:
            self._guided_subset = self.select(self.guided_rows)
        return self._guided_subset
