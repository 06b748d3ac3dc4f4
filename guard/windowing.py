"""Where semantic windows fall in a stream — decided by the text alone, never by the chunking.

A window ends at the end of a whitespace-delimited word once ``stride`` new tokens have accumulated
since the previous window end, and covers the last ``tokens`` tokens up to there (whole words only).
Because a word's tokens do not depend on its neighbours (the BERT pre-tokenizer splits on whitespace
and punctuation first), token counts of finished words are final: a word is finished once whitespace
follows it, or the stream ends. So the same text yields the same windows however it was cut, and
the cost per chunk is O(chunk + window context).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from guard.types import Window

_WORD = re.compile(r"\S+")

#: generous bound on characters per token: keeps the left context a window may need
CHARS_PER_TOKEN_BOUND = 12


class Encoding(Protocol):
    ids: np.ndarray  # int64 [n], no special tokens
    offsets: np.ndarray  # [n, 2] character span of each token in the encoded text


class Tokenizer(Protocol):
    """Client-side tokenizer (``guard.models.tokenizer.WindowTokenizer`` in production)."""

    def encode(self, text: str) -> Encoding: ...


def max_window_chars(tokens: int) -> int:
    return tokens * CHARS_PER_TOKEN_BOUND


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    """A window and the part of it that is new (``new_start``..``window.end``)."""

    window: Window
    new_start: int


def word_frontier(text: str, base: int, final: bool) -> int:
    """Absolute offset up to which every word is finished (all of ``text`` when final)."""
    if final:
        return base + len(text)
    for i in range(len(text) - 1, -1, -1):
        if text[i].isspace():
            return base + i + 1
    return base


def _word_token_counts(tokenizer: Tokenizer, segment: str) -> list[tuple[int, int]]:
    """(end offset in segment, token count) per word of ``segment`` that has tokens."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(segment)]
    if not words:
        return []
    offsets = tokenizer.encode(segment).offsets
    counts = [0] * len(words)
    wi = 0
    for start, end in offsets:
        if end <= start:
            continue
        while wi < len(words) and words[wi][1] <= start:
            wi += 1
        if wi == len(words):
            break
        counts[wi] += 1
    return [(w[1], n) for w, n in zip(words, counts, strict=True) if n]


def plan(text: str, base: int, cursor: int, stream_id: str, tokenizer: Tokenizer,
         tokens: int, stride: int, final: bool) -> tuple[int, list[PlannedWindow]]:
    """Windows due now, and the new semantic cursor (how far they will clear the text).

    ``text`` starts at absolute offset ``base`` and must retain at least ``max_window_chars(tokens)``
    characters before ``cursor``.
    """
    frontier = word_frontier(text, base, final)
    if frontier <= cursor:
        return cursor, []
    segment = text[cursor - base : frontier - base]
    ends: list[int] = []
    acc = 0
    last_word_end = None
    for word_end, n in _word_token_counts(tokenizer, segment):
        acc += n
        last_word_end = cursor + word_end
        if acc >= stride:
            ends.append(last_word_end)
            acc = 0
    if final and acc > 0 and last_word_end is not None:
        ends.append(last_word_end)
    windows: list[PlannedWindow] = []
    prev = cursor
    for end in ends:
        windows.append(PlannedWindow(_window(text, base, end, stream_id, tokenizer, tokens), prev))
        prev = end
    new_cursor = frontier if final else prev
    return new_cursor, windows


def _window(text: str, base: int, end: int, stream_id: str, tokenizer: Tokenizer,
            tokens: int) -> Window:
    lo = max(base, end - max_window_chars(tokens))
    chunk = text[lo - base : end - base]
    start = 0
    if lo > 0 and (lo == base or not text[lo - base - 1].isspace()):
        # the context bound cut a word: only whole words enter a window (the caller retains one
        # character before the bound, so this test reads the same text however the stream was cut)
        m = re.search(r"\s", chunk)
        start = m.end() if m else len(chunk)
    piece = chunk[start:]
    enc = tokenizer.encode(piece)
    ids, offsets = np.asarray(enc.ids, dtype=np.int64), enc.offsets
    first = 0
    if ids.shape[0] > tokens:
        first = ids.shape[0] - tokens
        ids = ids[first:]
    w_start = lo + start + (offsets[first][0] if len(offsets) else len(piece))
    return Window(stream_id=stream_id, start=w_start, end=end, text=text[w_start - base : end - base],
                  input_ids=ids)


def prompt_window(stream_id: str, prompt: str, tokenizer: Tokenizer, tokens: int) -> Window:
    """The prompt's last ``tokens`` tokens as one window (offsets 0: it is not part of the stream)."""
    ids = np.asarray(tokenizer.encode(prompt[-max_window_chars(tokens):]).ids, dtype=np.int64)[-tokens:]
    return Window(stream_id=stream_id, start=0, end=0, text="", input_ids=ids)
