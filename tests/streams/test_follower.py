"""The thresholds follower: it keeps following through a failing broker (fake consumer), and
replicas agree on same-version events from two writers (real broker)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgspec

from guard.messages import ThresholdChange, encode
from guard.thresholds import ThresholdKey
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


async def test_same_version_events_from_two_writers_end_where_compaction_ends(kafka_broker, monkeypatch, capsys):
    """Over the real broker: a pin and a tuner change that took one version for one key. Whichever
    the partition holds last is in force, the state compaction would leave; and ``guard thresholds
    pin`` reads its own event back as the one in force."""
    import uuid

    from aiokafka import AIOKafkaProducer

    from guard.devenv.kafka import TopicSpec, create_topics
    from streams.feedback_cli import thresholds_main
    from streams.follower import read_all

    topic = f"thresholds-race-{uuid.uuid4().hex[:6]}"
    await create_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1, {"cleanup.policy": "compact"})])

    def ev(category: str, status: str, value: float, ts: int) -> ThresholdChange:
        return ThresholdChange(policy="default", category=category, old=0.8, value=value, version=5,
                               status=status, pinned=status == "pinned", ts_ms=ts)  # type: ignore[arg-type]

    pin_first = [ev("hate", "pinned", 0.9, 1), ev("hate", "promoted", 0.7, 2)]
    tuner_first = [ev("violence", "promoted", 0.7, 3), ev("violence", "pinned", 0.9, 4)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        for e in pin_first + tuner_first:
            await producer.send_and_wait(topic, key=ThresholdKey.of(e).topic_key.encode(), value=encode(e))
    finally:
        await producer.stop()

    thresholds, history = await read_all(kafka_broker.bootstrap, topic, 30.0)
    assert len(history) == 4
    for last in (pin_first[-1], tuner_first[-1]):
        o = thresholds.entry(ThresholdKey.of(last))
        assert o is not None and (o.value, o.pinned, o.ts_ms) == (last.value, last.status == "pinned", last.ts_ms)

    monkeypatch.setenv("GUARD_TOPIC_THRESHOLDS", topic)
    rc = await asyncio.to_thread(thresholds_main, ["pin", "--policy", "default", "--category", "hate",
                                                   "--value", "0.95", "--by", "test",
                                                   "--bootstrap", kafka_broker.bootstrap])
    assert rc == 0
    pin = msgspec.json.decode(capsys.readouterr().out.strip().splitlines()[-1], type=ThresholdChange)
    assert (pin.status, pin.value, pin.version) == ("pinned", 0.95, 6)
    after, _ = await read_all(kafka_broker.bootstrap, topic, 30.0)
    assert after.get("default", "hate") == 0.95 and after.is_pinned(ThresholdKey(None, "default", "hate"))

    # a tenant's pin, unpinned under policy-scope tuning, is released: the tenant follows the
    # policy-wide threshold again (it used to stay at its pinned value for good)
    for action in ("pin", "unpin"):
        rc = await asyncio.to_thread(thresholds_main, [action, "--policy", "default", "--category", "violence",
                                                       "--tenant", "acme", "--value", "0.6", "--by", "test",
                                                       "--bootstrap", kafka_broker.bootstrap])
        assert rc == 0
    released = msgspec.json.decode(capsys.readouterr().out.strip().splitlines()[-1], type=ThresholdChange)
    assert released.status == "released"
    final, _ = await read_all(kafka_broker.bootstrap, topic, 30.0)
    assert final.get("default", "violence", "acme") == final.get("default", "violence") == 0.9


def test_a_local_apply_after_its_echo_does_not_undo_what_followed_it():
    """The tuner publishes T and applies it locally after the broker's ack; by then its follower
    may have read T and a pin P that took the same version after it. Applying T again undid P in
    the tuner only, while workers and the compacted topic keep P."""
    from streams.follower import ThresholdFollower

    f = ThresholdFollower("unused:9092", "thresholds")
    t = ThresholdChange(policy="default", category="hate", old=0.8, value=0.87, version=5, ts_ms=1)
    p = ThresholdChange(policy="default", category="hate", old=0.87, value=0.85, version=5, status="pinned",
                        pinned=True, ts_ms=2)
    f._apply(encode(t), 10, 0)  # noqa: SLF001 - the topic's order, as the poll loop applies it
    f._apply(encode(p), 11, 0)  # noqa: SLF001
    f.apply_local(t)
    assert f.current.get("default", "hate") == 0.85 and f.current.is_pinned(ThresholdKey.of(p))
    # before its echo, the local apply takes effect at once
    g = ThresholdFollower("unused:9092", "thresholds")
    g.apply_local(t)
    assert g.current.get("default", "hate") == 0.87
