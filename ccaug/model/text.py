"""The tiny backbone's text side: a word-level tokenizer over the caption grammar and a small transformer.

No pretrained tokenizer can be downloaded here, and none is needed: every caption ccaug writes comes from
the grammar of `ccaug.layouts.captions` (a scene sentence, then counts by position bin and direction, with
class nouns and number words). `WordTokenizer.for_captions` builds its vocabulary from that grammar and
the category names, deterministically; the vocabulary is saved with a checkpoint, so reloading never
depends on the grammar of the code that reloads.

Splitting (`split_words`): lower-case; a run of letters is a word, every digit is its own token (so any
number written in digits is covered) and every other non-space character is its own token ("twenty-one"
→ ``twenty - one``, "image." → ``image .``).

`TinyTextEncoder` plays CLIP's part: token states ``(B, L, D)`` for cross-attention and a pooled vector
``(B, D)``, the final-LN state of the ``[EOS]`` token (CLIP's ``pooler_output``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ccaug.layouts.captions import (
    AERIAL_SCENE_NAMES,
    DEFAULT_ONLY_SCENES,
    DEFAULT_SCENE_TABLE,
    DIRECTIONS,
    NO_CENTRE_SENTENCE,
    POSITIONS,
    noun_forms,
    number_word,
)

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)

# Every fixed word and mark of the caption templates (the sentences of `ccaug.layouts.captions`, with
# their slots for scene, numbers, nouns, positions and directions left out).
_TEMPLATE_TEXT = "This is an aerial image of. There is, are in the center of the image towards the direction."
_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """Lower-cased words, single digits and single punctuation characters, in order."""
    return _WORD.findall(text.lower())


def caption_vocabulary(categories: Iterable[str], extra_words: Iterable[str] = ()) -> list[str]:
    """The tokenizer vocabulary for captions over `categories`: the special tokens, then every word of
    the grammar, the category names and their nouns, the scene names, number words up to ninety-nine,
    the digits, and `extra_words` (split like text), sorted. A pure function of its arguments."""
    texts = [_TEMPLATE_TEXT, NO_CENTRE_SENTENCE, *POSITIONS, *DIRECTIONS, "0123456789"]
    texts += [number_word(count) for count in range(100)]
    texts += list(AERIAL_SCENE_NAMES.values()) + [scene for _, scene in DEFAULT_SCENE_TABLE]
    texts += [scene for _, scene in DEFAULT_ONLY_SCENES]
    for category in categories:
        texts += [category, *noun_forms(category)]
    texts += list(extra_words)
    words = {word for text in texts for word in split_words(text)}
    return list(SPECIAL_TOKENS) + sorted(words - set(SPECIAL_TOKENS))


@dataclass
class TokenBatch:
    """``input_ids (B, L)`` long and ``attention_mask (B, L)`` bool (True = a real token, BOS and EOS
    included; False = padding)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class WordTokenizer:
    """Word-level tokenizer: ``[BOS] words… [EOS] [PAD]…``, unknown words → ``[UNK]``.

    `max_length` counts BOS and EOS; a longer text keeps its first ``max_length - 2`` words and its EOS,
    and the first truncation warns once.
    """

    def __init__(self, vocabulary: Sequence[str], max_length: int = 77) -> None:
        vocabulary = list(vocabulary)
        if vocabulary[: len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS):
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {vocabulary[:4]}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("the vocabulary has repeated tokens")
        if max_length < 2:
            raise ValueError(f"max_length must leave room for [BOS] and [EOS], got {max_length}")
        self.vocabulary = vocabulary
        self.max_length = max_length
        self.ids = {token: index for index, token in enumerate(vocabulary)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (self.ids[t] for t in SPECIAL_TOKENS)
        self._warned = False

    @classmethod
    def for_captions(
        cls, categories: Iterable[str], extra_words: Iterable[str] = (), max_length: int = 77
    ) -> WordTokenizer:
        """The tokenizer of the caption grammar over `categories` (see `caption_vocabulary`)."""
        return cls(caption_vocabulary(categories, extra_words), max_length)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        """``[BOS] ids… [EOS]`` of one text, truncated to `max_length`."""
        ids = [self.ids.get(word, self.unk_id) for word in split_words(text)]
        if len(ids) > self.max_length - 2:
            if not self._warned:
                warnings.warn(
                    f"a text of {len(ids) + 2} tokens was truncated to max_length={self.max_length} "
                    f"(further truncations are not reported): {text[:80]!r}…",
                    stacklevel=2,
                )
                self._warned = True
            ids = ids[: self.max_length - 2]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """The tokens of `ids` joined by spaces, special tokens other than ``[UNK]`` left out."""
        skip = {self.pad_id, self.bos_id, self.eos_id}
        return " ".join(self.vocabulary[i] for i in ids if i not in skip)

    def __call__(self, texts: Sequence[str], length: int | None = None) -> TokenBatch:
        """Encode `texts` padded to `length` tokens (default `max_length`; a fixed length keeps results
        independent of the other texts of the batch)."""
        length = self.max_length if length is None else length
        if length > self.max_length:
            raise ValueError(f"length {length} is above max_length {self.max_length}")
        rows = [self.encode(text)[:length] for text in texts]
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for row, ids in enumerate(rows):
            if ids[-1] != self.eos_id:  # cut by a short `length`: keep the EOS that pooling reads
                ids[-1] = self.eos_id
            input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask = torch.arange(length) < torch.tensor([len(ids) for ids in rows]).unsqueeze(1)
        return TokenBatch(input_ids, attention_mask)

    def to_dict(self) -> dict[str, Any]:
        return {"vocabulary": list(self.vocabulary), "max_length": self.max_length}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WordTokenizer:
        return cls(values["vocabulary"], values["max_length"])


# ----------------------------------------------------------------------------------------------- encoder


@dataclass
class TextEncoding:
    """``token_states (B, L, D)`` (every position, padding included) and ``pooled (B, D)`` (the EOS
    token's final-LN state)."""

    token_states: torch.Tensor
    pooled: torch.Tensor


class Block(nn.Module):
    """Pre-LN transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``; ``x (B, L, D)`` with
    ``key_mask (B, L)`` bool (True = may be attended) → ``(B, L, D)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(batch, length, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x))


class TinyTextEncoder(nn.Module):
    """Token embedding + learned positions + `layers` pre-LN blocks + final LayerNorm.

    ``input_ids (B, L)`` long, ``attention_mask (B, L)`` bool (a `TokenBatch`; the last True of each row
    is the EOS token) → `TextEncoding` with ``token_states (B, L, dim)`` and ``pooled (B, dim)``.
    Padding is a key mask: padded positions never change the states of real tokens or the pooled output.
    """

    def __init__(
        self, vocab_size: int, dim: int, layers: int = 2, heads: int = 4, max_length: int = 77
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(1, max_length, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextEncoding:
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.position_embedding[:, :length]
        for block in self.blocks:
            x = block(x, attention_mask)
        states = self.final_norm(x)
        eos = attention_mask.long().sum(dim=1) - 1  # (B,)
        pooled = states[torch.arange(states.shape[0], device=states.device), eos]
        return TextEncoding(states, pooled)
