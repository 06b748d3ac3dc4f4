"""A worker whose chunk partition stops moving leaves the group, over the real broker and Triton."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import own_topics

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]

HUNG_WORKER = Path(__file__).with_name("hung_worker.py")
LOSING_WORKER = Path(__file__).with_name("losing_worker.py")


@pytest.mark.parametrize("hang_shutdown", [False, True], ids=["graceful", "shutdown-hangs"])
async def test_a_worker_whose_partition_stops_moving_exits_and_says_why(kafka_broker, triton_server,
                                                                       hang_shutdown):
    own = await own_topics(kafka_broker.bootstrap, "stall")
    run, names, log = own.run, own.names, own.log
    port = int(own.env["GUARD_WEB_PORT"])
    env = {**own.env, "GUARD_STALL_TIMEOUT_S": "8", "GUARD_CRASH_EXIT_S": "5",
           "HANG_SHUTDOWN": "1" if hang_shutdown else "0"}
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


async def test_a_worker_whose_first_restore_never_ends_answers_probes_then_exits_to_start_over(
        kafka_broker, triton_server):
    """GUARD_RECOVERY_TIMEOUT_S: busy restoring without a break is a stall of its own, the first
    restore included (a restart's), before which Faust starts none of the app's timers or services."""
    own = await own_topics(kafka_broker.bootstrap, "stuck")
    log = own.log
    port = int(own.env["GUARD_WEB_PORT"])
    env = {**own.env, "GUARD_STALL_TIMEOUT_S": "8", "GUARD_RECOVERY_TIMEOUT_S": "10", "GUARD_CRASH_EXIT_S": "5",
           "STUCK_RECOVERY": "1"}
    with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, env,
                       args=(str(HUNG_WORKER),)) as worker:
        answers: list[tuple[int, int]] = []  # (/healthz, /readyz) while it restores
        deadline = time.monotonic() + 90
        async with aiohttp.ClientSession() as http:
            while worker.alive() and time.monotonic() < deadline:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as h, \
                            http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        answers.append((h.status, r.status))
                except aiohttp.ClientConnectionError:
                    pass  # not listening yet, or gone
                await asyncio.sleep(0.5)
        assert answers and set(answers) == {(200, 503)}, "alive (liveness) but not ready, while restoring"
        assert not worker.alive(), "a worker stuck restoring must leave the group"
        assert worker.proc is not None and worker.proc.returncode != 0
    (stuck,) = worker.events("recovery_stalled")
    assert stuck["busy_s"] >= 10 and stuck["assigned"] == [0]
    assert not worker.events("partition_stalled"), "time spent restoring is not a partition stall"


async def test_records_fetched_and_never_handed_to_the_agent_are_fetched_again_without_a_restart(
        kafka_broker, triton_server):
    """The stall watch's refetch: a backlog none of whose records reached the agent is fetched
    again from where the agent starts, well before the stall timeout."""
    own = await own_topics(kafka_broker.bootstrap, "lost")
    run, names, log = own.run, own.names, own.log
    env = {**own.env, "GUARD_STALL_TIMEOUT_S": "60"}  # refetch after min(15, 60 / 4) s
    with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, env,
                       args=(str(LOSING_WORKER),)) as worker:
        async with Collector(kafka_broker.bootstrap, names["decisions"], names["deadletter"]) as col, \
                ChunkProducer(kafka_broker.bootstrap, names["chunks"]) as prod:
            lost = f"lose-{run}"
            await prod.send(Chunk(stream_id=lost, seq=0, text="The museum opens at nine.", final=True))
            await col.wait_for(lambda c: c.final(lost), timeout=150)
            assert worker.alive(), "served by the same process: no restart"
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{own.env['GUARD_WEB_PORT']}/metrics") as r:
                assert 'guard_chunk_partition_refetches_total{partition="0"} 1.0' in await r.text()
        (refetched,) = worker.events("partition_refetched")
        assert refetched["partition"] == 0 and refetched["lag"] == 1 and refetched["waiting_s"] >= 15
        assert not worker.events("partition_stalled")
        (d,) = col.decisions[lost]
        assert d.text == "The museum opens at nine."
