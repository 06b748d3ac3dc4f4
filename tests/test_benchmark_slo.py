"""The SLO harness's arithmetic: which wait each character and chunk is charged, and the verdicts."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks.slo import Sent, Slo, measure, ratios, verdict


def _decision(sid: str, seq: int, released: int, latency: float = 5.0) -> SimpleNamespace:
    return SimpleNamespace(stream_id=sid, seq=seq, released_offset=released, latency_ms=latency)


def test_each_character_waits_from_its_own_chunk_to_the_decision_that_releases_it():
    # "ab" (t=0.0) "cd" (t=0.1) "ef" (t=0.2): the first decision holds all, the second releases
    # "abc", the third the rest; a held character waits from when *its* chunk was sent.
    sent = [Sent("s", [(0, 2), (2, 4), (4, 6)])]
    prod = SimpleNamespace(sent_at={("s", 0): 0.0, ("s", 1): 0.1, ("s", 2): 0.2})
    col = SimpleNamespace(decisions={"s": [_decision("s", 0, 0), _decision("s", 1, 3), _decision("s", 2, 6)]},
                          received_at={("s", 0): 0.01, ("s", 1): 0.12, ("s", 2): 0.25})
    m = measure(sent, col, prod)  # type: ignore[arg-type]
    assert m["chunks"] == m["decided"] == 3 and m["withheld_chars"] == 0
    assert m["decision"]["n"] == 3 and m["decision"]["p50_ms"] == 20.0  # 10, 20, 50 ms
    # a, b: 120 ms (chunk 0 → decision 1); c: 20 ms; d: 150 ms; e, f: 50 ms
    assert m["release"]["n"] == 6 and m["release"]["p50_ms"] == 50.0 and m["release"]["p99_ms"] == 150.0


def test_blocked_text_is_withheld_not_delayed_and_missing_decisions_fail_the_level():
    sent = [Sent("b", [(0, 5), (5, 10)])]
    prod = SimpleNamespace(sent_at={("b", 0): 0.0, ("b", 1): 0.1})
    col = SimpleNamespace(decisions={"b": [_decision("b", 0, 2)]}, received_at={("b", 0): 0.05})
    m = measure(sent, col, prod)  # type: ignore[arg-type]
    assert m["decided"] == 1 and m["chunks"] == 2 and m["withheld_chars"] == 8 and m["release"]["n"] == 2
    v = verdict(m, Slo(decision_p99_ms=100, release_p95_ms=100))
    assert v == {"every_chunk_decided": False, "decision_p99": True, "release_p95": True}
    assert verdict(m, Slo(decision_p99_ms=10, release_p95_ms=100))["decision_p99"] is False


def test_ratios_pair_policies_at_the_same_load_only():
    def level(policy: str, streams: int, x: float) -> dict:
        block = {"p50_ms": x, "p95_ms": 2 * x, "p99_ms": 3 * x}
        return {"policy": policy, "streams": streams, "decision": block, "release": block, "worker": block}

    rows = ratios([level("default", 4, 30.0), level("pii-only", 4, 10.0), level("default", 8, 50.0)],
                  "default", "pii-only")
    assert rows == [{"streams": 4, **{f"{m}_{q}": 3.0 for m in ("decision", "release", "worker")
                                      for q in ("p50", "p95", "p99")}}]


def test_the_load_held_stops_at_the_first_that_failed():
    from benchmarks.slo import within_slo_up_to

    rows = [{"policy": "default", "streams": n, "within_slo": ok} for n, ok in ((4, False), (8, False), (12, True))]
    assert within_slo_up_to(rows, "default") == 0  # the best passing load alone said 12
    rows = [{"policy": "default", "streams": n, "within_slo": ok} for n, ok in ((4, True), (8, True), (12, False))]
    assert within_slo_up_to(rows, "default") == 8
