"""Test doubles shipped with the library, faked at the Protocol boundary.

``FakeDetector`` stands in for the semantic layer, ``SimpleTokenizer`` for the model tokenizer and
``RegexScanner`` for a fast layer (``BuggyScanner`` for one with a bug); all keep the real contracts (batched scoring, offsets,
``stable_until``) so pipeline tests exercise the real release logic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Mapping, Sequence

import numpy as np

from guard.types import CATEGORIES, ScanResult, Finding, Window


@dataclass(frozen=True)
class SimpleEncoding:
    ids: np.ndarray
    offsets: np.ndarray


class SimpleTokenizer:
    """Words and punctuation; a word of n characters is ceil(n / 4) tokens. Context-free per word."""

    _piece = re.compile(r"\w+|[^\w\s]")

    def encode(self, text: str) -> SimpleEncoding:
        offsets: list[tuple[int, int]] = []
        for m in self._piece.finditer(text):
            for s in range(m.start(), m.end(), 4):
                offsets.append((s, min(s + 4, m.end())))
        ids = np.array([sum(map(ord, text[a:b])) % 30000 + 1000 for a, b in offsets], dtype=np.int64)
        return SimpleEncoding(ids, np.array(offsets, dtype=np.int64).reshape(-1, 2))


class FakeDetector:
    """Scores a window by keywords: ``{"hate": ["badword"]}`` → 0.99 for hate when present."""

    name = "fake"
    model_version = "fake-1"

    def __init__(self, keywords: Mapping[str, Sequence[str]], hit: float = 0.99,
                 miss: float = 0.01) -> None:
        self.categories = CATEGORIES
        self._keywords = {c: tuple(k.lower() for k in ws) for c, ws in keywords.items()}
        self._hit, self._miss = hit, miss
        self.calls: list[int] = []

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        self.calls.append(len(windows))
        out = np.full((len(windows), len(CATEGORIES)), self._miss, dtype=np.float32)
        for i, w in enumerate(windows):
            low = w.text.lower()
            for c, words in self._keywords.items():
                if any(k in low for k in words):
                    out[i, CATEGORIES.index(c)] = self._hit
        return out


class FailingDetector:
    """A semantic detector that always fails with the given error."""

    name = "failing"
    model_version = "failing-1"
    categories = CATEGORIES

    def __init__(self, error: Exception) -> None:
        self._error = error

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        raise self._error


class RegexScanner:
    """A fast layer from one regex whose matches never contain whitespace.

    Settled up to the start of the trailing non-space run (a match could still grow there).
    """

    context_chars = 64

    def __init__(self, name: str, pattern: str, category: str, label: str) -> None:
        self.name = name
        self._re = re.compile(pattern)
        self._category, self._label = category, label

    def scan(self, text: str, final: bool) -> ScanResult:
        stable = len(text)
        if not final:
            m = re.search(r"\S*$", text)
            stable = m.start() if m else len(text)
        found = tuple(Finding(m.start(), m.end(), self._category, self._label, 1.0, self.name)
                      for m in self._re.finditer(text))
        return ScanResult(findings=found, stable_until=stable)


class BuggyScanner:
    """A fast layer with a bug: it raises whenever ``trigger`` is in the text it scans (with that
    text in the exception's message, as a careless bug would), and otherwise defers to ``inner``."""

    def __init__(self, inner: object, trigger: str) -> None:
        self._inner, self._trigger = inner, trigger
        self.name = getattr(inner, "name", "buggy")
        self.context_chars = getattr(inner, "context_chars", 64)

    def scan(self, text: str, final: bool) -> ScanResult:
        if self._trigger in text:
            raise ValueError(f"cannot scan {text!r}")
        return self._inner.scan(text, final)  # type: ignore[attr-defined]
