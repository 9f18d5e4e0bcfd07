"""Ultralytics configured offline: settings in ccaug's folder, fonts local, the AMP check's network local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ccaug.detect.offline import AMP_CHECK_WEIGHTS, prepare_amp_check, use_offline_ultralytics


def test_a_fresh_process_keeps_settings_fonts_and_folders_in_the_given_folder(tmp_path):
    """In a new interpreter (Ultralytics not yet imported), with a home that must stay empty."""
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import socket, sys\n"
        "attempts = []\n"
        "def blocked(*a, **k):\n"
        "    attempts.append(a)\n"
        "    raise OSError('blocked')\n"
        "socket.getaddrinfo = socket.create_connection = blocked\n"
        "socket.socket.connect = blocked\n"
        "from ccaug.detect.offline import use_offline_ultralytics\n"
        f"use_offline_ultralytics({str(tmp_path / 'run' / 'ultralytics')!r})\n"
        "import ultralytics.utils as u\n"
        "from ultralytics import YOLO\n"
        "YOLO('yolov8n.yaml')\n"
        "print(u.USER_CONFIG_DIR, u.WEIGHTS_DIR, u.ONLINE, len(attempts))\n"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("YOLO_")}
    environment["HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    config_dir, weights_dir, online, attempts = result.stdout.split()[-4:]
    assert Path(config_dir).is_relative_to(tmp_path / "run" / "ultralytics")
    assert Path(weights_dir).is_relative_to(tmp_path / "run" / "ultralytics")
    assert (online, attempts) == ("False", "0")
    settings = json.loads((Path(config_dir) / "settings.json").read_text())
    assert settings["sync"] is False and settings["tensorboard"] is False and settings["wandb"] is False
    assert (Path(config_dir) / "Arial.ttf").stat().st_size > 100_000
    # nothing of Ultralytics' in the user's home (matplotlib keeps its own font cache in ~/.config/matplotlib)
    assert [path for path in home.rglob("*") if "ltralytics" in str(path) or path.suffix in (".pt", ".ttf")] == []
    assert not (tmp_path / "weights").exists()  # nor into the working directory


def test_the_amp_check_finds_its_network_locally_on_a_gpu_only():
    use_offline_ultralytics()
    assert prepare_amp_check("cpu") is None
    path = prepare_amp_check("0,1")
    import ultralytics.utils as utils
    from ultralytics import YOLO

    assert path == utils.WEIGHTS_DIR / AMP_CHECK_WEIGHTS and path.is_file()
    assert YOLO(str(path)).model is not None


def training_threads(omp_num_threads: str | None) -> int:
    """The torch threads a CPU training gets after Ultralytics' select_device, in a fresh interpreter."""
    script = (
        "import torch\n"
        "from ccaug.detect.offline import use_offline_ultralytics\n"
        "use_offline_ultralytics()\n"
        "from ultralytics.utils.torch_utils import select_device\n"
        "select_device('cpu', verbose=False)\n"
        "print(torch.get_num_threads())\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if omp_num_threads is not None:
        environment["OMP_NUM_THREADS"] = omp_num_threads
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def test_cpu_training_uses_every_core_unless_omp_num_threads_says_otherwise():
    assert training_threads(None) == len(os.sched_getaffinity(0))  # Ultralytics alone: one fewer
    assert training_threads("1") == 1
