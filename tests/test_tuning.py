"""Feedback tuning: bounded, monotone, rate-limited, pin-respecting, duplicate-proof, gated."""

from __future__ import annotations

import dataclasses

import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import msgspec
import numpy as np
import pytest
import yaml  # type: ignore[import-untyped]
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from guard.messages import Decision, Feedback, ThresholdChange, Verdict
from guard.messages import Evidence as DecisionEvidence
from guard.thresholds import ThresholdKey, Thresholds
from guard.tuning import (
    BINS,
    RECREATED_AFTER_MS,
    Counts,
    DecisionRecord,
    Evidence,
    Proposal,
    ShadowSpec,
    TunerState,
    TuningSpec,
    classify,
    expire,
    observe,
    operating_point,
    propose,
    shadow_gate,
    tune,
)

POLICY = "default"
KEY = ThresholdKey(None, POLICY, "hate")
HOUR = 3_600_000


NO_FRESH = Counts()


def evidence(rows: Sequence[tuple[float, bool]], fresh: Counts = NO_FRESH, epoch: int = 0) -> Evidence:
    ev = Evidence(epoch=epoch)
    for score, positive in rows:
        ev = ev.add(score, positive, 0)
    return Evidence(ev.positives, ev.negatives, fresh, epoch, 0)


def with_verdicts(ev: Evidence, outcome: str, scores: Sequence[float]) -> Evidence:
    for s in scores:
        ev = ev.add(s, outcome in ("tp", "fn"), 0, fresh=outcome)  # type: ignore[arg-type]
    return ev


def change_for(key: ThresholdKey, version: int, value: float,
               status: str = "promoted") -> ThresholdChange:
    return ThresholdChange(policy=key.policy, category=key.category, tenant=key.tenant, old=0.5,
                           value=value, version=version, status=status)  # type: ignore[arg-type]


def result(p: Proposal | None, current: float) -> float:
    return current if p is None else p.new


# -- strategies -------------------------------------------------------------------------------------

scores = st.floats(0.0, 1.0, allow_nan=False)
rows = st.lists(st.tuples(scores, st.booleans()), max_size=300)
fresh_counts = st.builds(Counts, *(st.integers(0, 80).map(float) for _ in range(4)))


@st.composite
def specs(draw: st.DrawFn, fpr: bool | None = None) -> TuningSpec:
    floor = draw(st.floats(0.0, 0.9))
    ceiling = draw(st.floats(floor, 1.0))
    use_fpr = draw(st.booleans()) if fpr is None else fpr
    target = {"target_fpr": draw(st.floats(0.001, 0.5))} if use_fpr else \
        {"target_precision": draw(st.floats(0.3, 0.999))}
    return TuningSpec.model_validate({
        **target,
        "floor": floor, "ceiling": ceiling,
        "max_step": draw(st.floats(0.001, 0.5)),
        "min_evidence": draw(st.integers(1, 60)),
        "label_noise": draw(st.sampled_from([0.0, 0.02, 0.1, 0.3])),
        "confidence_z": draw(st.sampled_from([0.0, 1.0, 2.0])),
        "max_changes_per_hour": draw(st.sampled_from([0.5, 1, 6, 60])),
    })


@st.composite
def cases(draw: st.DrawFn, fpr: bool | None = None) -> tuple[TuningSpec, float, Evidence]:
    spec = draw(specs(fpr))
    current = draw(st.floats(spec.floor, spec.ceiling))
    return spec, current, evidence(draw(rows), draw(fresh_counts))


# -- the spec ---------------------------------------------------------------------------------------


class TestSpec:
    def test_default_target_is_precision(self) -> None:
        assert TuningSpec().target_precision == 0.9 and TuningSpec().target_fpr is None

    def test_fpr_target(self) -> None:
        s = TuningSpec(target_fpr=0.02)
        assert s.target_precision is None and s.band == pytest.approx(0.002)

    @pytest.mark.parametrize("bad", [
        {"target_precision": 0.9, "target_fpr": 0.1},
        {"floor": 0.9, "ceiling": 0.5},
        {"max_step": 0.0},
        {"min_evidence": 0},
        {"label_noise": 0.5},
        {"shadow": {"dataset": "x.jsonl", "min_recal": 0.8}},
        {"treshold": 0.5},
    ])
    def test_rejects(self, bad: dict[str, object]) -> None:
        """Typos and impossible bounds fail loudly at load time, never silently turn tuning off."""
        with pytest.raises(ValidationError):
            TuningSpec.model_validate(bad)

    def test_frozen(self) -> None:
        with pytest.raises(ValidationError):
            TuningSpec().pinned = True

    def test_policy_files_validate(self) -> None:
        """Every ``tuning`` section in ``policies/`` is a valid spec."""
        found = 0
        for path in sorted((Path(__file__).resolve().parents[1] / "policies").glob("*.yaml")):
            for p in (yaml.safe_load(path.read_text()) or {}).get("principles", []):
                if "tuning" in p:
                    TuningSpec.model_validate(p["tuning"])
                    found += 1
        assert found, "the shipped policies tune thresholds from feedback"

    def test_min_interval(self) -> None:
        assert TuningSpec(max_changes_per_hour=6).min_interval_ms == 600_000
        assert TuningSpec(max_changes_per_hour=0).min_interval_ms == float("inf")


