"""The thresholds follower keeps following through a failing broker (fake consumer, no Kafka)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from guard.messages import ThresholdChange, encode
from streams.follower import ThresholdFollower


class FlakyConsumer:
    """Fails its first two polls, then serves one event once."""

    def __init__(self, event: bytes) -> None:
        self.polls = 0
        self._event = event

    def assignment(self) -> set:
        return set()  # no metadata yet: the follower keeps polling

    async def getmany(self, timeout_ms: int) -> dict:
        self.polls += 1
        if self.polls <= 2:
            raise ConnectionError("broker went away")
        if self.polls == 3:
            return {"tp": [SimpleNamespace(value=self._event, offset=0, partition=0)]}
        await asyncio.sleep(timeout_ms / 1000)
        return {}


async def test_a_failed_poll_is_retried_and_later_events_still_apply(monkeypatch):
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fast_sleep(s: float) -> None:
        slept.append(s)
        await real_sleep(0)

    monkeypatch.setattr("streams.follower.asyncio.sleep", fast_sleep)
    change = ThresholdChange(policy="default", category="hate", old=0.5, value=0.6, version=3)
    f = ThresholdFollower("unused:9092", "guard.thresholds", poll_ms=1)
    f._consumer = FlakyConsumer(encode(change))  # type: ignore[assignment]
    task = asyncio.create_task(f._run())
    for _ in range(200):
        if f.events:
            break
        await real_sleep(0.001)
    task.cancel()
    assert f.events == 1 and f.current.version == 3, "the task survived two failed polls"
    assert slept[:2] == [1.0, 2.0], "backs off between failed polls"
