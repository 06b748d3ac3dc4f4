"""Client-side helpers around a running guard: start workers, send chunks, collect decisions.

Used by the demo, the integration tests and the benchmarks, so all of them drive guard the way a
gateway would: through Kafka only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from guard.devenv._proc import die_with_parent
from guard.messages import Chunk, Decision, DeadLetter, decode, encode


@dataclass
class WorkerProcess:
    """A ``guard worker`` in its own process (Faust owns its event loop and signals)."""

    bootstrap: str
    triton_url: str | None
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ("-m", "streams", "worker")  # what the Python interpreter runs
    cwd: Path | None = None  # the worker's working directory (None: this process's)
    wrapper: tuple[str, ...] = ()  # a command the interpreter runs under (e.g. setpriv, to drop privileges)
    proc: subprocess.Popen[bytes] | None = None
    log_start: int = 0  # where this start's lines begin in the (appended) log

    def start(self) -> WorkerProcess:
        env = {**os.environ, "GUARD_KAFKA_BOOTSTRAP": self.bootstrap, **self.env}
        if self.triton_url:
            env["GUARD_TRITON_URL"] = self.triton_url
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([*self.wrapper, sys.executable, *self.args], env=env, cwd=self.cwd,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent())  # noqa: PLW1509 - one prctl call
        log.close()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """What this start logged (structlog JSON lines), optionally one event only."""
        return log_events(self.log_path, self.log_start, event)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log_events(path: Path, start: int = 0, event: str | None = None) -> list[dict[str, Any]]:
    """structlog JSON lines of a process log (from byte ``start``), optionally of one event.

    A line may carry terminal escapes before its JSON (Faust's spinner), so each is read from its
    first brace; lines that are not JSON (Faust's own logging) are skipped.
    """
    out = []
    with path.open("rb") as fh:
        fh.seek(start)
        for line in fh.read().decode("utf-8", "replace").splitlines():
            i = line.find("{")
            if i < 0:
                continue
            try:
                ev = json.loads(line[i:])
            except json.JSONDecodeError:
                continue
            if isinstance(ev, dict) and (event is None or ev.get("event") == event):
                out.append(ev)
    return out


class ChunkProducer:
    """Sends chunks keyed by stream_id (so a stream stays on one partition and one worker)."""

    def __init__(self, bootstrap: str, topic: str = "llm.chunks", options: Mapping[str, Any] | None = None) -> None:
        """``options``: further aiokafka options (credentials: ``streams.auth.client_options``)."""
        self._producer = AIOKafkaProducer(**{"bootstrap_servers": bootstrap, **(options or {})}, linger_ms=0, acks=1)
        self.topic = topic
        self.sent_at: dict[tuple[str, int], float] = {}

    async def __aenter__(self) -> ChunkProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, chunk: Chunk) -> None:
        self.sent_at[(chunk.stream_id, chunk.seq)] = time.perf_counter()
        await self._producer.send(self.topic, key=chunk.stream_id.encode(), value=encode(chunk))

    async def send_raw(self, key: bytes | None, value: bytes) -> None:
        await self._producer.send_and_wait(self.topic, key=key, value=value)

    async def flush(self) -> None:
        await self._producer.flush()


class Collector:
    """Reads decisions (and dead letters) from the start of the topics into memory."""

    def __init__(self, bootstrap: str, decisions: str = "guard.decisions",
                 deadletter: str = "guard.deadletter", options: Mapping[str, Any] | None = None) -> None:
        self._consumer = AIOKafkaConsumer(decisions, deadletter, **{"bootstrap_servers": bootstrap, **(options or {})},
                                          auto_offset_reset="earliest", enable_auto_commit=False,
                                          group_id=None, fetch_max_wait_ms=50)
        self._topics = (decisions, deadletter)
        self.decisions: dict[str, list[Decision]] = defaultdict(list)
        self.received_at: dict[tuple[str, int], float] = {}
        self.deadletters: list[DeadLetter] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.on_decision = None  # optional callback(Decision)

    async def __aenter__(self) -> Collector:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._consumer.stop()

    async def _run(self) -> None:
        async for msg in self._consumer:
            now = time.perf_counter()
            if msg.topic == self._topics[0]:
                d = decode(Decision, msg.value)
                self.decisions[d.stream_id].append(d)
                self.received_at.setdefault((d.stream_id, d.seq), now)
                if self.on_decision is not None:
                    self.on_decision(d)
            else:
                self.deadletters.append(decode(DeadLetter, msg.value))
            self._changed.set()

    async def wait_for(self, predicate, timeout: float = 60.0) -> None:
        """Wait until ``predicate(self)`` holds; raise TimeoutError with what is there."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out; have decisions for {dict((k, len(v)) for k, v in self.decisions.items())}, "
                                   f"{len(self.deadletters)} dead letters")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass

    def final(self, stream_id: str) -> bool:
        """The stream has ended (its final chunk was decided, or it was blocked)."""
        return any(d.final for d in self.decisions.get(stream_id, ()))

    def complete(self, stream_id: str, chunks: int) -> bool:
        """Every one of the stream's ``chunks`` chunks has its decision."""
        return len({d.seq for d in self.decisions.get(stream_id, ())}) >= chunks
