"""The pure parts of ``guard feedback`` / ``guard thresholds`` and of the tuner's plumbing."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from guard.errors import SchemaError
from guard.messages import Decision, Feedback, ThresholdChange, encode
from guard.messages import Evidence as DecisionEvidence
from guard.policy.load import PolicySet
from guard.thresholds import ThresholdKey, Thresholds
from guard.tuning import DecisionRecord, Evidence, TunerState, observe
from streams.feedback_cli import (
    format_history,
    format_rows,
    make_feedback,
    make_pin,
    took_effect,
    rows,
    select,
    stream_of,
    validate_feedback,
)
from streams.follower import policy_defaults
from streams.tuner import (
    changed_evidence,
    changed_identities,
    decode_evidence,
    decode_record,
    encode_evidence,
    encode_record,
    identity_key,
    parse_identity,
    parse_key,
    restore,
    tuning_specs,
)

POLICIES = Path(__file__).resolve().parents[1] / "policies"


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return PolicySet.load(POLICIES)


class TestFeedback:
    def test_stream_derived_from_decision_id(self) -> None:
        assert stream_of("chat-42:7") == "chat-42"
        assert stream_of("a:b:3") == "a:b"  # stream ids may contain colons; seq is the last part

    @pytest.mark.parametrize("bad", ["nocolon", ":3", "s:", "s:x"])
    def test_bad_decision_id_needs_stream(self, bad: str) -> None:
        with pytest.raises(ValueError):
            stream_of(bad)

    def test_make_feedback_validates_like_the_tuner(self) -> None:
        fb = make_feedback("s1:3", "hate", "false_positive", "reviewer-1", ts_ms=5)
        assert (fb.stream_id, fb.decision_id, fb.verdict, fb.ts_ms) == ("s1", "s1:3", "false_positive", 5)
        with pytest.raises(SchemaError, match="verdict"):
            make_feedback("s1:3", "hate", "meh", "r")
        with pytest.raises(SchemaError, match="unknown category"):
            make_feedback("s1:3", "hatred", "correct", "r")
        with pytest.raises(SchemaError, match="does not belong"):
            make_feedback("s1:3", "hate", "correct", "r", stream_id="s2")

    @pytest.mark.parametrize("raw", [None, b"", b"{", b'{"decision_id": "s:1"}', b"[]",
                                     b'{"decision_id":"s:1","stream_id":"s","category":"hate",'
                                     b'"verdict":"correct","source":"r","extra":1}'])
    def test_malformed_records_are_schema_errors(self, raw: bytes | None) -> None:
        with pytest.raises(SchemaError):
            validate_feedback(raw)


class TestShowAndPin:
    def test_rows_defaults_then_overrides(self, policies: PolicySet) -> None:
        th = Thresholds.from_defaults(policy_defaults(policies))
        base = {(r.policy, r.category): r for r in rows(policies, th)}
        assert base[("default", "hate")].value == 0.85 and base[("default", "hate")].tuned
        assert not base[("default", "sexual")].tuned  # no tuning section: never moved
        assert ("pii-only", "hate") not in base  # no semantic layer in that policy
        th = th.apply(ThresholdChange(policy="default", category="hate", old=0.85, value=0.87,
                                      version=3, reason="r", ts_ms=1))
        th = th.apply(ThresholdChange(policy="default", category="hate", tenant="acme", old=0.85,
                                      value=0.9, version=4, status="pinned", pinned=True, ts_ms=2))
        got = select(rows(policies, th), "default", "hate", None)
        assert [(r.tenant, r.value, r.version, r.pinned) for r in got] == [
            (None, 0.87, 3, False), ("acme", 0.9, 4, True)]
        text = format_rows(got)
        assert "0.8700" in text and "acme" in text and "pinned" in text

    def test_an_event_made_against_an_older_policy_file_value_shows_as_superseded(
            self, policies: PolicySet) -> None:
        th = Thresholds.from_defaults(policy_defaults(policies)).apply(ThresholdChange(
            policy="default", category="hate", tenant="acme", old=0.8, value=0.9, version=4,
            status="pinned", pinned=True, ts_ms=2, base=0.8))  # the file said 0.8 then; 0.85 now
        (row,) = select(rows(policies, th), "default", "hate", "acme")
        assert (row.value, row.pinned, row.status) == (0.85, False, "superseded")
        assert "superseded" in format_rows([row])

    def test_pin_at_current_value_with_next_version(self, policies: PolicySet) -> None:
        th = Thresholds().apply(ThresholdChange(policy="default", category="violence", old=0.8,
                                                value=0.82, version=7, ts_ms=1))
        pin = make_pin(policies, th, "default", "violence", None, pin=True, value=None, by="ops", ts_ms=9)
        assert (pin.status, pin.pinned, pin.old, pin.value, pin.version) == ("pinned", True, 0.82, 0.82, 8)
        assert pin.base == next(p.threshold for p in policies.policies["default"].principles
                                if "semantic" in p.detectors and "violence" in p.categories)
        th = th.apply(pin)
        assert th.is_pinned(ThresholdKey(None, "default", "violence"))
        unpin = make_pin(policies, th, "default", "violence", None, pin=False, value=0.1, by="ops")
        assert (unpin.status, unpin.pinned, unpin.value, unpin.version) == ("unpinned", False, 0.82, 9)
        assert not th.apply(unpin).is_pinned(ThresholdKey(None, "default", "violence"))
        assert "pinned" in format_history([(0, pin), (1, unpin)])

    def test_unpinning_a_key_no_tuner_moves_releases_it(self, policies: PolicySet) -> None:
        """``default`` tunes violence policy-wide: a tenant's pin, unpinned, used to stay at the
        pinned value for good. It falls back to the policy-wide value now, and follows it."""
        th = Thresholds().apply(ThresholdChange(policy="default", category="violence", old=0.8,
                                                value=0.82, version=1))
        pin = make_pin(policies, th, "default", "violence", "acme", pin=True, value=0.6, by="ops")
        th = th.apply(pin)
        assert th.get("default", "violence", "acme") == 0.6
        unpin = make_pin(policies, th, "default", "violence", "acme", pin=False, value=None, by="ops")
        assert (unpin.status, unpin.old, unpin.value) == ("released", 0.6, 0.82)
        th = th.apply(unpin).apply(ThresholdChange(policy="default", category="violence", old=0.82,
                                                   value=0.84, version=unpin.version + 1))
        assert th.get("default", "violence", "acme") == 0.84
        assert "released" in format_rows(select(rows(policies, th), "default", "violence", "acme"))
        # sexual has no tuning: its policy-wide pin, unpinned, goes back to the file's value
        th = th.apply(make_pin(policies, th, "default", "sexual", None, pin=True, value=0.5, by="ops"))
        rel = make_pin(policies, th, "default", "sexual", None, pin=False, value=None, by="ops")
        assert th.get("default", "sexual", default=0.8) == 0.5
        assert rel.status == "released" and th.apply(rel).get("default", "sexual", default=0.8) == 0.8

    def test_a_key_its_policy_freezes_is_released_on_unpin(self, tmp_path) -> None:
        """``tuning: {pinned: true}`` or no changes per hour: no tuner moves the key, so "unpinned"
        left the operator's value in force for good."""
        import shutil

        shutil.copy(POLICIES / "default.yaml", tmp_path / "default.yaml")
        text = (POLICIES / "default.yaml").read_text().replace("policy: default", "policy: frozen")
        text = text.replace("tuning: {target_precision: 0.9, min_evidence: 30",
                            "tuning: {pinned: true, target_precision: 0.9, min_evidence: 30")
        (tmp_path / "frozen.yaml").write_text(text)
        frozen = PolicySet.load(tmp_path)
        th = Thresholds().apply(make_pin(frozen, Thresholds(), "frozen", "violence", None, pin=True,
                                         value=0.3, by="ops"))
        unpin = make_pin(frozen, th, "frozen", "violence", None, pin=False, value=None, by="ops")
        assert unpin.status == "released" and th.apply(unpin).get("frozen", "violence", default=0.8) == 0.8

    def test_took_effect_reads_back_whether_the_pin_is_in_force(self, policies: PolicySet) -> None:
        th = Thresholds().apply(ThresholdChange(policy="default", category="violence", old=0.8,
                                                value=0.7, version=4))
        pin = make_pin(policies, th, "default", "violence", None, pin=True, value=None, by="ops", ts_ms=9)
        assert took_effect(th.apply(pin), pin)
        # a tuner change that took the same version and landed after the pin replaced it
        raced = ThresholdChange(policy="default", category="violence", old=0.7, value=0.72,
                                version=pin.version, ts_ms=10)
        assert not took_effect(th.apply(pin).apply(raced), pin)
        assert not took_effect(th, pin)

    def test_pin_given_value_and_refusals(self, policies: PolicySet) -> None:
        th = Thresholds()
        pin = make_pin(policies, th, "strict", "hate", "kids", pin=True, value=0.3, by="ops")
        assert (pin.tenant, pin.old, pin.value) == ("kids", 0.4, 0.3)
        with pytest.raises(ValueError, match="unknown policy"):
            make_pin(policies, th, "nope", "hate", None, pin=True, value=None, by="ops")
        with pytest.raises(ValueError, match="no semantic threshold"):
            make_pin(policies, th, "default", "profanity", None, pin=True, value=None, by="ops")
        with pytest.raises(ValueError, match="probability"):
            make_pin(policies, th, "default", "hate", None, pin=True, value=1.5, by="ops")


