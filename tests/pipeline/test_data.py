"""The generator's data: training items and batches, sampling batches, and the fixed caption embedding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.geometry import polygon_area
from ccaug.datasets import make_aerial
from ccaug.layouts.captions import caption, captions
from ccaug.layouts.layout import Layout, layouts_from_dataset, read_layout_dataset
from ccaug.model.background_bank import BackgroundBank
from ccaug.model.batch import GeneratorBatch
from ccaug.model.instance_bank import InstanceBank
from ccaug.pipeline.data import GeneratorItem, GeneratorTrainingData, collate, layout_batches
from ccaug.pipeline.text_embedding import HashedCaptionEmbedder

SIZE = 32  # resolution, reference crops and backgrounds
ALL = 1000  # max_instances above every image's count

# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def aerial(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("aerial")
    make_aerial(root, n=12, seed=0, workers=1, progress=False)
    return read_layout_dataset(root, "dota")


@pytest.fixture(scope="module")
def embedder() -> HashedCaptionEmbedder:
    return HashedCaptionEmbedder()


@pytest.fixture(scope="module")
def banks(aerial: Dataset, embedder: HashedCaptionEmbedder) -> tuple[InstanceBank, BackgroundBank]:
    instance_bank = InstanceBank.build(aerial, crop_size=SIZE, progress=False)
    texts = captions(layouts_from_dataset(aerial), aerial.categories)
    background_bank = BackgroundBank.build(aerial, embedder, texts, image_size=SIZE, progress=False)
    return instance_bank, background_bank


@pytest.fixture(scope="module")
def generator_categories(aerial: Dataset) -> list[str]:
    # Another order than the data set's, so that labels have to be mapped by name.
    return list(reversed(aerial.categories))


def training_data(aerial, banks, embedder, categories, **options) -> GeneratorTrainingData:
    instance_bank, background_bank = banks
    settings = dict(resolution=SIZE, max_instances=ALL, seed=0) | options
    return GeneratorTrainingData(
        aerial,
        categories=categories,
        instance_bank=instance_bank,
        background_bank=background_bank,
        embed_text=embedder,
        **settings,
    )


@pytest.fixture(scope="module")
def data(aerial, banks, embedder, generator_categories) -> GeneratorTrainingData:
    return training_data(aerial, banks, embedder, generator_categories)


def image_rows(aerial: Dataset, index: int) -> np.ndarray:
    """Rows of the instances table of the image at position `index`."""
    image_id = aerial.images["image_id"].iat[index]
    return np.flatnonzero(aerial.instances["image_id"].to_numpy() == image_id)


def same_item(first: GeneratorItem, second: GeneratorItem) -> bool:
    tensors = ("labels", "polygons", "references", "background", "image")
    return (
        first.caption == second.caption
        and all(torch.equal(getattr(first, name), getattr(second, name)) for name in tensors)
        and np.array_equal(first.reference_rows, second.reference_rows)
        and first.background_row == second.background_row
    )


# ------------------------------------------------------------------------------------------ training items


def test_item_shapes_and_ranges(data: GeneratorTrainingData, aerial: Dataset) -> None:
    for index in range(len(data)):
        item = data[index]
        count = len(image_rows(aerial, index))
        assert item.image.shape == (3, SIZE, SIZE) and item.image.dtype == torch.float32
        assert item.image.min() >= -1 and item.image.max() <= 1 and item.image.std() > 0
        assert item.labels.shape == (count,) and item.labels.dtype == torch.long
        assert item.polygons.shape == (count, 8) and item.polygons.dtype == torch.float32
        assert item.references.shape == (count, 3, SIZE, SIZE)
        assert item.references.min() >= 0 and item.references.max() <= 1
        assert item.background.shape == (3, SIZE, SIZE)
        assert item.image_id == aerial.images["image_id"].iat[index]


def test_item_image_is_the_resized_image(data: GeneratorTrainingData, aerial: Dataset) -> None:
    with Image.open(aerial.image_path(aerial.images.iloc[3])) as file:
        expected = np.asarray(file.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    pixels = (data[3].image.permute(1, 2, 0) + 1) * 127.5
    assert torch.allclose(pixels, torch.tensor(expected).float(), atol=1e-3)


def test_item_polygons_are_the_instances_normalised(data: GeneratorTrainingData, aerial: Dataset) -> None:
    for index in range(len(data)):
        width, height = aerial.images[["width", "height"]].iloc[index]
        expected = aerial.polygons[image_rows(aerial, index)] / np.tile([width, height], 4)
        np.testing.assert_allclose(data[index].polygons.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_item_labels_name_the_instances_classes(
    data: GeneratorTrainingData, aerial: Dataset, generator_categories: list[str]
) -> None:
    for index in range(len(data)):
        names = [generator_categories[label] for label in data[index].labels]
        assert (
            names == aerial.instances["category"].astype(str).to_numpy()[image_rows(aerial, index)].tolist()
        )


def test_item_caption_is_the_image_caption(data: GeneratorTrainingData, aerial: Dataset) -> None:
    expected = captions(layouts_from_dataset(aerial), aerial.categories)
    assert data.captions == expected
    assert [data[index].caption for index in range(len(data))] == expected
    assert "harbor" in expected[0]  # the scene from scenes.json is in it


def test_references_are_crops_of_the_slot_class_from_other_images(
    data: GeneratorTrainingData, banks, generator_categories: list[str]
) -> None:
    instance_bank, _ = banks
    table = instance_bank.table
    checked = 0
    for index in range(len(data)):
        item = data[index]
        assert torch.equal(item.references, instance_bank.images(item.reference_rows))
        for label, row in zip(item.labels.tolist(), item.reference_rows):
            name = generator_categories[label]
            assert table["category"].iat[row] == name
            # A class whose only crops are in this image falls back to them (see InstanceBank.pick).
            if ((table["category"] == name) & (table["image_id"] != item.image_id)).any():
                assert table["image_id"].iat[row] != item.image_id
                checked += 1
    assert checked > 100


def test_background_is_never_the_image_itself(data: GeneratorTrainingData, banks) -> None:
    _, background_bank = banks
    for epoch in range(3):
        data.set_epoch(epoch)
        for index in range(len(data)):
            item = data[index]
            assert background_bank.image_ids[item.background_row] != item.image_id
            assert torch.equal(item.background, background_bank.images(np.array([item.background_row]))[0])
    data.set_epoch(0)


def test_same_seed_epoch_and_index_give_the_same_item(
    data: GeneratorTrainingData, aerial, banks, embedder, generator_categories
) -> None:
    other = training_data(aerial, banks, embedder, generator_categories)
    first = [data[index] for index in range(len(data))]
    data.set_epoch(5)
    data.set_epoch(0)
    assert all(same_item(item, data[index]) for index, item in enumerate(first))
    assert all(same_item(item, other[index]) for index, item in reversed(list(enumerate(first))))


def test_another_epoch_draws_other_references(data: GeneratorTrainingData) -> None:
    first = [data[index].reference_rows for index in range(len(data))]
    data.set_epoch(1)
    second = [data[index].reference_rows for index in range(len(data))]
    data.set_epoch(0)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))


def test_a_generator_class_without_instances_is_refused(aerial, banks, embedder) -> None:
    with pytest.raises(ValueError, match="no instance of \\['bridge'\\]"):
        training_data(aerial, banks, embedder, [*aerial.categories, "bridge"])


def test_a_data_set_class_the_generator_lacks_is_refused(aerial, banks, embedder) -> None:
    known = [name for name in aerial.categories if name != "helicopter"]
    with pytest.raises(ValueError, match="instances of \\['helicopter'\\]"):
        training_data(aerial, banks, embedder, known)


def test_a_caption_embedding_of_another_width_is_refused(aerial, banks, generator_categories) -> None:
    with pytest.raises(ValueError, match="embedding the bank was built with"):
        training_data(aerial, banks, HashedCaptionEmbedder(dim=64), generator_categories)


def test_more_instances_than_slots_keeps_the_largest_and_reports(
    aerial, banks, embedder, generator_categories
) -> None:
    limit = 10
    counts = aerial.instances.groupby("image_id", sort=False).size().reindex(aerial.images["image_id"])
    over = counts.to_numpy() > limit
    dropped = int((counts.to_numpy()[over] - limit).sum())
    with pytest.warns(UserWarning, match=f"{over.sum()} of 12 images .* their {dropped} smallest instances"):
        data = training_data(aerial, banks, embedder, generator_categories, max_instances=limit)
    assert (data.truncated_images, data.dropped_instances) == (int(over.sum()), dropped)
    index = int(np.argmax(counts.to_numpy()))
    width, height = aerial.images[["width", "height"]].iloc[index]
    polygons = aerial.polygons[image_rows(aerial, index)]
    kept = data[index].polygons.numpy().astype(np.float64) * np.tile([width, height], 4)
    assert len(kept) == limit
    largest = np.sort(polygon_area(polygons))[-limit:]
    np.testing.assert_allclose(np.sort(polygon_area(kept)), largest, rtol=1e-4)
    assert data[index].caption == caption(layouts_from_dataset(aerial)[index], aerial.categories)


def test_no_report_when_every_image_fits(aerial, banks, embedder, generator_categories) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = training_data(aerial, banks, embedder, generator_categories)
    assert (data.truncated_images, data.dropped_instances) == (0, 0)


def test_flips_mirror_image_layout_and_caption_together(
    data: GeneratorTrainingData, aerial, banks, embedder, generator_categories
) -> None:
    flipping = training_data(aerial, banks, embedder, generator_categories, flip="hv")
    layouts = layouts_from_dataset(aerial)
    seen = set()
    for epoch in range(3):
        flipping.set_epoch(epoch)
        for index in range(len(data)):
            plain, item = data[index], flipping[index]
            (horizontal, vertical), *others = [
                (horizontal, vertical)
                for horizontal in (False, True)
                for vertical in (False, True)
                if torch.equal(item.image, mirror_image(plain.image, horizontal, vertical))
            ]
            assert not others
            seen.add((horizontal, vertical))
            layout = layouts[index]
            size = np.array([layout.width, layout.height])
            corners = layout.polygons.reshape(-1, 4, 2)
            corners = np.where([horizontal, vertical], size - corners, corners)
            if horizontal != vertical:
                corners = corners[:, [0, 3, 2, 1]]  # the same winding as the annotation
            mirrored = layout.with_instances(layout.labels, corners.reshape(-1, 8))
            np.testing.assert_allclose(
                item.polygons.numpy(), corners.reshape(-1, 8) / np.tile(size, 4), atol=1e-6
            )
            assert item.caption == caption(mirrored, aerial.categories)
    flipping.set_epoch(0)
    assert len(seen) == 4


def mirror_image(image: torch.Tensor, horizontal: bool, vertical: bool) -> torch.Tensor:
    dims = [dim for dim, flipped in ((2, horizontal), (1, vertical)) if flipped]
    return image.flip(dims) if dims else image


# ---------------------------------------------------------------------------------------------- batching


def test_collate_pads_with_zeros_and_marks_valid_slots(data: GeneratorTrainingData) -> None:
    items = [data[4], data[0]]
    counts = [len(item.labels) for item in items]
    batch = collate(items)
    assert isinstance(batch, GeneratorBatch) and batch.num_slots == max(counts)
    for row, (item, count) in enumerate(zip(items, counts)):
        assert batch.valid[row].tolist() == [True] * count + [False] * (max(counts) - count)
        assert torch.equal(batch.labels[row, :count], item.labels)
        assert torch.equal(batch.references[row, :count], item.references)
        padded = ~batch.valid[row]
        assert (batch.labels[row, padded] == 0).all() and (batch.polygons[row, padded] == 0).all()
        assert (batch.references[row, padded] == 0).all()
    assert batch.image_ids == [item.image_id for item in items]
    assert torch.equal(batch.images[1], items[1].image)

    fixed = collate(items, max_instances=40)
    assert fixed.num_slots == 40 and fixed.valid.sum().item() == sum(counts)
    with pytest.raises(ValueError, match="more than max_instances=3"):
        collate(items, max_instances=3)


def test_a_dataloader_yields_generator_batches(data: GeneratorTrainingData, aerial: Dataset) -> None:
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=0, collate_fn=collate)
    batches = list(loader)
    assert [batch.batch_size for batch in batches] == [4, 4, 4]
    assert all(isinstance(batch, GeneratorBatch) for batch in batches)
    assert batches[0].images.shape == (4, 3, SIZE, SIZE)
    assert sum((batch.image_ids for batch in batches), []) == aerial.images["image_id"].tolist()


# ---------------------------------------------------------------------------------------------- sampling


def sampling_batches(
    aerial, banks, embedder, batch_size: int, **options
) -> list[tuple[list[int], GeneratorBatch]]:
    instance_bank, background_bank = banks
    layouts = layouts_from_dataset(aerial)
    return list(
        layout_batches(
            layouts,
            aerial.categories,
            captions(layouts, aerial.categories),
            instance_bank=instance_bank,
            background_bank=background_bank,
            embed_text=embedder,
            batch_size=batch_size,
            seed=3,
            **options,
        )
    )


def test_a_layout_gets_the_same_references_whatever_its_batch(aerial, banks, embedder) -> None:
    singles = sampling_batches(aerial, banks, embedder, batch_size=1)
    fives = sampling_batches(aerial, banks, embedder, batch_size=5)
    assert [ids for ids, _ in singles] == [[index] for index in range(12)]
    assert [ids for ids, _ in fives] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    for ids, batch in fives:
        assert batch.images is None and batch.image_ids is None
        for row, layout_id in enumerate(ids):
            single = singles[layout_id][1]
            count = single.num_slots
            assert batch.valid[row].sum() == count
            assert torch.equal(batch.references[row, :count], single.references[0])
            assert torch.equal(batch.background[row], single.background[0])
            assert torch.equal(batch.polygons[row, :count], single.polygons[0])
            assert batch.captions[row] == single.captions[0]


def test_sampling_maps_labels_to_the_generator_categories(
    aerial, banks, embedder, generator_categories
) -> None:
    (_, batch), *_ = sampling_batches(
        aerial, banks, embedder, batch_size=2, generator_categories=generator_categories
    )
    names = [generator_categories[label] for label in batch.labels[0, batch.valid[0]]]
    assert names == aerial.instances["category"].astype(str).to_numpy()[image_rows(aerial, 0)].tolist()


def test_sampling_refuses_a_layout_with_more_instances_than_slots(aerial, banks, embedder) -> None:
    with pytest.raises(ValueError, match="more than max_instances=10"):
        sampling_batches(aerial, banks, embedder, batch_size=4, max_instances=10)
    (_, batch), *_ = sampling_batches(aerial, banks, embedder, batch_size=4, max_instances=100)
    assert batch.num_slots == 100


def test_an_empty_layout_gets_only_padded_slots(aerial, banks, embedder) -> None:
    instance_bank, background_bank = banks
    layouts = [Layout(256, 256, scene="rural"), layouts_from_dataset(aerial)[4]]
    (ids, batch), (_, alone) = layout_batches(
        [*layouts, layouts[0]],
        aerial.categories,
        captions([*layouts, layouts[0]], aerial.categories),
        instance_bank=instance_bank,
        background_bank=background_bank,
        embed_text=embedder,
        batch_size=2,
        seed=0,
    )
    assert ids == [0, 1] and not batch.valid[0].any() and batch.valid[1].all()
    assert alone.num_slots == 0 and alone.references.shape == (1, 0, 3, SIZE, SIZE)


# --------------------------------------------------------------------------------------- caption embedding

CAPTIONS = [
    "This is an aerial image of harbor. There are three ships towards the east-west direction in the center "
    "of the image.",
    "This is an aerial image of harbor. There are two ships towards the north-south direction in the left "
    "edge of the image.",
    "This is an aerial image of airport. There is one plane towards the east-west direction in the center of "
    "the image.",
]


def test_hashed_embedding_is_the_same_in_another_process(embedder: HashedCaptionEmbedder) -> None:
    script = (
        "import json, sys\n"
        "from ccaug.pipeline.text_embedding import HashedCaptionEmbedder\n"
        "print(json.dumps(HashedCaptionEmbedder()(json.loads(sys.stdin.read())).tolist()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(CAPTIONS),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[2],
    )
    other = np.array(json.loads(result.stdout), dtype=np.float32)
    assert np.array_equal(other, embedder(CAPTIONS))


def test_hashed_embedding_puts_similar_captions_closer(embedder: HashedCaptionEmbedder) -> None:
    vectors = embedder(CAPTIONS)
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-6)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    empty = embedder(["", "This is an aerial image."])
    np.testing.assert_allclose(np.linalg.norm(empty, axis=1), 1, rtol=1e-6)
