"""The generator shipped for ``aerial``: synth falls back to it with its own sampling defaults, the script that
trains and exports it writes a loadable folder and its curve, and the real shipped checkpoint (when there is
one) renders images that match their layouts.

The embedded data set is stood in for by 6 images of 64 px, rendered into each test's own workspace
(``$CCAUG_HOME/datasets/aerial``), so ``synthesize("aerial", ...)`` runs its real code path without rendering
the 300-image set.
"""

from __future__ import annotations

import filecmp
import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ccaug.data import read_dataset
from ccaug.datasets import make_aerial
from ccaug.datasets.aerial import shipped as shipped_module
from ccaug.datasets.aerial.shipped import (
    SHIPPED_ID,
    SamplingDefaults,
    read_sampling_defaults,
    shipped_generator,
    write_sampling_defaults,
)
from ccaug.model.generator import CCDiffGenerator
from ccaug.pipeline.synth import find_generator, synthesize
from ccaug.pipeline.synth_plan import SynthSettings
from ccaug.recipes import Recipe
from ccaug.workspace import register_generator
from tests.pipeline.test_synth import FAST, save_generator
from tests.pipeline.test_train import TINY_TRAINING, tiny_generator

pytestmark = pytest.mark.filterwarnings("ignore:a text of", "ignore:class '")

REPO = Path(__file__).resolve().parents[2]


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("embedded")
    make_aerial(root, n=6, size=64, seed=0, workers=1, progress=False)
    return root


def workspace_with_embedded_set(home: Path, embedded: Path) -> Path:
    """A workspace whose embedded ``aerial`` set is already rendered (the tiny one)."""
    shutil.copytree(embedded, home / "datasets" / "aerial")
    return home


