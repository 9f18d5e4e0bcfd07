"""ccaug synth on a 6-image aerial set with an untrained 32 px generator: files, resume, shards, seeds, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ccaug.data import read_dataset
from ccaug.datasets import make_aerial
from ccaug.layouts.layout import read_layout_dataset
from ccaug.model.generator import CCDiffGenerator
from ccaug.model.generator_config import GeneratorConfig
from ccaug.pipeline import synth as synth_module
from ccaug.pipeline.synth import synthesize
from ccaug.pipeline.synth_plan import SynthSettings, image_seed
from ccaug.workspace import register_generator

pytestmark = pytest.mark.filterwarnings("ignore:a text of", "ignore:class '")

FAST = SynthSettings(steps=2, batch_size=3, layout_min_instances=1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def aerial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aerial")
    make_aerial(root, n=6, size=64, seed=0, workers=1, progress=False)
    return root


def save_generator(aerial: Path, folder: Path, categories: tuple[str, ...] | None = None) -> Path:
    train = read_layout_dataset(aerial, "dota").split("train")
    present = set(train.instances["category"].astype(str))
    config = GeneratorConfig(
        resolution=32, categories=categories or tuple(c for c in train.categories if c in present), max_instances=3,
        unet_channels=(32, 32, 64), text_dim=32, text_layers=1, caption_length=64, image_dim=32,
        reference_size=32, background_size=32, resampler_dim=32, resampler_depth=1, resampler_heads=2, cgm_heads=4,
    )  # fmt: skip
    torch.manual_seed(0)
    CCDiffGenerator(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def generator(aerial: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_generator(aerial, tmp_path_factory.mktemp("generator"))


def run(aerial: Path, generator: Path, out: Path, n: int = 7, **options) -> synth_module.SynthResult:
    options = {"settings": FAST, "progress": False, "log": lambda line: None, **options}
    return synthesize(aerial, n, out, model=generator, **options)


def files_of(out: Path) -> dict[str, bytes]:
    """Every image and label file and every derived format, by relative path."""
    paths = [p for folder in ("images", "labelTxt", "yolo", "yolo-obb") for p in (out / folder).rglob("*") if p.is_file()]
    paths += [out / "annotations.json", out / "captions.jsonl"]
    return {str(path.relative_to(out)): path.read_bytes() for path in paths}


def manifest(out: Path) -> list[dict]:
    """The manifest lines without the fields that record when and where they were made."""
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "seconds", "shard")} for line in lines]


def wait_for_first_commit(process: subprocess.Popen, out: Path) -> Path:
    """Poll until the run in `out` has committed an image (its manifest part has a line); returns the part."""
    part = out / ".manifest" / "shard-0000-of-0001.jsonl"
    deadline = time.monotonic() + 300
    while not (part.is_file() and part.read_text().count("\n") >= 1) and process.poll() is None:
        assert time.monotonic() < deadline, "the run never committed an image"
        time.sleep(0.01)
    return part


@pytest.fixture(scope="module")
def straight(aerial: Path, generator: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted single-process run: the reference the other runs must equal."""
    out = tmp_path_factory.mktemp("straight") / "synth"
    result = run(aerial, generator, out)
    assert result.complete and result.rendered == 7 and result.done == 7
    return out