class TestTunerPlumbing:
    def test_specs_only_for_tuned_semantic_categories(self, policies: PolicySet) -> None:
        specs = tuning_specs(policies)
        assert set(specs) == {("default", c) for c in
                              ("hate", "harassment", "violence", "self_harm", "dangerous")}
        s = specs[("default", "self_harm")]
        assert (s.target_precision, s.floor, s.ceiling, s.min_evidence) == (0.85, 0.4, 0.95, 30)

    def test_record_round_trip(self) -> None:
        d = Decision(decision_id="s:0", stream_id="s", seq=0, action="block", text="", released_offset=0,
                     scores={"hate": 0.91, "violence": 0.2}, policy="default", tenant="t",
                     thresholds_version=4, ts_ms=123,
                     evidence=(DecisionEvidence(principle="no-hate", action="block", category="hate",
                                                detector="semantic", score=0.91, threshold=0.85,
                                                start=0, end=5),))
        rec = DecisionRecord.from_decision(d)
        back = decode_record("s:0", encode_record(rec))
        assert back == rec
        assert (back.policy, back.tenant, back.thresholds_version, back.ts_ms) == ("default", "t", 4, 123)

    def test_evidence_round_trip_is_exact_and_sparse(self) -> None:
        ev = Evidence().add(0.905, False, 10, fresh="fp").add(0.31, True, 11, fresh="fn")
        raw = encode_evidence(ev)
        assert len(raw) < 200  # two non-zero bins, not 2 x 1000 floats
        back = decode_evidence(raw)
        assert np.array_equal(back.positives, ev.positives)
        assert np.array_equal(back.negatives, ev.negatives)
        assert (back.fresh, back.epoch, back.updated_ms) == (ev.fresh, ev.epoch, ev.updated_ms)
        at = Evidence().add(0.5, True, 1, at=(3, 41, 1_700_000_000_000))
        assert decode_evidence(encode_evidence(at)).folded == {3: (41, 1_700_000_000_000)}
        # written before ``folded`` existed: it knows no record
        old = b'{"pos":{},"neg":{"7":1.0},"fresh":[0,1,0,0],"epoch":2,"updated_ms":5}'
        assert decode_evidence(old).folded == {} and decode_evidence(old).epoch == 2

    def test_keys(self) -> None:
        for k in (ThresholdKey(None, "default", "hate"), ThresholdKey("acme", "strict", "violence")):
            assert parse_key(k.topic_key) == k
        with pytest.raises(ValueError):
            parse_key("default/hate")
        for ident in (("s:1", "hate"), ("odd\x1fstream:1", "violence")):
            assert parse_identity(identity_key(ident)) == ident
        assert parse_identity("s:1\x1fhate\x1freviewer/7".encode()) == ("s:1", "hate"), "written with the source"
        assert parse_identity("s:1\x1fhate\x1fviolence".encode()) == ("s:1", "hate"), "a source named like a category"

    def test_restore_and_diff_drive_the_table_writes(self, policies: PolicySet) -> None:
        """What the agent writes back is exactly what a batch changed, and restores to the same state."""
        specs = tuning_specs(policies)
        th = Thresholds.from_defaults(policy_defaults(policies))
        rec = DecisionRecord("s:0", "default", None, 0, 5, MappingProxyType({"hate": 0.9}),
                             frozenset({"hate"}))
        fb = Feedback(decision_id="s:0", stream_id="s", category="hate", verdict="false_positive",
                      source="r1")
        before = TunerState()
        after = observe(before, [fb, fb], {"s:0": rec}, th, specs, now_ms=10)
        ids = changed_identities(before, after, [fb, fb])
        evs = changed_evidence(before, after)
        assert ids == [(("s:0", "hate"), 5)] and [k for k, _ in evs] == [
            ThresholdKey(None, "default", "hate")]
        assert after.counts.counted == 1 and after.counts.duplicate == 1
        again = restore([(k.topic_key.encode(), encode_evidence(e)) for k, e in evs],
                        [(identity_key(i), str(t).encode()) for i, t in ids])
        replay = observe(again, [fb], {"s:0": rec}, th, specs, now_ms=20)
        assert replay.counts.duplicate == 1 and replay.counts.counted == 0
        assert changed_evidence(again, replay) == []

    def test_encode_helpers_are_json(self) -> None:
        assert encode(Feedback(decision_id="s:1", stream_id="s", category="hate", verdict="correct",
                               source="r")).startswith(b"{")


