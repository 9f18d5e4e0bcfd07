"""Two training processes under torch.distributed (CPU, gloo) train one run into one folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccaug.datasets import make_aerial

SCRIPT = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import tiny_generator
from ccaug.pipeline.train import train_generator
from ccaug.pipeline.training_config import TrainingConfig

data, out = Path(sys.argv[1]), Path(sys.argv[2])
training = TrainingConfig(batch_size=2, max_steps=2, log_every=1, checkpoint_every=2, sample_every=0, ema_decay=0.0)
train_generator(data, "dota", out, generator_config=tiny_generator(data), training_config=training, progress=False)
rank = int(os.environ["RANK"])
(out / f"rank{{rank}}.json").write_text(json.dumps({{"rank": rank}}))
"""


@pytest.fixture(scope="module")
def aerial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aerial")
    make_aerial(root, n=8, size=64, seed=0, workers=1, progress=False)
    return root


def launch(script: Path, aerial: Path, out: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra_env}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(aerial), str(out)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_train_one_run_into_one_folder(aerial: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    result = launch(script, aerial, tmp_path / "run", {"ACCELERATE_USE_CPU": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "run"
    assert sorted(path.name for path in out.glob("rank*.json")) == ["rank0.json", "rank1.json"]
    # one metrics stream (written by the main process only) and one RNG state per process
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert {path.name for path in (out / "checkpoint").glob("rng_state_*")} == {"rng_state_0.safetensors", "rng_state_1.safetensors"}


def test_processes_that_would_each_train_alone_are_refused(aerial: Path, tmp_path: Path) -> None:
    """Without ACCELERATE_USE_CPU, accelerate on CPU runs each torchrun process alone: refuse, don't corrupt."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(aerial), str(tmp_path / "run")],
        env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode != 0
    assert "ACCELERATE_USE_CPU=1" in result.stderr