@pytest.fixture
def home(embedded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace: no generator registered."""
    monkeypatch.setenv("CCAUG_HOME", str(tmp_path / "home"))
    return workspace_with_embedded_set(tmp_path / "home", embedded)


@pytest.fixture
def shipped(embedded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny generator in place of the package's, previewed at guidance 2.5 (not synth's fallback 7.5)."""
    folder = save_generator(embedded, tmp_path / "shipped")
    write_sampling_defaults(folder, SamplingDefaults(guidance_scale=2.5, scheduler="dpm++", steps=20))
    monkeypatch.setattr(shipped_module, "SHIPPED_GENERATOR", folder)
    return folder


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def weights_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------
# synth's fallback to the shipped generator


def test_synth_of_aerial_without_a_model_renders_with_the_shipped_generator_at_its_guidance(
    home: Path, shipped: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = synthesize("aerial", 3, out, settings=FAST, progress=False, log=quiet)
    assert result.complete
    lines = manifest(out)
    assert {line["model"]["id"] for line in lines} == {SHIPPED_ID}
    assert {line["model"]["sha256"] for line in lines} == {weights_hash(shipped)}
    assert {line["sampler"]["guidance_scale"] for line in lines} == {2.5}  # sampling.json, not 7.5
    assert json.loads((out / "synth.json").read_text())["model"]["id"] == SHIPPED_ID


def test_a_registered_generator_wins_over_the_shipped_one(
    home: Path, shipped: Path, embedded: Path, tmp_path: Path
) -> None:
    mine = save_generator(embedded, tmp_path / "mine")  # no sampling.json and no run around it
    register_generator(home / "datasets" / "aerial", mine)
    out = tmp_path / "out"
    synthesize("aerial", 2, out, settings=FAST, progress=False, log=quiet)
    lines = manifest(out)
    assert {Path(line["model"]["id"]) for line in lines} == {mine.resolve()}
    assert {line["sampler"]["guidance_scale"] for line in lines} == {7.5}


def test_another_source_without_a_generator_is_refused_even_with_one_shipped(
    home: Path, shipped: Path, embedded: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="no generator is registered for the source"):
        synthesize(embedded, 2, tmp_path / "out", settings=FAST, progress=False, log=quiet)
    assert not (tmp_path / "out").exists()


def test_without_a_shipped_generator_aerial_asks_for_one(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shipped_module, "SHIPPED_GENERATOR", tmp_path / "nothing-shipped")
    assert shipped_generator() is None
    with pytest.raises(FileNotFoundError, match="ccaug train-generator"):
        synthesize("aerial", 2, tmp_path / "out", settings=FAST, progress=False, log=quiet)


def test_a_broken_sampling_file_is_an_error_not_a_silent_default(shipped: Path, embedded: Path) -> None:
    (shipped / "sampling.json").write_text("{not json")
    with pytest.raises(ValueError, match="sampling.json"):
        find_generator(shipped, embedded, "aerial")


# --------------------------------------------------------------------------------------------------------
# benchmarks/train_default_generator.py on a tiny real run


@pytest.fixture(scope="module")
def script():
    path = REPO / "benchmarks" / "train_default_generator.py"
    spec = importlib.util.spec_from_file_location("train_default_generator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(script, embedded: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recipe]:
    """The script's training stage, 3 steps of a 32 px generator on the stand-in embedded set."""
    root = tmp_path_factory.mktemp("trained")
    recipe = Recipe(
        name="tiny-test", sections={"generator": tiny_generator(embedded), "training": TINY_TRAINING}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CCAUG_HOME", str(workspace_with_embedded_set(root / "home", embedded)))
        script.train_stage(root / "run", recipe, TINY_TRAINING, 3, command="python train-it --please")
    return root / "run", recipe


def test_the_train_stage_records_its_call_and_is_skipped_once_done(script, trained, capsys) -> None:
    run, recipe = trained
    assert script.checkpoint_step(run) == 3
    before = (run / "metrics.jsonl").read_text()
    script.train_stage(run, recipe, TINY_TRAINING, 3, command="again")
    assert "done already" in capsys.readouterr().out
    assert (run / "metrics.jsonl").read_text() == before
    calls = script.read_stages(run)["train"]
    assert (
        len(calls) == 1 and calls[0]["command"] == "python train-it --please" and calls[0]["steps"] == [0, 3]
    )


def test_export_writes_a_loadable_generator_with_its_sampling_defaults_and_provenance(
    script, trained, tmp_path: Path
) -> None:
    run, recipe = trained
    ship_to = tmp_path / "package" / "generator"
    script.export_generator(run, ship_to, guidance_scale=4.0, scheduler="dpm++", steps=20, recipe=recipe.name)
    assert sorted(p.name for p in ship_to.iterdir()) == ["config.json", "model.safetensors", "sampling.json"]
    assert not list(ship_to.parent.glob("*.tmp")) and not list(ship_to.parent.glob("*.old"))
    assert CCDiffGenerator.from_pretrained(ship_to).config == recipe.generator
    assert filecmp.cmp(run / "checkpoint" / "model.safetensors", ship_to / "model.safetensors", shallow=False)
    defaults = read_sampling_defaults(ship_to)
    assert (defaults.guidance_scale, defaults.scheduler, defaults.steps) == (4.0, "dpm++", 20)
    origin = defaults.provenance
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert origin["steps"] == 3 and origin["images_seen"] == 3 * TINY_TRAINING.batch_size
    assert origin["final_loss"] == last["loss"] and origin["command"] == "python train-it --please"
    assert origin["recipe"] == "tiny-test" and origin["date"] and origin["device"]
    # synth samples the exported folder at its exported guidance, not at the run's preview value (3.0)
    assert find_generator(ship_to, run, "x").guidance_scale == 4.0


def test_export_refuses_weights_over_the_limit_and_leaves_the_shipped_folder_as_it_was(
    script, trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, recipe = trained
    ship_to = tmp_path / "generator"
    script.export_generator(run, ship_to, guidance_scale=4.0, scheduler="dpm++", steps=20, recipe=recipe.name)
    before = {p.name: p.read_bytes() for p in ship_to.iterdir()}
    size = (run / "checkpoint" / "model.safetensors").stat().st_size
    monkeypatch.setattr(script, "MAX_SHIPPED_BYTES", size - 1)
    with pytest.raises(ValueError, match="over the"):
        script.export_generator(
            run, ship_to, guidance_scale=5.0, scheduler="dpm++", steps=20, recipe=recipe.name
        )
    assert {p.name: p.read_bytes() for p in ship_to.iterdir()} == before


def test_export_refuses_a_folder_holding_other_files(script, trained, tmp_path: Path) -> None:
    run, recipe = trained
    (tmp_path / "generator").mkdir()
    (tmp_path / "generator" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        script.export_generator(run, tmp_path / "generator", guidance_scale=3.0, scheduler="dpm++", steps=20,
                                recipe=recipe.name)  # fmt: skip
    assert (tmp_path / "generator" / "notes.txt").read_text() == "mine"


def test_the_training_curve_is_drawn_from_the_runs_log(script, trained, tmp_path: Path) -> None:
    run, _ = trained
    png = script.draw_curve(
        run / "metrics.jsonl", tmp_path / "docs" / "curve.png", title="tiny-test on aerial"
    )
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200
    assert script.smooth([1.0, 3.0, 5.0], 2).tolist() == [1.0, 2.0, 4.0]


# --------------------------------------------------------------------------------------------------------
# the real shipped checkpoint


def test_the_shipped_generator_loads_offline_and_renders_images_matching_their_layouts(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = shipped_generator()
    if folder is None:
        pytest.skip(
            "no generator is shipped in ccaug/datasets/aerial/generator/ in this checkout; "
            "benchmarks/train_default_generator.py trains and exports it"
        )
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(variable, "1")
    config = CCDiffGenerator.from_pretrained(folder).config
    assert (folder / "model.safetensors").stat().st_size <= 40_000_000
    assert read_sampling_defaults(folder) is not None  # synth samples it as it was previewed
    out = tmp_path / "out"
    settings = SynthSettings(steps=4, batch_size=1, layout_min_instances=1)
    assert synthesize("aerial", 1, out, settings=settings, progress=False, log=quiet).complete
    (record,) = manifest(out)
    assert record["model"]["id"] == SHIPPED_ID
    with Image.open(out / record["file"]) as image:
        assert image.size == (config.resolution, config.resolution)
    (layout,) = json.loads((out / "plan.json").read_text())["layouts"]
    written = read_dataset(out, "dota").instances
    assert len(written) == len(layout["labels"]) == record["instances"]
