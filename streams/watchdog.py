"""Notice a worker that holds chunk partitions and does not serve them.

faust-streaming can end a rebalance with a partition assigned to a worker that never resumes it
(its issues #629 and #523; our own two-worker test saw it once under load: partitions 2 and 3 held,
neither served, for 240 s). The group believes the partition is served, so no other worker takes it,
and every stream hashed to it gets no decisions. Neither Kafka nor Faust reports it.

The watch compares, per assigned chunk partition, the log's end with the next offset the agent will
handle. A backlog whose next offset has not moved for ``timeout_s`` is a stall. The worker's answer
(``streams.app``) is to crash: exiting leaves the group, the other workers take the partitions at
once, and the restart rejoins. A worker restart is cheap; silently lost streams are not.

Before the agent handles anything after an assignment, its next offset is where the group resumes
the partition: the committed offset (or the log start, for a group that never committed), asked of
the broker. Not the consumer's fetch position: Faust prefetches, so a record fetched and never
handed to the agent moved the position to the end and hid the backlog. That is what 3 of 15
workers restarted after a SIGKILL did here under CPU load: partition assigned, table restored,
"ready", and the replayed chunks never handed to the agent; no stall was counted until the watch
read the committed offset, and then a restart served them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter, Gauge


class _Partitions(Protocol):
    """The calls Faust's ``app.consumer`` and the watch's view of it share."""

    def assignment(self) -> set[Any]: ...

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]: ...

    async def seek(self, partition: Any, offset: int) -> None:
        """Fetch the partition again from ``offset``."""
        ...


class PartitionConsumer(_Partitions, Protocol):
    """What the watch needs (``GroupPartitions`` makes it of a Faust app)."""

    async def resume_offsets(self, *partitions: Any) -> Mapping[Any, int | None]:
        """Where the group would resume each partition now (committed, else the log start)."""
        ...


class FaustConsumer(_Partitions, Protocol):
    """What ``GroupPartitions`` uses of Faust's ``app.consumer``."""

    async def earliest_offsets(self, *partitions: Any) -> Mapping[Any, int]: ...


@dataclass
class GroupPartitions:
    """A Faust app's consumer for the watch, with its group's committed offsets from the broker.

    Faust keeps the committed offsets too, but privately; the broker's answer is the one a restart
    would resume from. The admin client starts on first use, so a broker that is away shows as a
    failed check (retried at the next), not as a worker that cannot start.
    """

    consumer: FaustConsumer
    group: str
    options: Mapping[str, Any]  # aiokafka client options (``streams.auth.client_options``)
    _admin: AIOKafkaAdminClient | None = None
    _starting: asyncio.Lock = field(default_factory=asyncio.Lock)

    def assignment(self) -> set[Any]:
        return self.consumer.assignment()

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]:
        return await self.consumer.highwaters(*partitions)

    async def resume_offsets(self, *partitions: Any) -> Mapping[Any, int | None]:
        async with self._starting:  # two callers (the watch, the tuner's index wait) start one client
            if self._admin is None:
                admin = AIOKafkaAdminClient(**self.options)
                try:
                    await admin.start()
                except BaseException:
                    await admin.close()  # not left half-open; the next check starts another
                    raise
                self._admin = admin
        committed = await self._admin.list_consumer_group_offsets(
            self.group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in partitions])
        out: dict[Any, int | None] = {}
        for tp in partitions:
            meta = committed.get(TopicPartition(tp.topic, tp.partition))
            out[tp] = meta.offset if meta is not None and meta.offset >= 0 else None
        never = [tp for tp, offset in out.items() if offset is None]
        if never:  # the group starts these at the log start (consumer_auto_offset_reset="earliest")
            out.update(await self.consumer.earliest_offsets(*never))
        return out

    async def seek(self, partition: Any, offset: int) -> None:
        await self.consumer.seek(partition, offset)  # Faust's: it also resets what it counts as read

    async def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()


@dataclass
class Progress:
    """The next offset the agent will handle, per partition: the last one it finished, plus one.

    Offsets only mean something within one assignment (the next may seek elsewhere), so the worker
    calls ``reset`` on every rebalance.
    """

    next_offset: dict[int, int] = field(default_factory=dict)
    #: partitions whose records have reached the agent (a batch began) since the assignment
    reached: set[int] = field(default_factory=set)

    def handled(self, partition: int, offset: int) -> None:
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)

    def handled_all(self, records: Iterable[tuple[int, int]]) -> None:
        for partition, offset in records:
            self.handled(partition, offset)

    def reached_all(self, records: Iterable[tuple[int, int]]) -> None:
        self.reached.update(partition for partition, _ in records)

    def reset(self) -> None:
        self.next_offset.clear()
        self.reached.clear()


