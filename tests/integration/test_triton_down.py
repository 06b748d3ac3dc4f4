"""Triton goes away under a running worker, over the real broker and a real ``tritonserver``: each
policy fails as it declares. ``default`` (closed) blocks what it could not judge; a policy that
fails open releases the text, counted as unjudged; the fast layers still mask what they find. When
Triton comes back on its address, the same worker judges again."""

from __future__ import annotations

import asyncio

import aiohttp

from guard.devenv.triton import TritonServer
from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import NO_THREATS, log_tail, own_topics, policies_with

MASK_EMAIL = """\
  - id: mask-email
    text: Mask e-mail addresses.
    entities: [EMAIL]
    detectors: [pii]
    action: redact
"""
ANSWER = "The museum opens at nine and the tickets cost ten euros. Mail anna.berg@example.com for groups."


async def test_when_triton_is_gone_each_policy_fails_as_it_declares(kafka_broker, triton_server, tmp_path):
    own = await own_topics(kafka_broker.bootstrap, "down")
    policies = policies_with(tmp_path, "lenient", "on_detector_error: open\n", NO_THREATS + MASK_EMAIL)
    server = TritonServer(triton_server.model_repository, startup_timeout_s=120)  # this test's own, to stop
    server.start()
    try:
        worker = WorkerProcess(kafka_broker.bootstrap, server.grpc_url, own.log,
                               {**own.env, "GUARD_TRITON_TIMEOUT_S": "0.5", "GUARD_TRITON_RETRY_BUDGET_S": "0.5",
                                "GUARD_POLICY_DIR": str(policies)})
        async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
                ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
            with worker:
                up = f"up-{own.run}"
                await prod.send(Chunk(stream_id=up, seq=0, text=ANSWER, final=True))
                await col.wait_for(lambda c: c.final(up), timeout=180)
                server.stop(restartable=True)
                closed, opened = f"closed-{own.run}", f"open-{own.run}"
                await prod.send(Chunk(stream_id=closed, seq=0, text=ANSWER, final=True))
                await prod.send(Chunk(stream_id=opened, seq=0, text=ANSWER, final=True, policy="lenient"))
                await prod.flush()
                await col.wait_for(lambda c: c.final(closed) and c.final(opened), timeout=120)
                server.start()  # back on the same ports
                # until the channel has reconnected (its backoff is capped at 5 s), a chunk
                # still fails closed: a stream a second until one is judged
                for k in range(30):
                    back = f"back{k}-{own.run}"
                    await prod.send(Chunk(stream_id=back, seq=0, text=ANSWER, final=True))
                    await prod.flush()
                    await col.wait_for(lambda c: c.final(back), timeout=60)
                    if col.decisions[back][0].action != "block":
                        break
                    await asyncio.sleep(1.0)
                assert worker.alive() and k < 15, f"still failing {k} s after Triton came back"
    finally:
        server.stop()

    (ok,) = col.decisions[up]
    assert ok.action == "redact" and ok.unjudged_chars == 0 and "anna.berg" not in ok.text
    (shut,) = col.decisions[closed]
    assert shut.action == "block" and shut.text == "" and "museum" not in shut.text
    assert any(e.label == "detector-unavailable" for e in shut.evidence), shut.evidence
    (through,) = col.decisions[opened]
    assert through.action == "redact" and "anna.berg" not in through.text and "museum" in through.text
    assert through.unjudged_chars > 0, "released unjudged, and counted so"
    (again,) = col.decisions[back]
    assert again.action == "redact" and again.unjudged_chars == 0 and "museum" in again.text
    assert not [e for e in again.evidence if e.label == "detector-unavailable"], "judged again"


async def test_a_worker_started_before_triton_waits_for_it(kafka_broker, triton_server):
    """Started together (a compose file, a pod), the worker comes up first: it waits for Triton's
    model (``GUARD_TRITON_STARTUP_WAIT_S``), not ready meanwhile, instead of exiting into an
    orchestrator's crash-loop backoff, and decides as soon as Triton is there."""
    own = await own_topics(kafka_broker.bootstrap, "late")
    server = TritonServer(triton_server.model_repository, startup_timeout_s=120)
    server.start()
    server.stop(restartable=True)  # its address is known, nothing listens there yet
    try:
        worker = WorkerProcess(kafka_broker.bootstrap, server.grpc_url, own.log,
                               {**own.env, "GUARD_TRITON_STARTUP_WAIT_S": "120"})
        async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
                ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
            with worker:
                for _ in range(120):
                    if worker.events("triton_waiting") or not worker.alive():
                        break
                    await asyncio.sleep(0.5)
                assert worker.alive() and worker.events("triton_waiting"), log_tail(own.log)
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://127.0.0.1:{own.env['GUARD_WEB_PORT']}/readyz") as r:
                        assert r.status == 503, "not ready while it waits"
                await asyncio.sleep(3.0)
                assert worker.alive(), "still waiting, not exited"
                await asyncio.to_thread(server.start)
                sid = f"late-{own.run}"
                await prod.send(Chunk(stream_id=sid, seq=0, text=ANSWER, final=True))
                await prod.flush()
                await col.wait_for(lambda c: c.final(sid), timeout=120)
                (waited,) = worker.events("triton_ready_after_wait")
    finally:
        server.stop()
    (d,) = col.decisions[sid]
    assert d.action == "redact" and d.unjudged_chars == 0 and "museum" in d.text
    assert waited["waited_s"] >= 3.0
