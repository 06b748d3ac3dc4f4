"""The worker's readiness: the pipeline and the thresholds, not the pipeline alone."""

from __future__ import annotations

from guard.settings import Settings
from streams.app import Resources
from streams.follower import ThresholdFollower


async def test_not_ready_until_the_thresholds_are_read_even_when_the_pipeline_is_up():
    r = Resources(Settings())
    assert not r.is_ready()
    r.ready.set()  # Triton reached, policies loaded ...
    r.follower = ThresholdFollower("unused:9092", "guard.thresholds")
    assert not r.is_ready(), "... but decisions still use the policies' defaults"
    r.follower.caught_up.set()
    assert r.is_ready()
