"""A fixed caption embedding for background retrieval: hashed bag of words and bigrams.

Background retrieval compares a layout's caption with the captions of the bank's images (see
`ccaug.model.background_bank`), so the embedding must not change while the generator trains. The ``sd``
backbone passes its frozen CLIP text tower; the ``tiny`` backbone's text encoder trains, so its embeddings
drift, and a bank keyed by them would go stale. `HashedCaptionEmbedder` is the fixed embedding for that case:
no weights, nothing to fit, the same vectors in every process and on every machine.

A caption becomes its words (lower case, runs of letters and digits) and the pairs of consecutive words,
after dropping stop words. The default, `RETRIEVAL_STOP_WORDS`, drops the words of the caption template
that every caption contains ("this is an aerial image of", "there are", "in the") and the words that say
where objects are, which way they point and how many there are: a background is retrieved for its scene,
which those words do not describe, and they make up most of a caption. On the embedded aerial data set
(100 images, 5 scene kinds) the nearest other caption is of the same scene kind for 95 % of the images
with these stop words, and for 64 % when only the template's words are dropped. What stays is the scene
name and the classes ("harbor", "small vehicles", "storage tank"), the pairs keeping "small vehicles" apart
from "large vehicles".

Each feature is hashed with CRC-32 (Python's ``hash`` of a string is salted per process, so it would give
other vectors in every DataLoader worker) to a coordinate and a sign (signed feature hashing keeps
collisions from biasing similarities upwards), weighted ``1 + ln(count)`` so that a repeated word does not
dominate, and the vector is scaled to unit length.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ccaug.layouts.captions import DIRECTIONS, POSITIONS, number_word

_WORD = re.compile(r"[a-z0-9]+")
# Words of the caption template (`ccaug.layouts.captions`) that every caption contains.
CAPTION_TEMPLATE_WORDS: frozenset[str] = frozenset(
    {"a", "an", "aerial", "are", "direction", "image", "in", "is", "of", "the", "there", "this", "towards"}
)
# Words of a caption that place, orient and count objects: positions, directions, number words to 99.
LAYOUT_WORDS: frozenset[str] = frozenset(
    _WORD.findall(" ".join([*POSITIONS, *DIRECTIONS, *(number_word(count) for count in range(100))]))
)
RETRIEVAL_STOP_WORDS: frozenset[str] = CAPTION_TEMPLATE_WORDS | LAYOUT_WORDS
# The feature of a text with no word left, so that every text has a unit vector.
_EMPTY_FEATURE = "\x00empty"


class HashedCaptionEmbedder:
    """``list[str]`` of B captions -> ``(B, dim)`` float32 unit vectors; deterministic, nothing trains.

    `stop_words` are dropped before words and bigrams are formed (default: `RETRIEVAL_STOP_WORDS`, the
    template's words and the words that place, orient and count objects); `bigrams` adds the pairs of
    consecutive remaining words.
    """

    def __init__(
        self, dim: int = 256, *, bigrams: bool = True, stop_words: Iterable[str] = RETRIEVAL_STOP_WORDS
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be at least 1, not {dim}")
        self.dim = int(dim)
        self.bigrams = bigrams
        self.stop_words = frozenset(word.lower() for word in stop_words)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a list of captions, not one string")
        embeddings = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(texts):
            embeddings[row] = self._embed(text)
        return embeddings.astype(np.float32)

    def features(self, text: str) -> Counter[str]:
        """The counted features of one text: its words and (with `bigrams`) ``"word word"`` pairs."""
        words = [word for word in _WORD.findall(text.lower()) if word not in self.stop_words]
        features = Counter(words)
        if self.bigrams:
            features.update(f"{first} {second}" for first, second in zip(words, words[1:]))
        return features

    def _embed(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float64)
        for feature, count in self.features(text).items():
            self._add(vector, feature, 1.0 + math.log(count))
        norm = np.linalg.norm(vector)
        if norm == 0:  # no word, or (rarely) features whose signed buckets cancel exactly
            vector[:] = 0
            self._add(vector, _EMPTY_FEATURE, 1.0)
            norm = 1.0
        return vector / norm

    def _add(self, vector: np.ndarray, feature: str, weight: float) -> None:
        code = zlib.crc32(feature.encode("utf-8"))
        sign = 1.0 if code & 0x80000000 else -1.0  # the top bit; the bucket comes from the low bits
        vector[code % self.dim] += sign * weight

    def __repr__(self) -> str:
        return f"HashedCaptionEmbedder(dim={self.dim}, bigrams={self.bigrams})"
