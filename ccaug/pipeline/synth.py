"""`ccaug synth`: render N annotated images from layouts with a trained generator; resumable and sharded.

An output folder::

    out/
      synth.json               the run's settings (a rerun with other settings is refused)
      plan.json                the layouts to render, one per image (exact floats), and their captions
      classes.txt, images/, labelTxt/     the DOTA data set: the committed images and their labels
      manifest.jsonl           one line per image: layout, seed, model id and hash, sampler, verification, time
      annotations.json, yolo/, yolo-obb/, captions.jsonl    written when the last image is in
      preview.png, summary.json
      banks/                   the reference banks built from the source's train split

Commit protocol of one image (`_commit`): its label file, then its image (each written to a temporary name
and renamed), then its manifest line. An image is done only when its manifest line is there; on a rerun,
files of an image without a line are removed and the image is rendered again, so a kill loses at most the
batch in flight and never leaves an image without its labels.

Sharding: the plan is cut into batches of ``batch_size`` consecutive layouts, and batch b belongs to shard
``b % num_shards``. An image is therefore rendered in the same batch, with the same noise and references,
however many shards run, and the union of the shards is byte for byte the single process's output (a batched
UNet call is not bit-identical to a smaller one, so the batches themselves must not change). Under
``accelerate launch`` the processes are the shards; ``num_shards``/``shard_index`` run shards as separate jobs.
Each shard appends to its own manifest part in ``.manifest/``; whichever process finds every image done
merges them into ``manifest.jsonl`` and writes the other formats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccaug.data import read_dataset, write_dataset
from ccaug.data.draw import show_layouts_beside_images
from ccaug.data.formats.common import write_classes_file
from ccaug.data.formats.dota import format_label_file
from ccaug.fileio import save_image, write_json, write_text
from ccaug.layouts.constraints import LayoutConstraints
from ccaug.layouts.layout import CAPTIONS_FILE, read_layout_dataset
from ccaug.layouts.perturb import PerturbConfig
from ccaug.model.generator import read_saved_config
from ccaug.model.generator_config import GeneratorConfig
from ccaug.pipeline.synth_plan import (
    STREAM_REFERENCES,
    PlannedLayout,
    SynthSettings,
    build_plan,
    derived_seed,
    image_seed,
    plan_summary,
    scaled_polygons,
)
from ccaug.progress import progress_bar

RUN_FORMAT = "ccaug-synth/1"
STEM = "synth_{:06d}"
MANIFEST = "manifest.jsonl"
PARTS = ".manifest"


@dataclass(frozen=True)
class GeneratorSource:
    """A trained generator on disk: its checkpoint folder, how it is named, its hash and its settings."""

    checkpoint: Path
    id: str
    sha256: str
    config: GeneratorConfig
    guidance_scale: float  # the run's preview guidance, the default for synth


@dataclass
class SynthResult:
    """What one call did; `complete` when all `n` images exist (then every output format is written)."""

    out: Path
    n: int
    done: int
    rendered: int  # by this call (this shard)
    seconds: float  # the whole call
    loop_seconds: float  # rendering and writing the images (no plan, banks or final formats)
    images_per_second: float  # rendered / loop_seconds
    complete: bool
    stopped: bool  # Ctrl-C: stopped after a batch
    per_class: dict[str, int] = dataclasses.field(default_factory=dict)
    kept_share: float | None = None  # with verification: instances kept / instances laid out
    files: dict[str, Path] = dataclasses.field(default_factory=dict)


def synthesize(
    source: str | Path,
    n: int,
    out: str | Path,
    *,
    model: str | Path | None = None,
    fmt: str | None = None,
    seed: int = 0,
    settings: SynthSettings = SynthSettings(),
    constraints: LayoutConstraints = LayoutConstraints(),
    perturb: PerturbConfig = PerturbConfig(),
    num_shards: int | None = None,
    shard_index: int | None = None,
    precision: str = "no",
    verify_detector: str | Path | None = None,
    detector_settings=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SynthResult:
    """Render `n` images of the data set `source` (a folder, a registered name or ``aerial``) into `out`.

    `model` is a generator checkpoint or ``train-generator`` run folder (default: the one registered for
    the source). A rerun of the same command resumes; see the module docstring for the files.
    """
    from ccaug.workspace import resolve_source

    started = time.perf_counter()
    out = Path(out)
    if precision not in ("no", "bf16"):
        raise ValueError(f"--precision must be 'no' or 'bf16', not {precision!r}")
    source_folder, _ = resolve_source(source, fmt, render=False)
    generator_source = find_generator(model, source_folder, str(source))  # before rendering the embedded set
    source_folder, source_format = resolve_source(source, fmt)
    dataset = read_layout_dataset(source_folder, source_format)
    train_set = dataset.split("train") if "train" in dataset.splits else dataset
    categories = check_classes(train_set, generator_source, source_folder)
    if settings.guidance_scale is None:
        settings = dataclasses.replace(settings, guidance_scale=generator_source.guidance_scale)
    shards, shard = _shards(num_shards, shard_index)
    run = {
        "format": RUN_FORMAT,
        "source": str(source_folder.resolve()),
        "source_format": source_format,
        "model": {"id": generator_source.id, "sha256": generator_source.sha256},
        "seed": seed,
        "resolution": generator_source.config.resolution,
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "batch_size"},
        "constraints": dataclasses.asdict(constraints),
        "perturb": dataclasses.asdict(perturb),
        "precision": precision,
    }

    with _folder_lock(out):  # one process prepares, the other shards wait and read
        claim_output(out, run)
        write_classes_file(out, categories)
        plan = load_or_build_plan(out, train_set, n, seed, settings, generator_source.config, constraints, perturb)
        banks = _banks(train_set, out, generator_source.config, progress and shard == 0)
        verifier = None
        if settings.verify != "off":
            verifier = _verifier(
                verify_detector, source_folder, source_format, out, categories, settings, detector_settings
            )

    done = read_manifest(out)
    batches = [
        list(range(start, min(start + settings.batch_size, n))) for start in range(0, n, settings.batch_size)
    ]
    mine = [batch for index, batch in enumerate(batches) if index % shards == shard]
    todo = [batch for batch in mine if any(k not in done for k in batch)]
    remove_uncommitted(out, [k for batch in todo for k in batch if k not in done])
    summary = plan_summary(plan)
    if summary["trimmed_layouts"]:
        log(
            f"{summary['trimmed_layouts']} layouts had more instances than the generator's "
            f"{generator_source.config.max_instances} slots and keep their largest ({summary['trimmed_instances']} "
            "instances left out of image, caption and labels)"
        )
    already = sum(k in done for batch in mine for k in batch)
    log(
        f"shard {shard + 1}/{shards}: {already} of its {sum(map(len, mine))} images done, "
        f"{sum(map(len, todo))} to render" if shards > 1 else f"{len(done)} of {n} images done, "
        f"{n - len(done)} to render"
    )

    rendered, stopped, loop_started = 0, False, time.perf_counter()
    if todo:
        renderer = Renderer(generator_source, settings, categories, banks, seed, precision)
        title = f"synth {shard + 1}/{shards}" if shards > 1 else "synth"
        rendered, stopped = _render_batches(out, plan, todo, done, renderer, verifier, shard, shards, title, progress)
        if stopped:
            log("stopped after the current batch (Ctrl-C); rerun the same command to finish")
    loop_seconds = time.perf_counter() - loop_started if todo else 0.0

    result = SynthResult(
        out=out, n=n, done=len(done), rendered=rendered, seconds=time.perf_counter() - started,
        loop_seconds=loop_seconds, images_per_second=rendered / loop_seconds if loop_seconds else 0.0,
        complete=False, stopped=stopped,
    )  # fmt: skip
    with _folder_lock(out):  # other shards may have finished meanwhile: the manifest on disk decides
        result.done = len(read_manifest(out))
        if result.done >= n:
            finalise(out, plan, categories, source_format, seed, result)
    return result


def _render_batches(
    out: Path, plan: list[PlannedLayout], todo: list[list[int]], done: dict[int, dict], renderer: Renderer,
    verifier, shard: int, shards: int, title: str, progress: bool,
) -> tuple[int, bool]:  # fmt: skip
    """Render and commit the batches of layout ids in `todo` (updating `done`): ``(images rendered, stopped)``.

    A batch is rendered whole even when some of its images are committed already, so that every image comes
    from the same batch as in an uninterrupted run; only the missing ones are written.
    """
    rendered = 0
    part = out / PARTS / f"shard-{shard:04d}-of-{shards:04d}.jsonl"
    part.parent.mkdir(parents=True, exist_ok=True)
    total = sum(k not in done for batch in todo for k in batch)
    with part.open("a", encoding="utf-8") as manifest, _stop_after_batch() as stop, _progress(
        progress, total, title
    ) as advance:
        for batch in todo:
            started = time.perf_counter()
            entries = [plan[k] for k in batch]
            images, outcomes = renderer.render(entries, verifier)
            seconds = (time.perf_counter() - started) / len(batch)
            for entry, image, outcome in zip(entries, images, outcomes):
                if entry.id in done:
                    continue
                record = _commit(out, entry, image, outcome, renderer, seconds, shard)
                manifest.write(json.dumps(record) + "\n")
                manifest.flush()
                done[entry.id] = record
                rendered += 1
            advance(rendered)
            if stop.is_set():
                return rendered, True
    return rendered, False


# --------------------------------------------------------------------------------------------------------
# the generator


def find_generator(model: str | Path | None, source_folder: Path, source_name: str) -> GeneratorSource:
    """The generator to render with: `model` (a checkpoint or a run folder), else the source's registered one,
    else (for the embedded ``aerial`` set only) the generator shipped in the package."""
    from ccaug.datasets.aerial.shipped import SHIPPED_ID, shipped_generator
    from ccaug.workspace import EMBEDDED, registered_generator

    if model is None:
        checkpoint = registered_generator(source_folder)
        model_id = str(checkpoint)
        if checkpoint is None and source_name == EMBEDDED:
            checkpoint, model_id = shipped_generator(), SHIPPED_ID
        if checkpoint is None:
            raise FileNotFoundError(
                f"no generator is registered for the source {source_name!r} ({source_folder}); train one with "
                f"`ccaug train-generator --recipe tiny-aerial --data {source_name} --out runs/generator/` (it "
                "becomes this source's default) or name one with --model GEN_DIR"
            )
    else:
        checkpoint, model_id = Path(model), str(model)
        if (checkpoint / "checkpoint" / "config.json").is_file():
            checkpoint = checkpoint / "checkpoint"  # a train-generator run folder
    if not (checkpoint / "config.json").is_file() or not (checkpoint / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"--model {checkpoint}: not a generator (expected config.json and model.safetensors, or a "
            "train-generator run folder holding checkpoint/)"
        )
    config = GeneratorConfig.from_dict(read_saved_config(checkpoint)["config"])  # checks format and version
    return GeneratorSource(checkpoint, model_id, _model_hash(checkpoint), config, default_guidance(checkpoint))


def default_guidance(checkpoint: Path) -> float:
    """The guidance a generator was previewed with, the default for synth: the ``sampling.json`` in its
    folder (a shipped or exported generator has no run around it), else its training run's ``run.json``
    beside the checkpoint, else 7.5 (Stable Diffusion's usual value)."""
    from ccaug.datasets.aerial.shipped import read_sampling_defaults

    defaults = read_sampling_defaults(checkpoint)
    if defaults is not None:
        return defaults.guidance_scale
    run_file = checkpoint.parent / "run.json"
    if run_file.is_file():
        return float(json.loads(run_file.read_text()).get("training", {}).get("guidance_scale", 7.5))
    return 7.5


def _model_hash(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with (checkpoint / name).open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_classes(train_set, generator: GeneratorSource, source_folder: Path) -> list[str]:
    """The source's categories, after checking that the generator knows every class the source has."""
    present = sorted(set(train_set.instances["category"].astype(str)))
    unknown = [name for name in present if name not in generator.config.categories]
    if unknown:
        raise ValueError(
            f"the generator {generator.id} was trained on {list(generator.config.categories)}, but the source "
            f"{source_folder} has instances of {unknown}; train a generator on this source"
        )
    return list(train_set.categories)


class Renderer:
    """The generator, its pipeline and the reference banks: rendering a batch of planned layouts."""

    def __init__(self, source: GeneratorSource, settings: SynthSettings, categories, banks, seed: int, precision: str):
        from accelerate import PartialState

        from ccaug.model.generator import CCDiffGenerator
        from ccaug.pipeline.sampling import CCDiffPipeline

        self.device = PartialState().device
        self.generator = CCDiffGenerator.from_pretrained(source.checkpoint).to(self.device).eval()
        self.pipeline = CCDiffPipeline(
            self.generator, scheduler=settings.scheduler, steps=settings.steps, guidance_scale=settings.guidance_scale
        )
        self.settings, self.categories, self.banks, self.seed = settings, list(categories), banks, seed
        self.precision = precision
        self.size = source.config.resolution
        self.model = {"id": source.id, "sha256": source.sha256}

    @property
    def sampler(self) -> dict[str, Any]:
        s = self.settings
        return {"scheduler": s.scheduler, "steps": s.steps, "guidance_scale": s.guidance_scale, "top_k": s.top_k,
                "batch_size": s.batch_size, "precision": self.precision}  # fmt: skip

    def render(self, entries: list[PlannedLayout], verifier=None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """``(B, R, R, 3)`` uint8 images of the entries, and per image its outcome: the seed and attempt
        rendered and which instances the verifier found (all of them without verification)."""
        seeds = [image_seed(self.seed, entry.id) for entry in entries]
        images = self._images(entries, seeds)
        outcomes = [{"seed": s, "attempt": 0, "found": np.ones(len(e.layout), dtype=bool)} for s, e in zip(seeds, entries)]
        if verifier is None:
            return images, outcomes
        self._check(verifier, entries, images, outcomes)
        attempts = self.settings.max_attempts if self.settings.verify == "rerender" else 1
        for attempt in range(1, attempts):
            retry = [i for i, outcome in enumerate(outcomes) if not outcome["found"].all()]
            if not retry:
                break
            seeds = [image_seed(self.seed, entries[i].id, attempt) for i in retry]
            again = self._images([entries[i] for i in retry], seeds)
            trials = [{"seed": s, "attempt": attempt, "found": None} for s in seeds]
            self._check(verifier, [entries[i] for i in retry], again, trials)
            for row, i in enumerate(retry):  # keep the render in which the detector found the most
                if trials[row]["found"].sum() > outcomes[i]["found"].sum():
                    images[i], outcomes[i] = again[row], trials[row]
        return images, outcomes

    def _check(self, verifier, entries: list[PlannedLayout], images: np.ndarray, outcomes: list[dict]) -> None:
        polygons = [scaled_polygons(entry.layout, self.size) for entry in entries]
        found = verifier.found(images, [entry.layout.labels for entry in entries], polygons)
        for outcome, mask in zip(outcomes, found):
            outcome["found"] = np.asarray(mask, dtype=bool)

    def _images(self, entries: list[PlannedLayout], seeds: list[int]) -> np.ndarray:
        from ccaug.pipeline.data import layout_batches

        (_, batch), = layout_batches(
            [entry.layout for entry in entries], self.categories, [entry.caption for entry in entries],
            instance_bank=self.banks[0], background_bank=self.banks[1], embed_text=self.banks[2],
            batch_size=len(entries), seed=derived_seed(self.seed, STREAM_REFERENCES), top_k=self.settings.top_k,
            generator_categories=self.generator.config.categories, layout_ids=[entry.id for entry in entries],
        )  # fmt: skip
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            return self.pipeline(batch.to(self.device), seeds)


def _banks(train_set, out: Path, config: GeneratorConfig, progress: bool):
    from ccaug.pipeline.run_folder import load_or_build_banks
    from ccaug.pipeline.text_embedding import HashedCaptionEmbedder

    embed_text = HashedCaptionEmbedder()
    instance_bank, background_bank = load_or_build_banks(train_set, out / "banks", config, embed_text, progress)
    return instance_bank, background_bank, embed_text


def _verifier(detector, source_folder, source_format, out, categories, settings: SynthSettings, detector_settings):
    from ccaug.detect import DetectorSettings
    from ccaug.pipeline.verify import InstanceVerifier, verify_detector

    detector_settings = detector_settings or DetectorSettings()
    if detector is None:
        detector = verify_detector(source_folder, source_format, out / "verify-detector", detector_settings)
    return InstanceVerifier(
        detector, categories, task=detector_settings.task, imgsz=detector_settings.imgsz, conf=settings.verify_conf,
        iou=settings.verify_iou, device=detector_settings.device,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------------
# the output folder


def claim_output(out: Path, run: dict[str, Any]) -> None:
    """Start a run in `out` or continue the same one; a folder with other content is refused untouched."""
    path = out / "synth.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        differences = _differences(saved, run)
        if differences:
            raise FileExistsError(
                f"{out} holds another synth run ({'; '.join(differences[:5])}); rerun with its settings to "
                "finish it, or give another --out"
            )
        return
    if out.is_dir() and any(child.name != ".lock" for child in out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no synth run; give an empty or new folder")
    write_json(path, run, indent=2)


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            line
            for key in dict.fromkeys([*saved, *current])
            for line in _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        ]
    return [] if saved == current else [f"{prefix.rstrip('.')} was {saved!r}, now {current!r}"]


def load_or_build_plan(
    out: Path, train_set, n: int, seed: int, settings: SynthSettings, config: GeneratorConfig, constraints, perturb
) -> list[PlannedLayout]:
    """The plan in ``plan.json`` when it covers `n` images, else built (and checked to extend the old one)."""
    path = out / "plan.json"
    categories = list(train_set.categories)
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if saved is not None and saved["n"] >= n:
        done = read_manifest(out)
        if saved["n"] > n and any(k >= n for k in done):
            raise ValueError(
                f"{out} holds images of a run with --n {saved['n']}; ask for at least that many, or another --out"
            )
        return [PlannedLayout.from_dict(entry, categories) for entry in saved["layouts"][:n]]
    plan = build_plan(
        train_set, n, seed=seed, settings=settings, max_instances=config.max_instances,
        constraints=constraints, perturb=perturb,
    )  # fmt: skip
    entries = [entry.to_dict(categories) for entry in plan]
    if saved is not None and entries[: saved["n"]] != saved["layouts"]:
        raise ValueError(f"{out}/plan.json does not match the layouts these settings make; use another --out")
    write_json(path, {"n": n, "categories": categories, "layouts": entries})
    return [PlannedLayout.from_dict(entry, categories) for entry in entries]  # exactly what a reread gives


def read_manifest(out: Path) -> dict[int, dict[str, Any]]:
    """``{layout id: record}`` of the committed images (both files present), from the merged manifest and
    the shards' parts. A torn last line (a crash mid-write) is skipped: that image is rendered again."""
    records: dict[int, dict[str, Any]] = {}
    for path in [out / MANIFEST, *sorted((out / PARTS).glob("*.jsonl"))]:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (out / record["file"]).is_file() and (out / record["labels"]).is_file():
                records[int(record["id"])] = record
    return records


def remove_uncommitted(out: Path, ids: list[int]) -> None:
    """Remove what a killed run left of these images: their files and temporary files, if any."""
    stems = {STEM.format(k) for k in ids}
    for folder in (out / "images", out / "labelTxt"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            stem = path.name.lstrip(".").split(".")[0]  # "synth_000001.png" and ".synth_000001.x.tmp.png"
            if stem in stems:
                path.unlink()


def _commit(
    out: Path, entry: PlannedLayout, image: np.ndarray, outcome: dict, renderer: Renderer, seconds: float, shard: int
) -> dict[str, Any]:
    """Write an image's labels, then the image; returns its manifest line (written last, by the caller)."""
    stem = STEM.format(entry.id)
    found = outcome["found"]
    polygons = scaled_polygons(entry.layout, renderer.size)[found]
    names = [renderer.categories[label] for label in entry.layout.labels[found]]
    write_text(out / "labelTxt" / f"{stem}.txt", format_label_file(polygons, names))
    save_image(out / "images" / f"{stem}.png", image)
    record = {
        "id": entry.id,
        "file": f"images/{stem}.png",
        "labels": f"labelTxt/{stem}.txt",
        "layout": {"kind": entry.kind, "index": entry.index, "origin": entry.origin, "trimmed": entry.trimmed},
        "seed": outcome["seed"],
        "attempt": outcome["attempt"],
        "instances": len(entry.layout),
        "kept": int(found.sum()),
        "dropped": np.flatnonzero(~found).tolist(),
        "model": renderer.model,
        "sampler": renderer.sampler,
        "seconds": round(seconds, 4),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shard": shard,
    }
    return record


def finalise(out: Path, plan: list[PlannedLayout], categories: list[str], source_format: str, seed: int,
             result: SynthResult) -> None:  # fmt: skip
    """Merge the manifest, then write COCO, YOLO, YOLO-OBB (and the source's format), captions, preview, summary."""
    records = read_manifest(out)
    n = len(plan)
    missing = [k for k in range(n) if k not in records]
    if missing:
        return  # another shard is still at work; the last one to finish writes these
    write_text(out / MANIFEST, "".join(json.dumps(records[k]) + "\n" for k in range(n)))
    for part in (out / PARTS).glob("*.jsonl"):
        part.unlink()
    with contextlib.suppress(OSError):
        (out / PARTS).rmdir()

    dataset = read_dataset(out, "dota")
    if len(dataset) != n:
        raise ValueError(f"{out}: {len(dataset)} images on disk for {n} in the manifest; remove the extra files")
    write_dataset(dataset, out, "coco", images="none")
    write_dataset(dataset, out / "yolo", "yolo")
    write_dataset(dataset, out / "yolo-obb", "yolo-obb")
    if source_format not in ("dota", "coco", "yolo", "yolo-obb"):
        write_dataset(dataset, out / source_format, source_format)
    lines = [
        json.dumps({"image_id": k, "file": records[k]["file"], "caption": plan[k].caption,
                    "labels": [categories[label] for label in plan[k].layout.labels]})
        for k in range(n)
    ]  # fmt: skip
    write_text(out / CAPTIONS_FILE, "".join(line + "\n" for line in lines))
    preview = show_layouts_beside_images(dataset, out / "preview.png", n=8, seed=seed)

    counts = dataset.instances["category"].astype(str).value_counts()
    laid_out = sum(record["instances"] for record in records.values())
    kept = sum(record["kept"] for record in records.values())
    result.complete = True
    result.per_class = {name: int(counts.get(name, 0)) for name in categories}
    result.kept_share = kept / laid_out if laid_out else 1.0
    result.files = {"images": out / "images", "DOTA labels": out / "labelTxt", "COCO": out / "annotations.json",
                    "YOLO": out / "yolo", "YOLO-OBB": out / "yolo-obb", "manifest": out / MANIFEST, "preview": preview}  # fmt: skip
    summary = {
        "images": n,
        "instances": int(len(dataset.instances)),
        "per_class": result.per_class,
        "instances_laid_out": laid_out,
        "instances_kept": kept,
        "kept_share": result.kept_share,
        "rerendered_images": sum(record["attempt"] > 0 for record in records.values()),
        **plan_summary(plan),
        "render_seconds": sum(record["seconds"] for record in records.values()),
    }
    write_json(out / "summary.json", summary, indent=2)


# --------------------------------------------------------------------------------------------------------
# processes, locks, Ctrl-C and progress


def _shards(num_shards: int | None, shard_index: int | None) -> tuple[int, int]:
    """``(count, index)``: the flags, else accelerate's processes (one process: one shard)."""
    if num_shards is None and shard_index is None:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        from ccaug.pipeline.train import refuse_unsynchronised_launch

        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # what Accelerator() reads too
        refuse_unsynchronised_launch(state)  # processes that each think they are alone would render it all twice
        return state.num_processes, state.process_index
    if num_shards is None or shard_index is None:
        raise ValueError("give --num-shards and --shard-index together")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index must be in 0..{num_shards - 1} for --num-shards {num_shards}, not {shard_index}")
    return num_shards, shard_index


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on `out` (released by the kernel if the process dies)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _stop_after_batch() -> Iterator[threading.Event]:
    """The first Ctrl-C sets the event (the loop stops after its batch); a second one interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, title: str) -> Iterator[Callable[[int], None]]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(title), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[ips]:.2f} img/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    started = time.perf_counter()
    with progress_bar(*columns, enabled=enabled) as bar:
        task = bar.add_task("images", total=total, ips=0.0)

        def advance(rendered: int) -> None:
            bar.update(task, completed=rendered, ips=rendered / (time.perf_counter() - started))

        yield advance
