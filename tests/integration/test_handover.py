"""A rolling restart: a second worker joins, the first is stopped (SIGTERM) mid-stream, and the
second goes on with the stream from the state the first left on the table's changelog.

With Faust's default standby replica, the second worker (the standby) took over with the stream's
state missing in 3 of 23 runs; with none (``streams.topics.new_app``), 0 of 25."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from guard.devenv._proc import free_port
from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import log_tail, own_topics, send_until_final

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]


async def test_a_stream_handed_over_in_a_rolling_restart_goes_on_where_it_was(kafka_broker, triton_server):
    """An address cut across the handover: the first worker holds its head back (it could still
    grow), the second reads the head from the restored state and masks the address whole. One
    decision per chunk, whichever worker made it."""
    own = await own_topics(kafka_broker.bootstrap, "handover")
    sid = f"handover-{own.run}"
    parts = ["Sure. Write to maria.gomez@exam", "ple.com about the trip, ", "she answers fast."]
    chunks = [Chunk(stream_id=sid, seq=i, text=t, final=i == len(parts) - 1) for i, t in enumerate(parts)]
    first = WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, own.log, own.env)
    second_log = own.log.with_name(own.log.stem + "-second.log")
    second = WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, second_log,
                           {**own.env, "GUARD_WEB_PORT": str(free_port())})
    async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
            ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
        with first, contextlib.ExitStack() as stack:
            await prod.send(chunks[0])
            await prod.flush()
            try:
                await col.wait_for(lambda c: c.complete(sid, 1), timeout=180)
            except TimeoutError:
                pytest.fail(f"no first decision; log: {log_tail(own.log)}")
            assert "maria" not in col.decisions[sid][0].text, "the address's head is held back"
            second.start()  # joins the group, with no partition of its own yet (the topic has one)
            stack.callback(second.stop)
            deadline = time.monotonic() + 120
            while not second.events("partitions_assigned") and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert second.events("partitions_assigned"), f"the second never joined: {log_tail(second_log)}"
            first.stop()  # SIGTERM: a rolling restart's graceful stop
            assert first.proc is not None and first.proc.returncode is not None
            async def why() -> str:
                return f"the second worker did not go on: {await _probe(second)}; {log_tail(second_log)}"

            await send_until_final(prod, col, chunks[1:], 180, why)
            assert second.alive()
            assert [e["action"] for e in second.events("decision")] == ["redact"], "the second masked it"
    got = {d.seq: d for d in col.decisions[sid]}
    assert sorted(got) == [0, 1, 2] and len(col.decisions[sid]) == 3, "one decision per chunk"
    assert "".join(got[i].text for i in range(3)) == "Sure. Write to [EMAIL] about the trip, she answers fast."



async def _probe(worker: WorkerProcess) -> str:
    """The worker's health and its lag and chunk series, for a failure message."""
    import aiohttp

    base = f"http://127.0.0.1:{worker.env['GUARD_WEB_PORT']}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                health = await r.text()
            async with http.get(f"{base}/metrics") as r:
                metrics = [line for line in (await r.text()).splitlines()
                           if line.startswith(("guard_chunk_partition", "guard_batch_chunks_count"))]
    except Exception as exc:  # noqa: BLE001 - a probe for a message
        return f"(probe failed: {exc!r})"
    return f"healthz {health}; {metrics}"
