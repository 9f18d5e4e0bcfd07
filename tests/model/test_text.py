"""The tiny backbone's word tokenizer, text encoder and reference encoder."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from ccaug.data.geometry import le90_to_polygon
from ccaug.datasets.aerial.classes import AERIAL_CLASSES, SCENE_KINDS
from ccaug.layouts.captions import caption
from ccaug.layouts.layout import Layout
from ccaug.model.image_encoder import TinyImageEncoder
from ccaug.model.text import TinyTextEncoder, WordTokenizer, caption_vocabulary, split_words


def random_layouts(count: int, seed: int = 0) -> list[Layout]:
    """Aerial layouts of every scene kind (and none) with 0 to 60 objects anywhere, at any angle."""
    rng = np.random.default_rng(seed)
    layouts = []
    for index in range(count):
        n = int(rng.integers(0, 60))
        boxes = np.column_stack(
            [rng.uniform(-20, 532, (n, 2)), rng.uniform(5, 60, (n, 2)), rng.uniform(-np.pi, np.pi, n)]
        )
        scene = (list(SCENE_KINDS) + [None])[index % (len(SCENE_KINDS) + 1)]
        labels = rng.integers(0, len(AERIAL_CLASSES), n)
        layouts.append(Layout(512, 512, labels, le90_to_polygon(boxes), scene))
    many = le90_to_polygon(np.tile([[256.0, 256.0, 20.0, 8.0, 0.0]], (123, 1)))  # 123: written in digits
    layouts.append(Layout(512, 512, np.full(123, 3), many, "harbour"))
    return layouts


@pytest.fixture(scope="module")
def tokenizer() -> WordTokenizer:
    return WordTokenizer.for_captions(AERIAL_CLASSES)


# ------------------------------------------------------------------------------------------------ tokenizer


def test_real_aerial_captions_have_no_unknown_word_and_round_trip(tokenizer):
    for layout in random_layouts(30):
        text = caption(layout, AERIAL_CLASSES)
        ids = WordTokenizer(tokenizer.vocabulary, max_length=10_000).encode(text)
        assert tokenizer.unk_id not in ids, text
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
        assert tokenizer.decode(ids) == " ".join(split_words(text))


def test_words_are_lower_cased_and_punctuation_and_digits_split_off():
    assert split_words("There are 123 Ships, twenty-one in the upper-left corner.") == [
        "there", "are", "1", "2", "3", "ships", ",", "twenty", "-", "one", "in", "the", "upper", "-", "left",
        "corner", ".",
    ]  # fmt: skip


def test_unknown_words_become_unk(tokenizer):
    ids = tokenizer.encode("a zeppelin over the harbor")
    words = [tokenizer.vocabulary[i] for i in ids]
    assert words == ["[BOS]", "[UNK]", "[UNK]", "[UNK]", "the", "harbor", "[EOS]"]


def test_batches_are_padded_to_a_fixed_length_with_a_mask(tokenizer):
    tokens = tokenizer(["one ship", ""], length=8)
    assert tokens.input_ids.shape == (2, 8) and tokens.attention_mask.dtype == torch.bool
    assert tokens.attention_mask.sum(dim=1).tolist() == [4, 2]
    assert tokens.input_ids[1, :2].tolist() == [tokenizer.bos_id, tokenizer.eos_id]
    assert (tokens.input_ids[~tokens.attention_mask] == tokenizer.pad_id).all()
    assert tokenizer(["one ship"]).input_ids.shape == (1, 77)  # default: max_length


def test_truncation_keeps_the_eos_and_warns_once():
    tokenizer = WordTokenizer.for_captions(AERIAL_CLASSES, max_length=6)
    with pytest.warns(UserWarning, match="truncated"):
        tokens = tokenizer(["there are two ships in the center of the image ."])
    assert tokens.input_ids[0].tolist()[-1] == tokenizer.eos_id
    assert tokenizer.decode(tokens.input_ids[0].tolist()) == "there are two ships"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer(["there are two ships in the center of the image ."])


def test_vocabulary_is_deterministic_and_reloads_exactly(tokenizer):
    assert caption_vocabulary(AERIAL_CLASSES) == caption_vocabulary(reversed(AERIAL_CLASSES))
    assert caption_vocabulary(["storage-tank"]) == caption_vocabulary(["storage-tank"])
    assert "tanks" in caption_vocabulary(["storage-tank"]) and "tanks" not in caption_vocabulary(["ship"])
    reloaded = WordTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert reloaded.vocabulary == tokenizer.vocabulary and reloaded.max_length == tokenizer.max_length
    text = caption(random_layouts(1)[-1], AERIAL_CLASSES)
    assert torch.equal(reloaded([text]).input_ids, tokenizer([text]).input_ids)


def test_extra_words_join_the_vocabulary():
    tokenizer = WordTokenizer.for_captions(["ship"], extra_words=["beach", "golden sand"])
    assert tokenizer.unk_id not in tokenizer.encode("This is an aerial image of golden sand beach.")


# ------------------------------------------------------------------------------------------------ encoders


def test_text_encoder_shapes_and_pooled_is_the_eos_state(tokenizer):
    torch.manual_seed(0)
    encoder = TinyTextEncoder(len(tokenizer), dim=32, layers=2, heads=4).eval()
    tokens = tokenizer(["one ship", "two planes in the center"], length=12)
    out = encoder(tokens.input_ids, tokens.attention_mask)
    assert out.token_states.shape == (2, 12, 32) and out.pooled.shape == (2, 32)
    assert torch.equal(out.pooled[0], out.token_states[0, 3])  # [BOS] one ship [EOS]


def test_padding_changes_neither_the_pooled_output_nor_the_real_token_states(tokenizer):
    torch.manual_seed(0)
    encoder = TinyTextEncoder(len(tokenizer), dim=32, layers=2, heads=4).eval()
    texts = ["one ship", "there are two planes in the center of the image ."]
    short, long = tokenizer(texts, length=16), tokenizer(texts, length=40)
    a = encoder(short.input_ids, short.attention_mask)
    b = encoder(long.input_ids, long.attention_mask)
    torch.testing.assert_close(a.pooled, b.pooled, rtol=1e-5, atol=1e-6)
    real = short.attention_mask
    torch.testing.assert_close(a.token_states[real], b.token_states[:, :16][real], rtol=1e-5, atol=1e-6)


def test_image_encoder_makes_cls_plus_patch_tokens_and_resizes_other_sizes():
    torch.manual_seed(0)
    encoder = TinyImageEncoder(image_size=64, dim=64)
    assert encoder.num_tokens == 17
    assert encoder(torch.rand(2, 3, 64, 64)).shape == (2, 17, 64)
    assert encoder(torch.rand(3, 3, 40, 40)).shape == (3, 17, 64)
    assert TinyImageEncoder(image_size=32, dim=16, patch=8)(torch.rand(1, 3, 32, 32)).shape == (1, 17, 16)
