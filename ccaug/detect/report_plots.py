"""The report's PNG plots: scores per arm with every seed shown, training curves, and per-class AP50."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ccaug.data.stats_plots import new_figure
from ccaug.fileio import atomic_path

ARM_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
CURVES = (("metrics/mAP50(", "validation mAP50"), ("metrics/mAP50-95(", "validation mAP50-95"), ("train/box_loss", "train box loss"))


def plot_scores(report: dict, path: Path) -> Path:
    """mAP50 and mAP50-95 per arm: a bar for the mean, a line for ± std, and a dot per seed."""
    arms = report["arms"]
    figure = new_figure(4.5 + 0.8 * len(arms), 3.4)
    axes = figure.subplots(1, 2)
    for ax, metric, label in zip(axes, ("map50", "map50_95"), ("mAP50", "mAP50-95")):
        for index, arm in enumerate(arms.values()):
            summary = arm[metric]
            colour = ARM_COLOURS[index % len(ARM_COLOURS)]
            ax.bar(index, summary["mean"], color=colour, alpha=0.55, width=0.6)
            ax.errorbar(index, summary["mean"], yerr=summary["std"], color="0.15", capsize=4)
            jitter = np.linspace(-0.12, 0.12, len(summary["values"])) if len(summary["values"]) > 1 else [0.0]
            ax.scatter(index + np.asarray(jitter), summary["values"], color="0.15", s=12, zorder=3)
        ax.set_xticks(range(len(arms)), list(arms), rotation=20)
        ax.set_ylabel(f"{label} on real val")
        ax.set_ylim(bottom=0)
    return _save(figure, path)


def plot_curves(results: Sequence, path: Path) -> Path | None:
    """Per arm, the mean over seeds of validation mAP and the training box loss, epoch by epoch."""
    if not any(result.curve for result in results):
        return None
    arms = list(dict.fromkeys(result.arm for result in results))
    figure = new_figure(4.0 * len(CURVES), 3.2)
    axes = figure.subplots(1, len(CURVES))
    for ax, (prefix, label) in zip(axes, CURVES):
        for index, arm in enumerate(arms):
            series = [_column(result.curve, prefix) for result in results if result.arm == arm]
            series = [values for values in series if values is not None]
            if not series:
                continue
            length = min(len(values) for values in series)
            stacked = np.array([values[:length] for values in series])
            epochs = np.arange(1, length + 1)
            colour = ARM_COLOURS[index % len(ARM_COLOURS)]
            ax.plot(epochs, stacked.mean(axis=0), color=colour, label=arm, marker="o" if length < 10 else None, ms=3)
            if len(series) > 1:
                ax.fill_between(epochs, stacked.min(axis=0), stacked.max(axis=0), color=colour, alpha=0.15)
        ax.set_xlabel("epoch (same images per epoch in every arm)")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    return _save(figure, path)


def plot_per_class(report: dict, path: Path) -> Path | None:
    """Grouped bars of per-class AP50 (mean over seeds), one colour per arm."""
    arms = report["arms"]
    classes = list(dict.fromkeys(name for arm in arms.values() for name in arm["per_class"]))
    if not classes:
        return None
    figure = new_figure(max(5.0, 0.9 * len(classes) * max(1, len(arms)) / 2 + 2), 3.4)
    ax = figure.subplots()
    width = 0.8 / len(arms)
    for index, (name, arm) in enumerate(arms.items()):
        values = [arm["per_class"].get(cls, {}).get("ap50", 0.0) for cls in classes]
        offsets = np.arange(len(classes)) + (index - (len(arms) - 1) / 2) * width
        ax.bar(offsets, values, width=width, color=ARM_COLOURS[index % len(ARM_COLOURS)], label=name)
    ax.set_xticks(range(len(classes)), classes, rotation=20)
    ax.set_ylabel("AP50 on real val (mean over seeds)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(figure, path)


def _column(curve: dict, prefix: str) -> list[float] | None:
    for key, values in curve.items():
        if key.startswith(prefix):
            return values
    return None


def _save(figure, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path