async def caught_up(consumer: PartitionConsumer, topic: str, progress: Progress, timeout_s: float,
                    poll_s: float = 0.1, abort: Callable[[], bool] = lambda: False) -> bool:
    """Wait until the agent has handled every record that is on its partitions of ``topic`` now
    (their log ends, read once; records written later are not waited for). False after ``timeout_s``
    all told (the broker's answers included), as soon as ``abort()`` (the agent cannot move: a
    rebalance, a stop), or when the broker cannot say: a failed look is no reason to lose a batch.

    The tuner's use: a verdict is sent after its decision, so once the decisions agent has handled
    what the topic held when the verdict was read, a decision still missing from the index is not
    on its way (after a tuner outage the verdicts caught up first, and counted as unknown)."""
    tps = [tp for tp in consumer.assignment() if tp.topic == topic]
    if not tps:
        return True
    try:
        async with asyncio.timeout(timeout_s):
            ends = await consumer.highwaters(*tps)
            fresh = [tp for tp in tps if progress.next_offset.get(tp.partition) is None]
            starts = dict(await consumer.resume_offsets(*fresh)) if fresh else {}
            while any(_next(progress, starts, tp) < ends.get(tp, 0) for tp in tps):
                if abort():
                    return False
                await asyncio.sleep(poll_s)
            return True
    except Exception:  # noqa: BLE001 - the timeout, or the broker could not say
        return False


def _next(progress: Progress, starts: Mapping[Any, int | None], tp: Any) -> int:
    """The next offset the agent will handle: its own, or where the group resumed (0: unknown)."""
    handled = progress.next_offset.get(tp.partition)
    return handled if handled is not None else starts.get(tp) or 0


@dataclass(frozen=True)
class Backlog:
    """A partition with records the agent has not handled yet, and how long it has not moved."""

    partition: int
    next_offset: int
    end: int
    waiting_s: float

    @property
    def lag(self) -> int:
        return self.end - self.next_offset


@dataclass(frozen=True)
class Health:
    """What one check saw: the worker is healthy while ``stalled`` is empty (``checked``: False
    before the first check, when nothing is known yet)."""

    checked: bool = False
    assigned: list[int] = field(default_factory=list)
    backlogs: list[Backlog] = field(default_factory=list)
    stalled: list[Backlog] = field(default_factory=list)
    #: seconds Faust has been rebalancing or restoring without a break, once past ``busy_timeout_s``
    stuck_busy_s: float | None = None
    #: backlogs none of whose records reached the agent in ``refetch_after_s``: to fetch again
    refetch: list[Backlog] = field(default_factory=list)
    #: checks that failed (no answer from the broker) since this one: past ``UNKNOWN_AFTER`` the
    #: health is unknown rather than this check's (``after_check``)
    failures: int = 0


#: consecutive failed checks after which /healthz stops reporting the last good one
UNKNOWN_AFTER = 3


def after_check(previous: Health, fresh: Health | None) -> Health:
    """The health to serve after a tick: the new check's, or the previous one with one more
    failure counted. Keeping the last good check as it was made /healthz say "ok" through a
    broker outage, with stall detection off."""
    return fresh if fresh is not None else replace(previous, failures=previous.failures + 1)


