"""Prometheus instruments, defined in one place and passed to whoever records them."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.decisions = Counter("guard_decisions", "decisions emitted", ["action", "policy"], registry=r)
        self.fired = Counter("guard_principles_fired", "principles that fired", ["principle", "category"],
                             registry=r)
        self.deadletters = Counter("guard_deadletters", "records sent to the dead-letter topic", ["code"],
                                   registry=r)
        self.unjudged = Counter("guard_unjudged_chars", "characters released that no layer had cleared (fail-open "
                                "detector failures, the hold-back bound)", ["policy"], registry=r)
        self.misrouted = Counter("guard_chunks_misrouted", "chunks on another partition than Kafka's default "
                                 "(murmur2) partitioner would choose for their stream_id", registry=r)
        self.replayed = Counter("guard_decisions_replayed", "decisions sent again for a replayed chunk whose "
                                "decision was never confirmed delivered (a worker died in between)", registry=r)
        self.expired = Counter("guard_streams_expired", "stream states forgotten after GUARD_STATE_TTL_S",
                               registry=r)
        self.unreleased = Counter("guard_expired_unreleased_chars",
                                  "characters streams received but never released before their state expired",
                                  registry=r)
        self.latency = Histogram("guard_added_latency_seconds", "pipeline time per chunk", registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.batch = Histogram("guard_batch_chunks", "chunks per processed batch", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.semantic = Histogram("guard_semantic_call_seconds", "one semantic detector call (Triton, retries "
                                  "included), by outcome: ok or the error code", ["outcome"], registry=r,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.semantic_windows = Histogram("guard_semantic_call_windows", "windows per semantic call", registry=r,
                                          buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.lag = Gauge("guard_chunk_partition_lag", "records of an assigned chunk partition not handled yet",
                         ["partition"], registry=r)
        self.lag_waiting = Gauge("guard_chunk_partition_waiting_seconds",
                                 "how long an assigned chunk partition's backlog has not moved", ["partition"],
                                 registry=r)
        self.refetches = Counter("guard_chunk_partition_refetches", "times an assigned chunk partition was "
                                 "fetched again because none of its records reached the agent", ["partition"],
                                 registry=r)

    def observe_semantic(self, seconds: float, windows: int, outcome: str) -> None:
        self.semantic.labels(outcome).observe(seconds)
        self.semantic_windows.observe(windows)


@dataclass
class TunerMetrics:
    """The tuner's instruments: what it read, what it published, and whether its inputs keep up."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.verdicts = Counter("guard_tuner_verdicts", "verdicts read, by what became of them "
                                "(counted, duplicate, unknown decision, ...)", ["result"], registry=r)
        self.indexed = Counter("guard_tuner_decisions_indexed", "decisions of tuned policies indexed", registry=r)
        self.deadletters = Counter("guard_tuner_deadletters", "records sent to the dead-letter topic", ["code"],
                                   registry=r)
        self.changes = Counter("guard_tuner_threshold_changes", "threshold changes published", ["status"],
                               registry=r)
        self.index_size = Gauge("guard_tuner_index_size", "decisions held for verdicts to find", registry=r)
        self.version = Gauge("guard_tuner_thresholds_version", "version of the thresholds in force", registry=r)
        self.lag: dict[str, tuple[Gauge, Gauge]] = {
            input_: (Gauge(f"guard_tuner_{input_}_partition_lag", f"records of an assigned {input_} partition "
                           "not handled yet", ["partition"], registry=r),
                     Gauge(f"guard_tuner_{input_}_partition_waiting_seconds", f"how long an assigned {input_} "
                           "partition's backlog has not moved", ["partition"], registry=r))
            for input_ in ("feedback", "decisions")}
        self.refetches: dict[str, Counter] = {
            input_: Counter(f"guard_tuner_{input_}_partition_refetches", f"times an assigned {input_} partition "
                            "was fetched again because none of its records reached the agent", ["partition"],
                            registry=r)
            for input_ in ("feedback", "decisions")}

    def totals(self) -> dict[str, object]:
        """The counters the tuner's status line reports, read back from the registry."""
        def total(name: str, **labels: str) -> int:
            return int(self.registry.get_sample_value(name, labels) or 0)

        return {"indexed": total("guard_tuner_decisions_indexed_total"),
                "deadlettered": sum(int(s.value) for m in self.deadletters.collect() for s in m.samples
                                    if s.name.endswith("_total")),
                "published": {st: total("guard_tuner_threshold_changes_total", status=st)
                              for st in ("promoted", "rejected")}}
