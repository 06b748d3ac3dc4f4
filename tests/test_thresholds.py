"""Live thresholds: lookup precedence, and an apply rule replicas cannot diverge under."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.messages import ThresholdChange, decode, encode
from guard.thresholds import ThresholdKey, Thresholds

POLICY = "default"


def change(version: int, value: float = 0.7, *, category: str = "hate", tenant: str | None = None,
           old: float = 0.5, status: str = "promoted", ts_ms: int = 0) -> ThresholdChange:
    return ThresholdChange(policy=POLICY, category=category, tenant=tenant, old=old, value=value,
                           version=version, status=status, ts_ms=ts_ms)  # type: ignore[arg-type]


BASE = Thresholds.from_defaults({(POLICY, "hate"): 0.8, (POLICY, "violence"): 0.6})


class TestGet:
    def test_policy_default(self) -> None:
        """Without overrides, the policy's own threshold is in force."""
        assert BASE.get(POLICY, "hate") == 0.8
        assert BASE.version == 0

    def test_caller_default_wins_over_stored_default(self) -> None:
        """The policy object a caller decides with is at least as fresh as the stored copy."""
        assert BASE.get(POLICY, "hate", default=0.9) == 0.9

    def test_unknown_raises(self) -> None:
        with pytest.raises(KeyError):
            BASE.get(POLICY, "sexual")

    def test_precedence(self) -> None:
        """Tenant override, then policy-wide override, then the default."""
        t = BASE.apply(change(1, 0.7)).apply(change(2, 0.9, tenant="acme"))
        assert t.get(POLICY, "hate") == 0.7
        assert t.get(POLICY, "hate", tenant="other") == 0.7
        assert t.get(POLICY, "hate", tenant="acme") == 0.9
        assert t.get(POLICY, "violence", tenant="acme") == 0.6

    def test_threshold_view_protocol(self) -> None:
        """``Thresholds`` is what ``decide`` reads: ``version`` and ``value(...)``."""
        t = BASE.apply(change(3, 0.75))
        assert t.value(POLICY, "hate", None, 0.8) == 0.75
        assert t.value(POLICY, "sexual", None, 0.4) == 0.4
        assert t.version == 3

    def test_view(self) -> None:
        t = BASE.apply(change(1, 0.7, tenant="acme"))
        assert dict(t.view(POLICY)) == {"hate": 0.8, "violence": 0.6}
        assert dict(t.view(POLICY, "acme")) == {"hate": 0.7, "violence": 0.6}


class TestApply:
    def test_immutable(self) -> None:
        t = BASE.apply(change(1, 0.7))
        assert BASE.get(POLICY, "hate") == 0.8 and t.get(POLICY, "hate") == 0.7
        with pytest.raises(TypeError):
            t.overrides[ThresholdKey(None, POLICY, "hate")] = None  # type: ignore[index]

    def test_stale_version_ignored(self) -> None:
        t = BASE.apply(change(5, 0.7)).apply(change(4, 0.1))
        assert t.get(POLICY, "hate") == 0.7 and t.version == 5

    def test_idempotent(self) -> None:
        t = BASE.apply(change(5, 0.7))
        assert t.apply(change(5, 0.7)) is t

    def test_same_version_later_event_wins(self) -> None:
        """Two writers (a pin, a tuner change) can pick one version for one key. The event later in
        the partition wins, as compaction does: a replica that read both and one that reads only the
        compacted log agree, whichever came first."""
        pin = change(5, 0.9, status="pinned", ts_ms=1)
        tuned = change(5, 0.7, ts_ms=2)
        for first, last in ((pin, tuned), (tuned, pin)):
            both = BASE.apply(first).apply(last)
            assert _state(both) == _state(BASE.apply(last))

    def test_version_is_global_max(self) -> None:
        t = BASE.apply(change(7, category="violence")).apply(change(3))
        assert t.version == 7
        assert t.key_version(ThresholdKey(None, POLICY, "hate")) == 3

    def test_rejected_keeps_old_value(self) -> None:
        """A rejected proposal's event names the value that stays (``old``)."""
        t = BASE.apply(change(1, 0.7)).apply(change(2, 0.95, old=0.7, status="rejected", ts_ms=9))
        key = ThresholdKey(None, POLICY, "hate")
        assert t.get(POLICY, "hate") == 0.7
        assert t.key_version(key) == 2 and t.changed_ms(key) == 9

    def test_pin_and_unpin(self) -> None:
        key = ThresholdKey(None, POLICY, "hate")
        t = BASE.apply(change(1, 0.82, status="pinned"))
        assert t.is_pinned(key) and t.get(POLICY, "hate") == 0.82
        t = t.apply(change(2, 0.82, status="unpinned"))
        assert not t.is_pinned(key)

    def test_a_released_key_falls_back_as_if_it_had_no_event(self) -> None:
        tenant = ThresholdKey("acme", POLICY, "hate")
        t = BASE.apply(change(1, 0.7)).apply(change(2, 0.95, tenant="acme", status="pinned"))
        assert t.get(POLICY, "hate", "acme") == 0.95 and t.overrides_key(tenant)
        t = t.apply(change(3, 0.7, tenant="acme", status="released"))
        assert t.get(POLICY, "hate", "acme") == 0.7 and not t.overrides_key(tenant)
        assert not t.is_pinned(tenant) and t.key_version(tenant) == 3
        t = t.apply(change(4, 0.75))  # later policy-wide tuning reaches the tenant again
        assert t.get(POLICY, "hate", "acme") == 0.75
        assert BASE.apply(change(1, 0.6, status="released")).get(POLICY, "hate") == 0.8

    def test_an_edit_of_the_policy_file_supersedes_events_made_against_its_old_value(self) -> None:
        """An operator who edited a threshold in the file saw nothing happen once tuning or a pin
        had touched the key: the event's value stood for good. Events now carry the file's value
        they were made against (``base``) and hold only while the file still says it."""
        policy, tenant = ThresholdKey(None, POLICY, "hate"), ThresholdKey("acme", POLICY, "hate")
        t = BASE.apply(msgspec.structs.replace(change(1, 0.78, old=0.8), base=0.8))
        t = t.apply(msgspec.structs.replace(change(2, 0.9, tenant="acme", status="pinned"), base=0.8))
        assert t.get(POLICY, "hate") == 0.78 and t.get(POLICY, "hate", "acme") == 0.9
        assert t.is_pinned(tenant) and t.overrides_key(policy)

        edited = t.with_defaults({(POLICY, "hate"): 0.85, (POLICY, "violence"): 0.6})
        assert edited.get(POLICY, "hate") == 0.85 and edited.get(POLICY, "hate", "acme") == 0.85
        assert edited.get(POLICY, "hate", default=0.85) == 0.85  # as ``decide`` asks
        assert not edited.is_pinned(tenant) and not edited.overrides_key(policy)
        assert edited.key_version(policy) == 1  # versions still only grow
        # the decider's own policy object says which file value is current, whatever is stored
        assert t.get(POLICY, "hate", "acme", default=0.85) == 0.85
        # the next event, made against the new value, holds again; the file going back revives the old
        assert edited.apply(msgspec.structs.replace(change(3, 0.83, old=0.85), base=0.85)) \
            .get(POLICY, "hate") == 0.83
        assert edited.with_defaults({(POLICY, "hate"): 0.8}).get(POLICY, "hate", "acme") == 0.9

    def test_events_without_a_base_hold_whatever_the_file_says(self) -> None:
        """Events written before ``base`` existed keep the old rule (release the key to drop one)."""
        t = BASE.apply(change(1, 0.7)).with_defaults({(POLICY, "hate"): 0.85})
        assert t.get(POLICY, "hate") == 0.7

    def test_wire_round_trip(self) -> None:
        c = change(4, 0.66, tenant="acme")
        assert decode(ThresholdChange, encode(c)) == c
        assert ThresholdKey.of(c).topic_key == "acme/default/hate"
        assert ThresholdKey(None, POLICY, "hate").topic_key == "*/default/hate"


