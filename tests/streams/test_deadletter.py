"""The agents' loop: a batch whose handling raises has each record dead-lettered with the error,
and the loop goes on to the next batch (nothing lost, the agent alive)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import structlog
import structlog.testing

from guard.messages import DeadLetter, decode
from streams import deadletter
from streams.watchdog import Progress


@dataclass
class Message:
    offset: int
    key: bytes | None = b"k"
    topic: str = "llm.chunks"
    partition: int = 0


@dataclass
class Event:
    message: Message
    value: bytes


@dataclass
class Stream:
    batches: list[list[Event]]

    async def take_events(self, n: int, within: float):  # type: ignore[no-untyped-def]
        for b in self.batches:
            yield b


@dataclass
class Topic:
    sent: list[tuple[bytes | None, bytes]] = field(default_factory=list)

    async def send(self, key: bytes | None = None, value: bytes = b"") -> None:
        self.sent.append((key, value))


async def test_a_batch_whose_handling_raises_is_dead_lettered_record_by_record_and_the_loop_goes_on() -> None:
    batches = [[Event(Message(0), b"a"), Event(Message(1), b"b")], [Event(Message(2), b"c")]]
    handled: list[list[int]] = []
    topic = Topic()

    async def handle(events):  # type: ignore[no-untyped-def]
        handled.append([e.message.offset for e in events])
        if events[0].message.offset == 0:
            raise RecursionError("maximum recursion depth exceeded")

    async def dead(ev, exc):  # type: ignore[no-untyped-def]
        await deadletter.send(topic, ev, exc, structlog.get_logger())

    progress = Progress()
    await deadletter.consume(Stream(batches), 10, 0.1, handle, dead, structlog.get_logger(), progress=progress)

    assert handled == [[0, 1], [2]], "the next batch was still handled"
    letters = [decode(DeadLetter, v) for _, v in topic.sent]
    assert [(d.offset, d.code, base64.b64decode(d.raw_b64)) for d in letters] == [
        (0, "internal-error", b"a"), (1, "internal-error", b"b")]
    assert all("RecursionError" in d.error and "maximum recursion depth" not in d.error for d in letters), \
        "the type and where, not the exception's own text (which may quote a record)"


async def test_the_log_of_a_failed_batch_names_the_error_not_its_text() -> None:
    async def handle(events):  # type: ignore[no-untyped-def]
        raise ValueError(f"cannot parse {events[0].value!r}")

    async def dead(ev, exc):  # type: ignore[no-untyped-def]
        return None

    with structlog.testing.capture_logs() as logs:
        await deadletter.consume(Stream([[Event(Message(0), b"my card is 4111")]]), 10, 0.1, handle, dead,
                                 structlog.get_logger())
    (failed,) = [e for e in logs if e["event"] == "batch_failed"]
    assert failed["error_type"] == "ValueError" and failed["code"] == "internal-error"
    assert "4111" not in repr(logs)


async def test_a_failing_dead_letter_send_does_not_stop_the_loop() -> None:
    batches = [[Event(Message(0), b"a")], [Event(Message(1), b"b")]]
    handled: list[int] = []

    async def handle(events):  # type: ignore[no-untyped-def]
        handled.append(events[0].message.offset)
        raise ValueError("bad")

    async def dead(ev, exc):  # type: ignore[no-untyped-def]
        raise ConnectionError("broker gone")

    await deadletter.consume(Stream(batches), 10, 0.1, handle, dead, structlog.get_logger())
    assert handled == [0, 1]
