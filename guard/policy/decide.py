"""The decision rule: findings and scores in, what to redact and where to stop out. Pure.

No clock, no I/O, no logging: the same inputs always give the same verdict, which is what makes the
released text independent of how a stream was cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from guard.messages import Evidence
from guard.policy.schema import FailMode, PolicySpec, Principle
from guard.types import CATEGORIES, PII, Finding

_RANK = {"allow": 0, "redact": 1, "block": 2}


class ThresholdView(Protocol):
    """Live thresholds: a policy default unless feedback tuning moved it."""

    @property
    def version(self) -> int: ...

    def value(self, policy: str, category: str, tenant: str | None, default: float) -> float: ...


class StaticThresholds:
    """Thresholds exactly as the policy files state them (no tuning)."""

    version = 0

    def value(self, policy: str, category: str, tenant: str | None, default: float) -> float:
        return default


@dataclass(frozen=True, slots=True)
class Redaction:
    start: int
    end: int
    placeholder: str


@dataclass(frozen=True, slots=True)
class ScoredWindow:
    """A scored semantic window: its span, the new part, and effective (context-combined) scores."""

    start: int
    new_start: int
    end: int
    scores: np.ndarray  # [C] effective probabilities


@dataclass(frozen=True)
class Verdict:
    redactions: tuple[Redaction, ...]
    block_at: int | None
    evidence: tuple[Evidence, ...]
    principle: str | None


def placeholder(label: str) -> str:
    return f"[{label.upper()}]"


def _fires_pii(p: Principle, f: Finding) -> bool:
    return "pii" in p.detectors and f.category == PII and f.label in p.entities


def _watches_lexical(p: Principle, f: Finding) -> bool:
    return "lexical" in p.detectors and f.category in p.categories


def term_gate(p: Principle) -> float:
    """The weight a blocklist term needs to fire ``p``.

    A weight is how often the term is harmful on its own, on the scale of the principle's
    threshold: "anal" (0.4) must not stop an answer about fish fins under a 0.8 threshold, and
    leaves the judgement to the semantic layer. The threshold as the policy file states it, not
    as feedback tuned it: verdicts on semantic scores say nothing about which words to stop. A
    principle that reads only blocklists and states no threshold has no other layer to leave a
    term to, so every term fires it. Weight-1.0 terms fire at every threshold.
    """
    if "semantic" in p.detectors or "threshold" in p.model_fields_set:
        return p.threshold
    return 0.0


def decide(
    spec: PolicySpec,
    thresholds: ThresholdView,
    tenant: str | None,
    findings: Sequence[Finding],
    windows: Sequence[ScoredWindow],
    failed_from: int | None = None,
    failure_code: str = "",
) -> Verdict:
    """Apply every principle to settled fast-layer findings and scored windows.

    ``failed_from``: the semantic layer could not score the text from this offset on; each semantic
    principle then fails closed (block there) or open (let it pass), as it declares.
    """
    redactions: list[Redaction] = []
    evidence: list[Evidence] = []
    blocks: list[int] = []
    top: tuple[int, str] | None = None

    def fire(p: Principle, category: str, detector: str, score: float, threshold: float,
             start: int, end: int, label: str, cut: int) -> None:
        nonlocal top
        evidence.append(Evidence(principle=p.id, action=p.action, category=category,
                                 detector=detector, score=round(float(score), 4),
                                 threshold=round(float(threshold), 4), start=start, end=end,
                                 label=label))
        if p.action == "block":
            blocks.append(cut)
        elif p.action == "redact":
            redactions.append(Redaction(start, end, placeholder(label)))
        rank = _RANK[p.action]
        if top is None or rank > top[0]:
            top = (rank, p.id)

    for f in findings:
        for p in spec.principles:
            if _fires_pii(p, f):
                fire(p, f.category, f.detector, f.score, 0.0, f.start, f.end, f.label, f.start)
            elif _watches_lexical(p, f):
                thr = term_gate(p)
                if f.score >= thr:
                    fire(p, f.category, f.detector, f.score, thr, f.start, f.end, f.category, f.start)

    semantic = [p for p in spec.principles if "semantic" in p.detectors and p.categories]
    for w in windows:
        for p in semantic:
            for c in p.categories:
                thr = thresholds.value(spec.policy, c, tenant, p.threshold)
                score = float(w.scores[CATEGORIES.index(c)])
                if score >= thr:
                    fire(p, c, "semantic", score, thr, w.new_start, w.end, c, w.new_start)

    if failed_from is not None:
        for p in semantic:
            mode: FailMode = p.on_detector_error or spec.on_detector_error
            if mode == "closed":
                evidence.append(Evidence(principle=p.id, action="block", category=p.categories[0],
                                         detector="semantic", score=1.0, threshold=0.0,
                                         start=failed_from, end=failed_from, label=failure_code))
                blocks.append(failed_from)
                if top is None or top[0] < _RANK["block"]:
                    top = (_RANK["block"], p.id)

    return Verdict(
        redactions=tuple(merge(redactions)),
        block_at=min(blocks) if blocks else None,
        evidence=tuple(evidence),
        principle=top[1] if top else None,
    )


def merge(redactions: Sequence[Redaction]) -> list[Redaction]:
    """Union overlapping redactions; the earliest (then longest) keeps its placeholder."""
    out: list[Redaction] = []
    for r in sorted(redactions, key=lambda r: (r.start, -r.end)):
        if out and r.start < out[-1].end:
            last = out[-1]
            if r.end > last.end:
                out[-1] = Redaction(last.start, r.end, last.placeholder)
        else:
            out.append(r)
    return out