def test_a_run_writes_n_images_with_labels_equal_to_their_layouts(straight: Path) -> None:
    plan = json.loads((straight / "plan.json").read_text())["layouts"]
    dota = read_dataset(straight, "dota")
    assert len(dota) == 7 and set(dota.images["width"]) == {32} and set(dota.images["height"]) == {32}
    for entry, (image, instances) in zip(plan, dota.iter_images()):
        assert Path(image["file"]).name == f"synth_{entry['id']:06d}.png"
        expected = np.asarray(entry["polygons"], dtype=float).reshape(-1, 8) * np.tile(
            [32 / entry["width"], 32 / entry["height"]], 4
        )  # the layout in the pixels of the 32 px image
        np.testing.assert_allclose(instances[[f"{a}{i}" for i in range(1, 5) for a in "xy"]].to_numpy(), expected, atol=1e-6)
        assert instances["category"].astype(str).tolist() == entry["labels"]
    assert sum(len(entry["labels"]) for entry in plan) > 0  # the check above compared some instances
    # the COCO copy holds the same annotations and loads as the folder's detected format
    coco = read_dataset(straight, "coco")
    np.testing.assert_allclose(np.sort(coco.polygons, axis=0), np.sort(dota.polygons, axis=0), atol=1e-6)
    assert len(read_dataset(straight / "yolo", "yolo")) == 7 and len(read_dataset(straight / "yolo-obb", "yolo-obb")) == 7
    lines = manifest(straight)
    assert [line["id"] for line in lines] == list(range(7))
    assert all(line["seed"] == image_seed(0, line["id"]) and line["model"]["sha256"] for line in lines)
    assert (straight / "preview.png").is_file()
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["images"] == 7 and summary["instances"] == len(dota.instances)


def test_the_output_is_what_train_detector_reads_as_synthetic(straight: Path, aerial: Path) -> None:
    from ccaug.detect.experiment import read_with_classes

    real = read_dataset(aerial, "dota")
    synthetic = read_with_classes(straight, None, list(real.categories), "synthetic")
    assert len(synthetic) == 7


def test_same_seed_same_files_and_another_seed_other_layouts(aerial: Path, generator: Path, straight: Path, tmp_path: Path) -> None:
    again = run(aerial, generator, tmp_path / "again")
    assert again.complete
    assert files_of(tmp_path / "again") == files_of(straight)
    run(aerial, generator, tmp_path / "other", seed=1)
    assert (tmp_path / "other" / "plan.json").read_text() != (straight / "plan.json").read_text()