# -- evidence ---------------------------------------------------------------------------------------


class TestEvidence:
    @pytest.mark.parametrize(("fired", "verdict", "outcome"), [
        (True, "correct", "tp"), (True, "false_positive", "fp"), (True, "false_negative", None),
        (False, "correct", "tn"), (False, "false_negative", "fn"), (False, "false_positive", None),
    ])
    def test_classify(self, fired: bool, verdict: Verdict, outcome: str | None) -> None:
        """A verdict means something only next to what the decision did."""
        assert classify(fired, verdict) == outcome

    @given(rows, st.integers(0, BINS))
    def test_counts_at_any_threshold(self, data: list[tuple[float, bool]], k: int) -> None:
        """``at(t)`` is the confusion matrix had every judged decision been decided at ``t``."""
        t = k / BINS
        c = evidence(data).at(t)
        # at the top edge (1.0) nothing fires, a score of exactly 1.0 included (tuning._edge)
        fires = (lambda s: s >= t) if k < BINS else (lambda s: False)
        assert c.tp == sum(1 for s, y in data if y and fires(s))
        assert c.fp == sum(1 for s, y in data if not y and fires(s))
        assert c.fn == sum(1 for s, y in data if y and not fires(s))
        assert c.tn == sum(1 for s, y in data if not y and not fires(s))

    def test_decay(self) -> None:
        ev = Evidence().add(0.9, True, 0)
        later = ev.decayed(3_600_000, half_life_s=3600)
        assert later.at(0.5).tp == pytest.approx(0.5)
        assert ev.decayed(3_600_000, None) is ev

    def test_restart_keeps_bins(self) -> None:
        """A threshold change restarts the fresh counts; the labeled scores stay valid."""
        ev = with_verdicts(Evidence(), "fp", [0.7]).restarted(epoch=4)
        assert ev.fresh == Counts() and ev.epoch == 4 and ev.at(0.5).fp == 1

    @given(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.05, 0.2]))
    def test_noise_correction_inverts_flips(self, p: float, e: float) -> None:
        """Observed precision under symmetric flips at ``e`` maps back to the true one."""
        n = 1000.0
        observed = p * (1 - e) + (1 - p) * e
        c = Counts(tp=observed * n, fp=(1 - observed) * n)
        assert c.precision(e) == pytest.approx(p, abs=1e-9)

    def test_immutable(self) -> None:
        ev = Evidence().add(0.5, True, 0)
        with pytest.raises(ValueError):
            ev.positives[0] = 3.0


# -- propose ----------------------------------------------------------------------------------------


