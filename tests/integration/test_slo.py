"""The SLO harness over the real broker, a real worker and the real Triton (tiny loads, no timing asserts)."""

from __future__ import annotations

import pytest

from benchmarks.slo import Slo, report, run_levels, verdict
from guard.settings import Settings
from streams.demo import ANSWERS

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


async def test_replay_decides_every_chunk_and_measures_both_policies(kafka_broker, guard_worker):
    # a benign answer, then a threat: the default policy releases the first part and blocks the
    # second; pii-only finds nothing to hold
    text = ANSWERS["benign"][1] + "\n\n" + ANSWERS["harmful"][1]
    slo = Slo()
    results = await run_levels(kafka_broker.bootstrap, Settings(), [text], ["default", "pii-only"], [2],
                               duration_s=2.0, tokens_per_s=80.0, slo=slo, seed=1)
    assert [(r["policy"], r["streams"]) for r in results] == [("default", 2), ("pii-only", 2)]
    for r in results:
        assert r["chunks"] > 0 and r["decided"] == r["chunks"], "one decision per chunk sent"
        assert r["streams_replayed"] >= 2 and r["deadletters"] == 0
        for metric in ("decision", "release", "worker"):
            q = r[metric]
            assert q["n"] > 0 and 0 <= q["p50_ms"] <= q["p95_ms"] <= q["p99_ms"], (metric, q)
        assert r["slo"] == verdict(r, slo) and r["within_slo"] == all(r["slo"].values())
    default, pii_only = results
    assert default["withheld_chars"] > 0, "the block withholds the threat and what follows it"
    assert pii_only["withheld_chars"] == 0, "nothing in it is PII: all of it is released"
    rep = report(results, slo, ["default", "pii-only"])
    (row,) = rep["ratios"]["by_load"]
    assert row["streams"] == 2 and row["worker_p50"] is not None and row["worker_p50"] > 0
