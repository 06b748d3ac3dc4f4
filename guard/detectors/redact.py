"""Typed placeholders for PII: ``[EMAIL]``, ``[PHONE]``, ``[CREDIT_CARD]``, ...

A reader still understands the answer ("reach John at [EMAIL]") and no value leaks. Overlapping
findings are merged into one placeholder covering their union, so no fragment of either survives;
it is named after the longest of them (the earliest on a tie), the one that explains most of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from guard.types import PII, Finding


def placeholder(label: str) -> str:
    return f"[{label}]"


def merge_spans(findings: Iterable[Finding]) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, label)`` covering every PII finding, in text order."""
    spans = sorted(
        ((f.start, f.end, f.label) for f in findings if f.category == PII and f.end > f.start),
        key=lambda s: (s[0], -(s[1] - s[0])),
    )
    merged: list[tuple[int, int, str]] = []
    best_len = 0
    for start, end, label in spans:
        if merged and start < merged[-1][1]:
            m_start, m_end, m_label = merged[-1]
            if end - start > best_len:
                m_label, best_len = label, end - start
            merged[-1] = (m_start, max(m_end, end), m_label)
        else:
            merged.append((start, end, label))
            best_len = end - start
    return merged


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with every PII finding replaced by its placeholder; other findings are ignored."""
    out: list[str] = []
    pos = 0
    for start, end, label in merge_spans(findings):
        if start < 0 or end > len(text):
            raise ValueError(f"finding span {start}:{end} outside text of length {len(text)}")
        out.append(text[pos:start])
        out.append(placeholder(label))
        pos = end
    out.append(text[pos:])
    return "".join(out)