@pytest.mark.parametrize("tenant", ["org/team", "*"])
def test_a_pin_for_a_tenant_id_no_chunk_can_carry_is_refused(tenant):
    from guard.policy.load import PolicySet, default_policy_dir
    from guard.thresholds import Thresholds
    from streams.feedback_cli import make_pin

    with pytest.raises(ValueError, match="no '/' or '\\*'"):
        make_pin(PolicySet.load(default_policy_dir()), Thresholds(), "default", "hate", tenant,
                 pin=True, value=0.5, by="ops")


def test_a_pin_retried_over_a_concurrent_change_keeps_the_value_first_pinned(monkeypatch, capsys):
    """Without --value a pin freezes the value in force; when a tuner change replaced it, the retry
    pinned the tuner's new value instead."""
    import streams.feedback_cli as cli
    import streams.follower as follower

    base = Thresholds().apply(ThresholdChange(policy="default", category="violence", old=0.8, value=0.85,
                                              version=1))
    sent: list[ThresholdChange] = []
    reads = iter(range(10))

    async def read_all(*args, **kw):
        n = next(reads)
        th = base
        for i, ch in enumerate(sent):
            th = th.apply(ch)
            if n == 1 and i == 0:  # the tuner's same-version change landed after the first pin
                th = th.apply(ThresholdChange(policy="default", category="violence", old=0.85, value=0.87,
                                              version=ch.version, ts_ms=1))
        return th, []

    async def send(s, topic, key, value):
        sent.append(cli.decode(ThresholdChange, value))

    async def ensure(s, topic):
        return None

    monkeypatch.setattr(follower, "read_all", read_all)
    monkeypatch.setattr(cli, "_send", send)
    monkeypatch.setattr(cli, "_ensure_topic", ensure)
    assert cli.thresholds_main(["pin", "--policy", "default", "--category", "violence", "--by", "t"]) == 0
    assert [(c.value, c.status) for c in sent] == [(0.85, "pinned"), (0.85, "pinned")]
    assert "trying again" in capsys.readouterr().err
