"""A worker that reaches Triton over mutual TLS (GUARD_TRITON_TLS_*), over the real broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from guard.devenv._proc import free_port
from guard.devenv.kafka import create_topics
from guard.messages import Chunk
from guard.settings import Settings
from streams import topics
from streams.client import ChunkProducer, Collector, WorkerProcess

from .test_worker import HARMFUL

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
NAMES = ("chunks", "decisions", "deadletter", "feedback", "thresholds")


async def test_a_worker_scores_through_a_tls_triton(kafka_broker, tls_triton, certs):
    run = uuid.uuid4().hex[:6]
    names = {t: f"tls-{run}.{t}" for t in NAMES}
    await create_topics(kafka_broker.bootstrap, topics.specs(
        Settings(kafka_bootstrap=kafka_broker.bootstrap, partitions=1, **{f"topic_{t}": n for t, n in names.items()})))
    env = {"GUARD_APP_ID": f"guard-tls-{run}", "GUARD_PARTITIONS": "1", "GUARD_LOG_LEVEL": "INFO",
           "GUARD_WEB_PORT": str(free_port()), "GUARD_TRITON_TLS_CA_FILE": str(certs.ca_file),
           "GUARD_TRITON_TLS_CERT_FILE": str(certs.client_cert), "GUARD_TRITON_TLS_KEY_FILE": str(certs.client_key),
           **{f"GUARD_TOPIC_{t.upper()}": n for t, n in names.items()}}
    log = REPO / "build" / "test-logs" / f"worker-tls-{run}.log"
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
