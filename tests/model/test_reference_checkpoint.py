"""Loading the authors' v1 checkpoint layout (reference §2.9): the key map, strictness and the file rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import safetensors.torch
import torch

from ccaug.model.reference_checkpoint import (
    load_reference_checkpoint,
    ours_to_reference,
    reference_to_ours,
)
from tests.model.test_generator import make_generator

# §2.9's key names, as patterns on the authors' keys.
REFERENCE_PATTERNS = {
    "unet": [
        r".+\.attn2\.processor\.fusion\.(ea_obj|ea2|la)\.(to_q|to_k|to_v)\.weight",
        r".+\.attn2\.processor\.fusion\.(ea_obj|ea2|la)\.to_out\.0\.(weight|bias)",
        r".+\.attn2\.processor\.fusion\.(norm_obj|norm2)\.(weight|bias)",
        r".+\.attn2\.processor\.fusion\.pos_net\.linears_position\.[024]\.(weight|bias)",
    ],
    "resampler": [
        r"(fg|bg)_resampler\.latents",
        r"(fg|bg)_resampler\.(proj_in|proj_out|norm_out)\.(weight|bias)",
        r"(fg|bg)_resampler\.layers\.\d+\.0\.(norm1|norm2)\.(weight|bias)",
        r"(fg|bg)_resampler\.layers\.\d+\.0\.(to_q|to_kv|to_out)\.weight",
        r"(fg|bg)_resampler\.layers\.\d+\.1\.0\.(weight|bias)",
        r"(fg|bg)_resampler\.layers\.\d+\.1\.[13]\.weight",
        r"point_net\.linears_position\.[024]\.(weight|bias)",
        r"coherent_bridge\.(linear|attn\.to_out\.0|ff\.net\.0\.proj|ff\.net\.2|norm1|norm2)\.(weight|bias)",
        r"coherent_bridge\.attn\.(to_q|to_k|to_v)\.weight",
        r"coherent_bridge\.(alpha_attn|alpha_dense)",
        r"coherent_queries",
    ],
}


def reference_files(generator, folder: Path, extra_unet: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """Write `generator`'s CGM and resampler in the authors' layout under `folder`; returns what was written."""
    files: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "resampler": {}}
    for key, value in generator.state_dict().items():
        if key.startswith("resampler.") or ".processor." in key:
            source, theirs = ours_to_reference(key)
            files[source][theirs] = value.detach().clone().contiguous()
    if extra_unet:  # the frozen SD weights of the full UNet file: ignored
        files["unet"]["conv_in.weight"] = torch.randn(4, 4, 3, 3)
        files["unet"]["mid_block.attentions.0.transformer_blocks.0.attn2.to_q.weight"] = torch.randn(8, 8)
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(files["unet"], str(folder / "unet/diffusion_pytorch_model.safetensors"))
    torch.save(files["resampler"], folder / "ImageProjModel.pth")
    return files


def assert_cgm_and_resampler_equal(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith("resampler.") or ".processor." in k]
    assert keys
    for key in keys:
        assert torch.equal(sa[key], sb[key]), key


def test_every_key_of_ours_maps_to_a_reference_name_and_back():
    generator = make_generator()
    seen = {"unet": 0, "resampler": 0}
    for key in generator.state_dict():
        if not (key.startswith("resampler.") or ".processor." in key):
            continue
        source, theirs = ours_to_reference(key)
        assert any(re.fullmatch(p, theirs) for p in REFERENCE_PATTERNS[source]), theirs
        assert reference_to_ours(theirs, source) == key
        assert reference_to_ours("module." + theirs, source) == key  # a DDP-wrapped save
        seen[source] += 1
    assert seen["unet"] and seen["resampler"]
    assert reference_to_ours("conv_in.weight", "unet") is None
    with pytest.raises(ValueError, match="neither"):
        ours_to_reference("unet.conv_in.weight")


def test_a_reference_checkpoint_loads_every_tensor(tmp_path):
    source, target = make_generator(seed=0), make_generator(seed=1)
    files = reference_files(source, tmp_path / "checkpoint-100")
    frozen_before = target.unet.conv_in.weight.clone()
    report = load_reference_checkpoint(target, tmp_path / "checkpoint-100")
    assert_cgm_and_resampler_equal(source, target)
    assert torch.equal(target.unet.conv_in.weight, frozen_before)  # non-processor keys are ignored
    assert report.ignored_unet_keys == 2
    assert len(report.loaded) == len(files["unet"]) - 2 + len(files["resampler"])
    assert report.resampler_path.name == "ImageProjModel.pth"


def test_half_precision_safetensors_resampler_is_accepted_and_cast(tmp_path):
    source, target = make_generator(seed=0), make_generator(seed=1)
    folder = tmp_path / "ckpt"
    files = reference_files(source, folder)
    (folder / "ImageProjModel.pth").unlink()
    half = {k: v.half() for k, v in files["resampler"].items()}
    safetensors.torch.save_file(half, str(folder / "ImageProjModel.safetensors"))
    report = load_reference_checkpoint(target, folder)
    assert "float16" in report.dtypes
    weight = target.resampler.coherent_queries
    assert weight.dtype == torch.float32
    assert torch.equal(weight, files["resampler"]["coherent_queries"].half().float())


def test_a_shape_mismatch_and_a_missing_key_are_named(tmp_path):
    source, target = make_generator(seed=0), make_generator(seed=1)
    folder = tmp_path / "ckpt"
    files = reference_files(source, folder)
    state = dict(files["resampler"])
    del state["coherent_bridge.alpha_attn"]
    state["point_net.linears_position.4.weight"] = torch.zeros(7, 128)
    torch.save(state, folder / "ImageProjModel.pth")
    before = target.resampler.fg_resampler.latents.clone()
    with pytest.raises(ValueError) as error:
        load_reference_checkpoint(target, folder)
    message = str(error.value)
    assert "missing" in message and "resampler.coherent_bridge.alpha_attn" in message
    assert "shape mismatch" in message and "resampler.point_net.linears_position.4.weight" in message
    assert torch.equal(target.resampler.fg_resampler.latents, before)  # nothing loaded


def test_another_width_and_plus_plus_processor_keys_are_refused(tmp_path):
    folder = tmp_path / "ckpt"
    files = reference_files(make_generator(seed=0, resampler_dim=48), folder)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_reference_checkpoint(make_generator(seed=1), folder)
    # ++ processors have a relation attention that v1 lacks
    unet = dict(files["unet"])
    unet["mid_block.attentions.0.transformer_blocks.0.attn2.processor.fusion.ea_rel.to_q.weight"] = (
        torch.zeros(2)
    )
    safetensors.torch.save_file(unet, str(folder / "unet/diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected:\n.*fusion\.ea_rel\.to_q\.weight"):
        load_reference_checkpoint(make_generator(seed=0, resampler_dim=48), folder)


def test_a_plus_plus_generator_is_refused(tmp_path):
    reference_files(make_generator(seed=0), tmp_path)
    with pytest.raises(ValueError, match="v1"):
        load_reference_checkpoint(make_generator(variant="ccdiff_pp"), tmp_path)


def test_missing_files_name_the_expected_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_reference_checkpoint(make_generator(), tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as error:
        load_reference_checkpoint(make_generator(), tmp_path)
    message = str(error.value)
    assert str(tmp_path / "unet/diffusion_pytorch_model.safetensors") in message
    assert str(tmp_path / "ImageProjModel.pth") in message
    assert str(tmp_path / "ImageProjModel.safetensors") in message


class NotATensor:
    pass


def test_a_pickle_with_other_objects_is_refused(tmp_path):
    generator = make_generator()
    files = reference_files(generator, tmp_path)
    torch.save({**files["resampler"], "extra": NotATensor()}, tmp_path / "ImageProjModel.pth")
    with pytest.raises(ValueError, match="weights_only"):
        load_reference_checkpoint(generator, tmp_path)
    torch.save({**files["resampler"], "step": 3}, tmp_path / "ImageProjModel.pth")
    with pytest.raises(ValueError, match="not tensors.*step"):
        load_reference_checkpoint(generator, tmp_path)