# events with distinct versions over a few keys, as a single writer would publish them
_events = st.lists(
    st.tuples(st.sampled_from(["hate", "violence"]), st.sampled_from([None, "acme"]),
              st.floats(0.0, 1.0), st.sampled_from(["promoted", "rejected", "pinned", "unpinned", "released"])),
    max_size=25,
).map(lambda rows: [change(i + 1, v, category=c, tenant=t, old=0.5, status=s, ts_ms=i)
                    for i, (c, t, v, s) in enumerate(rows)])


def _apply_all(t: Thresholds, events: list[ThresholdChange]) -> Thresholds:
    for e in events:
        t = t.apply(e)
    return t


def _state(t: Thresholds) -> tuple[int, dict[ThresholdKey, object]]:
    return t.version, dict(t.overrides)


class TestReplicasConverge:
    @given(_events, st.randoms(use_true_random=False))
    def test_any_order_and_redelivery(self, events: list[ThresholdChange], rnd: random.Random) -> None:
        """Shuffled and repeated delivery ends where in-order delivery ends."""
        messy = events + rnd.sample(events, k=len(events) // 2)
        rnd.shuffle(messy)
        assert _state(_apply_all(BASE, messy)) == _state(_apply_all(BASE, events))

    @given(_events)
    def test_compacted_log(self, events: list[ThresholdChange]) -> None:
        """A replica that only sees the newest event per key ends in the same state."""
        newest: dict[ThresholdKey, ThresholdChange] = {}
        for e in events:
            newest[ThresholdKey.of(e)] = e
        assert _state(_apply_all(BASE, list(newest.values()))) == _state(_apply_all(BASE, events))

    @given(_events, st.lists(st.booleans(), max_size=25))
    def test_compacted_log_with_two_writers(self, events: list[ThresholdChange], reuse: list[bool]) -> None:
        """Versions per key never go down in the topic, but two writers may repeat one: a replica
        that saw every event ends where one that only sees the newest event per key ends."""
        shared, version = [], 0
        for i, e in enumerate(events):
            if not (i < len(reuse) and reuse[i] and version):
                version += 1
            shared.append(msgspec.structs.replace(e, version=version))
        newest: dict[ThresholdKey, ThresholdChange] = {}
        for e in shared:
            newest[ThresholdKey.of(e)] = e
        assert _state(_apply_all(BASE, list(newest.values()))) == _state(_apply_all(BASE, shared))

    @given(_events)
    def test_version_never_decreases(self, events: list[ThresholdChange]) -> None:
        t = BASE
        for e in events:
            nxt = t.apply(e)
            assert nxt.version >= t.version
            t = nxt
