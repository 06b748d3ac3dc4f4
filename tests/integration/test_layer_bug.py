"""A bug in a layer, met by one stream's text on a real worker: that chunk alone is dead-lettered."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
import pytest

from guard.messages import Chunk, encode
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import log_tail, own_topics

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]

BUGGY_WORKER = Path(__file__).with_name("buggy_worker.py")


async def test_a_layer_bug_dead_letters_one_chunk_and_the_streams_beside_it_go_on(kafka_broker, triton_server):
    """Before, the exception escaped the pipeline and the whole batch was dead-lettered as
    ``internal-error``: every stream that shared the batch lost its chunk. Now the chunk that trips
    the bug is dead-lettered alone (with its bytes, so it can be sent again once the bug is fixed),
    its stream waits for it as for a lost chunk and gives the gap up, and the exception's text,
    which quotes the chunk, is in neither the dead letter nor the log."""
    own = await own_topics(kafka_broker.bootstrap, "bug")
    trigger = f"kaboom{own.run}"
    # a batch is cut 2 s after its first chunk (or at 64): the first fetch's chunks make one
    env = {**own.env, "BUG_TRIGGER": trigger, "GUARD_GAP_TIMEOUT_MS": "1000", "GUARD_BATCH_WITHIN_S": "2"}
    bad, others = f"bad-{own.run}", [f"beside{i}-{own.run}" for i in range(3)]
    bad_chunks = [Chunk(stream_id=bad, seq=0, text="Fine so far. "),
                  Chunk(stream_id=bad, seq=1, text=f"Then {trigger} happens. "),
                  Chunk(stream_id=bad, seq=2, text="And it ends well.", final=True)]
    worker = WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, own.log, env,
                           args=(str(BUGGY_WORKER),))
    async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
            ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
        # all sent before the worker starts, so its first fetch takes them in one batch
        await prod.send(bad_chunks[0])
        for sid in others[:2]:
            await prod.send(Chunk(stream_id=sid, seq=0, text="Hello there, friend.", final=True))
        await prod.send(bad_chunks[1])
        await prod.send(Chunk(stream_id=others[2], seq=0, text="Good morning.", final=True))
        await prod.flush()
        with worker:
            try:
                await col.wait_for(lambda c: all(c.final(s) for s in others) and c.deadletters, timeout=180)
            except TimeoutError:
                pytest.fail(f"no decisions (alive={worker.alive()}); log: {log_tail(own.log)}")
            await asyncio.sleep(1.5)  # past the gap timeout: the final chunk gives the gap up
            await prod.send(bad_chunks[2])
            await prod.flush()
            await col.wait_for(lambda c: c.final(bad) and len(c.deadletters) >= 2, timeout=60)
            assert worker.alive()
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{own.env['GUARD_WEB_PORT']}/metrics") as r:
                metrics = await r.text()
    sizes = {k: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
             for k in ("guard_batch_chunks_count", "guard_batch_chunks_sum") if line.startswith(k + " ")}
    assert sizes == {"guard_batch_chunks_count": 2.0, "guard_batch_chunks_sum": 6.0}, \
        f"the five first chunks in one batch, then the final one: {sizes}"
    assert [col.decisions[s][0].action for s in others] == ["allow"] * 3
    assert "".join(d.text for d in col.decisions[bad]) == "Fine so far. And it ends well."
    bug, gap = sorted(col.deadletters, key=lambda d: d.code)
    assert bug.code == "internal-error" and "ValueError" in bug.error and trigger not in bug.error
    assert base64.b64decode(bug.raw_b64) == encode(bad_chunks[1]) and bug.offset >= 0
    assert gap.code == "sequence-gap" and gap.stream_id == bad and gap.skipped == (1, 1)
    log = own.log.read_text()
    assert "chunk_failed" in log and trigger not in log
