"""train_generator on a 6-image aerial set at 32 px: the run folder, resuming, recipes and the CLI command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from ccaug.datasets import make_aerial
from ccaug.layouts.layout import read_layout_dataset
from ccaug.model.generator import CCDiffGenerator
from ccaug.model.generator_config import GeneratorConfig
from ccaug.pipeline.train import train_generator
from ccaug.pipeline.training_config import TrainingConfig
from ccaug.recipes import RecipeError, load_recipe

pytestmark = pytest.mark.filterwarnings("ignore:a text of")


@pytest.fixture(scope="module")
def aerial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aerial")
    make_aerial(root, n=6, size=64, seed=0, workers=1, progress=False)
    return root


def tiny_generator(aerial: Path) -> GeneratorConfig:
    train = read_layout_dataset(aerial, "dota").split("train")
    present = set(train.instances["category"].astype(str))
    return GeneratorConfig(
        resolution=32, categories=tuple(c for c in train.categories if c in present), max_instances=8,
        unet_channels=(32, 32, 64), text_dim=32, text_layers=1, caption_length=64, image_dim=32,
        reference_size=32, background_size=32, resampler_dim=32, resampler_depth=1, resampler_heads=2, cgm_heads=4,
    )  # fmt: skip


TINY_TRAINING = TrainingConfig(
    batch_size=2, max_steps=3, log_every=1, checkpoint_every=2, sample_every=2, samples=2, sample_steps=2
)


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_checkpoint_metrics_and_sample_grid(aerial: Path, tmp_path: Path) -> None:
    config = tiny_generator(aerial)
    result = train_generator(
        aerial,
        "dota",
        tmp_path / "run",
        generator_config=config,
        training_config=TINY_TRAINING,
        progress=False,
    )
    out = tmp_path / "run"
    assert result.step == 3
    assert (out / "checkpoint" / "config.json").is_file() and (
        out / "checkpoint" / "model.safetensors"
    ).is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3]
    for record in records:
        assert {"step", "loss", "lr", "images_per_second"} <= set(record) and record["loss"] > 0
    grid = out / "samples" / "step_000002.png"
    assert result.samples == [grid]
    with Image.open(grid) as image:  # one row of [layout | image] at 32 px per val layout (1 here)
        assert image.width > 2 * 32 and image.height > 32
    # the checkpoint is a generator that loads with from_pretrained
    assert CCDiffGenerator.from_pretrained(out / "checkpoint").config == config
    # a second run into the same folder is refused
    with pytest.raises(FileExistsError, match="resume"):
        train_generator(
            aerial, "dota", out, generator_config=config, training_config=TINY_TRAINING, progress=False
        )


def test_resume_continues_from_the_saved_step_as_if_never_stopped(aerial: Path, tmp_path: Path) -> None:
    config = tiny_generator(aerial)
    training = dataclasses.replace(TINY_TRAINING, sample_every=0, checkpoint_every=100)
    # 2 batches per epoch: stopping at step 3 stops mid-epoch, so resuming has to skip the used batch
    stopped = train_generator(
        aerial, "dota", tmp_path / "a", generator_config=config, training_config=training, progress=False
    )
    assert stopped.step == 3
    resumed = train_generator(
        aerial, "dota", tmp_path / "a", generator_config=config, training_config=training, progress=False,
        resume=True, max_steps=5,
    )  # fmt: skip
    assert resumed.step == 5
    assert json.loads((tmp_path / "a" / "checkpoint" / "training_state.json").read_text())["step"] == 5
    straight = train_generator(
        aerial, "dota", tmp_path / "b", generator_config=config, training_config=training, progress=False,
        max_steps=5,
    )  # fmt: skip
    assert straight.step == 5
    assert losses(tmp_path / "a") == losses(tmp_path / "b")  # same data order, noise and optimizer state
    # resuming a run that is done, or with other settings, is refused
    with pytest.raises(ValueError, match="max_steps"):
        train_generator(aerial, "dota", tmp_path / "a", generator_config=config, training_config=training,
                        progress=False, resume=True)  # fmt: skip
    with pytest.raises(ValueError, match="learning_rate"):
        train_generator(aerial, "dota", tmp_path / "a", generator_config=config, progress=False, resume=True,
                        training_config=dataclasses.replace(training, learning_rate=1e-3), max_steps=9)  # fmt: skip


def test_training_config_is_validated() -> None:
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainingConfig(mixed_precision="fp16")
    with pytest.raises(ValueError, match="batch_size"):
        TrainingConfig(batch_size=0)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainingConfig(ema_decay=1.0)


def test_recipes_load_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    tiny = load_recipe("tiny-aerial")
    assert tiny.generator.backbone == "tiny" and tiny.training.batch_size == 16
    for name, classes in (("sd-dota", 15), ("sd-dior", 20)):
        recipe = load_recipe(name)
        assert recipe.generator.backbone == "sd" and len(recipe.generator.categories) == classes
        assert recipe.training.learning_rate == 1e-4 and recipe.training.gradient_accumulation == 40
        assert recipe.generator.condition_dropout == 0.0 and recipe.generator.sd_path is None
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"training": {"batch_size": 2, "learning_rat": 1e-4}}))
    with pytest.raises(RecipeError, match="training.learning_rat"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"generator": {"backbone": "tiny", "colour": "red"}}))
    with pytest.raises(RecipeError, match="generator.colour"):
        load_recipe(path)


def test_sd_recipe_without_model_paths_fails_naming_the_option(aerial: Path, tmp_path: Path) -> None:
    recipe = load_recipe("sd-dota")
    with pytest.raises(FileNotFoundError, match="sd_path"):
        train_generator(aerial, "dota", tmp_path / "sd", generator_config=recipe.generator,
                        training_config=recipe.training, progress=False)  # fmt: skip
    assert not (tmp_path / "sd" / "run.json").exists()  # nothing claimed the folder


def test_cli_train_generator_runs_end_to_end(aerial: Path, tmp_path: Path) -> None:
    from ccaug.cli import app

    generator = {**tiny_generator(aerial).to_dict(), "sd_path": None}
    training = {**dataclasses.asdict(TINY_TRAINING), "max_steps": 2}
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"generator": generator, "training": training}))
    out = tmp_path / "run"
    arguments = [
        "train-generator",
        "--recipe",
        str(recipe),
        "--data",
        str(aerial),
        "--format",
        "dota",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "checkpoint" in result.output and (out / "checkpoint" / "model.safetensors").is_file()
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = CliRunner().invoke(app, [*arguments, "--resume", "--max-steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "step 3" in resumed.output


def test_a_short_run_on_the_embedded_data_set_lowers_the_loss(aerial: Path, tmp_path: Path) -> None:
    """40 steps at 32 px: the mean loss of the last 10 logged steps is clearly below that of the first 10."""
    training = TrainingConfig(
        batch_size=4, max_steps=40, learning_rate=2e-3, warmup_steps=0, log_every=1, checkpoint_every=40,
        sample_every=0, ema_decay=0.0,
    )  # fmt: skip
    train_generator(aerial, "dota", tmp_path / "run", generator_config=tiny_generator(aerial), training_config=training, progress=False)
    loss = losses(tmp_path / "run")
    assert len(loss) == 40
    first, last = sum(loss[:10]) / 10, sum(loss[-10:]) / 10
    assert last < 0.8 * first, (first, last)


def test_a_bf16_autocast_run_keeps_fp32_master_weights(aerial: Path, tmp_path: Path) -> None:
    """mixed_precision="bf16" autocasts the forward (on CPU here, on the GPU in real runs); the weights the
    optimizer updates and the checkpoint stay float32."""
    from safetensors import safe_open

    training = dataclasses.replace(TINY_TRAINING, max_steps=2, sample_every=2, mixed_precision="bf16")
    result = train_generator(aerial, "dota", tmp_path / "run", generator_config=tiny_generator(aerial), training_config=training, progress=False)
    assert result.step == 2 and all(loss > 0 for loss in losses(tmp_path / "run"))
    with safe_open(tmp_path / "run" / "checkpoint" / "model.safetensors", "pt") as weights:
        assert {weights.get_slice(key).get_dtype() for key in weights.keys()} == {"F32"}
