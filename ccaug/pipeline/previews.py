"""Sample grids during training: validation layouts drawn beside what the generator renders for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ccaug.data.draw import draw_instances
from ccaug.data.geometry import POLY_COLUMNS
from ccaug.fileio import save_image
from ccaug.layouts.captions import captions as layout_captions
from ccaug.layouts.layout import layouts_from_dataset
from ccaug.model.batch import GeneratorBatch
from ccaug.model.generator import CCDiffGenerator
from ccaug.model.generator_config import GeneratorConfig
from ccaug.pipeline.data import layout_batches
from ccaug.pipeline.sampling import CCDiffPipeline
from ccaug.pipeline.training_config import TrainingConfig

# --------------------------------------------------------------------------------------------------------
# sample grids


def validation_batch(
    val_set, config: GeneratorConfig, instance_bank, background_bank, embed_text, training: TrainingConfig
) -> GeneratorBatch | None:
    """The first `training.samples` validation layouts the generator can render (its classes, at most
    max_instances instances), as one batch; None when there is none."""
    known = set(config.categories)
    layouts = [
        layout
        for layout in layouts_from_dataset(val_set)
        if len(layout) <= config.max_instances
        and {val_set.categories[int(label)] for label in layout.labels} <= known
    ][: training.samples]
    if not layouts:
        return None
    texts = layout_captions(layouts, val_set.categories)
    batches = layout_batches(
        layouts, val_set.categories, texts,
        instance_bank=instance_bank, background_bank=background_bank, embed_text=embed_text,
        batch_size=len(layouts), seed=training.seed, top_k=training.top_k,
        generator_categories=config.categories,
    )  # fmt: skip
    _, batch = next(batches)
    return batch


def write_sample_grid(
    path: Path, generator: CCDiffGenerator, batch: GeneratorBatch | None, config: TrainingConfig
) -> None:
    """One row per layout: the layout drawn on a blank canvas, then the generated image (seed = row)."""
    if batch is None:
        return
    pipeline = CCDiffPipeline(
        generator,
        scheduler=config.sample_scheduler,
        steps=config.sample_steps,
        guidance_scale=config.guidance_scale,
    )
    images = pipeline(batch, seeds=list(range(batch.batch_size)))
    size = images.shape[1]
    gap = max(2, size // 32)
    grid = Image.new("RGB", (2 * size + 3 * gap, batch.batch_size * (size + gap) + gap), (255, 255, 255))
    categories = generator.config.categories
    for row, image in enumerate(images):
        valid = batch.valid[row].cpu().numpy()
        instances = pd.DataFrame(batch.polygons[row].cpu().numpy()[valid] * size, columns=POLY_COLUMNS)
        instances.insert(
            0, "category", [categories[label] for label in batch.labels[row].cpu().numpy()[valid]]
        )
        canvas = np.full((size, size, 3), 40, dtype=np.uint8)
        y = gap + row * (size + gap)
        grid.paste(draw_instances(canvas, instances, categories, labels=size >= 128), (gap, y))
        grid.paste(Image.fromarray(image), (2 * gap + size, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, grid)
