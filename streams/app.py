"""Composition root of the worker: settings → logging → Faust app, topics, table, agents.

This is the only place that reads ``Settings`` for the streaming side. The app is built by a
function (no module-level app, no import-time side effects), and ``main`` runs one worker.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import faust
import mode
import structlog

from guard import assemble
from guard.errors import GuardError
from guard.metrics import Metrics
from guard.pipeline import Pipeline
from guard.policy.load import files_stamp
from guard.settings import Settings
from guard.thresholds import Thresholds
from streams.agents import guard as guard_agent
from streams.auth import client_options
from streams.follower import ThresholdFollower, policy_defaults
from streams.topics import Topics, declare, declare_thresholds, new_app, run
from streams.watchdog import (GroupPartitions, Health, Progress, StallWatch, after_check, crash_then_exit,
                              patrol)
from streams.web import Probes, Server, body, routes

log = structlog.get_logger(__name__)


#: how long a starting worker waits to read the thresholds topic before it decides on defaults
THRESHOLDS_CATCHUP_S = 10.0


@dataclass
class Resources:
    """What the agents need that does I/O to open: the pipeline (and its Triton client), and the
    live thresholds (a follower of ``guard.thresholds``; every decision reads one snapshot of it)."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pipeline: Pipeline | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    follower: ThresholdFollower | None = None
    _stack: AsyncExitStack | None = None
    _blocklists: tuple[tuple[str, int, int], ...] = ()

    @property
    def thresholds(self) -> Thresholds:
        """The snapshot in force now (an immutable value: a decision never sees it change)."""
        return self.follower.current if self.follower is not None else Thresholds()

    async def start(self) -> None:
        s = self.settings
        self._stack = AsyncExitStack()
        self.follower = ThresholdFollower(s.kafka_bootstrap, s.topic_thresholds, options=client_options(s))
        self._stack.push_async_callback(self.follower.stop)
        await self.follower.start(catchup_timeout_s=THRESHOLDS_CATCHUP_S)
        self.pipeline, self.policies = await self._stack.enter_async_context(
            assemble.pipeline(s.policy_dir, s.triton_url, model=s.triton_model,
                              timeout_s=s.triton_timeout_s, retry=assemble.retry_policy(s),
                              pad_to_multiple=s.triton_pad_to_multiple, observe=self.metrics.observe_semantic,
                              gap_timeout_ms=s.gap_timeout_ms, tls=assemble.triton_tls(s),
                              triton_wait_s=s.triton_startup_wait_s,
                              thresholds=lambda: self.thresholds))
        self.follower.set_defaults(policy_defaults(self.policies.current))
        self._blocklists = files_stamp(s.policy_dir / "blocklists", "*.txt")
        self.ready.set()
        log.info("worker_ready", triton=bool(s.triton_url), policies=sorted(self.policies.current.policies),
                 thresholds_version=self.thresholds.version)

    def reload_blocklists(self) -> bool:
        """Rebuild the fast layers when a blocklist file changed; a bad file is logged and the
        lists in force are kept (as for policy files). True when new lists were taken."""
        stamp = files_stamp(self.settings.policy_dir / "blocklists", "*.txt")
        if stamp == self._blocklists or self.pipeline is None:
            return False
        self._blocklists = stamp
        try:
            scanners = assemble.fast_scanners(self.settings.policy_dir)
        except GuardError as exc:
            log.error("blocklists_reload_failed", error=str(exc))
            return False
        self.pipeline.replace_scanners(scanners)
        log.info("blocklists_reloaded", files=len(stamp))
        return True

    def is_ready(self) -> bool:
        """Pipeline up and every threshold event read. A worker that cannot read the thresholds
        topic in time decides with the policies' defaults meanwhile (it must not wait forever), but
        it does not claim to be ready: tuned and pinned thresholds are missing from its decisions."""
        return self.ready.is_set() and self.follower is not None and self.follower.caught_up.is_set()

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def get(self) -> Pipeline:
        await self.ready.wait()
        assert self.pipeline is not None
        return self.pipeline


@dataclass
class Worker:
    app: faust.App
    topics: Topics
    resources: Resources
    metrics: Metrics


def create_app(s: Settings) -> Worker:
    app = new_app(s, s.app_id)
    topics = declare(app, s)
    table = app.Table("stream_state", partitions=s.partitions, key_type=bytes, value_type=bytes,
                      use_partitioner=True, help="per-stream state (guard.state.StreamState as JSON)")
    metrics = Metrics()
    resources = Resources(s, metrics)
    progress = Progress()
    partitions = GroupPartitions(app.consumer, app.conf.id, client_options(s))
    watch = StallWatch.paced(partitions, s.topic_chunks, progress, s.stall_timeout_s,
                             busy=lambda: bool(app.rebalancing or app.in_recovery),
                             busy_timeout_s=s.recovery_timeout_s)
    health = Health()
    server = Server(routes(metrics.registry, lambda: body(health), resources.is_ready), s.web_host,
                    s.web_port)

    class Lifecycle(mode.Service):
        async def on_start(self) -> None:
            await declare_thresholds(topics)
            await resources.start()

        async def on_stop(self) -> None:
            await resources.stop()

    app.service(Lifecycle)

    # Which chunk partitions this worker serves, after every rebalance: the first thing an operator
    # (or a failing test) needs when some streams get no decisions.
    @app.on_partitions_assigned.connect
    async def log_assignment(sender: faust.App, assigned: set, **_: object) -> None:
        progress.reset()  # offsets of an earlier assignment say nothing about this one
        watch.reset()
        log.info("partitions_assigned",
                 chunks=sorted(tp.partition for tp in assigned if tp.topic == s.topic_chunks))

    @app.on_rebalance_complete.connect
    async def log_rebalanced(sender: faust.App, **_: object) -> None:
        log.info("rebalance_complete")

    chunks = guard_agent.register(app, topics, table, resources.get, metrics, s.batch_max, s.batch_within_s,
                                  progress, s.partitions)

    # Lag per assigned partition for /healthz and /metrics, and the way out of a stalled one.
    crash = crash_then_exit(app.crash, s.crash_exit_s, log)

    async def watch_partitions() -> None:
        nonlocal health
        if not app.consumer.started:
            return  # nothing to ask of the broker yet
        if not watch.busy() and not resources.ready.is_set():
            return  # restored but still starting up: that has its own timeouts, and fails loudly
        health = after_check(health, await patrol(watch, metrics.lag, metrics.lag_waiting, crash, log,
                                                  refetches=metrics.refetches))

    Probes(server, watch.interval_s, watch_partitions, closers=[partitions.close]).attach(app)

    @app.timer(interval=s.policy_reload_s)
    async def reload_policies() -> None:
        if not resources.ready.is_set():
            return
        if resources.policies.reload_if_changed():
            assert resources.follower is not None
            resources.follower.set_defaults(policy_defaults(resources.policies.current))
        resources.reload_blocklists()

    @app.timer(interval=max(5.0, s.state_ttl_s / 10))
    async def expire_streams() -> None:
        n = await guard_agent.expire(table, s.state_ttl_s, topics, metrics, busy=chunks.busy)
        if n:
            log.info("streams_expired", count=n)

    return Worker(app, topics, resources, metrics)


def main(argv: list[str] | None = None) -> int:
    """Run one worker until interrupted. Configuration comes from ``GUARD_*`` variables."""
    return run("guard worker", main.__doc__, lambda s: create_app(s).app, argv,
               "Triton gRPC host:port (overrides GUARD_TRITON_URL)")
