"""Each semantic call's time, size and outcome reach the observer, failures included."""

from __future__ import annotations

import numpy as np
import pytest

from guard.detectors.timed import TimedDetector
from guard.errors import DetectorTimeout
from guard.metrics import Metrics
from guard.types import Window


class Scripted:
    name, categories, model_version = "semantic", ("hate",), "m1"

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def score(self, windows):
        if self.fail:
            raise DetectorTimeout(self.name, "deadline")
        return np.zeros((len(windows), 1), np.float32)


def _windows(n: int) -> list[Window]:
    return [Window("s", 0, 1, "x", np.array([1], np.int64)) for _ in range(n)]


async def test_ok_and_failed_calls_are_observed_with_their_outcome():
    ticks = iter([0.0, 0.25, 1.0, 3.0])
    m = Metrics()
    ok = TimedDetector(Scripted(False), m.observe_semantic, clock=lambda: next(ticks))
    assert (await ok.score(_windows(3))).shape == (3, 1) and ok.model_version == "m1"
    bad = TimedDetector(Scripted(True), m.observe_semantic, clock=lambda: next(ticks))
    with pytest.raises(DetectorTimeout):
        await bad.score(_windows(2))
    got = {(s.name, s.labels.get("outcome")): s.value for f in m.registry.collect()
           for s in f.samples if s.name.startswith("guard_semantic_call_seconds_sum")}
    assert got == {("guard_semantic_call_seconds_sum", "ok"): 0.25,
                   ("guard_semantic_call_seconds_sum", "detector-timeout"): 2.0}
    windows = {s.name: s.value for f in m.registry.collect() for s in f.samples
               if s.name in ("guard_semantic_call_windows_sum", "guard_semantic_call_windows_count")}
    assert windows == {"guard_semantic_call_windows_sum": 5.0, "guard_semantic_call_windows_count": 2.0}
