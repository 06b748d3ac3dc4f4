"""A worker on a broker reached over TLS: a broker of its own (local jars) with an SSL listener
beside the plaintext one, and every guard client through it with ``GUARD_KAFKA_SSL_*`` only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from guard.devenv._proc import free_port
from guard.devenv.certs import DevCerts, make_dev_certs
from guard.devenv.kafka import KafkaBroker, create_topics
from guard.settings import Settings
from streams import topics
from streams.auth import client_options
from streams.client import WorkerProcess

from .conftest import LOGS, decide_with

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaBroker, DevCerts]]:
    certs = make_dev_certs(tmp_path_factory.mktemp("kafka-certs"))
    broker = KafkaBroker(tls=certs, log_path=LOGS / f"kafka-tls-{uuid.uuid4().hex[:6]}.log")
    broker.start()
    try:
        yield broker, certs
    finally:
        broker.stop()


def settings(broker: KafkaBroker, ca: Path | None) -> Settings:
    return Settings(kafka_bootstrap=broker.tls_bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=ca)


async def test_a_client_that_does_not_trust_the_brokers_certificate_is_refused(tls):
    broker, _ = tls
    producer = AIOKafkaProducer(**client_options(settings(broker, None)), request_timeout_ms=5000)
    with pytest.raises((KafkaError, OSError)):
        await producer.start()
    await producer.stop()


def test_a_worker_decides_over_tls_with_the_settings_only(tls, triton_server):
    broker, certs = tls
    s = settings(broker, certs.ca_file)
    asyncio.run(create_topics(s.kafka_bootstrap, topics.specs(s), client=client_options(s)))
    env = {"GUARD_KAFKA_BOOTSTRAP": broker.tls_bootstrap, "GUARD_KAFKA_SECURITY_PROTOCOL": "SSL",
           "GUARD_KAFKA_SSL_CAFILE": str(certs.ca_file), "GUARD_APP_ID": f"guard-tls-{uuid.uuid4().hex[:6]}",
           "GUARD_WEB_PORT": str(free_port()), "GUARD_LOG_LEVEL": "WARNING"}
    log = LOGS / f"worker-tls-{uuid.uuid4().hex[:6]}.log"
    with WorkerProcess(broker.tls_bootstrap, triton_server.grpc_url, log, env) as worker:
        asyncio.run(decide_with(s, worker, log, "tls"))
