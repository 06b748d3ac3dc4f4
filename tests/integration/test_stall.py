"""A worker whose chunk partition stops moving leaves the group, over the real broker and Triton."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from guard.devenv._proc import free_port
from guard.devenv.kafka import create_topics
from guard.messages import Chunk
from guard.settings import Settings
from streams import topics
from streams.client import ChunkProducer, Collector, WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
HUNG_WORKER = Path(__file__).with_name("hung_worker.py")
NAMES = ("chunks", "decisions", "deadletter", "feedback", "thresholds")


@pytest.mark.parametrize("hang_shutdown", [False, True], ids=["graceful", "shutdown-hangs"])
async def test_a_worker_whose_partition_stops_moving_exits_and_says_why(kafka_broker, triton_server,
                                                                       hang_shutdown):
    run = uuid.uuid4().hex[:6]
    names = {t: f"stall-{run}.{t}" for t in NAMES}
    settings = Settings(kafka_bootstrap=kafka_broker.bootstrap, partitions=1,
                        **{f"topic_{t}": n for t, n in names.items()})
    await create_topics(kafka_broker.bootstrap, topics.specs(settings))
    port = free_port()
    env = {"GUARD_APP_ID": f"guard-stall-{run}", "GUARD_PARTITIONS": "1", "GUARD_STALL_TIMEOUT_S": "8",
           "GUARD_WEB_PORT": str(port), "GUARD_LOG_LEVEL": "INFO", "GUARD_CRASH_EXIT_S": "5",
           "HANG_SHUTDOWN": "1" if hang_shutdown else "0",
           **{f"GUARD_TOPIC_{t.upper()}": n for t, n in names.items()}}
    log = REPO / "build" / "test-logs" / f"worker-stall-{run}.log"
    worker = WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, env,
                           args=(str(HUNG_WORKER),))
    with worker:
        async with Collector(kafka_broker.bootstrap, names["decisions"], names["deadletter"]) as col, \
                ChunkProducer(kafka_broker.bootstrap, names["chunks"]) as prod:
            ok = f"ok-{run}"
            await prod.send(Chunk(stream_id=ok, seq=0, text="Hello there.", final=True))
            await col.wait_for(lambda c: c.final(ok), timeout=180)
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200  # served so far

            hung = f"hang-{run}"
            for i in range(4):
                await prod.send(Chunk(stream_id=hung, seq=i, text="and then ", final=i == 3))
            await prod.flush()
            deadline = time.monotonic() + 90
            while worker.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
        assert not worker.alive(), "a worker holding a partition it does not serve must leave"
        assert worker.proc is not None and worker.proc.returncode != 0

    stalls = worker.events("partition_stalled")
    assert stalls and stalls[0]["partitions"] == [0] and stalls[0]["lag"] == [4]
    assert stalls[0]["waiting_s"][0] >= 8
    assert "and then" not in log.read_text()  # positions and counts, never what the stream said
    if hang_shutdown:  # only the deadline could end it
        assert worker.proc.returncode == 70 and worker.events("crash_exit_forced")


async def test_a_worker_whose_restore_never_ends_exits_to_start_over(kafka_broker, triton_server):
    """GUARD_RECOVERY_TIMEOUT_S: busy restoring without a break is a stall of its own."""
    run = uuid.uuid4().hex[:6]
    names = {t: f"stuck-{run}.{t}" for t in NAMES}
    settings = Settings(kafka_bootstrap=kafka_broker.bootstrap, partitions=1,
                        **{f"topic_{t}": n for t, n in names.items()})
    await create_topics(kafka_broker.bootstrap, topics.specs(settings))
    env = {"GUARD_APP_ID": f"guard-stuck-{run}", "GUARD_PARTITIONS": "1", "GUARD_STALL_TIMEOUT_S": "8",
           "GUARD_RECOVERY_TIMEOUT_S": "10", "GUARD_CRASH_EXIT_S": "5", "GUARD_WEB_PORT": str(free_port()),
           "GUARD_LOG_LEVEL": "INFO", "STUCK_RECOVERY": "1",
           **{f"GUARD_TOPIC_{t.upper()}": n for t, n in names.items()}}
    log = REPO / "build" / "test-logs" / f"worker-stuck-{run}.log"
    with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, env,
                       args=(str(HUNG_WORKER),)) as worker:
        deadline = time.monotonic() + 90
        while worker.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert not worker.alive(), "a worker stuck restoring must leave the group"
        assert worker.proc is not None and worker.proc.returncode != 0
    (stuck,) = worker.events("recovery_stalled")
    assert stuck["busy_s"] >= 10 and stuck["assigned"] == [0]
    assert not worker.events("partition_stalled"), "time spent restoring is not a partition stall"
