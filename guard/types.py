"""Internal value types that never leave the process.

Offsets are always absolute character offsets into the whole stream text (Python ``str`` indices),
so findings from different layers and different chunks can be compared and merged directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np

#: The harm taxonomy, in the order every model output tensor uses. Changing the order is a
#: model-format change: the contract test checks it against the model repository.
CATEGORIES: Final[tuple[str, ...]] = (
    "hate",
    "harassment",
    "violence",
    "self_harm",
    "sexual",
    "sexual_minors",
    "dangerous",
    "profanity",
)

#: Category name used by PII findings; the finding's ``label`` carries the entity type.
PII: Final[str] = "pii"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a detector saw: a span of text, what it is, and how sure the detector is."""

    start: int
    end: int
    category: str  # a harm category from CATEGORIES, or PII
    label: str  # entity type ("EMAIL") for PII, matched term id for lexical, category for semantic
    score: float
    detector: str  # detector instance name: "lexical", "pii", "semantic", "context"

    def shifted(self, offset: int) -> Finding:
        return Finding(self.start + offset, self.end + offset, self.category, self.label,
                       self.score, self.detector)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a fast (in-process, text) scanner found in a text it may only have the start of.

    ``stable_until`` is the release frontier this scanner vouches for: every finding that starts
    before it is final and reported, and text appended later can only create findings that start at
    or after it. With ``final=True`` the scanner must return ``stable_until == len(text)``.

    ``opened`` is an entity that has begun but not ended, and may outgrow any bounded hold-back (a
    private key block before its END line): it runs from ``opened.start`` to at least the end of the
    text, and ``opened`` spans the text that opened it. That text followed by any later part of the
    entity must scan as the entity still open, so a caller that forgets the start can show the
    scanner the opener again instead (see ``Pipeline._scan``). None when final.
    """

    findings: tuple[Finding, ...]
    stable_until: int
    opened: Finding | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A token window of one stream, sent to a semantic detector.

    ``start``/``end`` are absolute character offsets of the text the window covers; ``input_ids``
    are the tokenizer ids (without padding) the model sees.
    """

    stream_id: str
    start: int
    end: int
    text: str
    input_ids: np.ndarray = field(compare=False, repr=False)

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])