@dataclass
class StallWatch:
    """Call ``check`` every ``interval_s``; a backlog that waited ``timeout_s`` is a stall (0: never).

    Two things restart every clock, because the agent had no chance to move and that is not the
    partition's fault:
    - a check that starts late (more than twice the interval after the last one ended): the event
      loop itself was held up (a paused process, a starved machine). From the last *end*, because
      the check asks the broker, and a slow answer is not a held-up loop;
    - ``busy()``: Faust is rebalancing or restoring tables from their changelogs, and pauses the
      partitions on purpose meanwhile (a large table can take minutes; counting that as a stall
      would kill every worker that restores one, again after each restart). A restore can also
      hang for ever (Faust's issues #47 and #74), so busy without a break for ``busy_timeout_s``
      (0: never) is a stall of its own: set it above the longest restore the tables can need.
      The apps call ``check`` from ``streams.web.Probes``, which runs from the process's start:
      Faust's own timers would start only after the first restore, the one a restart can hang in.

    Before a stall, a backlog none of whose records has reached the agent since the assignment
    (``Progress.reached``) for ``refetch_after_s`` (0: never) is fetched again, once per
    assignment, from where the agent is to start. That is the cheap cure for the records a restarted
    worker fetched and never handed to its agent (see the module's docstring): no restart, no
    rebalance. If the agent still gets nothing, the stall follows at ``timeout_s``.
    """

    consumer: PartitionConsumer
    topic: str
    progress: Progress
    timeout_s: float
    interval_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    busy: Callable[[], bool] = lambda: False
    busy_timeout_s: float = 0.0
    refetch_after_s: float = 0.0
    _seen: dict[int, tuple[int, float]] = field(default_factory=dict)
    _tps: dict[int, Any] = field(default_factory=dict)  # partition -> the consumer's own TP
    _refetched: set[int] = field(default_factory=set)
    _last_end: float | None = None
    _busy_since: float | None = None

    @classmethod
    def paced(cls, consumer: PartitionConsumer, topic: str, progress: Progress, timeout_s: float,
              busy: Callable[[], bool], busy_timeout_s: float) -> "StallWatch":
        """The apps' pacing, derived from the stall timeout so the worker and the tuner share it:
        a check every quarter of it (at most 5 s), a refetch after a quarter (at most 15 s)."""
        return cls(consumer, topic, progress, timeout_s=timeout_s, interval_s=min(5.0, timeout_s / 4) or 5.0,
                   busy=busy, busy_timeout_s=busy_timeout_s, refetch_after_s=min(15.0, timeout_s / 4))

    def reset(self) -> None:
        """A new assignment: forget the waits of the last one (a rebalance in progress goes on
        counting as busy: it is one stretch with the assignment it produced)."""
        self._seen.clear()
        self._refetched.clear()
        self._last_end = None

    async def check(self) -> Health:
        """The assigned partitions of the topic, those with a backlog (longest wait first), the stalled."""
        now = self.clock()
        late = self._last_end is not None and now - self._last_end > 2 * self.interval_s
        busy = self.busy()
        if not busy:
            self._busy_since = None
        elif self._busy_since is None:
            self._busy_since = now
        try:
            health = await self._look(now, late or busy)
        finally:
            self._last_end = self.clock()
        if busy and self.busy_timeout_s > 0 and now - (self._busy_since or now) >= self.busy_timeout_s:
            health = replace(health, stuck_busy_s=now - (self._busy_since or now))
        return health

    async def _look(self, now: float, late: bool) -> Health:
        tps = sorted((tp for tp in self.consumer.assignment() if tp.topic == self.topic),
                     key=lambda tp: tp.partition)
        ends = await self.consumer.highwaters(*tps) if tps else {}
        nexts = {tp: self.progress.next_offset.get(tp.partition) for tp in tps}
        # Nothing handled since the assignment: it starts where the group resumes (not the fetch
        # position, which prefetching moves past records the agent never got)
        unknown = [tp for tp, n in nexts.items() if n is None]
        if unknown:
            nexts.update(await self.consumer.resume_offsets(*unknown))
        seen: dict[int, tuple[int, float]] = {}
        out = []
        for tp in tps:
            nxt, end = nexts[tp], ends.get(tp)
            if nxt is None or end is None or end <= nxt:
                continue
            prev = self._seen.get(tp.partition)
            since = prev[1] if prev is not None and prev[0] == nxt and not late else now
            seen[tp.partition] = (nxt, since)
            out.append(Backlog(tp.partition, nxt, end, now - since))
        self._seen = seen
        out.sort(key=lambda b: -b.waiting_s)
        stalled = [b for b in out if b.waiting_s >= self.timeout_s] if self.timeout_s > 0 else []
        refetch = [b for b in out if 0 < self.refetch_after_s <= b.waiting_s and b not in stalled
                   and b.partition not in self.progress.reached and b.partition not in self._refetched]
        self._tps = {tp.partition: tp for tp in tps}
        return Health(checked=True, assigned=[tp.partition for tp in tps], backlogs=out, stalled=stalled,
                      refetch=refetch)

    async def refetch(self, backlog: Backlog) -> None:
        """Fetch the partition again from where the agent is to start (once per assignment)."""
        self._refetched.add(backlog.partition)
        await self.consumer.seek(self._tps[backlog.partition], backlog.next_offset)


