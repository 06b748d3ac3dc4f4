"""Follow the compacted ``guard.thresholds`` topic into an immutable ``Thresholds`` snapshot.

Every worker, the tuner and ``guard thresholds`` need the same thing: every threshold event ever
published (compaction keeps the newest per key), in order, then the new ones as they come. That is
a plain aiokafka consumer with no group id, assigned all partitions and reading from the beginning:
a consumer group would split the partitions between workers, and each worker must see them all.

``Thresholds.apply`` is idempotent and per-key monotone, so a replay, a redelivery or a read of the
compacted log all end in the same snapshot; the follower only has to swap it in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from guard.errors import GuardError
from guard.messages import ThresholdChange, decode
from guard.policy.load import PolicySet
from guard.thresholds import ThresholdKey, Thresholds

log = structlog.get_logger(__name__)


def policy_defaults(policies: PolicySet) -> dict[tuple[str, str], float]:
    """``(policy, category)`` → the threshold its semantic principle states (what tuning starts from)."""
    out: dict[tuple[str, str], float] = {}
    for name, spec in policies.policies.items():
        for p in spec.principles:
            if "semantic" in p.detectors:
                for c in p.categories:
                    out[(name, c)] = p.threshold
    return out


@dataclass
class ThresholdFollower:
    """Reads every event of the thresholds topic, then follows it; ``current`` is the snapshot.

    ``on_change`` is called after each applied event (the tuner keeps its own copy in step, the CLI
    records history). ``start`` returns once the events that existed when it was called have been
    applied, or after ``catchup_timeout_s`` (then the follower keeps trying in the background: a
    worker must not wait forever for a topic that is empty or not there yet).
    """

    bootstrap: str
    topic: str
    current: Thresholds = field(default_factory=Thresholds)
    on_change: Callable[[ThresholdChange, int], None] | None = None
    #: further aiokafka options: credentials (``streams.auth.client_options``)
    options: Mapping[str, Any] = field(default_factory=dict)
    poll_ms: int = 200
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    events: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _end: dict[TopicPartition, int] = field(default_factory=dict)

    async def start(self, catchup_timeout_s: float | None = 10.0) -> bool:
        """Open the consumer and read up to the end as of now; True when caught up in time."""
        # Subscribing without a group id assigns every partition of the topic (aiokafka's no-group
        # coordinator) and follows partition changes; with no committed offsets, "earliest" is the
        # start of the log. A short metadata age notices a topic created after we started.
        self._consumer = AIOKafkaConsumer(
            self.topic, **{"bootstrap_servers": self.bootstrap, **self.options}, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=self.poll_ms, metadata_max_age_ms=5000)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"follow:{self.topic}")
        try:
            await asyncio.wait_for(asyncio.shield(self.caught_up.wait()), catchup_timeout_s)
        except TimeoutError:
            log.warning("thresholds_not_caught_up", topic=self.topic, timeout_s=catchup_timeout_s,
                        events=self.events)
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
        if self._consumer is not None:
            await self._consumer.stop()

    def set_defaults(self, defaults: Mapping[tuple[str, str], float]) -> None:
        """After a policy (re)load: new defaults, tuned overrides and version kept."""
        self.current = self.current.with_defaults(defaults)

    def apply_local(self, change: ThresholdChange) -> None:
        """Apply an event this process has just published, before its echo arrives.

        Skipped when the key already holds an event of this version or a newer one: the echo came
        first, and what followed it in the topic (a pin that took the same version) must stand.
        Applied again, the event would undo that pin here only, while workers and the compacted
        topic keep it. Otherwise the echo, applied in topic order, settles the key as everywhere.
        """
        if self.current.key_version(ThresholdKey.of(change)) >= change.version:
            return
        self.current = self.current.apply(change)

    # -- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Follow for the process's lifetime. A failed poll is retried (with backoff, logged): if
        this task died, every decision after it would use thresholds that silently stop changing."""
        assert self._consumer is not None
        failures = 0
        while True:
            try:
                if not self.caught_up.is_set():
                    await self._check_caught_up()
                batches = await self._consumer.getmany(timeout_ms=self.poll_ms)
            except Exception as exc:  # noqa: BLE001 - keep following; the log says why it paused
                failures += 1
                log.warning("thresholds_follow_failed", topic=self.topic, error=repr(exc), failures=failures)
                await asyncio.sleep(min(10.0, 0.5 * 2 ** min(failures, 5)))
                continue
            failures = 0
            for records in batches.values():
                for msg in records:
                    self._apply(msg.value, msg.offset, msg.partition)

    async def _check_caught_up(self) -> None:
        """Caught up once every partition's position reaches its end offset as first assigned."""
        assert self._consumer is not None
        tps = sorted(self._consumer.assignment())
        if not tps:
            return  # no metadata for the topic (yet): keep polling, the metadata refresh finds it
        missing = [tp for tp in tps if tp not in self._end]
        if missing:
            self._end.update(await self._consumer.end_offsets(missing))
        for tp in tps:
            if await self._consumer.position(tp) < self._end[tp]:
                return
        log.info("thresholds_caught_up", topic=self.topic, events=self.events,
                 version=self.current.version)
        self.caught_up.set()

    def _apply(self, raw: bytes | None, offset: int, partition: int) -> None:
        if raw is None:  # a tombstone: compaction's delete marker, nothing to apply
            return
        try:
            change = decode(ThresholdChange, raw)
        except GuardError as exc:
            # Not ours to dead-letter (workers only read this topic); skip it, loudly.
            log.warning("threshold_event_invalid", code=exc.code, partition=partition, offset=offset)
            return
        self.current = self.current.apply(change)
        self.events += 1
        if self.caught_up.is_set():  # live changes only: a replay at start is not news
            log.info("threshold_event", key=ThresholdKey.of(change).topic_key,
                     status=change.status, value=change.value, version=change.version, offset=offset)
        if self.on_change is not None:
            self.on_change(change, offset)


async def read_all(bootstrap: str, topic: str, timeout_s: float = 10.0, options: Mapping[str, Any] | None = None
                   ) -> tuple[Thresholds, list[tuple[int, ThresholdChange]]]:
    """Every event on the topic now, in offset order, and the snapshot they make (for the CLI)."""
    history: list[tuple[int, ThresholdChange]] = []
    follower = ThresholdFollower(bootstrap, topic, on_change=lambda ch, off: history.append((off, ch)),
                                 options=dict(options or {}))
    t0 = time.monotonic()
    try:
        ok = await follower.start(catchup_timeout_s=timeout_s)
    finally:
        await follower.stop()
    if not ok:
        raise TimeoutError(f"could not read {topic!r} within {time.monotonic() - t0:.0f} s")
    return follower.current, history