class TestPropose:
    @given(cases(), st.integers(0, 10 * HOUR), st.none() | st.integers(0, 10 * HOUR), st.booleans())
    def test_bounds(self, case: tuple[TuningSpec, float, Evidence], now: int, last: int | None,
                    pinned: bool) -> None:
        """Never outside [floor, ceiling]; never a step larger than max_step."""
        spec, current, ev = case
        p = propose(current, ev, spec, now, last, pinned=pinned)
        if p is not None:
            assert spec.floor <= p.new <= spec.ceiling
            assert abs(p.new - p.old) <= spec.max_step + 1e-12
            assert p.old == current and p.new != current

    @given(cases(fpr=False), st.integers(1, 40), st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40))
    def test_more_false_positives_never_lower(self, case: tuple[TuningSpec, float, Evidence], k: int,
                                              where: list[float]) -> None:
        """Adding false positives (fired decisions at or above the threshold) never lowers it."""
        spec, current, ev = case
        more = with_verdicts(ev, "fp", [current + (1 - current) * w for w in where[:k]])
        assert result(propose(current, more, spec, 0, None), current) >= \
            result(propose(current, ev, spec, 0, None), current)

    @given(cases(fpr=False), st.integers(1, 40), st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40))
    def test_more_misses_never_raise(self, case: tuple[TuningSpec, float, Evidence], k: int,
                                     where: list[float]) -> None:
        """Adding misses (positives below the threshold) never raises it."""
        spec, current, ev = case
        more = with_verdicts(ev, "fn", [current * w for w in where[:k]])
        assert result(propose(current, more, spec, 0, None), current) <= \
            result(propose(current, ev, spec, 0, None), current)

    @given(cases(fpr=True), st.integers(1, 40), st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40))
    def test_fpr_direction_is_monotone(self, case: tuple[TuningSpec, float, Evidence], k: int,
                                       where: list[float]) -> None:
        """For an FPR target, false positives never turn a stay or a raise into a lowering, and
        misses never turn a stay or a lowering into a raise. (Magnitudes are not strictly monotone:
        one more negative also lowers the FPR above its own score.)"""
        spec, current, ev = case
        base = result(propose(current, ev, spec, 0, None), current)
        fp = result(propose(current, with_verdicts(ev, "fp", [current + (1 - current) * w
                                                              for w in where[:k]]), spec, 0, None), current)
        fn = result(propose(current, with_verdicts(ev, "fn", [current * w for w in where[:k]]),
                            spec, 0, None), current)
        if base >= current:
            assert fp >= current
        if base <= current:
            assert fn <= current

    @given(cases(), st.integers(0, 10 * HOUR))
    def test_pinned_never_moves(self, case: tuple[TuningSpec, float, Evidence], now: int) -> None:
        spec, current, ev = case
        assert propose(current, ev, spec, now, None, pinned=True) is None
        assert propose(current, ev, spec.model_copy(update={"pinned": True}), now, None) is None

    def test_moves_towards_target(self) -> None:
        """Precision far below target: raise by max_step; far above with misses: lower."""
        spec = TuningSpec(target_precision=0.9, min_evidence=10, max_step=0.05, floor=0.1, ceiling=0.95)
        rng = np.random.default_rng(0)
        pos = [(float(s), True) for s in rng.beta(6, 2, 400)]
        neg = [(float(s), False) for s in rng.beta(2, 6, 4000)]
        ev = evidence(pos + neg, Counts(tp=50, fp=50, fn=50, tn=50))
        up = propose(0.3, ev, spec, 0, None)
        assert up is not None and up.new == pytest.approx(0.35) and "raise" in up.reason
        down = propose(0.9, ev, spec, 0, None)
        assert down is not None and down.new == pytest.approx(0.85) and "lower" in down.reason
        assert up.figures["precision"] < 0.9 < down.figures["precision"]

    def test_min_evidence(self) -> None:
        """No move before ``min_evidence`` fresh verdicts on the side the move is about."""
        spec = TuningSpec(target_precision=0.9, min_evidence=30, max_step=0.05)
        ev = evidence([(0.6, False)] * 200 + [(0.6, True)] * 20)
        thin = Evidence(ev.positives, ev.negatives, Counts(tp=5, fp=24, tn=500))
        enough = Evidence(ev.positives, ev.negatives, Counts(tp=5, fp=25))
        assert propose(0.5, thin, spec, 0, None) is None
        assert propose(0.5, enough, spec, 0, None) is not None

    def test_rate_limit(self) -> None:
        spec = TuningSpec(target_precision=0.9, min_evidence=1, max_changes_per_hour=4)
        ev = evidence([(0.6, False)] * 50, Counts(fp=50))
        assert propose(0.5, ev, spec, now_ms=HOUR, last_change_ms=HOUR - 899_999) is None
        assert propose(0.5, ev, spec, now_ms=HOUR, last_change_ms=HOUR - 900_000) is not None
        assert propose(0.5, ev, spec.model_copy(update={"max_changes_per_hour": 0}), HOUR, None) is None

    def test_an_event_stamped_in_the_future_does_not_freeze_the_key(self) -> None:
        spec = TuningSpec(target_precision=0.9, min_evidence=1, max_changes_per_hour=4)
        ev = evidence([(0.6, False)] * 50, Counts(fp=50))
        assert propose(0.5, ev, spec, now_ms=HOUR, last_change_ms=HOUR + 10 * 365 * 24 * HOUR) is not None, \
            "a time ahead of the clock bounds nothing (it froze the key for ten years)"

    def test_noise_is_corrected(self) -> None:
        """Observed precision 0.86 through 5% flips is a true 0.9: no move for a 0.9 target."""
        spec = TuningSpec(target_precision=0.9, min_evidence=1, confidence_z=0.0)
        ev = evidence([(0.7, True)] * 860 + [(0.7, False)] * 140, Counts(tp=860, fp=140))
        assert propose(0.5, ev, spec, 0, None) is not None
        assert propose(0.5, ev, spec.model_copy(update={"label_noise": 0.05}), 0, None) is None


# -- observe: identity, staleness, unknowns -----------------------------------------------------------


