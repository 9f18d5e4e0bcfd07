"""Ultralytics, configured in one place so that it never reaches the network.

Left alone, Ultralytics resolves two DNS names when it is imported (to decide whether it is online), may
download a font when it checks a data set or draws a plot, downloads ``yolo26n.pt`` for its AMP check on a
GPU, installs missing packages with pip, syncs anonymous events, and keeps its settings in the user's home.
`use_offline_ultralytics` turns every one of those off before the first ``import ultralytics``:

- ``YOLO_OFFLINE=1`` (no DNS probe, no downloads attempted as "online"), ``YOLO_AUTOINSTALL=0``;
- ``YOLO_CONFIG_DIR`` points at a folder of ccaug's (the run folder or ``$CCAUG_HOME/ultralytics``), and the
  settings file written there has sync, the hub and every logger integration switched off, and its
  datasets / weights / runs folders inside it;
- a font is put where Ultralytics looks first (matplotlib's DejaVu Sans, under the names Ultralytics asks for);
- on a GPU, the AMP check finds a local ``yolo26n.pt`` built from its YAML with random weights, so the check
  runs (it only compares fp32 and AMP outputs of the same network) instead of downloading one.

One setting is about speed, not the network: Ultralytics trains on a CPU with ``cpu_count - 1`` threads
(keeping a core for its loader workers), which is a single core on a 2-core machine; ccaug gives it every
core the process may use (or ``OMP_NUM_THREADS`` when you set it), 1.56× faster there (BENCHMARKS.md).

The settings, font and AMP file live in files and the environment, not in Python state, so the processes
that Ultralytics spawns for multi-GPU (DDP) training inherit them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Every logger integration Ultralytics knows; all off (they would either phone home or need an account).
_INTEGRATIONS = (
    "clearml",
    "comet",
    "dvc",
    "hub",
    "mlflow",
    "neptune",
    "raytune",
    "tensorboard",
    "wandb",
)
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
AMP_CHECK_WEIGHTS = "yolo26n.pt"


# Read before Ultralytics is imported: its import sets OMP_NUM_THREADS=1 when the variable is unset.
_USER_THREADS = os.environ.get("OMP_NUM_THREADS")


class UltralyticsConfigError(RuntimeError):
    """Ultralytics was imported before ccaug could point it at an offline settings folder."""


def use_offline_ultralytics(config_dir: str | Path | None = None):
    """Configure Ultralytics for offline use with its settings in `config_dir`; returns the ``ultralytics``
    module.

    Call it before anything imports Ultralytics. If Ultralytics is already imported (by the user's own code)
    its settings folder can no longer move; the network switches are then applied to the live settings and
    `config_dir` is ignored, since the run stays offline either way.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    if "ultralytics" not in sys.modules:
        config_dir = Path(config_dir or _default_config_dir()).resolve()
        config_dir.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)

    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    settings_dir = Path(USER_CONFIG_DIR)
    _switch_off_network_settings(SETTINGS, settings_dir)
    _point_folder_constants_at_settings(SETTINGS)
    _install_fonts(settings_dir)
    _train_on_every_core()
    return ultralytics


def settings_dir() -> Path:
    """The folder Ultralytics keeps its settings, fonts and AMP-check weights in (after configuration)."""
    from ultralytics.utils import USER_CONFIG_DIR

    return Path(USER_CONFIG_DIR)


def prepare_amp_check(device: str) -> Path | None:
    """On a CUDA device, make sure the AMP check finds its network locally (see the module docstring)."""
    if not _is_cuda(device):
        return None
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    target = Path(SETTINGS["weights_dir"]) / AMP_CHECK_WEIGHTS
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        YOLO(AMP_CHECK_WEIGHTS.replace(".pt", ".yaml")).save(target)
    return target


def _default_config_dir() -> Path:
    from ccaug.workspace import workspace_dir

    return workspace_dir() / "ultralytics"


def _switch_off_network_settings(settings, folder: Path) -> None:
    wanted = {"sync": False, **{name: False for name in _INTEGRATIONS if name in settings}}
    wanted["datasets_dir"] = str(folder / "datasets")
    wanted["weights_dir"] = str(folder / "weights")
    wanted["runs_dir"] = str(folder / "runs")
    if any(settings.get(key) != value for key, value in wanted.items()):
        settings.update(wanted)


def _point_folder_constants_at_settings(settings) -> None:
    """Ultralytics copies the folders into module constants at import (the AMP check reads ``WEIGHTS_DIR``);
    a settings file created in that same import still held the defaults (``./weights``), so follow it."""
    import ultralytics.utils as utils

    utils.DATASETS_DIR = Path(settings["datasets_dir"])
    utils.WEIGHTS_DIR = Path(settings["weights_dir"])
    utils.RUNS_DIR = Path(settings["runs_dir"])


def _train_on_every_core() -> None:
    """Ultralytics sets the CPU training threads from its ``NUM_THREADS`` (``cpu_count - 1``) in
    ``select_device``; point it at the cores this process may use, or at the user's ``OMP_NUM_THREADS``."""
    import ultralytics.utils.torch_utils as torch_utils

    if _USER_THREADS and _USER_THREADS.isdigit():
        threads = int(_USER_THREADS)
    elif hasattr(os, "sched_getaffinity"):
        threads = len(os.sched_getaffinity(0))
    else:
        threads = os.cpu_count() or 1
    torch_utils.NUM_THREADS = max(1, threads)


def _install_fonts(folder: Path) -> None:
    """Ultralytics looks for Arial in its settings folder before downloading it; any TrueType font will do."""
    missing = [name for name in FONTS if not (folder / name).is_file()]
    if not missing:
        return
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in missing:
        temporary = folder / f".{name}.tmp"
        shutil.copyfile(dejavu, temporary)
        os.replace(temporary, folder / name)


def _is_cuda(device: str) -> bool:
    device = str(device).strip().lower()
    return device not in ("cpu", "mps", "") and not device.startswith("cpu")
