"""The chunk agent: llm.chunks → pipeline → guard.decisions, with a dead-letter for bad records.

Concurrency 1 per partition set (table writes stay in order); batches come from ``take_events`` so
one semantic call covers every stream in the batch. Nothing escapes the loop: a record that cannot
be used is dead-lettered with its reason, and an unexpected failure dead-letters the batch it hit,
so no record is lost and the worker keeps running.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import structlog
from structlog.contextvars import bound_contextvars

from guard.errors import GuardError, SchemaError
from guard.messages import Chunk, decode, encode
from guard.metrics import Metrics
from guard.pipeline import Pipeline
from guard.state import StreamState, dump_state, load_state
from streams import deadletter
from streams.topics import Topics
from streams.watchdog import Progress

log = structlog.get_logger(__name__)


def register(app: faust.App, topics: Topics, table: faust.Table,
             pipeline: Callable[[], Awaitable[Pipeline]], metrics: Metrics,
             batch_max: int, batch_within_s: float, progress: Progress) -> Any:
    async def dead(event: faust.EventT, error: Exception) -> None:
        metrics.deadletters.labels(deadletter.code_of(error)).inc()
        await deadletter.send(topics.deadletter, event, error, log)

    async def handle(events: Sequence[faust.EventT]) -> None:
        pipe = await pipeline()
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
            except GuardError as exc:
                await dead(ev, exc)
                continue
            raw = table.get(chunk.stream_id.encode())
            items.append((load_state(raw) if raw else None, chunk))
            sources.append(ev)
        if not items:
            return
        metrics.batch.observe(len(items))
        outcomes = await pipe.process(items)
        for ev, out in zip(sources, outcomes, strict=True):
            with bound_contextvars(stream_id=out.stream_id):
                if out.error is not None:
                    await dead(ev, out.error)
                for gap in out.skipped:
                    await dead(ev, gap)
                for d in out.decisions:
                    await topics.decisions.send(key=d.stream_id.encode(), value=encode(d))
                    metrics.decisions.labels(d.action, d.policy).inc()
                    metrics.latency.observe(d.latency_ms / 1000.0)
                    for e in d.evidence:
                        metrics.fired.labels(e.principle, e.category).inc()
                    if d.action != "allow":
                        log.info("decision", decision_id=d.decision_id, action=d.action,
                                 principle=d.principle, released_offset=d.released_offset,
                                 latency_ms=d.latency_ms)
                if out.state is not None:
                    table[out.stream_id.encode()] = dump_state(out.state)

    @app.agent(topics.chunks, name="guard-chunks", concurrency=1)
    async def moderate(stream: faust.StreamT) -> None:
        await deadletter.consume(stream, batch_max, batch_within_s, handle, dead, log,
                                 done=lambda evs: progress.handled_all(
                                     (ev.message.partition, ev.message.offset) for ev in evs))

    return moderate


def expire(table: faust.Table, ttl_s: float, now_ms: int | None = None) -> int:
    """Forget streams that finished or went idle longer than ``ttl_s`` ago."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    stale = []
    for key, raw in list(table.items()):
        st = load_state(raw)
        if now_ms - st.updated_ms > ttl_s * 1000:
            stale.append(key)
    for key in stale:
        del table[key]
    return len(stale)
