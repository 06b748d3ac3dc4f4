"""The streaming contract every fast scanner must meet, as one checkable function.

The pipeline scans the unreleased text (plus some released left context) on every chunk and
releases only up to the smallest ``stable_until``; the released text must not depend on how the
stream was cut. That holds when, for any text ``T`` and prefixes ``P = T[:k]``, ``P2 = T[:k2]``
(``k <= k2``):

(a) ``scan`` is pure;
(b) the findings of ``scan(P, final=False)`` are exactly the findings of ``scan(T, final=True)``
    that start before its ``stable_until`` (so nothing it reports can change, and nothing settled
    is missing);
(c) ``stable_until`` never decreases as text is appended, and is ``len`` when ``final``;
(d) scanning from ``context_chars`` before a released point gives the same findings and frontier
    from that point on as scanning from the beginning.
"""

from __future__ import annotations

from guard.detectors.base import Scanner
from guard.types import Finding


def _after(findings: tuple[Finding, ...] | list[Finding], point: int, shift: int = 0) -> set[Finding]:
    return {f.shifted(shift) for f in findings if f.start + shift >= point}


def check_contract(scanner: Scanner, text: str, k: int, k2: int) -> None:
    k, k2 = sorted((min(k, len(text)), min(k2, len(text))))
    full = scanner.scan(text, True)
    assert full.stable_until == len(text)
    assert scanner.scan(text, True) == full, "(a) not pure"

    part = scanner.scan(text[:k], False)
    frontier = part.stable_until
    assert 0 <= frontier <= k
    assert all(f.start < frontier for f in part.findings), "reported an unsettled finding"
    settled = {f for f in full.findings if f.start < frontier}
    assert set(part.findings) == settled, "(b) settled findings differ from the final ones"
    assert scanner.scan(text[:k], True).stable_until == k

    later = scanner.scan(text[:k2], False)
    assert later.stable_until >= frontier, "(c) stable_until went backwards"

    # (d): the pipeline released up to the frontier (never into a finding) and keeps
    # context_chars of it as left context for the next scans.
    released = frontier
    moved = True
    while moved:
        moved = False
        for f in full.findings:
            if f.start < released < f.end:
                released, moved = f.start, True
    base = max(0, released - int(getattr(scanner, "context_chars")))
    rescan = scanner.scan(text[base:], True)
    assert _after(rescan.findings, released, base) == _after(full.findings, released), "(d) final"
    if k2 >= released:
        partial = scanner.scan(text[base:k2], False)
        assert partial.stable_until + base == later.stable_until, "(d) frontier differs"
        assert _after(partial.findings, released, base) == _after(later.findings, released), "(d)"
