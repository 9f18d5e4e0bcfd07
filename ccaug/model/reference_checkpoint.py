"""Load the authors' published CC-Diff v1 checkpoints (reference §2.9) into a `CCDiffGenerator`.

The authors' training (``train_dior.py``) saves, per checkpoint folder ``checkpoint-<step>/``:

* ``unet/diffusion_pytorch_model.safetensors``: the **whole** UNet state dict, the frozen SD weights and
  the CGM processor modules. Their inference keeps only the keys containing ``.processor``; so does this
  loader. The other keys are ignored (our frozen UNet comes from ``sd_path``); they are never read from
  disk (safetensors reads tensors one by one).
* ``ImageProjModel.pth``: the state dict of the v1 resampler (``SerialSampler``), a torch pickle. It is
  read only with ``torch.load(path, map_location="cpu", weights_only=True)``, which refuses any pickled
  object other than tensors and plain containers. A ``ImageProjModel.safetensors`` conversion of it is
  accepted too (and preferred when both exist).

The key map (`reference_to_ours`, inverse `ours_to_reference`). Our module names were chosen to mirror the
authors' (`ccaug.model.cgm`, `ccaug.model.fusion`, `ccaug.model.resampler`, `ccaug.model.embeddings`), so
past the prefix the map is the identity; it is written as explicit rules so that a future rename shows up
in one place:

    UNet file        ``<block>…attn2.processor.fusion.<rest>``   →  ``unet.<block>…attn2.processor.fusion.<rest>``
                     any key without ``.processor``              →  ignored
    ImageProjModel   ``<rest>``                                  →  ``resampler.<rest>``

An optional leading ``module.`` (a DDP-wrapped save) is dropped in either file. The identity was verified by
listing both key sets against the §2.9 names (``tests/model/test_reference_checkpoint.py`` checks every key
of ours, mapped back, against those patterns): ``fusion.{ea_obj,ea2,la}.{to_q,to_k,to_v,to_out.0}``,
``fusion.{norm_obj,norm2}``, ``fusion.pos_net.linears_position.{0,2,4}``;
``{fg,bg}_resampler.{latents,proj_in,proj_out,norm_out,layers.<i>.0.{norm1,norm2,to_q,to_kv,to_out},
layers.<i>.1.{0,1,3}}``, ``point_net.linears_position.{0,2,4}``, ``coherent_bridge.{linear,attn.{to_q,to_k,
to_v,to_out.0},ff.net.{0.proj,2},norm1,norm2,alpha_attn,alpha_dense}``, ``coherent_queries``. Non-persistent
buffers (the Fourier frequencies, the polygon reordering) are in neither file.

Loading is strict: every tensor of our CGM processors and of our resampler must come from the checkpoint
with its shape, and every processor / resampler tensor of the checkpoint must have a place here; otherwise
a ``ValueError`` lists the first missing, unexpected and reshaped keys (e.g. a ++ checkpoint, whose
processors have ``ea_rel``/``norm_rel`` and whose resampler has a top-level ``latents``; or a generator of
another width). Tensors are cast to the dtype of the parameter they load into (the authors may save fp16).
Only v1 (``variant="ccdiff"``) was published: a ``ccdiff_pp`` generator is refused.

Behavioural differences from the authors' code that the weights do not capture (the weights load
unchanged; parity comparisons must account for them):

* Padding: the authors run one layout per batch and embed every box slot through ``PositionNet``
  unmasked, so a zero-padded slot gets the MLP's output for an all-zero box (not zero) and, in v1's context
  bridge, its ``fg + box`` tokens are visible to the relation queries. Ours gives padded slots an exact-zero
  box token and masks them out of every attention. With no padding (exactly the real instances, as the
  authors' inference does at batch size 1) the two agree.
* The polygon is reordered to ``x1..x4, y1..y4`` inside our ``PositionNet``; the authors do it before the
  call (``obbox[::2] + obbox[1::2]``). Same numbers, so feed ours the plain ``x1 y1 … x4 y4`` polygon.
* The frozen SD weights inside the authors' UNet file are not compared with ours: load the same SD 1.4
  into the ``sd`` backbone for parity.
* Settings that are not the authors' are refused by the strict check, e.g. ``box_null="learned"`` (its
  ``point_net.null_embedding`` is reported missing) or another resampler width or depth (reshaped or
  missing keys). ``cgm_init="zero"`` changes no key and is simply overwritten.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import safetensors.torch
import torch
from safetensors import safe_open

if TYPE_CHECKING:
    from ccaug.model.generator import CCDiffGenerator

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
RESAMPLER_FILES = ("ImageProjModel.safetensors", "ImageProjModel.pth")
PUBLISHED_VARIANT = "ccdiff"
SHOWN = 20  # keys listed per kind of problem

# The key map: (source file, pattern on the authors' key, replacement giving ours). The first matching
# rule applies; a key that no rule matches is ignored (the frozen SD weights of the UNet file).
KEY_RULES: tuple[tuple[str, str, str], ...] = (
    ("unet", r"^(?:module\.)?(.+\.processor\..+)$", r"unet.\1"),
    ("resampler", r"^(?:module\.)?(.+)$", r"resampler.\1"),
)
# Its inverse, for writing a checkpoint in the authors' layout (tests, exports).
INVERSE_RULES: tuple[tuple[str, str, str], ...] = (
    ("unet", r"^unet\.(.+\.processor\..+)$", r"\1"),
    ("resampler", r"^resampler\.(.+)$", r"\1"),
)


def reference_to_ours(key: str, source: str) -> str | None:
    """Our state-dict key for the authors' `key` of file `source` (``"unet"`` or ``"resampler"``), or None
    for a key that inference ignores (a UNet key without ``.processor``)."""
    if source not in ("unet", "resampler"):
        raise ValueError(f'source must be "unet" or "resampler", not {source!r}')
    for rule_source, pattern, replacement in KEY_RULES:
        if rule_source == source and re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def ours_to_reference(key: str) -> tuple[str, str]:
    """``(source file, the authors' key)`` for our state-dict `key` of a CGM processor or the resampler."""
    for source, pattern, replacement in INVERSE_RULES:
        if re.match(pattern, key):
            return source, re.sub(pattern, replacement, key)
    raise ValueError(f"{key} is neither a CGM processor nor a resampler tensor: the authors' files lack it")


@dataclass
class LoadReport:
    """What `load_reference_checkpoint` read.

    Attributes:
        unet_path, resampler_path: the files read.
        loaded: our keys that were loaded (sorted).
        ignored_unet_keys: how many UNet keys were skipped (no ``.processor``: the frozen SD weights).
        dtypes: the checkpoint's tensor dtypes (as strings), before the cast to ours.
    """

    unet_path: Path
    resampler_path: Path
    loaded: list[str] = field(default_factory=list)
    ignored_unet_keys: int = 0
    dtypes: set[str] = field(default_factory=set)


def find_reference_files(checkpoint_dir: str | Path) -> tuple[Path, Path]:
    """The UNet safetensors and the resampler file of the authors' ``checkpoint-<step>`` folder."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is not a folder; give the authors' checkpoint-<step> folder, holding {UNET_FILE} "
            f"and ImageProjModel.pth"
        )
    unet_path = folder / UNET_FILE
    resampler_candidates = [folder / name for name in RESAMPLER_FILES]
    resampler_path = next((path for path in resampler_candidates if path.is_file()), None)
    missing = []
    if not unet_path.is_file():
        missing.append(f"the UNet (with the CGM processors) at {unet_path}")
    if resampler_path is None:
        missing.append(
            "the resampler state dict at " + " or ".join(str(path) for path in reversed(resampler_candidates))
        )
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a CC-Diff v1 checkpoint: it lacks " + "; and ".join(missing)
        )
    assert resampler_path is not None
    return unet_path, resampler_path


def _read_resampler(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return safetensors.torch.load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds pickled objects other than tensors, which are not loaded (weights_only=True): "
            f"only a plain state dict is accepted; convert it to ImageProjModel.safetensors. ({error})"
        ) from error
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    others = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if others:
        raise ValueError(f"{path} is not a plain state dict: entries that are not tensors: {others[:SHOWN]}")
    return state


def _listing(title: str, keys: list[str]) -> str:
    shown = "\n    ".join(keys[:SHOWN])
    more = f"\n    … {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return f"{len(keys)} {title}:\n    {shown}{more}"


def _mapped(keys: Iterable[str], source: str, path: Path) -> tuple[dict[str, str], int]:
    """``{our key: their key}`` for the keys the map keeps, and how many it ignored."""
    mapped: dict[str, str] = {}
    ignored = 0
    for key in keys:
        ours = reference_to_ours(key, source)
        if ours is None:
            ignored += 1
        elif ours in mapped:
            raise ValueError(f"{path}: {mapped[ours]!r} and {key!r} both map to {ours!r}")
        else:
            mapped[ours] = key
    return mapped, ignored


def load_reference_checkpoint(generator: CCDiffGenerator, checkpoint_dir: str | Path) -> LoadReport:
    """Load the authors' v1 checkpoint folder ``checkpoint-<step>/`` into `generator`'s CGM processors and
    resampler, strictly (see the module docstring). The rest of the generator is left as it is.

    Raises:
        FileNotFoundError: a file is missing (the message names the paths expected).
        ValueError: a ``ccdiff_pp`` generator; a resampler pickle with non-tensor objects; missing,
            unexpected or reshaped keys (listed).
    """
    variant = generator.config.variant
    if variant != PUBLISHED_VARIANT:
        raise ValueError(
            f"the authors published v1 ({PUBLISHED_VARIANT!r}) checkpoints only; this generator is "
            f"{variant!r}: build it with variant={PUBLISHED_VARIANT!r} to load them"
        )
    unet_path, resampler_path = find_reference_files(checkpoint_dir)

    mine = generator.state_dict()
    expected = {
        key: tuple(value.shape)
        for key, value in mine.items()
        if key.startswith("resampler.") or (key.startswith("unet.") and ".processor." in key)
    }

    with safe_open(str(unet_path), framework="pt") as file:
        unet_map, ignored = _mapped(file.keys(), "unet", unet_path)
        found = {ours: tuple(file.get_slice(theirs).get_shape()) for ours, theirs in unet_map.items()}
    resampler_state = _read_resampler(resampler_path)
    resampler_map, _ = _mapped(resampler_state, "resampler", resampler_path)
    overlap = set(unet_map) & set(resampler_map)
    if overlap:
        raise ValueError(f"keys in both files: {sorted(overlap)[:SHOWN]}")
    found.update({ours: tuple(resampler_state[theirs].shape) for ours, theirs in resampler_map.items()})

    def source_of(key: str) -> str:
        return (
            f"{unet_map[key]} in {UNET_FILE}"
            if key in unet_map
            else f"{resampler_map[key]} in {resampler_path.name}"
        )

    missing = sorted(set(expected) - set(found))
    unexpected = [f"{source_of(key)} (→ {key})" for key in sorted(set(found) - set(expected))]
    reshaped = [
        f"{key}: {found[key]} there, {expected[key]} here"
        for key in sorted(set(found) & set(expected))
        if found[key] != expected[key]
    ]
    problems = [
        _listing(title, keys)
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", reshaped))
        if keys
    ]
    if problems:
        raise ValueError(
            f"cannot load the checkpoint {Path(checkpoint_dir)} into this {variant!r} generator:\n  "
            + "\n  ".join(problems)
        )

    state: dict[str, torch.Tensor] = {}
    dtypes: set[str] = set()
    with safe_open(str(unet_path), framework="pt") as file:
        for ours, theirs in unet_map.items():
            state[ours] = file.get_tensor(theirs)
    for ours, theirs in resampler_map.items():
        state[ours] = resampler_state[theirs]
    for key, tensor in state.items():
        dtypes.add(str(tensor.dtype).removeprefix("torch."))
        state[key] = tensor.to(dtype=mine[key].dtype)
    result = generator.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # checked above
    return LoadReport(
        unet_path=unet_path,
        resampler_path=resampler_path,
        loaded=sorted(state),
        ignored_unet_keys=ignored,
        dtypes=dtypes,
    )