def record(i: int, fired: bool, score: float, version: int = 0, tenant: str | None = None) -> DecisionRecord:
    return DecisionRecord(f"s{i}:0", POLICY, tenant, version, i,
                          {"hate": score}, frozenset({"hate"} if fired else set()))


SPECS = {(POLICY, "hate"): TuningSpec(target_precision=0.9, min_evidence=5, max_step=0.02,
                                      floor=0.2, ceiling=0.9, max_changes_per_hour=2)}
BASE = Thresholds.from_defaults({(POLICY, "hate"): 0.5})


def fb(i: int, verdict: Verdict = "false_positive", source: str = "reviewer",
       category: str = "hate") -> Feedback:
    return Feedback(decision_id=f"s{i}:0", stream_id=f"s{i}", category=category, verdict=verdict,
                    source=source)


def snapshot(state: TunerState) -> dict[ThresholdKey, tuple[object, ...]]:
    return {k: (e.positives.tobytes(), e.negatives.tobytes(), e.fresh) for k, e in state.evidence.items()}


class TestObserve:
    def test_counts_a_verdict(self) -> None:
        index = {"s1:0": record(1, True, 0.7)}
        s = observe(TunerState(), [fb(1)], index, BASE, SPECS, 0)
        ev = s.evidence[KEY]
        assert ev.fresh == Counts(fp=1) and ev.at(0.5).fp == 1 and s.counts.counted == 1

    def test_ten_thousand_identical_verdicts_count_once(self) -> None:
        index = {"s1:0": record(1, True, 0.7)}
        s = observe(TunerState(), [fb(1)] * 10_000, index, BASE, SPECS, 0)
        assert s.evidence[KEY].fresh == Counts(fp=1)
        assert s.counts.counted == 1 and s.counts.duplicate == 9_999

    @given(st.lists(st.tuples(st.integers(0, 15), st.sampled_from(["correct", "false_positive",
                                                                   "false_negative"]),
                              st.sampled_from(["reviewer", "user"])), max_size=60),
           st.randoms(use_true_random=False))
    def test_duplicates_count_once(self, rows: list[tuple[int, Verdict, str]], rnd: random.Random) -> None:
        """Replaying any part of the feedback, in any batches, adds nothing: the first verdict per
        (decision, category) wins, whatever its source."""
        index = {f"s{i}:0": record(i, i % 2 == 0, 0.3 + i / 40) for i in range(16)}
        feedback = [fb(i, v, src) for i, v, src in rows]
        firsts: dict[int, Feedback] = {}
        for (i, _, _), f in zip(rows, feedback, strict=True):
            firsts.setdefault(i, f)
        once = observe(TunerState(), list(firsts.values()), index, BASE, SPECS, 0)
        replayed = feedback + rnd.choices(feedback, k=len(feedback)) if feedback else []
        cut = rnd.randint(0, len(replayed))
        s = observe(TunerState(), replayed[:cut], index, BASE, SPECS, 0)
        s = observe(s, replayed[cut:], index, BASE, SPECS, 0)
        assert snapshot(s) == snapshot(once)

    @given(st.lists(st.lists(st.tuples(st.integers(0, 15), st.sampled_from(
               ["correct", "false_positive", "false_negative"])), max_size=8), min_size=1, max_size=6),
           st.data())
    def test_a_crash_between_the_evidence_and_the_identities_counts_nothing_twice(
            self, batches: list[list[tuple[int, Verdict]]], data: st.DataObject) -> None:
        """The tuner writes a batch's evidence (acknowledged) and then its identities. It dies after
        any batch's evidence write, with some or none of that batch's identities written, and
        re-reads the batch from its last commit: the evidence ends as if it had never died (the
        evidence knows the records it holds). Before, identities went first, and a crash between
        the two lost the batch's verdicts: re-read, they were duplicates."""
        index = {f"s{i}:0": record(i, i % 2 == 0, 0.3 + i / 40) for i in range(16)}
        offset, read = 0, []
        for rows in batches:
            read.append(([fb(i, v) for i, v in rows],
                         [(i % 2, offset + k, 1_000 + offset + k) for k, (i, _) in enumerate(rows)]))
            offset += len(rows)
        clean = TunerState()
        for verdicts, at in read:
            clean = observe(clean, verdicts, index, BASE, SPECS, 0, at)
        crash = data.draw(st.integers(0, len(read) - 1))
        state = TunerState()
        for verdicts, at in read[:crash]:
            state = observe(state, verdicts, index, BASE, SPECS, 0, at)
        verdicts, at = read[crash]
        after = observe(state, verdicts, index, BASE, SPECS, 0, at)
        kept = data.draw(st.sets(st.sampled_from(sorted(set(after.seen) - set(state.seen)) or [("", "")])))
        died = TunerState(after.evidence, MappingProxyType({**state.seen, **{k: after.seen[k] for k in kept
                                                                              if k in after.seen}}))
        for verdicts, at in read[crash:]:  # the batch again, from the last commit, and the rest
            died = observe(died, verdicts, index, BASE, SPECS, 0, at)
        assert snapshot(died) == snapshot(clean)
        assert set(died.seen) == set(clean.seen)

    def test_a_feedback_topic_made_again_counts_its_new_records(self) -> None:
        """Deleted and created again, the topic's offsets start over: its records are new (newer
        than anything folded), not a re-read of the old ones."""
        index = {f"s{i}:0": record(i, True, 0.7) for i in range(4)}
        s = observe(TunerState(), [fb(0), fb(1)], index, BASE, SPECS, 0, [(0, 0, 100), (0, 1, 101)])
        assert s.evidence[KEY].folded == {0: (1, 101)}
        later = 101 + RECREATED_AFTER_MS + 1
        s = observe(s, [fb(2), fb(3)], index, BASE, SPECS, 0, [(0, 0, later), (0, 1, later + 1)])
        assert s.counts.counted == 4 and s.counts.recovered == 0
        assert s.evidence[KEY].folded == {0: (1, later + 1)}  # so a re-read of these is known again
        again = observe(TunerState(s.evidence), [fb(3)], index, BASE, SPECS, 0, [(0, 1, later + 1)])
        assert again.counts.recovered == 1 and again.counts.counted == 0
        with pytest.raises(ValueError, match="positions"):
            observe(s, [fb(2)], index, BASE, SPECS, 0, [])

    def test_a_crash_re_read_with_producer_clocks_apart_counts_nothing_twice(self) -> None:
        """Record times come from the producers' clocks: a lower offset may carry a newer time. A
        verdict unknown on the first read (its decision not indexed yet) and known on the re-read
        after a crash was taken for a record of a topic made again: the offsets folded went back
        to it, and the batch's later verdict, folded before the crash, counted twice."""
        first = {"s7:0": record(7, True, 0.7)}
        batch, at = [fb(5), fb(7)], [(0, 5, 1_000_900), (0, 7, 1_000_800)]
        s = observe(TunerState(), batch, first, BASE, SPECS, 0, at)
        again = observe(TunerState(s.evidence), batch, {**first, "s5:0": record(5, True, 0.7)},
                        BASE, SPECS, 0, at)
        assert again.evidence[KEY].total == s.evidence[KEY].total == 1.0
        assert again.counts.recovered == 2

    def test_one_decision_is_one_data_point_whatever_the_sources(self) -> None:
        """40 verdicts on one decision under 40 made-up source names were 40 units of evidence,
        enough to pass ``min_evidence`` and move the threshold on one decision."""
        index = {"s1:0": record(1, True, 0.7)}
        s = observe(TunerState(), [fb(1, source=f"x{k}") for k in range(40)], index, BASE, SPECS, 0)
        assert s.evidence[KEY].fresh == Counts(fp=1)
        assert s.counts.counted == 1 and s.counts.duplicate == 39

    def test_unknown_decision_ignored(self) -> None:
        s = observe(TunerState(), [fb(99)], {}, BASE, SPECS, 0)
        assert s.counts.unknown == 1 and not s.evidence

    def test_inconsistent_and_untuned(self) -> None:
        index = {"s1:0": record(1, False, 0.3)}
        s = observe(TunerState(), [fb(1, "false_positive"), fb(1, "correct", category="violence")],
                    index, BASE, SPECS, 0)
        assert s.counts.inconsistent == 1 and s.counts.untuned == 1 and not s.evidence

    def test_stale_verdict_labels_but_is_not_fresh(self) -> None:
        """A verdict on a decision made under an older threshold still labels its score."""
        t = BASE.apply(change_for(KEY, version=3, value=0.6))
        index = {"s1:0": record(1, True, 0.7, version=2), "s2:0": record(2, True, 0.8, version=3)}
        s = observe(TunerState(), [fb(1), fb(2)], index, t, SPECS, 0)
        ev = s.evidence[KEY]
        assert ev.at(0.6).fp == 2 and ev.fresh == Counts(fp=1) and ev.epoch == 3
        assert s.counts.stale == 1 and s.counts.counted == 1

    def test_expire_forgets_identities_with_their_decisions(self) -> None:
        index = {"s1:0": record(1, True, 0.7)}
        s = observe(TunerState(), [fb(1)], index, BASE, SPECS, 0)
        assert expire(s, before_ms=0) is s
        assert not expire(s, before_ms=2).seen

    def test_idle_tenant_evidence_is_forgotten_and_policy_keys_kept(self) -> None:
        from guard.tuning import forget_idle_tenants

        specs = {(POLICY, "hate"): SPECS[(POLICY, "hate")].model_copy(update={"scope": "tenant"})}
        index = {"s1:0": record(1, True, 0.7, tenant="acme"), "s2:0": record(2, True, 0.7, tenant="beta")}
        s = observe(TunerState(), [fb(1)], index, BASE, specs, 1_000)
        s = observe(s, [fb(2)], index, BASE, specs, 5_000)
        s = observe(s, [fb(3)], {"s3:0": record(3, True, 0.7)}, BASE, SPECS, 1_000)
        assert forget_idle_tenants(s, 1_000) == (s, [])
        after, gone = forget_idle_tenants(s, 2_000)
        assert gone == [ThresholdKey("acme", POLICY, "hate")]
        assert set(after.evidence) == {ThresholdKey("beta", POLICY, "hate"), KEY}

    def test_tenant_scope(self) -> None:
        specs = {(POLICY, "hate"): SPECS[(POLICY, "hate")].model_copy(update={"scope": "tenant"})}
        index = {"s1:0": record(1, True, 0.7, tenant="acme")}
        s = observe(TunerState(), [fb(1)], index, BASE, specs, 0)
        assert list(s.evidence) == [ThresholdKey("acme", POLICY, "hate")]

    def test_a_tenant_override_sets_its_verdicts_aside_until_released(self) -> None:
        """Under policy scope a tenant with a pinned threshold of its own says nothing about the
        policy-wide one; once the pin is released, its verdicts count for it again."""
        index = {"s1:0": record(1, True, 0.7, tenant="acme")}
        pinned = BASE.apply(change_for(ThresholdKey("acme", POLICY, "hate"), 1, 0.9))
        s = observe(TunerState(), [fb(1)], index, pinned, SPECS, 0)
        assert s.counts.overridden == 1 and not s.evidence
        released = pinned.apply(ThresholdChange(policy=POLICY, category="hate", tenant="acme", old=0.9,
                                                value=0.5, version=2, status="released"))
        s = observe(TunerState(), [fb(1)], index, released, SPECS, 0)
        assert s.counts.overridden == 0 and list(s.evidence) == [KEY]
        # decided at version 0, under acme's own pin: labelled, but no fresh evidence about the
        # policy-wide threshold (it could have unlocked a move on scores that never reached it)
        assert s.counts.stale == 1 and s.counts.counted == 0
        after = {"s2:0": record(2, True, 0.7, version=2, tenant="acme")}
        s = observe(s, [fb(2)], after, released, SPECS, 0)
        assert s.counts.counted == 1

    def test_record_from_decision(self) -> None:
        """Only a score compared with a threshold speaks about the threshold."""
        def ev(category: str, detector: str, threshold: float) -> DecisionEvidence:
            return DecisionEvidence(principle="p", action="block", category=category, detector=detector,
                                    score=0.9, threshold=threshold, start=0, end=4)
        d = Decision(decision_id="s:1", stream_id="s", seq=1, action="block", text="", released_offset=0,
                     scores={"hate": 0.9, "violence": 0.2}, thresholds_version=4,
                     evidence=(ev("hate", "semantic", 0.8), ev("profanity", "lexical", 0.0),
                               ev("dangerous", "semantic", 0.0)))
        r = DecisionRecord.from_decision(d)
        assert r.semantic == {"hate"} and r.other == {"profanity", "dangerous"}
        assert r.thresholds_version == 4 and r.scores["hate"] == 0.9


