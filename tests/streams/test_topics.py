"""Topic and app declarations carry the settings' partitioning and replication (no broker needed)."""

from __future__ import annotations

from guard.settings import Settings
from streams.topics import declare, new_app


def test_replication_factor_reaches_topics_and_table_changelogs():
    s = Settings(replication_factor=3, partitions=6)
    app = new_app(s, "guard-test-topics")
    topics = declare(app, s)
    assert app.conf.topic_replication_factor == 3  # changelogs of every table
    for t in (topics.chunks, topics.decisions, topics.deadletter, topics.feedback, topics.thresholds):
        assert t.replicas == 3
    assert topics.chunks.partitions == 6 and topics.thresholds.partitions == 1


def test_one_replica_by_default_for_the_single_dev_broker():
    s = Settings()
    app = new_app(s, "guard-test-topics-default")
    assert app.conf.topic_replication_factor == 1 and declare(app, s).chunks.replicas == 1
