"""StallWatch: a backlog that does not move for the timeout is a stall; one that moves, or none, is not."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from guard.metrics import Metrics
from streams.watchdog import (Backlog, GroupPartitions, Health, PartitionStalled, Progress, StallWatch,
                              caught_up, export)

TOPIC = "llm.chunks"


@dataclass
class FakeConsumer:
    ends: dict[int, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)  # where the group resumes (committed)
    other_topic: bool = True
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        tps = {TopicPartition(TOPIC, p) for p in self.ends}
        return tps | ({TopicPartition("guard-stream_state-changelog", 0)} if self.other_topic else set())

    async def highwaters(self, *tps: TopicPartition) -> Mapping[TopicPartition, int]:
        assert all(tp.topic == TOPIC for tp in tps), "only the chunk topic is looked at"
        return {tp: self.ends[tp.partition] for tp in tps}

    async def resume_offsets(self, *tps: TopicPartition) -> Mapping[TopicPartition, int | None]:
        return {tp: self.positions.get(tp.partition) for tp in tps}

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def watch(consumer: Any, timeout_s: float = 20.0, interval_s: float = 5.0) -> tuple[StallWatch, Progress]:
    progress = Progress()
    w = StallWatch(consumer, TOPIC, progress, timeout_s=timeout_s, interval_s=interval_s, clock=Clock())
    return w, progress


async def at(w: StallWatch, t: float) -> Health:
    """Check as if the clock read ``t``."""
    w.clock.now = t  # type: ignore[attr-defined]
    return await w.check()


async def test_a_backlog_that_never_moves_stalls_after_the_timeout():
    c = FakeConsumer(ends={0: 10, 1: 4}, positions={0: 3, 1: 4})
    w, _ = watch(c)
    waits = []
    for now in (0, 5, 10, 15, 20):
        h = await at(w, now)
        assert h.assigned == [0, 1]
        assert [(b.partition, b.lag) for b in h.backlogs] == [(0, 7)]
        waits.append((h.backlogs[0].waiting_s, bool(h.stalled)))
    assert waits == [(0, False), (5, False), (10, False), (15, False), (20, True)]


async def test_a_backlog_that_moves_never_stalls():
    c = FakeConsumer(ends={0: 1000})
    w, progress = watch(c)
    for i, now in enumerate(range(0, 100, 5)):
        progress.handled(0, i * 10)  # the agent keeps up slowly; the end stays ahead
        h = await at(w, now)
        assert h.backlogs and h.backlogs[0].waiting_s == 0 and not h.stalled


async def test_handled_offsets_count_over_where_the_group_resumes():
    # The group resumes at 0 (committed long ago), but the agent has finished up to 9: 40 waiting.
    c = FakeConsumer(ends={0: 50}, positions={0: 0})
    w, progress = watch(c)
    assert [(b.next_offset, b.lag) for b in (await at(w, 0)).backlogs] == [(0, 50)]
    progress.handled(0, 9)
    h = await at(w, 5)
    assert [(b.next_offset, b.lag) for b in h.backlogs] == [(10, 40)]


async def test_a_backlog_whose_records_never_reached_the_agent_is_fetched_again_once_before_it_stalls():
    """Records fetched and never handed to the agent (what Faust did to restarted workers here):
    a seek back to where the agent starts, once per assignment, then the stall as before."""
    import structlog

    from streams.watchdog import patrol

    c = FakeConsumer(ends={0: 10, 1: 6}, positions={0: 3, 1: 2})
    progress = Progress()
    w = StallWatch(c, TOPIC, progress, timeout_s=30.0, clock=Clock(), refetch_after_s=10.0)
    progress.reached_all([(1, 2)])  # partition 1's first batch is with the agent (a slow one)
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    m = Metrics()

    async def tick(now: float) -> Health:
        w.clock.now = now  # type: ignore[attr-defined]
        return await patrol(w, m.lag, m.lag_waiting, crash, structlog.get_logger("test"), refetches=m.refetches)

    with structlog.testing.capture_logs() as logs:
        seen = [await tick(t) for t in (0, 5, 10, 15, 20, 25)]
    assert [[b.partition for b in h.refetch] for h in seen] == [[], [], [0], [], [], []]
    assert c.seeks == [(TopicPartition(TOPIC, 0), 3)]  # from where the agent is to start
    (ev,) = [e for e in logs if e["event"] == "partition_refetched"]
    assert ev["partition"] == 0 and ev["offset"] == 3 and ev["lag"] == 7 and ev["waiting_s"] == 10
    assert m.registry.get_sample_value("guard_chunk_partition_refetches_total", {"partition": "0"}) == 1
    assert not crashed
    h = await tick(30)  # still nothing: the stall follows, for both
    assert [b.partition for b in h.stalled] == [0, 1] and len(crashed) == 1

    w.reset()  # a new assignment may need it again
    progress.reset()
    assert [[b.partition for b in (await tick(t)).refetch] for t in (40, 50)] == [[], [0, 1]]
    never = StallWatch(FakeConsumer(ends={0: 10}, positions={0: 3}), TOPIC, Progress(), timeout_s=30.0,
                       clock=Clock())
    assert [(await at(never, t)).refetch for t in (0, 10, 20)] == [[], [], []]  # refetch_after_s 0: never


async def test_no_backlog_no_stall_however_long_nothing_arrives():
    c = FakeConsumer(ends={0: 7}, positions={0: 7})
    w, _ = watch(c)
    for now in range(0, 200, 5):
        h = await at(w, now)
        assert h.backlogs == [] and h.stalled == []


async def test_a_late_check_restarts_the_clock():
    # The process was paused for a minute: nobody could move, so the wait starts again.
    c = FakeConsumer(ends={0: 10}, positions={0: 3})
    w, _ = watch(c, timeout_s=20.0)
    await at(w, 0)
    h = await at(w, 60)
    assert h.backlogs[0].waiting_s == 0 and not h.stalled
    assert (await at(w, 65)).backlogs[0].waiting_s == 5


async def test_time_spent_rebalancing_or_restoring_tables_does_not_count():
    c = FakeConsumer(ends={0: 10}, positions={0: 3})
    busy = {"now": False}
    progress = Progress()
    w = StallWatch(c, TOPIC, progress, timeout_s=10.0, clock=Clock(), busy=lambda: busy["now"])
    assert (await at(w, 0)).backlogs[0].waiting_s == 0
    busy["now"] = True  # Faust pauses partitions while it restores the table: minutes, on purpose
    for t in range(5, 200, 5):
        h = await at(w, t)
        assert h.backlogs[0].waiting_s == 0 and not h.stalled
    busy["now"] = False  # restored: the clock runs from the last busy look (195)
    after = [await at(w, t) for t in (200, 205)]
    assert [h.backlogs[0].waiting_s for h in after] == [5, 10]
    assert [bool(h.stalled) for h in after] == [False, True]


async def test_busy_without_a_break_past_its_timeout_is_a_stall_of_its_own():
    """A restore that hangs (Faust #47, #74) must not hold the partitions for ever; a break resets."""
    import structlog

    from streams.watchdog import RecoveryStalled, patrol

    c = FakeConsumer(ends={0: 10}, positions={0: 3})
    busy = {"now": True}
    w = StallWatch(c, TOPIC, Progress(), timeout_s=10.0, clock=Clock(), busy=lambda: busy["now"],
                   busy_timeout_s=60.0)
    assert [(await at(w, t)).stuck_busy_s for t in (0, 30, 55)] == [None, None, None]
    busy["now"] = False
    assert (await at(w, 60)).stuck_busy_s is None  # a break
    busy["now"] = True
    assert (await at(w, 65)).stuck_busy_s is None and (await at(w, 120)).stuck_busy_s is None
    h = await at(w, 125)
    assert h.stuck_busy_s == 60.0 and not h.stalled

    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    w.clock.now = 130  # type: ignore[attr-defined]
    lag, waiting = Metrics().lag, Metrics().lag_waiting
    await patrol(w, lag, waiting, crash, structlog.get_logger("test"))
    assert len(crashed) == 1 and isinstance(crashed[0], RecoveryStalled) and "65 s" in str(crashed[0])
    never = StallWatch(c, TOPIC, Progress(), timeout_s=10.0, clock=Clock(), busy=lambda: True)
    assert [(await at(never, t)).stuck_busy_s for t in (0, 10_000)] == [None, None]  # 0: never


async def test_a_slow_answer_from_the_broker_is_not_a_late_check():
    # Each look takes 4 s (a busy broker); checks start 5 s after the last one ended: on time.
    clock = Clock()

    class Slow(FakeConsumer):
        async def highwaters(self, *tps: TopicPartition) -> Mapping[TopicPartition, int]:
            clock.now += 4
            return await super().highwaters(*tps)

    progress = Progress()
    w = StallWatch(Slow(ends={0: 10}, positions={0: 3}), TOPIC, progress, timeout_s=20.0, clock=clock)
    waits = []
    for _ in range(4):
        waits.append((await w.check()).backlogs[0].waiting_s)
        clock.now += 5
    assert waits == [0, 9, 18, 27]


async def test_reset_forgets_waits_and_progress_of_the_last_assignment():
    c = FakeConsumer(ends={0: 10}, positions={0: 3})
    w, progress = watch(c)
    progress.handled(0, 1)
    for now in (0, 5, 10, 15):
        await at(w, now)
    w.reset()
    progress.reset()
    h = await at(w, 20)
    assert h.backlogs[0].next_offset == 3 and h.backlogs[0].waiting_s == 0


async def test_timeout_zero_reports_backlogs_but_never_stalls():
    c = FakeConsumer(ends={0: 10}, positions={0: 3})
    w, _ = watch(c, timeout_s=0)
    for now in range(0, 100, 5):
        h = await at(w, now)
    assert h.backlogs[0].waiting_s == 95 and h.stalled == []


async def test_caught_up_waits_for_the_records_on_the_topic_when_asked_and_no_later_ones():
    """The tuner's wait for its decisions index: done once the agent has handled what each held
    partition had when asked; a partition it has not touched counts from where the group resumed."""
    c = FakeConsumer(ends={0: 10, 1: 4}, positions={0: 3, 1: 4})
    progress = Progress()

    async def agent() -> None:
        for offset in range(3, 30):
            await asyncio.sleep(0.01)
            progress.handled(0, offset)
            c.ends[0] += 1  # written after the question: not waited for

    task = asyncio.create_task(agent())
    assert await caught_up(c, TOPIC, progress, timeout_s=5.0, poll_s=0.002)
    assert 10 <= progress.next_offset[0] < 30 and not task.done(), "done at the end it was asked at"
    await task


async def test_caught_up_gives_up_after_its_timeout_and_holds_nothing_when_nothing_is_behind():
    c = FakeConsumer(ends={0: 10}, positions={0: 3})
    assert not await caught_up(c, TOPIC, Progress(), timeout_s=0.05, poll_s=0.01)
    assert not await caught_up(c, TOPIC, Progress(), timeout_s=5.0, poll_s=0.01, abort=lambda: True), \
        "a rebalance or a stop ends the wait at once"
    assert await caught_up(FakeConsumer(ends={0: 0, 1: 5}, positions={0: 0, 1: 5}), TOPIC, Progress(),
                           timeout_s=0.0)
    assert await caught_up(FakeConsumer(other_topic=True), TOPIC, Progress(), timeout_s=0.0)


async def test_caught_up_is_false_when_the_broker_cannot_say_or_answers_too_slowly():
    """A failed look lost the tuner's whole batch (dead-lettered as an internal error), and a slow
    answer ran the wait past its bound."""

    class Failing(FakeConsumer):
        async def resume_offsets(self, *tps: TopicPartition) -> Mapping[TopicPartition, int | None]:
            raise RuntimeError("coordinator not available")

    class Slow(FakeConsumer):
        async def highwaters(self, *tps: TopicPartition) -> Mapping[TopicPartition, int]:
            await asyncio.sleep(10)
            return await super().highwaters(*tps)

    assert not await caught_up(Failing(ends={0: 10}), TOPIC, Progress(), timeout_s=1.0)
    t0 = asyncio.get_running_loop().time()
    assert not await caught_up(Slow(ends={0: 10}, positions={0: 3}), TOPIC, Progress(), timeout_s=0.1)
    assert asyncio.get_running_loop().time() - t0 < 2


async def test_two_callers_at_once_start_one_admin_client(monkeypatch: pytest.MonkeyPatch):
    """The watch and the tuner's index wait both ask for committed offsets: each started a client,
    and the one overwritten was never closed."""
    started: list[object] = []

    class Admin:
        def __init__(self, **_: Any) -> None:
            pass

        async def start(self) -> None:
            started.append(self)
            await asyncio.sleep(0.05)

        async def list_consumer_group_offsets(self, group: str, partitions: Any) -> dict[Any, Any]:
            return {}

        async def close(self) -> None:
            pass

    class Consumer(FakeConsumer):
        async def earliest_offsets(self, *tps: TopicPartition) -> Mapping[TopicPartition, int]:
            return {tp: 0 for tp in tps}

    monkeypatch.setattr("streams.watchdog.AIOKafkaAdminClient", Admin)
    partitions = GroupPartitions(Consumer(ends={0: 1}), "group", {})  # type: ignore[arg-type]
    tp = TopicPartition(TOPIC, 0)
    assert await asyncio.gather(partitions.resume_offsets(tp), partitions.resume_offsets(tp)) == [{tp: 0}] * 2
    assert len(started) == 1


def test_export_sets_gauges_for_held_partitions_only():
    m = Metrics()
    export(Health(checked=True, assigned=[0, 5]), m.lag, m.lag_waiting)
    lagging = Backlog(partition=5, next_offset=3, end=10, waiting_s=12.0)
    export(Health(checked=True, assigned=[1, 5], backlogs=[lagging]), m.lag, m.lag_waiting)  # 0 revoked, 1 new
    got = {(s.name, s.labels["partition"]): s.value for f in m.registry.collect()
           if f.name.startswith("guard_chunk_partition") for s in f.samples}
    assert got == {("guard_chunk_partition_lag", "1"): 0, ("guard_chunk_partition_lag", "5"): 7,
                   ("guard_chunk_partition_waiting_seconds", "1"): 0,
                   ("guard_chunk_partition_waiting_seconds", "5"): 12.0}


async def test_stall_error_names_partitions_and_lag_not_content():
    c = FakeConsumer(ends={2: 9}, positions={2: 1})
    w, _ = watch(c, timeout_s=5)
    await at(w, 0)
    h = await at(w, 5)
    msg = str(PartitionStalled(h.stalled))
    assert "2 (lag 8, 5 s)" in msg


class KafkaConsumerView:
    """aiokafka's consumer under the names Faust's consumer gives the calls ``GroupPartitions`` makes."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._c = consumer

    def assignment(self) -> set[TopicPartition]:
        return self._c.assignment()

    async def highwaters(self, *tps: TopicPartition) -> Mapping[TopicPartition, int]:
        return await self._c.end_offsets(list(tps))

    async def earliest_offsets(self, *tps: TopicPartition) -> Mapping[TopicPartition, int]:
        return await self._c.beginning_offsets(list(tps))

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        self._c.seek(tp, offset)


async def test_a_crash_that_does_not_exit_in_time_is_ended():
    """The graceful shutdown after a stall crash can hang; the deadline ends the process anyway."""
    import threading

    import structlog

    from streams.watchdog import crash_then_exit

    exited = threading.Event()
    codes: list[int] = []

    async def hanging_crash(exc: BaseException) -> None:
        await asyncio.sleep(0)  # returns; the shutdown it starts is what hangs, elsewhere

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    log = structlog.get_logger("test")
    with structlog.testing.capture_logs() as logs:
        await crash_then_exit(hanging_crash, 0.05, log, exit=fake_exit)(RuntimeError("stalled"))
        assert await asyncio.to_thread(exited.wait, 5.0)
    assert codes == [70]
    assert [e["event"] for e in logs] == ["crash_exit_forced"] and logs[0]["reason"] == "RuntimeError"


async def test_over_the_real_broker_a_fetched_but_unserved_partition_stalls_and_a_served_one_does_not(
        kafka_broker):
    """Both partitions are fetched to their end (Faust prefetches); only partition 1's records reach
    the agent. Partition 0 is the stall Faust can leave behind, and the fetch position would hide it:
    the watch counts from where the group resumes, asked of the broker."""
    topic, group = f"watch-{uuid.uuid4().hex[:8]}", f"watch-group-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    prod = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await prod.start()
    try:
        for _ in range(5):
            await prod.send_and_wait(topic, b"x", partition=0)
        for _ in range(3):
            await prod.send_and_wait(topic, b"y", partition=1)
    finally:
        await prod.stop()

    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    partitions = GroupPartitions(KafkaConsumerView(consumer), group, {"bootstrap_servers": kafka_broker.bootstrap})
    try:
        consumer.assign([tp0, tp1])
        got: dict[int, list[Any]] = {0: [], 1: []}
        for _ in range(50):
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                got[tp.partition] += records
            if len(got[0]) == 5 and len(got[1]) == 3:
                break
        assert (len(got[0]), len(got[1])) == (5, 3)
        assert [await consumer.position(tp) for tp in (tp0, tp1)] == [5, 3]  # all fetched

        # The group never committed: it resumes at the log start
        assert await partitions.resume_offsets(tp0, tp1) == {tp0: 0, tp1: 0}
        progress = Progress()
        progress.handled_all((r.partition, r.offset) for r in got[1])  # only partition 1 reached the agent
        await consumer.commit({tp1: 3})
        w = StallWatch(partitions, topic, progress, timeout_s=10.0, interval_s=5.0, clock=Clock(),
                       refetch_after_s=5.0)
        seen = [await at(w, now) for now in (0.0, 5.0, 10.0)]
        assert all(h.assigned == [0, 1] for h in seen)
        assert [[(b.partition, b.next_offset, b.end) for b in h.backlogs] for h in seen] == [[(0, 0, 5)]] * 3
        assert [bool(h.stalled) for h in seen] == [False, False, True]

        # Fetched again from where the agent starts, the records come a second time
        assert [b.partition for b in seen[1].refetch] == [0]
        await w.refetch(seen[1].refetch[0])
        again: list[Any] = []
        for _ in range(50):
            again += (await consumer.getmany(tp0, timeout_ms=200)).get(tp0, [])
            if len(again) == 5:
                break
        assert [r.offset for r in again] == [0, 1, 2, 3, 4]

        # A commit is where a new assignment would resume
        await consumer.commit({tp0: 2})
        assert await partitions.resume_offsets(tp0, tp1) == {tp0: 2, tp1: 3}
        w.reset()
        assert [(b.next_offset, b.lag) for b in (await at(w, 15.0)).backlogs] == [(2, 3)]

        # Served at last: the backlog goes
        progress.handled_all((r.partition, r.offset) for r in got[0])
        assert (await at(w, 20.0)).backlogs == []
    finally:
        await partitions.close()
        await consumer.stop()


async def test_a_broker_that_is_away_is_a_failed_check_not_a_stall_and_the_next_check_tries_again():
    import structlog
    from aiokafka.errors import KafkaConnectionError

    from guard.devenv._proc import free_port
    from streams.watchdog import patrol

    away = {"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_ms": 1000}
    partitions = GroupPartitions(FakeConsumer(ends={0: 10}), "guard", away)
    with pytest.raises(KafkaConnectionError):
        await partitions.resume_offsets(TopicPartition(TOPIC, 0))
    assert partitions._admin is None  # closed, not kept half-open: the next call starts afresh

    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    w = StallWatch(partitions, TOPIC, Progress(), timeout_s=10.0, clock=Clock())
    with structlog.testing.capture_logs() as logs:
        assert await patrol(w, Metrics().lag, Metrics().lag_waiting, crash, structlog.get_logger("test")) is None
    assert [e["event"] for e in logs] == ["partition_check_failed"] and not crashed
