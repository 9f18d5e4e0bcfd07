"""`ccaug demo --quick` end to end: the data and layout steps, synthesis with a generator given by --model, and
the detector arms with their report; without a generator, the two arms that need none and a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccaug.cli import app
from ccaug.data import read_dataset
from ccaug.datasets import make_aerial
from ccaug.datasets.aerial import AERIAL_CLASSES
from ccaug.demo import QUICK
from ccaug.layouts.layout import read_layouts
from tests.pipeline.test_synth import save_generator

pytestmark = pytest.mark.filterwarnings("ignore:a text of", "ignore:class '")
runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def assert_report_has_numbers(report_file: Path, arms: list[str]) -> dict:
    report = json.loads(report_file.read_text())
    assert list(report["arms"]) == arms
    for arm in report["arms"].values():
        assert arm["real_images"] == QUICK.real_n and arm["seeds"] == [0]
        assert arm["images_seen"] == QUICK.epochs * QUICK.epoch_images  # the same budget in every arm
        assert 0.0 <= arm["map50"]["mean"] <= 1.0 and 0.0 <= arm["map50_95"]["mean"] <= 1.0
    assert [arm["extra_images"] for arm in report["arms"].values()] == [0] + [QUICK.real_n] * (len(arms) - 1)
    return report


@pytest.fixture
def no_shipped_generator(monkeypatch):
    """This build may ship a generator one day; these tests decide themselves whether there is one."""
    monkeypatch.setattr("ccaug.datasets.aerial.shipped.shipped_generator", lambda: None)


def test_demo_quick_without_a_generator_says_so_and_trains_the_other_two_arms(tmp_path, no_shipped_generator):
    out = tmp_path / "demo"
    result = invoke("demo", "--quick", "--out", out)
    assert result.exit_code == 0, result.output
    assert "No trained generator ships" in result.output and "ccaug demo --model runs/gen" in result.output
    # the data and layout steps
    assert (out / "aerial-grid.png").is_file() and (out / "aerial-tiles-grid.png").is_file()
    assert len(read_dataset(out / "aerial-tiles", "dota")) > 0
    assert len(read_layouts(out / "layouts")[0]) == QUICK.layouts
    assert (out / "layout-compare" / "side_by_side.png").is_file()
    # no synthesis, and the detectors that need no generator, with the report and its table
    assert not (out / "synthetic").exists()
    report = assert_report_has_numbers(out / "detect-baselines" / "report.json", ["real-only", "copy-paste"])
    assert (out / "detect-baselines" / "report.md").is_file()
    assert all((out / "detect-baselines" / file).is_file() for file in report["plots"].values())
    assert "mAP50-95" in result.output and "BENCHMARKS.md" in result.output and "done in" in result.output


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> Path:
    """An untrained 32 px generator that knows every aerial class."""
    aerial = make_aerial(tmp_path_factory.mktemp("aerial"), n=2, size=64, seed=0, workers=1, progress=False).root
    return save_generator(aerial, tmp_path_factory.mktemp("generator"), categories=AERIAL_CLASSES)


def test_demo_quick_with_a_generator_synthesises_and_trains_three_arms_and_a_rerun_reuses_them(tmp_path, generator):
    out = tmp_path / "demo"
    result = invoke("demo", "--quick", "--out", out, "--model", generator)
    assert result.exit_code == 0, result.output
    synthetic = read_dataset(out / "synthetic", "dota")
    assert len(synthetic) == QUICK.synthetic
    assert len(list((out / "synthetic" / "labelTxt").glob("*.txt"))) == QUICK.synthetic
    assert (out / "synthetic" / "preview.png").is_file()
    assert_report_has_numbers(out / "detect" / "report.json", ["real-only", "synthetic", "copy-paste"])
    assert "preview.png" in result.output

    runs = sorted((out / "detect" / "runs").glob("*/seed0/result.json"))
    stamps = [path.stat().st_mtime_ns for path in runs]
    again = invoke("demo", "--quick", "--out", out, "--model", generator)
    assert again.exit_code == 0, again.output
    assert f"{QUICK.synthetic} of {QUICK.synthetic} images done, 0 to render" in again.output
    assert [path.stat().st_mtime_ns for path in runs] == stamps  # no detector trained again


def test_demo_refuses_a_model_that_is_not_a_generator_before_any_work(tmp_path):
    (tmp_path / "not-a-generator").mkdir()
    result = invoke("demo", "--quick", "--out", tmp_path / "demo", "--model", tmp_path / "not-a-generator")
    assert result.exit_code == 2
    assert "not a generator" in result.output
    assert not (tmp_path / "demo").exists()
