"""A worker, its thresholds follower and the CLI on a broker that demands SASL credentials.

A broker of its own (local jars) with a SASL_PLAINTEXT listener besides the plaintext one; every
guard client here connects through the SASL listener, with ``GUARD_KAFKA_*`` settings only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from guard.devenv._proc import free_port
from guard.devenv.kafka import KafkaBroker, create_topics
from guard.settings import Settings
from streams import topics
from streams.auth import client_options
from streams.client import WorkerProcess

from .conftest import LOGS, decide_with

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "guard", "guard-secret"


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(sasl_users={USER: PASSWORD, "admin": "admin-secret"},
                         log_path=LOGS / f"kafka-sasl-{uuid.uuid4().hex[:6]}.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def sasl_env(broker: KafkaBroker, password: str = PASSWORD) -> dict[str, str]:
    return {"GUARD_KAFKA_BOOTSTRAP": broker.sasl_bootstrap, "GUARD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "GUARD_KAFKA_SASL_USERNAME": USER, "GUARD_KAFKA_SASL_PASSWORD": password}


def settings(broker: KafkaBroker, password: str = PASSWORD) -> Settings:
    return Settings(kafka_bootstrap=broker.sasl_bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                    kafka_sasl_username=USER, kafka_sasl_password=password)


async def test_wrong_password_is_refused(sasl_broker: KafkaBroker):
    producer = AIOKafkaProducer(**client_options(settings(sasl_broker, "wrong")), request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


def test_worker_and_cli_work_with_credentials_only(sasl_broker: KafkaBroker, triton_server):
    s = settings(sasl_broker)
    asyncio.run(create_topics(s.kafka_bootstrap, topics.specs(s), client=client_options(s)))
    port = free_port()
    env = {**sasl_env(sasl_broker), "GUARD_APP_ID": f"guard-sasl-{uuid.uuid4().hex[:6]}",
           "GUARD_WEB_PORT": str(port), "GUARD_LOG_LEVEL": "WARNING"}
    log = LOGS / f"worker-sasl-{uuid.uuid4().hex[:6]}.log"
    with WorkerProcess(sasl_broker.sasl_bootstrap, triton_server.grpc_url, log, env) as worker:
        async def run() -> None:
            await decide_with(s, worker, log, "sasl")
            async with aiohttp.ClientSession() as http:
                for _ in range(60):  # ready once its follower has read guard.thresholds over SASL
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                    await asyncio.sleep(0.5)
                assert r.status == 200

        asyncio.run(run())
    out = subprocess.run([sys.executable, "-m", "guard.cli", "thresholds", "show", "--json"],
                         env={**os.environ, **sasl_env(sasl_broker)}, capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows and all("policy" in r and "value" in r for r in rows), out.stdout[:500]
