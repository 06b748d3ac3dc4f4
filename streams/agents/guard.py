"""The chunk agent: llm.chunks → pipeline → guard.decisions, with a dead-letter for bad records.

Concurrency 1 per partition set (table writes stay in order); batches come from ``take_events`` so
one semantic call covers every stream in the batch. Nothing escapes the loop: a record that cannot
be used is dead-lettered with its reason; an unforeseen exception while moderating a chunk (a
bug in a layer) dead-letters that chunk alone (``InternalError``), and one anywhere else the batch
it hit, so no record is lost and the worker keeps running.

Nothing at the edges of a stream is dropped silently either:

- A gap given up after ``GUARD_GAP_TIMEOUT_MS``, or once 64 chunks (or 256 KiB of their text) wait
  behind it, is dead-lettered as a range (code ``sequence-gap``, the seqs in ``skipped``, no raw
  bytes: nothing of it was received). Its timeout is checked only when the stream's next chunk
  arrives, not on a timer: releasing the chunks behind the gap means running the pipeline on the
  stream's state, which only this agent may do without racing itself. A chunk of a given-up gap
  that turns up later is dead-lettered with its text (``stream-error``), not taken for a duplicate.
- So a stream that goes quiet behind a gap is settled by ``expire``: after ``GUARD_STATE_TTL_S`` each
  chunk it still holds is dead-lettered (code ``stream-expired``, the chunk re-encoded as raw bytes),
  and text it received but never released (no final chunk came) is logged and counted.

Nor is a decision lost when a worker dies mid-batch. The stream's state (a changelog write) and its
decisions (writes to ``guard.decisions``) are separate sends, and a crash can deliver the first and
lose the second; the replayed chunk would then look like a duplicate. So the state carries the
decisions whose delivery the producer has not confirmed yet (``StreamState.outbox``, pruned here
when a batch decides a new chunk of the stream; usually the batch's own), and a duplicate chunk gets
them sent again, unchanged: its own decision, and those of chunks its arrival released from behind
a gap (their records were committed earlier and will not come again).
Offsets are committed only after the producer has flushed, so a chunk whose decision could be lost
is always replayed. Awaiting each delivery before saving would close the gap too, at the price of a
broker round trip inside every batch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Container, MutableMapping, Sequence
from dataclasses import dataclass, field

import faust
import structlog
from aiokafka.partitioner import murmur2
from structlog.contextvars import bound_contextvars

from guard.errors import GuardError, SchemaError, StateError, StreamExpired
from guard.messages import Chunk, Decision, decode, encode
from guard.metrics import Metrics
from guard.pipeline import Pipeline
from guard.state import StreamState, dump_state, load_state
from streams import deadletter
from streams.topics import Topics
from streams.watchdog import Progress

log = structlog.get_logger(__name__)


@dataclass
class ChunkHandler:
    """Handles one batch of chunk records: decode, moderate, send decisions and dead letters, save."""

    topics: Topics
    table: MutableMapping[bytes, bytes]
    pipeline: Callable[[], Awaitable[Pipeline]]
    metrics: Metrics
    #: the table's changelog partitions (``GUARD_PARTITIONS``); 0 skips the partitioner check
    partitions: int = 0
    _misrouted: int = 0
    #: ids of decisions sent and not yet confirmed by the producer (insertion-ordered, bounded): what
    #: a saved outbox keeps. A failed send is never confirmed, so its decision stays replayable
    _in_flight: dict[str, None] = field(default_factory=dict)
    max_in_flight: int = 100_000
    #: table keys of the streams a batch has read and not saved yet: not idle, whatever their
    #: ``updated_ms`` says, so ``expire`` leaves them alone (the batch awaits the detector meanwhile)
    busy: set[bytes] = field(default_factory=set)

    def check_partition(self, key: bytes, partition: int) -> None:
        """Warn when a chunk sits on another partition than murmur2 (Kafka's default partitioner)
        would put its key. The table writes the stream's state to the changelog partition murmur2
        picks, and a worker restores only the changelog partitions of the chunk partitions it holds:
        under another partitioner (librdkafka's default CRC32) a stream's state is restored on the
        wrong worker after a rebalance, and its stream looks new. Decisions until then are right, so
        the chunk is decided, counted and logged (at the first and then every 10,000th), not refused."""
        expected = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        if expected == partition:
            return
        self.metrics.misrouted.inc()
        if self._misrouted % 10_000 == 0:
            log.warning("chunk_partition_mismatch", partition=partition, murmur2_partition=expected,
                        seen=self._misrouted + 1,
                        fix="producers must key chunks by stream_id with Kafka's default murmur2 "
                            "partitioner (librdkafka: partitioner=murmur2_random)")
        self._misrouted += 1

    async def send_decision(self, d: Decision) -> None:
        self._in_flight[d.decision_id] = None
        while len(self._in_flight) > self.max_in_flight:  # only failed sends linger; forget the oldest
            del self._in_flight[next(iter(self._in_flight))]
        await self.topics.decisions.send(key=d.stream_id.encode(), value=encode(d),
                                         callback=lambda _sent, i=d.decision_id: self._in_flight.pop(i, None))

    def unconfirmed(self, outbox: Sequence[Decision]) -> tuple[Decision, ...]:
        """The outbox to save: decisions this worker sent whose delivery is not confirmed. Entries
        from another worker's state are dropped too: its replays come before any new chunk of the
        stream, so once a new chunk is decided they have had their chance."""
        return tuple(d for d in outbox if d.decision_id in self._in_flight)

    async def dead(self, event: faust.EventT, error: Exception) -> None:
        self.metrics.deadletters.labels(deadletter.code_of(error)).inc()
        await deadletter.send(self.topics.deadletter, event, error, log)

    async def __call__(self, events: Sequence[faust.EventT]) -> None:
        try:
            await self._handle(events)
        finally:
            self.busy.clear()  # concurrency 1: no other batch has keys in it

    async def _handle(self, events: Sequence[faust.EventT]) -> None:
        pipe = await self.pipeline()
        items: list[tuple[StreamState | None, Chunk]] = []
        sources: list[faust.EventT] = []
        for ev in events:
            try:
                if not isinstance(ev.value, bytes | bytearray):
                    raise SchemaError("record value is empty")
                chunk = decode(Chunk, ev.value)
                key = ev.message.key
                if key is not None and key != chunk.stream_id.encode():
                    raise SchemaError("record key does not match stream_id (partitioning by stream_id "
                                      "is what keeps a stream on one worker)")
                if key is not None and self.partitions:
                    self.check_partition(key, ev.message.partition)
                key = chunk.stream_id.encode()
                self.busy.add(key)
                raw = self.table.get(key)
                state = load_state(raw) if raw else None
            except GuardError as exc:
                await self.dead(ev, exc)
                continue
            items.append((state, chunk))
            sources.append(ev)
        if not items:
            return
        self.metrics.batch.observe(len(items))
        outcomes = await pipe.process(items)
        for ev, out in zip(sources, outcomes, strict=True):
            with bound_contextvars(stream_id=out.stream_id):
                if out.error is not None:
                    await self.dead(ev, out.error)
                for gap in out.skipped:  # about missing chunks, not about this (decided) record
                    self.metrics.deadletters.labels(gap.code).inc()
                    await deadletter.send_for_stream(self.topics.deadletter, out.stream_id, gap, log,
                                                     source=ev.message.topic, partition=ev.message.partition,
                                                     skipped=(gap.first, gap.last))
                for held, exc in out.rejected:  # consumed earlier, held behind a gap: send the chunk itself
                    self.metrics.deadletters.labels(exc.code).inc()
                    await deadletter.send_for_stream(self.topics.deadletter, out.stream_id, exc, log,
                                                     source=ev.message.topic, partition=ev.message.partition,
                                                     raw=encode(held))
                for d in out.replayed:
                    await self.send_decision(d)
                    self.metrics.replayed.inc()
                    log.warning("decision_replayed", decision_id=d.decision_id, seq=d.seq,
                                why="a replayed chunk's decision was not confirmed delivered when its state was saved")
                for d in out.decisions:
                    await self.send_decision(d)
                    self.metrics.decisions.labels(d.action, d.policy).inc()
                    self.metrics.latency.observe(d.latency_ms / 1000.0)
                    if d.unjudged_chars:
                        self.metrics.unjudged.labels(d.policy).inc(d.unjudged_chars)
                    for e in d.evidence:
                        self.metrics.fired.labels(e.principle, e.category).inc()
                    if d.action != "allow":
                        log.info("decision", decision_id=d.decision_id, action=d.action,
                                 principle=d.principle, released_offset=d.released_offset,
                                 latency_ms=d.latency_ms)
        # saved once per stream, after every decision of the batch is sent: a stream with several
        # chunks here has one state, whose outbox must keep the decisions of all of them. It is
        # pruned only when the stream decided a new chunk: replayed duplicates can come in several
        # batches, and the entries of another worker wait for theirs until a new chunk shows
        # that every earlier record has been read again
        decided = {o.stream_id for o in outcomes if o.decisions}
        for stream_id, state in {o.stream_id: o.state for o in outcomes if o.state is not None}.items():
            if stream_id in decided:
                state.keep_outbox(self.unconfirmed(state.outbox))
            self.table[stream_id.encode()] = dump_state(state)


def register(app: faust.App, topics: Topics, table: faust.Table,
             pipeline: Callable[[], Awaitable[Pipeline]], metrics: Metrics,
             batch_max: int, batch_within_s: float, progress: Progress, partitions: int = 0) -> ChunkHandler:
    """The chunk agent on ``topics.chunks``; returns its handler (``expire`` needs its ``busy``)."""
    handle = ChunkHandler(topics, table, pipeline, metrics, partitions)

    @app.agent(topics.chunks, name="guard-chunks", concurrency=1)
    async def moderate(stream: faust.StreamT) -> None:
        await deadletter.consume(stream, batch_max, batch_within_s, handle, handle.dead, log, progress=progress)

    return handle


async def expire(table: MutableMapping[bytes, bytes], ttl_s: float, topics: Topics, metrics: Metrics,
                 now_ms: int | None = None, busy: Container[bytes] = frozenset()) -> int:
    """Forget streams that finished or went idle longer than ``ttl_s`` ago, accounting for what they held.

    Every stale state is deleted before anything is sent: with no await between reading a state and
    deleting it, the chunk agent cannot save a newer state in between that this would then delete.
    A stream in ``busy`` (``ChunkHandler.busy``) is skipped: a batch read its state and is deciding
    its chunks, and would otherwise decide chunks this dead-letters as never moderated.
    If dead-lettering a stream's leftovers fails, its state is put back (unless the stream came back
    meanwhile) so the next round tries again: a leftover may then be dead-lettered twice, never lost.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    stale: list[tuple[bytes, bytes, StreamState]] = []
    for key, raw in list(table.items()):
        if key in busy:
            continue
        try:
            st = load_state(raw)
        except StateError as exc:  # unreadable: nothing to expire by, so it goes now, raw bytes kept
            del table[key]
            await deadletter.send_for_stream(topics.deadletter, key.decode(errors="replace"), exc, log,
                                             source=topics.chunks.get_topic_name(), raw=raw)
            metrics.deadletters.labels(exc.code).inc()
            continue
        if now_ms - st.updated_ms > ttl_s * 1000:
            stale.append((key, raw, st))
    for key, _, _ in stale:
        del table[key]
    for key, raw, st in stale:
        with bound_contextvars(stream_id=st.stream_id):
            try:
                await _leftovers(st, topics, metrics, now_ms - st.updated_ms)
            except Exception:  # a failed send must not stop the timer, nor lose the state
                log.exception("expired_stream_deadletter_failed", pending=len(st.pending))
                if key not in table:
                    table[key] = raw
                continue
        metrics.expired.inc()
    return len(stale)


async def _leftovers(st: StreamState, topics: Topics, metrics: Metrics, idle_ms: int) -> None:
    """Dead-letter the chunks a stream still held behind a gap; log and count unreleased text.

    The text is not dead-lettered: its chunks were decided already, only their release was still
    pending (held back by a layer, and no final chunk came to flush it).
    """
    source = topics.chunks.get_topic_name()
    for seq in sorted(st.pending):
        error = StreamExpired(f"stream idle for {idle_ms // 1000} s (GUARD_STATE_TTL_S): chunk seq {seq} "
                              f"was waiting behind missing seq {st.next_seq} and was never moderated")
        await deadletter.send_for_stream(topics.deadletter, st.stream_id, error, log, source=source,
                                         raw=encode(st.pending[seq]))
        metrics.deadletters.labels(error.code).inc()
    held = 0 if st.blocked else st.end - st.released
    if held:
        log.warning("stream_expired_with_unreleased_text", held_chars=held, idle_s=idle_ms // 1000)
        metrics.unreleased.inc(held)
