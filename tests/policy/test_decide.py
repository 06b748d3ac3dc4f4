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


def test_tuning_moves_the_semantic_bar_not_which_terms_fire():
    """Verdicts on semantic scores say nothing about which words to stop: a tuner raising the
    threshold to 0.82 silenced "pipe bomb | 0.8"."""
    assert decide(spec(0.8), Tuned(0.82), None, [term(0.8)], []).block_at == 10
    assert decide(spec(0.8), Tuned(0.6), None, [term(0.7)], []).block_at is None


def lexical_only(threshold: float | None) -> PolicySpec:
    principle = {"id": "mask", "text": "t", "categories": ["sexual"], "detectors": ["lexical"], "action": "redact"}
    if threshold is not None:
        principle["threshold"] = threshold
    return PolicySpec.model_validate({"policy": "p", "principles": [principle]})


def test_a_blocklist_only_principle_without_a_threshold_fires_on_every_term():
    """No semantic layer to leave a term to: the unstated default 0.5 must not drop "crap | 0.4"."""
    assert decide(lexical_only(None), StaticThresholds(), None, [term(0.4)], []).redactions
    assert not decide(lexical_only(0.5), StaticThresholds(), None, [term(0.4)], []).redactions
    assert decide(lexical_only(0.5), StaticThresholds(), None, [term(0.6)], []).redactions


@pytest.mark.parametrize(("text", "blocked"), [
    ("Get out of here, you dirty wetback.", True),
    ("Spic and Span cleans the floor.", False),            # 0.6: a brand, and an idiom
    ("Set the background to #fa6 and the border to #f46.", False),  # colours, not leetspeak
    ("Dick Van Dyke starred in Mary Poppins.", False),   # weighted 0.6: left to the semantic layer
    ("I adopted a Maine Coon kitten last week.", False),  # 0.5
    ("The team found a chink in the armor of the argument.", False),
])
def test_default_blocks_slurs_on_their_own_and_leaves_innocent_uses_to_the_model(text, blocked):
    from pathlib import Path

    from guard.detectors.lexical import LexicalScanner
    from guard.policy.load import default_policy_dir, load_policy

    spec = load_policy(default_policy_dir() / "default.yaml")
    scanner = LexicalScanner.from_directory(Path(default_policy_dir()) / "blocklists")
    findings = scanner.scan(text, True).findings
    v = decide(spec, StaticThresholds(), None, findings, [])
    assert (v.block_at is not None) is blocked
