"""Streams that go quiet, over the real broker and Triton (``GUARD_STATE_TTL_S`` of 3 s): a stream
stuck behind a gap has each chunk it held dead-lettered with its text (``stream-expired``); one
that never sent its final chunk is forgotten, and the text it never released is counted."""

from __future__ import annotations

import asyncio
import base64

import aiohttp

from guard.messages import Chunk, decode
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import own_topics


def _sample(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_quiet_streams_expire_and_lose_nothing_silently(kafka_broker, triton_server):
    own = await own_topics(kafka_broker.bootstrap, "expiry")
    env = {**own.env, "GUARD_STATE_TTL_S": "3"}
    stuck, open_ended = f"stuck-{own.run}", f"open-{own.run}"
    held = Chunk(stream_id=stuck, seq=2, text="This chunk waits behind a gap forever.")
    async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
            ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
        with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, own.log, env):
            await prod.send(Chunk(stream_id=stuck, seq=0, text="Hello there. "))
            await prod.send(held)  # seq 1 never comes, nor does another chunk to give the gap up
            # no final chunk: the last word may go on, so some of it stays held
            await prod.send(Chunk(stream_id=open_ended, seq=0, text="An answer that stops mid-senten"))
            await prod.flush()
            await col.wait_for(lambda c: c.decisions.get(stuck) and c.decisions.get(open_ended), timeout=180)
            await col.wait_for(lambda c: any(d.code == "stream-expired" for d in c.deadletters), timeout=60)
            async with aiohttp.ClientSession() as http:
                for _ in range(60):
                    async with http.get(f"http://127.0.0.1:{env['GUARD_WEB_PORT']}/metrics") as r:
                        metrics = await r.text()
                    if _sample(metrics, "guard_streams_expired_total") >= 2:
                        break
                    await asyncio.sleep(1.0)
    (dl,) = [d for d in col.deadletters if d.code == "stream-expired"]
    assert dl.stream_id == stuck and dl.offset == -1
    assert decode(Chunk, base64.b64decode(dl.raw_b64)) == held
    assert _sample(metrics, "guard_streams_expired_total") >= 2
    assert _sample(metrics, "guard_expired_unreleased_chars_total") >= 1
    assert "mid-senten" not in own.log.read_text() and "waits behind" not in own.log.read_text()