def test_two_shards_write_the_single_process_files(aerial: Path, generator: Path, straight: Path, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    second = run(aerial, generator, out, num_shards=2, shard_index=1)
    assert not second.complete and not (out / "manifest.jsonl").exists()
    first = run(aerial, generator, out, num_shards=2, shard_index=0)
    assert first.complete and first.rendered + second.rendered == 7
    assert files_of(out) == files_of(straight)
    assert manifest(out) == manifest(straight)
    assert not (out / ".manifest").exists()


def test_rerunning_a_finished_run_renders_nothing_and_a_larger_n_extends_it(aerial: Path, generator: Path, straight: Path, tmp_path: Path) -> None:
    out = tmp_path / "grow"
    assert run(aerial, generator, out, n=4).complete
    assert run(aerial, generator, out, n=4).rendered == 0
    grown = run(aerial, generator, out, n=7)
    assert grown.complete and grown.rendered == 3
    assert files_of(out) == files_of(straight)  # the first 4 layouts did not change with n
    with pytest.raises(ValueError, match="--n 7"):
        run(aerial, generator, out, n=5)


def test_a_killed_run_resumes_to_exactly_n_images_without_orphans(aerial: Path, generator: Path, straight: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    code = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from ccaug.pipeline.synth import synthesize\nfrom ccaug.pipeline.synth_plan import SynthSettings\n"
        f"synthesize({str(aerial)!r}, 7, {str(out)!r}, model={str(generator)!r}, progress=False,\n"
        "           settings=SynthSettings(steps=24, batch_size=3, layout_min_instances=1), log=lambda line: None)\n"
    )
    # The killed run uses more steps than the others (slower batches, a wider window to kill in); steps are
    # part of the run's settings, so its resume must use them too.
    process = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    part = wait_for_first_commit(process, out)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = part.read_text().count("\n")
    assert 1 <= committed < 7, "the kill should land mid-run"
    # what a kill between the two writes of an image leaves: a label file without its image and a temp file
    (out / "labelTxt" / "synth_000006.txt").write_text("0 0 1 0 1 1 0 1 ship 0\n")
    (out / "images" / ".synth_000006.abc.tmp.png").write_bytes(b"partial")

    resumed = synthesize(
        aerial, 7, out, model=generator, settings=SynthSettings(steps=24, batch_size=3, layout_min_instances=1),
        progress=False, log=lambda line: None,
    )  # fmt: skip
    assert resumed.complete and resumed.rendered == 7 - committed
    images = sorted(p.name for p in (out / "images").iterdir())
    labels = sorted(p.name for p in (out / "labelTxt").iterdir())
    assert images == [f"synth_{k:06d}.png" for k in range(7)]
    assert labels == [f"synth_{k:06d}.txt" for k in range(7)]
    assert [line["id"] for line in manifest(out)] == list(range(7))
    # the resumed images are the ones an uninterrupted run with these settings renders
    uninterrupted = tmp_path / "uninterrupted"
    synthesize(
        aerial, 7, uninterrupted, model=generator, progress=False, log=lambda line: None,
        settings=SynthSettings(steps=24, batch_size=3, layout_min_instances=1),
    )  # fmt: skip
    assert files_of(out) == files_of(uninterrupted)


def test_verification_drops_what_the_detector_does_not_find(aerial: Path, generator: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []

    class FirstInstanceOnly:
        """A detector that finds the first instance of every image, and on a re-render all of them."""

        def found(self, images, labels, polygons):
            calls.append(len(images))
            rerender = len(calls) > 1
            return [np.arange(len(row)) == 0 if not rerender else np.ones(len(row), dtype=bool) for row in labels]

    monkeypatch.setattr(synth_module, "_verifier", lambda *args: FirstInstanceOnly())
    drop = run(aerial, generator, tmp_path / "drop", settings=SynthSettings(steps=2, batch_size=7, layout_min_instances=1, verify="drop"))
    lines = manifest(tmp_path / "drop")
    dota = read_dataset(tmp_path / "drop", "dota")
    for line, (_, instances) in zip(lines, dota.iter_images()):
        assert line["kept"] == min(line["instances"], 1) == len(instances)
        assert line["dropped"] == list(range(1, line["instances"]))
    laid_out = sum(line["instances"] for line in lines)
    assert laid_out > sum(line["kept"] for line in lines)
    assert drop.kept_share == pytest.approx(sum(line["kept"] for line in lines) / laid_out)

    calls.clear()
    run(aerial, generator, tmp_path / "rerender", settings=SynthSettings(steps=2, batch_size=7, layout_min_instances=1, verify="rerender"))
    for line in manifest(tmp_path / "rerender"):
        crowded = line["instances"] > 1  # only these missed an instance at first and were rendered again
        assert line["attempt"] == int(crowded) and line["kept"] == line["instances"]
        assert line["seed"] == image_seed(0, line["id"], line["attempt"])


def test_bad_input_is_refused_before_anything_is_written(aerial: Path, generator: Path, straight: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CCAUG_HOME", str(tmp_path / "home"))  # a workspace without registered generators
    with pytest.raises(FileNotFoundError, match="neither a data set folder nor a name"):
        synthesize("no-such-source", 2, tmp_path / "a", model=generator)
    with pytest.raises(FileNotFoundError, match="ccaug train-generator"):
        synthesize(aerial, 2, tmp_path / "b", progress=False)
    with pytest.raises(FileNotFoundError, match="not a generator"):
        synthesize(aerial, 2, tmp_path / "c", model=tmp_path, progress=False)
    other_classes = save_generator(aerial, tmp_path / "planes", categories=("plane",))
    with pytest.raises(ValueError, match="trained on \\['plane'\\]"):
        synthesize(aerial, 2, tmp_path / "d", model=other_classes, progress=False)
    assert not any((tmp_path / name).exists() for name in "abcd")
    # a folder holding another run (other settings) is refused and left as it was
    before = files_of(straight)
    with pytest.raises(FileExistsError, match="steps was 2, now 3"):
        run(aerial, generator, straight, settings=SynthSettings(steps=3, batch_size=3, layout_min_instances=1))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        run(aerial, generator, tmp_path / "full")
    assert files_of(straight) == before and (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_the_registered_generator_is_the_default_and_the_cli_prints_a_summary(aerial: Path, generator: Path, tmp_path: Path, monkeypatch) -> None:
    from ccaug.cli import app

    monkeypatch.setenv("CCAUG_HOME", str(tmp_path / "home"))
    register_generator(aerial, generator)
    result = CliRunner().invoke(
        app, ["synth", "--source", str(aerial), "--n", "3", "--out", str(tmp_path / "cli"), "--steps", "2", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "3 of 3 done" in result.output and "manifest" in result.output
    assert len(list((tmp_path / "cli" / "images").glob("*.png"))) == 3
    bad = CliRunner().invoke(app, ["synth", "--source", "nowhere", "--n", "3", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "nowhere" in bad.output


def test_two_processes_under_torch_distributed_write_the_single_process_files(
    aerial: Path, generator: Path, straight: Path, tmp_path: Path
) -> None:
    """What `accelerate launch` does, on CPU: each process renders its shard, one of them writes the rest."""
    out = tmp_path / "distributed"
    script = tmp_path / "synth.py"
    script.write_text(
        "import torch; torch.set_num_threads(1)\n"
        "from ccaug.pipeline.synth import synthesize\nfrom ccaug.pipeline.synth_plan import SynthSettings\n"
        f"synthesize({str(aerial)!r}, 7, {str(out)!r}, model={str(generator)!r}, progress=False,\n"
        "           settings=SynthSettings(steps=2, batch_size=3, layout_min_instances=1))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)]
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shard 1/2" in result.stdout and "shard 2/2" in result.stdout
    assert files_of(out) == files_of(straight)
    assert manifest(out) == manifest(straight)


def test_ctrl_c_stops_after_the_current_batch_and_a_rerun_finishes(aerial: Path, generator: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from ccaug.pipeline.synth import synthesize\nfrom ccaug.pipeline.synth_plan import SynthSettings\n"
        f"r = synthesize({str(aerial)!r}, 7, {str(out)!r}, model={str(generator)!r}, progress=False,\n"
        "               settings=SynthSettings(steps=24, batch_size=3, layout_min_instances=1))\n"
        "print('stopped', r.stopped, 'done', r.done)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", code], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    part = wait_for_first_commit(process, out)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=300)
    assert process.returncode == 0
    assert "stopped after the current batch" in stdout and "stopped True" in stdout
    committed = part.read_text().count("\n")
    assert committed in (3, 6)  # whole batches of 3, never a part of one
    resumed = synthesize(
        aerial, 7, out, model=generator, progress=False, log=lambda line: None,
        settings=SynthSettings(steps=24, batch_size=3, layout_min_instances=1),
    )  # fmt: skip
    assert resumed.complete and resumed.rendered == 7 - committed


def test_a_full_disk_loses_only_the_image_being_written(aerial: Path, generator: Path, straight: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "full-disk"
    real_save = synth_module.save_image
    saved = []

    def fail_on_the_fifth(path, image, **options):
        if len(saved) == 4:
            raise OSError(28, "No space left on device")
        real_save(path, image, **options)
        saved.append(path)

    monkeypatch.setattr(synth_module, "save_image", fail_on_the_fifth)
    with pytest.raises(OSError, match="No space"):
        run(aerial, generator, out)
    assert len(synth_module.read_manifest(out)) == 4  # the four written images are committed
    assert not list((out / "images").glob(".*"))  # no temporary file is left behind
    monkeypatch.setattr(synth_module, "save_image", real_save)
    resumed = run(aerial, generator, out)
    assert resumed.complete and resumed.rendered == 3
    assert files_of(out) == files_of(straight)


def test_bf16_autocast_runs_through_the_pipeline(aerial: Path, generator: Path, tmp_path: Path) -> None:
    """--precision bf16 (meant for GPUs) runs the same pipeline under autocast; on CPU it is checked to run."""
    result = run(aerial, generator, tmp_path / "bf16", n=3, precision="bf16")
    assert result.complete
    assert len(read_dataset(tmp_path / "bf16", "dota")) == 3
    assert all(line["sampler"]["precision"] == "bf16" for line in manifest(tmp_path / "bf16"))
    with pytest.raises(ValueError, match="--precision"):
        run(aerial, generator, tmp_path / "fp8", precision="fp8")