def export(health: Health, lag: Gauge, waiting: Gauge) -> None:
    """Lag and wait per held partition as gauges (labelled ``partition``): 0 for those without a
    backlog, none for partitions no longer held."""
    lag.clear()
    waiting.clear()
    for p in health.assigned:
        lag.labels(str(p)).set(0)
        waiting.labels(str(p)).set(0)
    for b in health.backlogs:
        lag.labels(str(b.partition)).set(b.lag)
        waiting.labels(str(b.partition)).set(b.waiting_s)


class RecoveryStalled(RuntimeError):
    """Raised into the app when Faust has been rebalancing or restoring too long without a break."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rebalancing or restoring tables for {seconds:.0f} s without a break "
                         "(GUARD_RECOVERY_TIMEOUT_S); leaving the group to start over")


class PartitionStalled(RuntimeError):
    """Raised into the app (Faust crashes, the process exits non-zero) when a partition stalls."""

    def __init__(self, stalled: list[Backlog], what: str = "chunk") -> None:
        parts = ", ".join(f"{b.partition} (lag {b.lag}, {b.waiting_s:.0f} s)" for b in stalled)
        super().__init__(f"assigned {what} partitions not served: {parts}; leaving the group so "
                         "others take them")


def crash_then_exit(crash: Callable[[BaseException], Awaitable[None]], exit_after_s: float, log: Any,
                    exit: Callable[[int], object] = os._exit) -> Callable[[BaseException], Awaitable[None]]:
    """``crash`` with a deadline: if the process still runs ``exit_after_s`` after the crash, it
    is ended (code 70) without a graceful shutdown.

    Leaving the group is the point of crashing on a stall, and a graceful shutdown can hang behind
    the very thing that stalled: Faust's crash once logged "Crashed" and then never exited under
    load (stop 24; once again in a full test run, stop 25). The deadline runs on a thread, so an
    event loop blocked by whatever stalled cannot hold it up. Ending without flushing is safe: a
    state without its decision is replayed from the outbox (``streams.agents.guard``), and offsets
    not committed are read again."""

    async def crash_with_deadline(exc: BaseException) -> None:
        def force() -> None:
            log.error("crash_exit_forced", after_s=exit_after_s, reason=type(exc).__name__,
                      why="the graceful shutdown after a crash did not finish")
            exit(70)

        timer = threading.Timer(exit_after_s, force)
        timer.daemon = True  # a process that does exit in time is not held up by it
        timer.start()
        await crash(exc)

    return crash_with_deadline


async def patrol(watch: StallWatch, lag: Gauge, waiting: Gauge, crash: Callable[[BaseException], Awaitable[None]],
                 log: Any, what: str = "chunk", refetches: Counter | None = None) -> Health | None:
    """One timer tick of an app's watchdog: check, export the gauges, and crash the app on a stall
    (its exit leaves the group, so the partitions move). None when the check itself failed: a
    failed look at the broker is not a stall."""
    try:
        health = await watch.check()
    except Exception as exc:  # noqa: BLE001
        log.warning("partition_check_failed", topic=watch.topic, error=repr(exc))
        lag.clear()  # no series rather than the last good check's, which an alert would trust
        waiting.clear()
        return None
    export(health, lag, waiting)
    if health.stalled:
        log.error("partition_stalled", topic=watch.topic, partitions=[b.partition for b in health.stalled],
                  lag=[b.lag for b in health.stalled], waiting_s=[round(b.waiting_s) for b in health.stalled])
        await crash(PartitionStalled(health.stalled, what))
    elif health.stuck_busy_s is not None:
        log.error("recovery_stalled", topic=watch.topic, busy_s=round(health.stuck_busy_s),
                  assigned=health.assigned, lag=[b.lag for b in health.backlogs])
        await crash(RecoveryStalled(health.stuck_busy_s))
    for b in health.refetch:
        log.warning("partition_refetched", topic=watch.topic, partition=b.partition, offset=b.next_offset,
                    lag=b.lag, waiting_s=round(b.waiting_s),
                    why="none of its records reached the agent since the assignment")
        await watch.refetch(b)
        if refetches is not None:
            refetches.labels(str(b.partition)).inc()
    return health