# -- the loop: an adversary cannot outrun the bounds --------------------------------------------------


def run_loop(verdicts_per_minute: int, minutes: int, verdict: Verdict = "false_positive",
             spec: TuningSpec = SPECS[(POLICY, "hate")]) -> tuple[Thresholds, list]:  # type: ignore[type-arg]
    """Feed a flood of distinct verdicts, run the tuner every minute, apply what it publishes."""
    specs = {(POLICY, "hate"): spec}
    t, state, index, changes, n = BASE, TunerState(), {}, [], 0
    for minute in range(minutes):
        now = minute * 60_000
        batch = []
        for _ in range(verdicts_per_minute):
            cur = t.get(POLICY, "hate")
            fired = verdict == "false_positive"
            score = min(1.0, cur + 0.01) if fired else max(0.0, cur - 0.01)
            index[f"s{n}:0"] = DecisionRecord(f"s{n}:0", POLICY, None, t.version, now, {"hate": score},
                                              frozenset({"hate"} if fired else set()))
            batch.append(fb(n, verdict))
            n += 1
        state = observe(state, batch, index, t, specs, now)
        for c in tune(state, t, specs, now):
            changes.append(c)
            t = t.apply(c)
    return t, changes


class TestFlood:
    @pytest.mark.parametrize("verdict", ["false_positive", "false_negative"])
    def test_ten_thousand_verdicts_stay_in_bounds_and_rate(self, verdict: Verdict) -> None:
        """10,000 false positives (or misses) in 3 hours: at most 2 moves per hour, each at most
        max_step, never past floor or ceiling."""
        spec = SPECS[(POLICY, "hate")]
        t, changes = run_loop(56, 180, verdict)
        assert sum(1 for _ in changes) <= 2 * 3
        times = [c.ts_ms for c in changes]
        assert all(b - a >= spec.min_interval_ms for a, b in itertools.pairwise(times))
        for c in changes:
            assert abs(c.value - c.old) <= spec.max_step + 1e-12
            assert spec.floor <= c.value <= spec.ceiling
        final = t.get(POLICY, "hate")
        assert spec.floor <= final <= spec.ceiling
        assert abs(final - 0.5) <= 6 * spec.max_step + 1e-9
        assert (final > 0.5) == (verdict == "false_positive")

    def test_flood_reaches_the_ceiling_not_beyond(self) -> None:
        spec = SPECS[(POLICY, "hate")].model_copy(update={"max_changes_per_hour": 60, "max_step": 0.2})
        t, changes = run_loop(20, 120, "false_positive", spec)
        assert t.get(POLICY, "hate") == spec.ceiling
        assert all(c.value <= spec.ceiling for c in changes)


