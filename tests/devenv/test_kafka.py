"""The local Kafka broker: a real round trip with aiokafka, topic creation, start-up errors."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from guard.devenv._proc import ServiceStartError
from guard.devenv.kafka import Broker, KafkaBroker, TopicSpec, create_topics, make_broker
from guard.errors import ConfigError

pytestmark = pytest.mark.kafka


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def test_constructor_is_cheap(tmp_path: Path) -> None:
    """No I/O before start(): not even the jar folder is looked at."""
    broker = KafkaBroker(home=tmp_path / "nowhere", fetch=False)
    with pytest.raises(RuntimeError):
        _ = broker.bootstrap
    assert not (tmp_path / "nowhere").exists()


def test_container_provider_is_lazy() -> None:
    """Choosing testcontainers costs nothing until start(); where Docker is missing, start says so."""
    broker = make_broker("testcontainers")
    assert not broker.is_running()


def test_unknown_provider_is_rejected() -> None:
    with pytest.raises(ConfigError, match="known: local, testcontainers"):
        make_broker("zookeeper")


async def test_round_trip(kafka_broker: Broker) -> None:
    """Keyed records come back in order per key, from a consumer group, over the real broker."""
    topic = unique("roundtrip")
    assert await create_topics(kafka_broker.bootstrap, [TopicSpec(topic, partitions=3)]) == [topic]
    sent = [(f"s{i % 3}".encode(), f"chunk-{i}".encode()) for i in range(30)]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=unique("group"),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: list[tuple[bytes, bytes, int]] = []
    try:
        async with asyncio.timeout(30):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                received += [(r.key, r.value, r.partition) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()

    for key in {k for k, _ in sent}:
        assert [v for k, v, _ in received if k == key] == [v for k, v in sent if k == key]
        assert len({p for k, _, p in received if k == key}) == 1, "one key, one partition"


async def test_create_compacted_topic(kafka_broker: Broker) -> None:
    """Topic config reaches the broker, and creating again is a no-op, not an error."""
    topic = unique("thresholds")
    spec = TopicSpec(
        topic, partitions=1, config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
    )
    assert await create_topics(kafka_broker.bootstrap, [spec]) == [topic]
    assert await create_topics(kafka_broker.bootstrap, [spec]) == []

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    configs = {entry[0]: entry[1] for resource in response.resources for entry in resource[4]}
    assert configs["cleanup.policy"] == "compact"
    assert configs["min.cleanable.dirty.ratio"] == "0.01"
    assert len(described[0]["partitions"]) == 1


async def test_default_partitions_for_auto_created_topics(kafka_broker: Broker) -> None:
    """Producing to an unknown topic creates it with the broker's num.partitions (4)."""
    topic = unique("auto")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"x")
        partitions = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    assert len(partitions) == 4


def test_bad_config_fails_with_log_tail() -> None:
    """A broker that cannot start reports why, from its own log, and leaves nothing running."""
    broker = KafkaBroker(extra_config={"num.network.threads": "not-a-number"}, startup_timeout_s=60)
    with pytest.raises(ServiceStartError) as info:
        broker.start()
    assert "not-a-number" in str(info.value)
    assert not broker.is_running()
