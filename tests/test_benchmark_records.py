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
