"""A worker that reaches Triton over mutual TLS (GUARD_TRITON_TLS_*), over the real broker."""

from __future__ import annotations


import pytest

from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import own_topics

from .test_worker import HARMFUL

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]


async def test_a_worker_scores_through_a_tls_triton(kafka_broker, tls_triton, certs):
    own = await own_topics(kafka_broker.bootstrap, "tls")
    run, names, log = own.run, own.names, own.log
    env = {**own.env, "GUARD_TRITON_TLS_CA_FILE": str(certs.ca_file),
           "GUARD_TRITON_TLS_CERT_FILE": str(certs.client_cert), "GUARD_TRITON_TLS_KEY_FILE": str(certs.client_key)}
    harmful, benign = f"harmful-{run}", f"benign-{run}"
    with WorkerProcess(kafka_broker.bootstrap, tls_triton.grpc_url, log, env) as worker:
        async with Collector(kafka_broker.bootstrap, names["decisions"], names["deadletter"]) as col, \
                ChunkProducer(kafka_broker.bootstrap, names["chunks"]) as prod:
            await prod.send(Chunk(stream_id=benign, seq=0, text="The museum opens at nine.", final=True))
            await prod.send(Chunk(stream_id=harmful, seq=0, text=HARMFUL, final=True))
            await prod.flush()
            await col.wait_for(lambda c: c.final(benign) and c.final(harmful), timeout=180)
        (ready,) = worker.events("worker_ready")
    assert ready["triton"] is True
    assert [d.action for d in col.decisions[benign]] == ["allow"]
    (d,) = col.decisions[harmful]
    assert d.action == "block" and d.scores["violence"] > 0.5, "the classifier scored it, over TLS"
    assert col.decisions[benign][0].scores["violence"] < 0.5
