"""Dead-letter records: the raw bytes, where they came from, and why they were refused.

``consume`` is the loop every guard agent runs: a batch is handled, or — if handling raises — each of
its records is dead-lettered with the error, so nothing is lost and the agent keeps consuming.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from guard.errors import GuardError, InternalError, traced
from guard.messages import DeadLetter, encode
from streams.watchdog import Progress


def code_of(error: Exception) -> str:
    return str(getattr(error, "code", "internal-error"))


def record(error: Exception, topic: str, partition: int, offset: int, raw: bytes | None, *,
           stream_id: str | None = None, skipped: tuple[int, int] | None = None) -> bytes:
    return encode(DeadLetter(error=str(error)[:2000], code=code_of(error), topic=topic, partition=partition,
                             offset=offset, raw_b64=base64.b64encode(raw or b"").decode("ascii"),
                             ts_ms=int(time.time() * 1000), stream_id=stream_id, skipped=skipped))


async def send(topic: faust.TopicT, event: faust.EventT, error: Exception, log: Any) -> None:
    """Dead-letter one consumed record (logged by position and code, never by content)."""
    msg = event.message
    log.warning("record_deadlettered", code=code_of(error), topic=msg.topic, partition=msg.partition,
                offset=msg.offset)
    await topic.send(key=msg.key, value=record(error, msg.topic, msg.partition, msg.offset, event.value))


async def send_for_stream(topic: faust.TopicT, stream_id: str, error: Exception, log: Any, *, source: str,
                          partition: int = -1, raw: bytes = b"", skipped: tuple[int, int] | None = None) -> None:
    """Dead-letter something about a stream that is not the record just consumed (so offset -1).

    A gap given up has no raw bytes: presenting the chunk that happened to reveal it would make a
    record that was decided look failed. A chunk an expired stream still held is passed re-encoded.
    """
    log.warning("stream_deadlettered", code=code_of(error), stream_id=stream_id, topic=source,
                partition=partition, skipped=skipped)
    await topic.send(key=stream_id.encode(), value=record(error, source, partition, -1, raw,
                                                          stream_id=stream_id, skipped=skipped))


async def consume(stream: faust.StreamT, batch_max: int, within_s: float,
                  handle: Callable[[Sequence[faust.EventT]], Awaitable[None]],
                  dead: Callable[[faust.EventT, Exception], Awaitable[None]], log: Any,
                  failed_event: str = "batch_failed", progress: Progress | None = None) -> None:
    """``progress`` hears of every batch as it arrives, and once its records are decided or
    dead-lettered (``streams.watchdog``)."""
    async for events in stream.take_events(batch_max, within=within_s):
        records = [(ev.message.partition, ev.message.offset) for ev in events]
        if progress is not None:
            progress.reached_all(records)
        try:
            await handle(events)
        except Exception as exc:  # noqa: BLE001 - the agent must survive anything
            # the exception's own text may quote a record: the log and the dead letters get its
            # type and where it was raised
            err = exc if isinstance(exc, GuardError) else InternalError.wrap(
                exc, "while handling the batch; none of its records was handled")
            log.error(failed_event, size=len(events), code=err.code, **traced(exc))
            for ev in events:
                try:
                    await dead(ev, err)
                except Exception:  # noqa: BLE001
                    log.exception("deadletter_failed")
        if progress is not None:
            progress.handled_all(records)
