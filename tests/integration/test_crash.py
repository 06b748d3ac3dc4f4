"""A worker killed after a stream's state reached the changelog but before its decisions reached
``guard.decisions``: the restarted worker sends them, over the real broker and Triton."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from guard.devenv._proc import free_port
from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import own_topics

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(600)]  # 180 + 60 + 300 s of waits, and start-ups

CRASHING_WORKER = Path(__file__).with_name("crashing_worker.py")


async def test_decisions_lost_in_a_crash_are_sent_by_the_restarted_worker(kafka_broker, triton_server):
    own = await own_topics(kafka_broker.bootstrap, "crash")
    run, names, env, log = own.run, own.names, own.env, own.log
    first = WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, env,
                          args=(str(CRASHING_WORKER),))
    ok, lost = f"ok-{run}", f"lose-{run}"
    async with Collector(kafka_broker.bootstrap, names["decisions"], names["deadletter"]) as col, \
            ChunkProducer(kafka_broker.bootstrap, names["chunks"]) as prod:
        with first:
            await prod.send(Chunk(stream_id=ok, seq=0, text="Hello there.", final=True))
            await col.wait_for(lambda c: c.final(ok), timeout=180)
            # seq 1 first: it waits behind the gap, and its offset is committed; seq 0 then decides
            # both, and the worker dies. Only seq 0's record comes again, and it must bring seq 1's
            # decision back too (the stream's final one)
            await prod.send(Chunk(stream_id=lost, seq=1, text=" Tickets cost ten euros.", final=True))
            await prod.flush()
            await asyncio.sleep(4.0)  # past the worker's 1 s commit interval
            assert first.alive()
            await prod.send(Chunk(stream_id=lost, seq=0, text="The museum opens at nine."))
            await prod.flush()
            deadline = time.monotonic() + 60
            while first.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert not first.alive() and first.proc is not None and first.proc.returncode == -9
        assert not col.decisions.get(lost), "the crash lost the stream's decision"

        # its state is on the changelog: without the outbox, the chunk would be dropped as a duplicate.
        # Restarted as a deployment's restart policy would: restarted workers here have had the replayed
        # chunk fetched and never handed to the agent (the stall watch fetches it again, or the worker
        # leaves to start over), and a restore can hang (the recovery timeout). That timeout is above
        # the 60 s the first restart waits to join the group (the dead member's session)
        replayed, dropped, starts = [], [], 0
        deadline = time.monotonic() + 300
        while not col.final(lost) and time.monotonic() < deadline:
            starts += 1
            restart_env = {**env, "GUARD_WEB_PORT": str(free_port()), "GUARD_RECOVERY_TIMEOUT_S": "90",
                           "GUARD_STALL_TIMEOUT_S": "30", "GUARD_CRASH_EXIT_S": "5"}
            with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, restart_env) as worker:
                while worker.alive() and not col.final(lost) and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                replayed += worker.events("decision_replayed")
                dropped += worker.events("duplicate_chunk_dropped")
            if starts > 1:
                print(f"worker restarted {starts - 1} time(s) before the replay")

    assert col.final(lost), f"no decision after {starts} start(s) (the report ends with the worker's log)"
    # Faust can hand a restarted worker the same record twice (fetched before and after its seek to
    # the committed offset; once in about 20 runs here): each copy is a duplicate, and each gets the
    # same decision, unchanged, under the same decision_id: at least once, as the README says
    got = {d.seq: d for d in col.decisions[lost]}
    assert sorted(got) == [0, 1] and got[1].final
    assert got[0].text + got[1].text == "The museum opens at nine. Tickets cost ten euros."
    assert all(x == got[x.seq] for x in col.decisions[lost]) and len(col.decisions[lost]) <= 4
    lost_replays = [e["decision_id"] for e in replayed if e["stream_id"] == lost]
    assert set(lost_replays) == {got[0].decision_id, got[1].decision_id}, \
        "the held chunk's decision came back with the record that released it"
    lost_drops = [e["seq"] for e in dropped if e["stream_id"] == lost]
    assert 0 in lost_drops and set(lost_drops) <= {0, 1}, "the chunks were replayed as duplicates, not moderated again"
    # the ok stream's chunk may be replayed too (its offset uncommitted)
    assert len(col.decisions[ok]) <= 2 and len({d.decision_id for d in col.decisions[ok]}) == 1
    assert "museum" not in log.read_text() and "Tickets" not in log.read_text()  # ids and counts, never what the stream said
