"""The command line as a user types it: help that teaches, the data commands end to end, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from ccaug.cli import app
from ccaug.data import read_dataset
from ccaug.layouts.layout import read_layouts

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def aerial(tmp_path_factory):
    out = tmp_path_factory.mktemp("aerial")
    result = invoke("data", "make-aerial", "--out", out, "--n", 8, "--seed", 3, "--workers", 1)
    assert result.exit_code == 0, result.output
    return out


def test_python_dash_m_ccaug_is_the_same_command_line_for_module_launchers():
    """`accelerate launch -m ccaug ...` and `torchrun -m ccaug ...` start the package as a module."""
    result = subprocess.run([sys.executable, "-m", "ccaug", "data", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Usage: ccaug data" in result.stdout and "make-aerial" in result.stdout


@pytest.mark.parametrize("command", ["make-aerial", "import", "tile", "stats", "show"])
def test_every_data_command_teaches_by_example(command):
    result = invoke("data", command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.output and f"ccaug data {command}" in result.output


def test_make_aerial_writes_a_dota_dataset_with_train_and_val(aerial):
    dataset = read_dataset(aerial, "dota")
    assert len(dataset) == 8
    assert set(dataset.splits) == {"train", "val"}
    assert len(dataset.instances) > 0


def test_import_converts_and_registers_the_dataset_by_name(aerial, tmp_path, monkeypatch):
    monkeypatch.setenv("CCAUG_HOME", str(tmp_path / "home"))
    result = invoke("data", "import", aerial, "--format", "dota", "--to", "coco", "--out", tmp_path / "coco", "--name", "air")
    assert result.exit_code == 0, result.output
    registry = json.loads((tmp_path / "home" / "datasets.json").read_text())
    assert registry["air"] == {"path": str((tmp_path / "coco").resolve()), "format": "coco"}
    original, converted = read_dataset(aerial, "dota"), read_dataset(tmp_path / "coco", "coco")
    assert converted.categories == original.categories
    assert len(converted.instances) == len(original.instances)


def test_import_of_a_bad_label_line_names_file_and_line_and_exits_2(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labelTxt").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labelTxt" / "a.txt").write_text("1 1 10 1 10 10 1 10 plane 0\n1 1 10 1 oops 10 1 10 plane 0\n")
    result = invoke("data", "import", tmp_path, "--format", "dota", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "a.txt:2" in result.output
    assert not (tmp_path / "out" / "labelTxt").exists()


def test_import_skip_invalid_reports_and_keeps_the_good_lines(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labelTxt").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labelTxt" / "a.txt").write_text("1 1 10 1 10 10 1 10 plane 0\n1 1 10 1 oops 10 1 10 plane 0\n")
    result = invoke("data", "import", tmp_path, "--format", "dota", "--out", tmp_path / "out", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "a.txt:2" in result.output
    assert len(read_dataset(tmp_path / "out", "dota").instances) == 1


def test_stats_prints_a_table_and_writes_plots(aerial, tmp_path):
    result = invoke("data", "stats", aerial, "--format", "dota", "--out", tmp_path / "stats")
    assert result.exit_code == 0, result.output
    assert "small-vehicle" in result.output
    assert sorted(p.suffix for p in (tmp_path / "stats").iterdir()).count(".png") >= 3


def test_show_writes_a_png_grid(aerial, tmp_path):
    result = invoke("data", "show", aerial, "--format", "dota", "--out", tmp_path / "grid.png", "--n", 4)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.width >= 2 * 256


def test_tile_cuts_scenes_into_tiles_of_the_requested_size(aerial, tmp_path):
    result = invoke("data", "tile", aerial, "--format", "dota", "--out", tmp_path / "tiles", "--size", 128, "--overlap", 16, "--workers", 1)
    assert result.exit_code == 0, result.output
    tiles = read_dataset(tmp_path / "tiles", "dota")
    assert len(tiles) > len(read_dataset(aerial, "dota"))
    assert set(tiles.images["width"]) == {128} and set(tiles.images["height"]) == {128}


def test_unknown_source_folder_is_a_clear_error(tmp_path):
    result = invoke("data", "stats", tmp_path / "nope", "--format", "dota")
    assert result.exit_code == 2
    assert "nope" in result.output


def test_tile_takes_its_settings_from_a_recipe_and_options_override_it(aerial, tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text("tiling:\n  size: 128\n  overlap: 100\n  keep_empty: true\n")
    result = invoke("data", "tile", aerial, "--format", "dota", "--out", tmp_path / "tiles", "--recipe", recipe, "--overlap", 0, "--workers", 1)
    assert result.exit_code == 0, result.output
    tiles = read_dataset(tmp_path / "tiles", "dota")
    # 256 px images, 128 px tiles without overlap (the option beat the recipe's 100), empty tiles kept: 4 each
    assert len(tiles) == 4 * len(read_dataset(aerial, "dota"))


def test_a_bad_recipe_is_a_clear_error(aerial, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("tiling:\n  sise: 128\n")
    result = invoke("data", "tile", aerial, "--format", "dota", "--out", tmp_path / "tiles", "--recipe", recipe)
    assert result.exit_code == 2
    assert "unknown key 'tiling.sise'" in result.output


@pytest.fixture(scope="module")
def layout_model(aerial, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "layouts.json"
    result = invoke("layout", "fit", aerial / "train", "--format", "dota", "--out", model, "--min-instances", 5)
    assert result.exit_code == 0, result.output
    return model


def test_layout_sample_writes_layouts_with_captions_that_read_back(aerial, layout_model, tmp_path):
    result = invoke("layout", "sample", "--model", layout_model, "--n", 6, "--seed", 1, "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    layouts, categories = read_layouts(tmp_path / "s")
    assert len(layouts) == 6 and categories == read_dataset(aerial, "dota").categories
    lines = (tmp_path / "s" / "captions.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["caption"].startswith("This is an aerial image") for line in lines)
    assert len(list((tmp_path / "s" / "labelTxt").iterdir())) == 6
    assert invoke("data", "show", tmp_path / "s", "--out", tmp_path / "s.png", "--layout-only").exit_code == 0


def test_layout_sample_is_reproducible_from_its_seed(layout_model, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        invoke("layout", "sample", "--model", layout_model, "--n", 4, "--seed", seed, "--out", tmp_path / name)
    text = {name: (tmp_path / name / "annotations.json").read_text() for name in "abc"}
    assert text["a"] == text["b"] and text["a"] != text["c"]


def test_layout_perturb_takes_a_recipe(aerial, tmp_path):
    result = invoke("layout", "perturb", aerial / "train", "--format", "dota", "--n", 5, "--out", tmp_path / "p", "--recipe", "aerial-layouts")
    assert result.exit_code == 0, result.output
    assert len(read_layouts(tmp_path / "p")[0]) == 5


def test_a_corrupted_layout_model_is_refused_with_its_path(tmp_path):
    (tmp_path / "m.json").write_text('{"format": "ccaug-layout-model", "vers')
    result = invoke("layout", "sample", "--model", tmp_path / "m.json", "--n", 2, "--out", tmp_path / "s")
    assert result.exit_code == 2
    assert "m.json" in result.output


def test_layout_compare_writes_the_table_histograms_and_a_side_by_side_picture(aerial, layout_model, tmp_path):
    invoke("layout", "sample", "--model", layout_model, "--n", 6, "--seed", 1, "--out", tmp_path / "s")
    result = invoke("layout", "compare", tmp_path / "s", aerial / "val", "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "small-vehicle" in result.output
    written = {path.name for path in (tmp_path / "cmp").iterdir()}
    assert {"comparison.csv", "comparison.md", "size.png", "orientation.png", "side_by_side.png"} <= written


# ---------------------------------------------------------------------------------------------------------
# the detector commands
@pytest.mark.parametrize("command", ["train-detector", "eval"])
def test_detector_commands_teach_by_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.output and f"ccaug {command} --real" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--mix", "1.0", "--synthetic", "x"], "--mix must be in [0, 1)"),
        (["--model", "yolov8n.pt"], "must be a local file"),
        (["--augment", "mixup"], "known augmentations are copy-paste"),
        (["--real-n", "999"], "--real-n must be between 1 and"),
    ],
)
def test_train_detector_refuses_bad_input_before_training(aerial, tmp_path, arguments, message):
    out = tmp_path / "exp"
    result = invoke("train-detector", "--real", aerial, "--out", out, "--epochs", 1, *arguments)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (out / "runs").exists()


def test_train_detector_runs_end_to_end_and_prints_the_report(aerial, tmp_path):
    out = tmp_path / "exp"
    result = invoke(
        "train-detector", "--real", aerial, "--out", out, "--real-n", 2, "--augment", "copy-paste",
        "--seeds", 1, "--epochs", 1, "--imgsz", 64, "--batch", 2, "--workers", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| copy-paste | 2 + 2 | 4 |" in result.output
    assert (out / "report.md").is_file()


def test_eval_refuses_unknown_metrics(aerial, tmp_path):
    result = invoke("eval", "--real", aerial, "--synthetic", aerial, "--out", tmp_path / "e", "--metrics", "fid")
    assert result.exit_code == 2
    assert "available metrics are: yoloscore" in result.output
