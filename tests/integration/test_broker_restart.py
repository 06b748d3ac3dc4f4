"""A worker whose broker restarts under it (a broker upgrade, a host reboot): a broker of its own
(local jars), stopped and started again on the same ports and data while the worker runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from guard.devenv.kafka import KafkaBroker
from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import LOGS, log_tail, own_topics, send_until_final

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    b = KafkaBroker(log_path=LOGS / f"kafka-restart-{uuid.uuid4().hex[:6]}.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def test_a_stream_goes_on_after_its_broker_restarts(broker, triton_server):
    """Half a stream is decided, the broker goes down for 20 s and comes back: the worker
    reconnects by itself (no restart of its own), decides the rest of the stream from the state it
    kept, and every chunk has exactly one decision. Meanwhile aiokafka's complaints are logged
    once per 10 s each (before, about 3,000 lines for this outage)."""
    own = await own_topics(broker.bootstrap, "restart")
    sid = f"restart-{own.run}"
    parts = ["Sure, here is the plan. ", "First we pack the bags, ", "then we drive to the coast, ",
             "and email ann@example.com ", "when we get there."]
    chunks = [Chunk(stream_id=sid, seq=i, text=t, final=i == len(parts) - 1) for i, t in enumerate(parts)]
    with WorkerProcess(broker.bootstrap, triton_server.grpc_url, own.log, own.env) as worker:
        async with Collector(broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
                ChunkProducer(broker.bootstrap, own.names["chunks"]) as prod:
            for c in chunks[:2]:
                await prod.send(c)
            await prod.flush()
            try:
                await col.wait_for(lambda c: c.complete(sid, 2), timeout=180)
            except TimeoutError:
                pytest.fail(f"no decision (alive={worker.alive()}); log: {log_tail(own.log)}")
        await asyncio.to_thread(broker.restart, 20.0)
        async with Collector(broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
                ChunkProducer(broker.bootstrap, own.names["chunks"]) as prod:
            async def why() -> str:
                return f"no decision after the restart (alive={worker.alive()}); log: {log_tail(own.log)}"

            await send_until_final(prod, col, chunks[2:], 120, why)
            await asyncio.sleep(2.0)  # a duplicate decision would have landed by now
        assert worker.alive(), "reconnected by itself"
    got = col.decisions[sid]
    assert sorted(d.seq for d in got) == list(range(len(parts))), "one decision per chunk, none twice"
    assert "".join(d.text for d in sorted(got, key=lambda d: d.seq)) == "".join(parts).replace(
        "ann@example.com", "[EMAIL]")
    assert not col.deadletters
    log = own.log.read_text(errors="replace")
    errors = sum("[ERROR]" in line for line in log.splitlines())
    assert errors <= 40, f"{errors} error lines for a 20 s outage (about 3,000 unlimited)"
    assert "like it in the last" in log
