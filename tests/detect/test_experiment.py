"""The trainability experiment end to end on a tiny set: arms, budgets, the report's numbers, resume, bad input."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ccaug.data.formats import read_dataset, write_dataset
from ccaug.datasets.aerial import make_aerial
from ccaug.detect import DetectorSettings, TrainabilityConfig, run_trainability

TINY = DetectorSettings(epochs=1, imgsz=128, batch=4, workers=0)


@pytest.fixture(scope="module")
def aerial(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real") / "aerial"
    make_aerial(folder, n=16, size=128, seed=0, val_fraction=0.25, progress=False)
    return folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Stands in for a ccaug synth folder: another rendering, every image in one split."""
    folder = tmp_path_factory.mktemp("synthetic")
    make_aerial(folder / "rendered", n=10, size=128, seed=1, val_fraction=0.0, progress=False)
    return folder / "rendered"


@pytest.fixture(scope="module")
def experiment(aerial, synthetic, tmp_path_factory) -> tuple[TrainabilityConfig, Path, dict]:
    config = TrainabilityConfig(
        real=str(aerial), real_format="dota", synthetic=str(synthetic), synthetic_format="dota", mix=0.5,
        real_n=4, augment=("copy-paste",), seeds=1, detector=TINY,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("experiment") / "exp"
    report = run_trainability(config, out, log=lambda line: None)
    return config, out, report


def test_every_arm_has_the_asked_images_and_the_same_budget(experiment):
    _, out, report = experiment
    arms = report["arms"]
    assert list(arms) == ["real-only", "synthetic", "copy-paste"]
    assert [(arm["real_images"], arm["extra_images"]) for arm in arms.values()] == [(4, 0), (4, 4), (4, 4)]
    assert {arm["images_seen"] for arm in arms.values()} == {8}
    listings = {name: (out / "data" / "lists" / f"{name}-seed0.txt").read_text().split() for name in arms}
    assert {len(images) for images in listings.values()} == {8}
    assert set(Counter(listings["real-only"]).values()) == {2}  # 4 real images, each twice per epoch
    real = {image for image in listings["real-only"]}
    assert real <= set(listings["synthetic"]) and real <= set(listings["copy-paste"])
    assert sum("/synthetic/" in image for image in listings["synthetic"]) == 4
    assert sum("/copy-paste/" in image for image in listings["copy-paste"]) == 4


def test_validation_uses_the_real_val_split_only(experiment, aerial):
    _, out, _ = experiment
    data_yaml = yaml.safe_load((out / "data" / "lists" / "synthetic-seed0.yaml").read_text())
    assert Path(data_yaml["val"]) == (out / "data" / "real" / "images" / "val").resolve()
    real_val = read_dataset(aerial, "dota").split("val")
    assert len(list(Path(data_yaml["val"]).iterdir())) == len(real_val)


def test_the_report_numbers_are_ultralytics_validation_of_the_final_weights(experiment):
    config, out, report = experiment
    from ultralytics import YOLO

    for arm in report["arms"]:
        run = out / "runs" / arm / "seed0"
        metrics = YOLO(str(run / "weights" / "last.pt")).val(
            data=str(out / "data" / "lists" / f"{arm}-seed0.yaml"), imgsz=128, batch=4, workers=0, plots=False,
            device="cpu", verbose=False, project=str(run), name="check", exist_ok=True,
        )  # fmt: skip
        assert report["arms"][arm]["map50"]["mean"] == pytest.approx(float(metrics.box.map50), abs=1e-9)
        assert report["arms"][arm]["map50_95"]["mean"] == pytest.approx(float(metrics.box.map), abs=1e-9)


def test_the_report_is_written_with_plots_and_config(experiment):
    _, out, report = experiment
    for name in ("report.md", "report.json", "scores.png", "curves.png", "per_class.png", "experiment.json"):
        assert (out / name).is_file(), name
    text = (out / "report.md").read_text()
    assert "| real-only | 4 + 0 | 8 |" in text
    assert "one seed: no spread" in text  # one seed cannot show a gain
    saved = json.loads((out / "report.json").read_text())
    assert saved["config"]["detector"]["model"] == "yolov8n.yaml"
    assert "gain_map50" in saved["arms"]["synthetic"] and "gain_map50" not in saved["arms"]["real-only"]


def test_ultralytics_settings_live_in_the_run_folder_or_the_test_folder(experiment):
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    assert not str(USER_CONFIG_DIR).startswith(str(Path.home()))
    assert SETTINGS["sync"] is False
    assert (Path(USER_CONFIG_DIR) / "Arial.ttf").is_file()


def test_a_rerun_resumes_without_training_again(experiment):
    config, out, report = experiment
    weights = out / "runs" / "synthetic" / "seed0" / "weights" / "last.pt"
    stamp = weights.stat().st_mtime_ns
    again = run_trainability(config, out, log=lambda line: None)
    assert weights.stat().st_mtime_ns == stamp
    assert again["arms"]["synthetic"]["map50"] == report["arms"]["synthetic"]["map50"]


def test_more_seeds_extend_the_experiment_and_fewer_report_the_first(experiment, tmp_path):
    config, out, report = experiment

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    more = TrainabilityConfig(**{**config.__dict__, "seeds": 2})
    extended = run_trainability(more, copy, log=lambda line: None)
    assert extended["arms"]["copy-paste"]["seeds"] == [0, 1]
    assert extended["arms"]["copy-paste"]["map50"]["values"][0] == report["arms"]["copy-paste"]["map50"]["mean"]
    assert json.loads((copy / "experiment.json").read_text())["seeds"] == 2
    fewer = run_trainability(config, copy, log=lambda line: None)  # back to one seed: the first one's report
    assert fewer["arms"]["copy-paste"]["seeds"] == [0]


def test_runs_split_across_calls_give_the_same_report(experiment, tmp_path):
    """What several processes sharing one GPU do: prepare once, each runs its own (arm, seed), then report."""
    config, _, report = experiment
    out = tmp_path / "split"
    assert run_trainability(config, out, log=lambda line: None, only=()) == {}
    assert (out / "data" / "real" / "data.yaml").is_file() and not (out / "runs").exists()
    assert run_trainability(config, out, log=lambda line: None, only={("synthetic", 0)}) == {}
    assert [path.parent.parent.name for path in (out / "runs").glob("*/seed0/result.json")] == ["synthetic"]
    assert not (out / "report.json").exists()
    joined = run_trainability(config, out, log=lambda line: None)
    for arm in ("real-only", "synthetic", "copy-paste"):
        assert joined["arms"][arm]["map50"] == report["arms"][arm]["map50"]


def test_a_folder_of_another_experiment_is_refused(experiment):
    config, out, _ = experiment
    other = TrainabilityConfig(**{**config.__dict__, "mix": 0.25})
    with pytest.raises(FileExistsError, match="differs in: mix"):
        run_trainability(other, out, log=lambda line: None)


def test_no_network_is_touched_while_training(aerial, tmp_path, no_network):
    config = TrainabilityConfig(real=str(aerial), real_format="dota", real_n=3, seeds=1,
                                detector=DetectorSettings(task="obb", epochs=1, imgsz=128, batch=4, workers=0))  # fmt: skip
    report = run_trainability(config, tmp_path / "obb", log=lambda line: None)
    assert no_network == []
    assert 0.0 <= report["arms"]["real-only"]["map50"]["mean"] <= 1.0
    label = next((tmp_path / "obb" / "data" / "real" / "labels" / "train").iterdir()).read_text().split("\n")[0]
    assert len(label.split()) == 9  # YOLO-OBB: class and four corners


# ---------------------------------------------------------------------------------------------------------
# bad input: refused before any training starts
def _refused(config: TrainabilityConfig, out: Path, match: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        run_trainability(config, out, log=lambda line: None)
    assert not (out / "runs").exists()


def test_a_synthetic_set_with_other_classes_is_refused(aerial, tmp_path):
    dataset = read_dataset(aerial, "dota").split("val")
    renamed = dataset.instances.assign(category=dataset.instances["category"].astype(str).replace("ship", "boat"))
    other = dataset.replace(instances=renamed, categories=[*dataset.categories, "boat"])
    write_dataset(other, tmp_path / "other", "dota")
    config = TrainabilityConfig(real=str(aerial), real_format="dota", synthetic=str(tmp_path / "other"),
                                synthetic_format="dota", seeds=1, detector=TINY)  # fmt: skip
    _refused(config, tmp_path / "exp", "boat")


def test_a_real_set_without_val_is_refused(aerial, tmp_path):
    train_only = read_dataset(aerial, "dota").split("train")
    write_dataset(train_only, tmp_path / "train-only", "dota")
    config = TrainabilityConfig(real=str(tmp_path / "train-only"), real_format="dota", seeds=1, detector=TINY)
    _refused(config, tmp_path / "exp", "no 'val' images")


def test_weights_that_are_not_a_local_file_are_refused(aerial, tmp_path):
    config = TrainabilityConfig(real=str(aerial), real_format="dota", seeds=1,
                                detector=DetectorSettings(model="yolov8n.pt"))  # fmt: skip
    _refused(config, tmp_path / "exp", "must be a local file")


@pytest.mark.parametrize("mix", [1.0, -0.5, 2.0])
def test_a_mix_outside_zero_to_one_is_refused(aerial, mix):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        TrainabilityConfig(real=str(aerial), synthetic="x", mix=mix)


def test_too_few_synthetic_images_for_the_mix_is_refused(aerial, synthetic, tmp_path):
    config = TrainabilityConfig(real=str(aerial), real_format="dota", synthetic=str(synthetic),
                                synthetic_format="dota", mix=0.9, seeds=1, detector=TINY)  # fmt: skip
    _refused(config, tmp_path / "exp", "needs .* synthetic images")
