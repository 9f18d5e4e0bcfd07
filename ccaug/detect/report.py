"""The trainability report: per arm mean ± std over seeds, paired gains over the baseline, and a verdict.

A gain is called a gain only when a paired t-test over the seeds (each seed trains every arm on the same real
subset) gives p < 0.05; otherwise the report says the difference is within noise. With one seed there is no
spread at all, and the report says so rather than calling any difference a gain.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ccaug.fileio import write_json, write_text

METRICS = ("map50", "map50_95")
LABELS = {"map50": "mAP50", "map50_95": "mAP50-95"}
SIGNIFICANCE = 0.05


def summarise(values: Sequence[float]) -> dict:
    values = [float(value) for value in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def paired_gain(arm: Sequence[float], baseline: Sequence[float]) -> dict:
    """Per-seed differences, their mean ± std, the paired t-test's p, and a plain-words verdict."""
    differences = np.asarray(arm, dtype=float) - np.asarray(baseline, dtype=float)
    gain = summarise(differences)
    gain["p_value"] = _paired_p_value(differences)
    gain["verdict"] = verdict(gain["mean"], gain["p_value"], len(differences))
    return gain


def verdict(mean: float, p_value: float | None, seeds: int) -> str:
    if seeds < 2:
        return "one seed: no spread, so a gain cannot be told from noise"
    if p_value is None or math.isnan(p_value) or p_value >= SIGNIFICANCE:
        shown = "n/a" if p_value is None or math.isnan(p_value) else f"{p_value:.2f}"
        return f"within noise (paired t-test over {seeds} seeds, p = {shown})"
    direction = "gain" if mean > 0 else "loss"
    return f"a real {direction} (paired t-test over {seeds} seeds, p = {p_value:.3f})"


def build_report(config_dict: dict, results: Sequence) -> dict:
    """The content of ``report.json`` from every run's result."""
    arms = list(dict.fromkeys(result.arm for result in results))
    by_arm = {arm: sorted((r for r in results if r.arm == arm), key=lambda r: r.seed) for arm in arms}
    baseline = by_arm[arms[0]]
    report = {"config": config_dict, "baseline": arms[0], "arms": {}}
    for arm, runs in by_arm.items():
        entry = {
            "seeds": [run.seed for run in runs],
            "real_images": runs[0].real_images,
            "extra_images": runs[0].extra_images,
            "images_seen": runs[0].images_seen,
            "seconds": sum(run.seconds for run in runs),
            "per_class": _per_class(runs),
        }
        for metric in METRICS:
            entry[metric] = summarise([getattr(run, metric) for run in runs])
            if arm != arms[0]:
                entry[f"gain_{metric}"] = paired_gain(*_paired_values(runs, baseline, metric))
        report["arms"][arm] = entry
    return report


def write_report(config, results: Sequence, out: Path) -> dict:
    """Write ``report.json``, ``report.md`` and the plots into `out`; returns the report."""
    from ccaug.detect.report_plots import plot_curves, plot_per_class, plot_scores

    out = Path(out)
    report = build_report(config.to_dict(), results)
    plots = {
        "scores": plot_scores(report, out / "scores.png"),
        "curves": plot_curves(results, out / "curves.png"),
        "per_class": plot_per_class(report, out / "per_class.png"),
    }
    report["plots"] = {name: path.name for name, path in plots.items() if path is not None}
    write_json(out / "report.json", report, indent=1)
    write_text(out / "report.md", render_markdown(report))
    return report


def render_markdown(report: dict) -> str:
    config = report["config"]
    detector = config["detector"]
    arms = report["arms"]
    seeds = len(next(iter(arms.values()))["seeds"])
    lines = [
        "# Trainability report",
        "",
        f"Detector: `{detector['model']}` ({detector['task']}), {detector['epochs']} epochs at {detector['imgsz']} px, "
        f"batch {detector['batch']}, {seeds} seed(s). Every arm saw the same number of training images and was "
        "validated on the real validation split only, with its final weights (no checkpoint picked on that split).",
        "",
        "| arm | real + extra images | images seen | mAP50 | mAP50-95 | gain mAP50 | gain mAP50-95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, arm in arms.items():
        gains = [_format_gain(arm.get(f"gain_{metric}")) for metric in METRICS]
        lines.append(
            f"| {name} | {arm['real_images']} + {arm['extra_images']} | {arm['images_seen']} | "
            f"{_format_score(arm['map50'])} | {_format_score(arm['map50_95'])} | {gains[0]} | {gains[1]} |"
        )
    lines += ["", "## Verdict", ""]
    for name, arm in arms.items():
        if "gain_map50" in arm:
            lines.append(f"- **{name}** vs {report['baseline']}: mAP50 {arm['gain_map50']['verdict']}; "
                         f"mAP50-95 {arm['gain_map50_95']['verdict']}.")  # fmt: skip
    if len(arms) == 1:
        lines.append("- Only the baseline ran (no --synthetic and no --augment), so there is nothing to compare.")
    lines += ["", "## Per-class AP50 (mean over seeds)", "", per_class_table(arms), ""]
    for name, file in report.get("plots", {}).items():
        lines += [f"![{name}]({file})", ""]
    lines += ["## Configuration", "", "```json", json.dumps(config, indent=1), "```", ""]
    return "\n".join(lines)


def _per_class(runs: Sequence) -> dict:
    classes = list(dict.fromkeys(name for run in runs for name in run.per_class))
    table = {}
    for name in classes:
        table[name] = {
            key: summarise([run.per_class.get(name, {}).get(key, 0.0) for run in runs])["mean"]
            for key in ("ap50", "ap50_95")
        }
        table[name]["instances"] = max(run.per_class.get(name, {}).get("instances", 0) for run in runs)
    return table


def _paired_values(runs: Sequence, baseline: Sequence, metric: str) -> tuple[list[float], list[float]]:
    base = {run.seed: getattr(run, metric) for run in baseline}
    seeds = [run.seed for run in runs if run.seed in base]
    return [getattr(run, metric) for run in runs if run.seed in base], [base[seed] for seed in seeds]


def _paired_p_value(differences: np.ndarray) -> float | None:
    if len(differences) < 2:
        return None
    if np.allclose(differences, differences[0]):
        return 0.0 if differences[0] != 0 else 1.0
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(differences, 0.0).pvalue)


def _format_score(summary: dict) -> str:
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def _format_gain(gain: dict | None) -> str:
    if gain is None:
        return "—"
    mark = "" if gain["verdict"].startswith("a real") else " (noise)"
    return f"{gain['mean']:+.3f} ± {gain['std']:.3f}{mark}"


def per_class_table(arms: dict) -> str:
    """AP50 per class (rows) and arm (columns), as Markdown."""
    classes = list(dict.fromkeys(name for arm in arms.values() for name in arm["per_class"]))
    header = "| class | instances | " + " | ".join(arms) + " |"
    rows = [header, "|---|---|" + "---|" * len(arms)]
    for name in classes:
        instances = max(arm["per_class"].get(name, {}).get("instances", 0) for arm in arms.values())
        cells = [f"{arm['per_class'].get(name, {}).get('ap50', 0.0):.3f}" for arm in arms.values()]
        rows.append(f"| {name} | {instances} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
