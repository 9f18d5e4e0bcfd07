"""The trainability benchmark's choice of runs: --arms narrows each experiment to the arms asked for."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from trainability import VARIANTS, chosen_arms  # noqa: E402


def args(tmp_path: Path, arms: list[str] | None) -> argparse.Namespace:
    return argparse.Namespace(out=tmp_path, epochs=100, seeds=3, imgsz=256, device="cpu", arms=arms)


def test_every_arm_runs_unless_arms_are_chosen(tmp_path):
    assert chosen_arms(VARIANTS["main"], args(tmp_path, None)) == ["real-only", "synthetic", "copy-paste"]


def test_arms_keeps_only_those_an_experiment_has(tmp_path):
    chosen = args(tmp_path, ["synthetic"])
    assert chosen_arms(VARIANTS["main-obb"], chosen) == ["synthetic"]
    assert chosen_arms(VARIANTS["no-generator"], chosen) == []
