"""The watermark: how much of a stream may be shown, and what it looks like once redacted. Pure.

Text before the watermark has been released; text after it is held. The watermark advances to the
frontier every layer has cleared, never into the middle of a span that will be redacted (so a
placeholder replaces the whole entity, wherever the chunks were cut), and is pushed forward only
when the held text would exceed the policy's ``max_hold_back_chars`` (the latency bound wins then).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guard.policy.decide import Redaction


@dataclass(frozen=True, slots=True)
class Released:
    text: str
    released: int  # new watermark
    covered: int  # output covers original text up to here
    redacted: bool


def settle_frontier(frontier: int, released: int, redactions: Sequence[Redaction]) -> int:
    """Pull the frontier back to the start of a redaction it would cut."""
    for r in redactions:
        if r.start < frontier < r.end:
            return max(released, r.start)
    return max(frontier, released)


def cut(text: str, base: int, released: int, covered: int, frontier: int,
        redactions: Sequence[Redaction]) -> Released:
    """Release ``[released, frontier)`` of the stream (``text`` starts at absolute ``base``).

    ``redactions`` must be disjoint and sorted (``decide.merge``). A redaction whose placeholder was
    already emitted (``covered`` reaches into it) is not emitted again.
    """
    out: list[str] = []
    pos = max(released, covered)
    cov = covered
    redacted = False
    for r in redactions:
        if r.end <= pos:
            continue
        if r.start >= frontier:
            break
        if r.start > pos:
            out.append(text[pos - base : r.start - base])
            pos = r.start
        if cov <= r.start:
            out.append(r.placeholder)
            redacted = True
        pos = max(pos, r.end)
        cov = max(cov, pos)
    if pos < frontier:
        out.append(text[pos - base : frontier - base])
    return Released(text="".join(out), released=max(released, frontier), covered=max(cov, frontier),
                    redacted=redacted)