# -- shadow gate ------------------------------------------------------------------------------------


def proposal(old: float, new: float) -> Proposal:
    return Proposal(old=old, new=new, reason="test", figures={}, ts_ms=0)


GATED = TuningSpec(shadow=ShadowSpec(dataset="dev.jsonl", min_recall=0.8, min_positives=5))
S_SCORES = np.array([0.95, 0.9, 0.85, 0.7, 0.6, 0.4, 0.3, 0.2, 0.65, 0.1])
S_LABELS = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])


class TestShadowGate:
    def test_rejects_recall_breaking_raise(self) -> None:
        g = shadow_gate(proposal(0.5, 0.8), S_SCORES, S_LABELS, GATED)
        assert not g.accepted and "recall 0.600 < 0.800" in g.reason
        assert g.old is not None and g.old.recall == 1.0 and g.new is not None and g.new.recall == 0.6
        assert g.figures()["shadow_new_recall"] == 0.6

    def test_accepts_within_floor(self) -> None:
        g = shadow_gate(proposal(0.5, 0.62), S_SCORES, S_LABELS, GATED)
        assert g.accepted and g.new is not None and g.new.recall == 0.8
        assert g.new.precision == pytest.approx(0.8) and g.new.fpr == pytest.approx(0.2)

    def test_fails_closed(self) -> None:
        """A configured gate that cannot measure recall rejects."""
        assert not shadow_gate(proposal(0.5, 0.6), None, None, GATED).accepted
        few = np.array([1, 0, 0, 0, 0, 0])
        assert not shadow_gate(proposal(0.5, 0.6), np.linspace(0, 1, 6), few, GATED).accepted

    def test_no_gate_configured(self) -> None:
        assert shadow_gate(proposal(0.5, 0.9), None, None, TuningSpec()).accepted

    def test_more_floors(self) -> None:
        spec = TuningSpec(shadow=ShadowSpec(dataset="d", min_recall=0.0, max_fpr=0.1, min_positives=1))
        g = shadow_gate(proposal(0.7, 0.5), S_SCORES, S_LABELS, spec)
        assert not g.accepted and "fpr" in g.reason

    def test_a_floor_broken_already_lets_a_move_that_mends_it_through(self) -> None:
        """Recall is 0.4 at 0.9 (a stricter set, a pin out of it): lowering to 0.8 brings it to 0.6,
        still under the 0.8 floor but better, so it passes; a move that makes it worse does not.
        Before, every move failed while the floor was broken: the threshold could never come back."""
        mend = shadow_gate(proposal(0.9, 0.8), S_SCORES, S_LABELS, GATED)
        assert mend.accepted and mend.new is not None and mend.new.recall == pytest.approx(0.6), mend.reason
        worse = shadow_gate(proposal(0.9, 0.92), S_SCORES, S_LABELS, GATED)
        assert not worse.accepted and "recall 0.200 < 0.800" in worse.reason
        assert not shadow_gate(proposal(0.8, 0.9), S_SCORES, S_LABELS, GATED).accepted, "0.6 to 0.4: worse"

    @given(st.lists(st.tuples(scores, st.booleans()), min_size=1, max_size=100), scores)
    def test_operating_point_matches_counts(self, data: list[tuple[float, bool]], t: float) -> None:
        s = np.array([x for x, _ in data])
        y = np.array([b for _, b in data])
        op = operating_point(t, s, y)
        tp = sum(1 for x, b in data if b and x >= t)
        fp = sum(1 for x, b in data if not b and x >= t)
        assume(tp + fp > 0)
        assert op.precision == pytest.approx(tp / (tp + fp))

    def test_tune_publishes_rejected_event_keeping_old(self) -> None:
        """A rejected proposal is an event (audit, rate clock) that leaves the old value in force,
        and is not repeated while nothing changed."""
        spec = SPECS[(POLICY, "hate")].model_copy(update={"shadow": GATED.shadow, "max_step": 0.5,
                                                          "ceiling": 0.99})
        specs = {(POLICY, "hate"): spec}
        shadow = {(POLICY, "hate"): (S_SCORES, S_LABELS)}
        base = Thresholds.from_defaults({(POLICY, "hate"): 0.7})  # any raise loses a positive
        ev = evidence([(0.95, False)] * 100, Counts(fp=100))
        (c,) = tune(TunerState(evidence={KEY: ev}), base, specs, 0, shadow)
        assert c.status == "rejected" and c.version == base.version + 1
        assert c.evidence["shadow_new_recall"] < 0.8 and "shadow gate" in c.reason
        t = base.apply(c)
        assert t.get(POLICY, "hate") == 0.7 and t.key_version(KEY) == 1
        again = TunerState(evidence={KEY: evidence([(0.95, False)] * 100, Counts(fp=100), epoch=1)})
        assert tune(again, t, specs, 10 * HOUR, shadow) == []

    def test_tune_clips_to_gate(self) -> None:
        """A move that breaks the floor is cut back to the furthest threshold the gate accepts."""
        spec = SPECS[(POLICY, "hate")].model_copy(update={"shadow": GATED.shadow, "max_step": 0.5,
                                                          "ceiling": 0.99})
        ev = evidence([(0.95, False)] * 100, Counts(fp=100))
        (c,) = tune(TunerState(evidence={KEY: ev}), BASE, {(POLICY, "hate"): spec}, 0,
                    {(POLICY, "hate"): (S_SCORES, S_LABELS)})
        assert c.status == "promoted" and c.value == pytest.approx(0.7) and "clipped" in c.reason
        assert c.evidence["shadow_new_recall"] == 0.8

    def test_tune_promotes_and_versions(self) -> None:
        ev = evidence([(0.6, False)] * 100, Counts(fp=100))
        (c,) = tune(TunerState(evidence={KEY: ev}), BASE, SPECS, 5)
        assert c.status == "promoted" and c.old == 0.5 and c.value == pytest.approx(0.52)
        assert c.version == 1 and c.ts_ms == 5 and c.evidence["fresh_fp"] == 100
        assert c.base == 0.5  # the policy file's value it moved from: an edit of the file supersedes it
        t = BASE.apply(c)
        assert t.get(POLICY, "hate") == pytest.approx(0.52)
        assert t.with_defaults({(POLICY, "hate"): 0.6}).get(POLICY, "hate") == 0.6

    def test_after_an_edit_of_the_policy_file_tuning_moves_from_the_new_value(self) -> None:
        ev = dataclasses.replace(evidence([(0.8, False)] * 100, Counts(fp=100)), epoch=1)
        tuned = BASE.apply(msgspec.structs.replace(change_for(KEY, 1, 0.52), base=0.5))
        edited = tuned.with_defaults({(POLICY, "hate"): 0.7})
        (c,) = tune(TunerState(evidence={KEY: ev}), edited, SPECS, HOUR * 5)
        assert (c.old, c.base, c.version) == (0.7, 0.7, 2) and c.value > 0.7
        # a pin made against the old value no longer holds either
        pinned = BASE.apply(msgspec.structs.replace(change_for(KEY, 1, 0.5, status="pinned"), base=0.5))
        assert tune(TunerState(evidence={KEY: ev}), pinned, SPECS, HOUR * 5) == []
        assert len(tune(TunerState(evidence={KEY: ev}), pinned.with_defaults({(POLICY, "hate"): 0.7}),
                        SPECS, HOUR * 5)) == 1

    @settings(max_examples=30)
    @given(st.integers(0, 5))
    def test_tune_skips_pinned(self, v: int) -> None:
        ev = evidence([(0.6, False)] * 100, Counts(fp=100))
        t = BASE.apply(change_for(KEY, v + 1, 0.5, status="pinned"))
        assert tune(TunerState(evidence={KEY: ev}), t, SPECS, HOUR * 5) == []
