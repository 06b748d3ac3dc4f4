"""Topic declarations: names from settings, partitioning and retention in one place."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faust
import structlog

from guard.settings import Settings
from streams.auth import faust_credentials

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Topics:
    chunks: faust.TopicT
    decisions: faust.TopicT
    deadletter: faust.TopicT
    feedback: faust.TopicT
    thresholds: faust.TopicT


def data_dir(s: Settings, app_id: str) -> Path:
    """Where Faust may create its directories. Faust makes ``<app id>-data/`` in the working
    directory by default, even with in-memory tables that never write to it: a worker in a
    container whose working directory is read-only would fail to start, and every test worker would
    leave an empty folder in the checkout. So unless ``GUARD_FAUST_DATA_DIR`` names one, each
    process gets a temporary directory, removed when it exits. A process that is killed cannot
    remove its own; the next one to start removes those of processes that are gone."""
    if s.faust_data_dir is not None:
        return s.faust_data_dir
    _sweep_stale_data_dirs(Path(tempfile.gettempdir()))
    prefix = f"{re.sub(r'[^A-Za-z0-9._-]', '_', app_id)}-faust-{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


_DATA_DIR = re.compile(r"-faust-(\d+)-[^/]+$")


def _sweep_stale_data_dirs(root: Path) -> list[Path]:
    """Remove data directories (ours, holding no file) whose process no longer runs."""
    removed = []
    for d in root.glob("*-faust-*-*"):
        m = _DATA_DIR.search(d.name)
        try:
            if not m or not d.is_dir() or d.stat().st_uid != os.getuid() or _alive(int(m.group(1))):
                continue
            if any(p.is_file() for p in d.rglob("*")):
                continue  # Faust never writes here with in-memory tables; keep what someone put there
            shutil.rmtree(d)
            removed.append(d)
        except OSError:
            continue  # another process swept it first, or it is not ours to remove
    return removed


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (one we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def new_app(s: Settings, app_id: str) -> faust.App:
    """A Faust app as guard runs them: raw bytes on the wire (msgspec does the codecs), in-memory
    tables restored from their changelogs, and no linger so a decision leaves at once."""
    return faust.App(
        app_id,
        datadir=str(data_dir(s, app_id)),
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        broker_credentials=faust_credentials(s),
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_linger=0.0,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        table_cleanup_interval=30.0,
        # No standby copies of tables: a worker taking a partition over restores it from the
        # changelog. With Faust's default (one standby), a worker that had been the standby took
        # over in a rolling restart with its recovery "done" at once and the stream's state
        # missing, in 3 of 23 runs of tests/integration/test_handover.py (0 of 25 without): the next chunks
        # waited behind a gap that could not close. guard's table holds small, short-lived stream
        # states, so a restore from the changelog is quick.
        table_standby_replicas=0,
    )


def run(prog: str, description: str | None, build: Callable[[Settings], faust.App], argv: list[str] | None,
        triton_help: str) -> int:
    """Command-line entry of a guard Faust app (worker or tuner): flags over ``GUARD_*``, logging, run."""
    import argparse
    import sys

    from guard.logging import configure, limit_repeats

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--bootstrap", help="Kafka bootstrap (overrides GUARD_KAFKA_BOOTSTRAP)")
    parser.add_argument("--triton-url", help=triton_help)
    parser.add_argument("--loglevel", default="warning", help="Faust/mode log level")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {"kafka_bootstrap": args.bootstrap,
                                   "triton_url": args.triton_url}.items() if v}
    s = Settings(**overrides)
    configure(json=s.log_json, level=s.log_level)
    app = build(s)
    limit_repeats("aiokafka")  # after build: every aiokafka module is imported by then
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    sys.argv = sys.argv[:1]  # faust's worker reads argv; keep it from seeing ours
    worker.execute_from_commandline()
    return 0


def declare(app: faust.App, s: Settings) -> Topics:
    """Keyed topics share the partition count so one worker owns a stream end to end."""
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw",
           "replicas": s.replication_factor}
    return Topics(
        chunks=app.topic(s.topic_chunks, partitions=s.partitions, **raw),
        decisions=app.topic(s.topic_decisions, partitions=s.partitions, **raw),
        deadletter=app.topic(s.topic_deadletter, partitions=1, **raw),
        feedback=app.topic(s.topic_feedback, partitions=s.partitions, **raw),
        thresholds=app.topic(s.topic_thresholds, partitions=1, compacting=True, **raw),
    )


async def declare_thresholds(topics: Topics) -> None:
    """Create the thresholds topic, compacted, if it is missing.

    Workers and the tuner follow it from their first second; on a broker that auto-creates topics,
    that first metadata request would otherwise create it with plain deletion, and old events
    (the only record of a threshold) would expire instead of being compacted.
    """
    try:
        await topics.thresholds.maybe_declare()
    except Exception as exc:  # noqa: BLE001 - no admin rights: the operator created it, or will
        log.warning("thresholds_topic_not_declared", error=str(exc))


def specs(s: Settings) -> list["TopicSpec"]:
    """The topics to create before workers start (so partition counts are ours, not the broker's)."""
    from guard.devenv.kafka import TopicSpec

    return [
        TopicSpec(s.topic_chunks, s.partitions),
        TopicSpec(s.topic_decisions, s.partitions),
        TopicSpec(s.topic_deadletter, 1),
        TopicSpec(s.topic_feedback, s.partitions),
        TopicSpec(s.topic_thresholds, 1, {"cleanup.policy": "compact"}),
    ]
