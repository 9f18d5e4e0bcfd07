"""The trainability benchmark's committed run records: a finished run comes back on a new machine, but only
into the same experiment, and a synthetic run only onto the same synthetic images."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from ccaug.detect import DetectorSettings, TrainabilityConfig
from ccaug.detect.experiment import RunResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from trainability_results import load_runs, record_folder, restore_runs, save_run  # noqa: E402


def config(real: str, epochs: int = 100) -> TrainabilityConfig:
    return TrainabilityConfig(real=real, synthetic=f"{real}/synth", augment=("copy-paste",),
                              detector=DetectorSettings(epochs=epochs))  # fmt: skip


def finished_run(runs: Path, arm: str, seed: int, map50: float) -> Path:
    result = RunResult(arm=arm, seed=seed, map50=map50, map50_95=map50 / 2, per_class={}, real_images=50,
                       extra_images=50, images_seen=24000, seconds=1.0, curve={"metrics/mAP50(B)": [map50]})  # fmt: skip
    folder = runs / arm / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(asdict(result)))
    return folder


@pytest.fixture
def synthetic(tmp_path) -> Path:
    folder = tmp_path / "synth"
    (folder / "images").mkdir(parents=True)
    (folder / "labelTxt").mkdir()
    (folder / "images" / "0.png").write_bytes(b"an image")
    (folder / "labelTxt" / "0.txt").write_text("0 0 4 0 4 4 0 4 ship 0\n")
    return folder


def test_a_recorded_run_is_restored_on_another_machine_with_its_data_elsewhere(tmp_path, synthetic):
    records = record_folder("main", config("/machine-a/real-50"), tmp_path / "store")
    for arm, map50 in (("real-only", 0.6), ("synthetic", 0.5)):
        assert save_run(finished_run(tmp_path / "a", arm, 0, map50), records, config("/a"), synthetic)

    # the same experiment with its data under another path finds the same records
    assert record_folder("main", config("/machine-b/real-50"), tmp_path / "store") == records
    runs = tmp_path / "b"
    assert restore_runs(records, runs, "real-only", None) == {"restored": 1, "other synthetic images": 0}
    assert restore_runs(records, runs, "synthetic", synthetic) == {"restored": 1, "other synthetic images": 0}
    restored = json.loads((runs / "synthetic" / "seed0" / "result.json").read_text())
    assert restored["map50"] == 0.5 and restored["curve"] == {"metrics/mAP50(B)": [0.5]}
    # a run already in the folder is neither overwritten nor recorded twice
    assert restore_runs(records, runs, "real-only", None)["restored"] == 0
    assert not save_run(runs / "real-only" / "seed0", records, config("/b"), synthetic)


def test_another_budget_is_another_experiment(tmp_path):
    assert record_folder("main", config("/r", epochs=100), tmp_path) != record_folder("main", config("/r", epochs=30), tmp_path)


def test_synthetic_runs_on_other_images_are_not_restored_and_not_mixed_into_a_table(tmp_path, synthetic):
    records = tmp_path / "store" / "main"
    save_run(finished_run(tmp_path / "a", "synthetic", 0, 0.5), records, config("/a"), synthetic)
    save_run(finished_run(tmp_path / "a", "synthetic", 1, 0.4), records, config("/a"), synthetic)
    (synthetic / "images" / "0.png").write_bytes(b"another generator's image")
    save_run(finished_run(tmp_path / "c", "synthetic", 2, 0.9), records, config("/a"), synthetic)

    counts = restore_runs(records, tmp_path / "b", "synthetic", synthetic)
    assert counts == {"restored": 1, "other synthetic images": 2}
    assert [run.seed for run in load_runs(records, "synthetic")] == [0, 1]  # the rendering most seeds used


def test_the_recorded_generator_is_half_the_size_and_loads_into_the_fp32_model(tmp_path):
    import torch
    from trainability_results import record_generator

    from ccaug.model.generator import CCDiffGenerator
    from ccaug.model.generator_config import GeneratorConfig

    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=32, categories=("plane", "ship"), unet_channels=(32, 32, 64), text_dim=32, text_layers=1,
        caption_length=40, image_dim=32, reference_size=32, background_size=32, resampler_dim=32,
        resampler_depth=1, resampler_heads=2, cgm_heads=4,
    )  # fmt: skip
    run = tmp_path / "gen-real-50"
    trained = CCDiffGenerator(config)
    trained.save_pretrained(run / "checkpoint")
    (run / "run.json").write_text('{"training": {"guidance_scale": 3.0}}')
    (run / "metrics.jsonl").write_text('{"step": 50, "loss": 1.0}\n')

    checkpoint = record_generator(run, tmp_path / "store" / "generator-real-50")

    original = (run / "checkpoint" / "model.safetensors").stat().st_size
    assert (checkpoint / "model.safetensors").stat().st_size < 0.6 * original
    assert (checkpoint.parent / "metrics.jsonl").read_text() == '{"step": 50, "loss": 1.0}\n'
    loaded = CCDiffGenerator.from_pretrained(checkpoint)
    for key, value in trained.checkpoint_state().items():
        restored = loaded.state_dict()[key]
        assert restored.dtype == value.dtype
        torch.testing.assert_close(restored, value.half().to(value.dtype), rtol=0, atol=0)


def test_recording_an_unfinished_generator_run_names_the_missing_file(tmp_path):
    from trainability_results import record_generator

    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="config.json"):
        record_generator(tmp_path / "run", tmp_path / "store")
