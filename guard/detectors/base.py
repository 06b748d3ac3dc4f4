"""The two detector interfaces.

Fast layers (lexical, PII) are synchronous text scanners: cheap, in-process, run on every chunk.
Semantic layers are async and batched: a batch of windows from many streams goes out in one call
(to Triton, or to ONNX Runtime in-process) and comes back as one probability row per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from guard.types import ScanResult, Window


@runtime_checkable
class Scanner(Protocol):
    """A fast text layer. Pure: the same text gives the same result, whatever came before."""

    name: str

    def scan(self, text: str, final: bool) -> ScanResult:
        """Find spans in ``text`` (offsets relative to ``text``).

        ``final=False`` means more text may follow, so the scanner reports in ``stable_until`` how far
        its findings are settled (see ``ScanResult``).
        """
        ...


@runtime_checkable
class SemanticDetector(Protocol):
    """A batched window classifier returning calibrated probabilities per category."""

    name: str
    categories: tuple[str, ...]
    model_version: str

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        """Return float32 ``[len(windows), len(categories)]`` probabilities, in input order.

        Raises ``DetectorError`` (``DetectorTimeout``/``DetectorUnavailable``) when it cannot answer.
        """
        ...


class DetectorWrapper:
    """A semantic detector around another (retries, timing): it answers as the inner one does, so
    decisions name the model that scored them, not the wrapper. Subclasses override ``score``."""

    def __init__(self, inner: SemanticDetector) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def categories(self) -> tuple[str, ...]:
        return self.inner.categories

    @property
    def model_version(self) -> str:
        return self.inner.model_version

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        return await self.inner.score(windows)
