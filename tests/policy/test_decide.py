"""The decision rule: when a blocklist finding fires its principle."""

from __future__ import annotations

import numpy as np
import pytest

from guard.policy.decide import ScoredWindow, StaticThresholds, decide
from guard.policy.schema import PolicySpec
from guard.types import CATEGORIES, Finding


def spec(threshold: float = 0.8, detectors: tuple[str, ...] = ("semantic", "lexical")) -> PolicySpec:
    return PolicySpec.model_validate({
        "policy": "p",
        "principles": [{"id": "no-sexual", "text": "t", "categories": ["sexual"],
                        "threshold": threshold, "detectors": list(detectors), "action": "block"}],
    })


def term(score: float) -> Finding:
    return Finding(start=10, end=14, category="sexual", label="sexual", score=score, detector="lexical")


class Tuned:
    version = 1

    def __init__(self, value: float) -> None:
        self._value = value

    def value(self, policy: str, category: str, tenant: str | None, default: float) -> float:
        return self._value


@pytest.mark.parametrize(("weight", "threshold", "fires"), [
    (1.0, 0.8, True), (1.0, 1.0, True),     # a plain term fires whatever the threshold
    (0.8, 0.8, True), (0.4, 0.8, False),    # a weighted one only where its weight reaches it
    (0.4, 0.4, True),
])
def test_a_blocklist_weight_is_compared_with_the_principles_threshold(weight, threshold, fires):
    v = decide(spec(threshold), StaticThresholds(), None, [term(weight)], [])
    assert (v.block_at == 10) is fires
    if fires:
        (e,) = v.evidence
        assert (e.detector, e.score, e.threshold) == ("lexical", weight, threshold)
    else:
        assert v.evidence == () and v.principle is None


def test_a_weighted_term_below_the_threshold_still_leaves_the_semantic_layer_its_say():
    w = np.zeros(len(CATEGORIES), np.float32)
    w[CATEGORIES.index("sexual")] = 0.9
    v = decide(spec(0.8), StaticThresholds(), None, [term(0.4)], [ScoredWindow(0, 0, 20, w)])
    assert v.block_at == 0 and [e.detector for e in v.evidence] == ["semantic"]


def test_a_tuned_threshold_gates_the_terms_of_its_semantic_principle():
    assert decide(spec(0.8), Tuned(0.6), None, [term(0.7)], []).block_at == 10
    assert decide(spec(0.6), Tuned(0.8), None, [term(0.7)], []).block_at is None


def test_a_lexical_only_principle_keeps_its_own_threshold():
    # Tuned thresholds are keyed by category and belong to the semantic principle.
    assert decide(spec(0.5, ("lexical",)), Tuned(0.9), None, [term(0.6)], []).block_at == 10
