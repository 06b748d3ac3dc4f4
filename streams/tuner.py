"""The tuner: verdicts on ``guard.feedback`` → bounded, gated threshold changes on ``guard.thresholds``.

Its own Faust app (``guard tuner``, app id ``guard-tuner``), run as **one** instance: it is the single
writer of threshold versions, and its tables are read across partitions (a verdict's decision may
sit on any partition of ``guard.decisions``), which only works when one process owns them all.

Two agents and three changelog-backed tables:

* ``guard.decisions`` → table ``decisions``: a bounded index of recent decisions of tuned policies
  (``decision_id`` → policy, tenant, scores, categories the semantic layer fired, thresholds
  version), forgotten after ``GUARD_TUNER_DECISION_TTL_S``. A verdict is read against what the
  decision actually did.
* ``guard.feedback`` (batched) → validated (bad records are dead-lettered with the reason) →
  verdicts whose decision is not indexed yet wait (up to ``GUARD_TUNER_INDEX_WAIT_S``) for the
  decisions already on the topic to be indexed: after an outage both topics have a backlog, and the
  verdicts, a far shorter one, came first →
  ``guard.tuning.observe`` (unknown decisions and replays are counted, never fatal) → table ``seen``
  (verdict identities ``decision_id + category``: a decision counts once per category, whoever
  sends the verdict, across restarts)
  and table ``evidence`` (labelled score bins per ``tenant/policy/category``) →
  ``guard.tuning.tune`` (``propose`` + ``shadow_gate``) → ``ThresholdChange`` events.

Why the tuner reads the thresholds topic before it tunes: versions must only grow, across tuner
restarts and CLI pins, and the topic (compacted, newest event per key) is the one record of them. The
tuner follows it like a worker does, so pins take effect on its next batch.

Operations: ``/metrics``, ``/healthz`` and ``/readyz`` on ``GUARD_TUNER_WEB_PORT`` (``streams.web``),
and the workers' stall watch over both inputs (``streams.watchdog``): a stalled decisions partition
would leave verdicts without their decisions, a stalled feedback one would leave verdicts unread.

Why the shadow scores are computed once, at start: the frozen labelled sets do not change and the
model does not change under a running process; scoring them per proposal would cost a model pass
per change. They are scored through the same detector path as the workers (in-process by default,
Triton when ``GUARD_TRITON_URL`` is set), window by window, a text's score the max over its windows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import faust
import mode
import msgspec
import numpy as np
import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from structlog.contextvars import bound_contextvars

from guard.errors import GuardError, SchemaError, traced
from guard.messages import Decision, Feedback, ThresholdChange, decode, encode
from guard.metrics import TunerMetrics
from guard.policy.load import PolicySet, PolicyStore
from guard.settings import Settings
from guard.thresholds import ThresholdKey, TuningSpec
from guard.tuning import (BINS, Counts, DecisionRecord, Evidence, FeedbackAt, Identity, TunerState, expire, forget_idle_tenants,
                          observe, tune)
from guard.types import CATEGORIES
from streams import deadletter
from streams.auth import client_options
from streams.feedback_cli import validate_feedback
from streams.follower import ThresholdFollower, policy_defaults
from streams.topics import Topics, declare, declare_thresholds, new_app, run
from streams.watchdog import (GroupPartitions, Health, Progress, StallWatch, after_check, caught_up,
                              crash_then_exit, patrol)
from streams.web import Probes, Server, per_topic, routes

log = structlog.get_logger(__name__)

ShadowSets = Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]]


class TunerSettings(BaseSettings):
    """The tuner's own knobs (``GUARD_TUNER_*``); broker, topics and policies are the workers' ``GUARD_*``.

    A separate prefix so the tuner never joins the workers' consumer group by sharing ``GUARD_APP_ID``.
    """

    model_config = SettingsConfigDict(env_prefix="GUARD_TUNER_", extra="ignore", frozen=True)

    app_id: str = Field("guard-tuner", description="Faust app id of the tuner (its consumer group and "
                                                   "changelog prefix); run one instance")
    decision_ttl_s: float = Field(24 * 3600.0, gt=0, description="decisions (and verdict identities) "
                                  "are forgotten after this; a verdict on a forgotten decision is unknown")
    feedback_batch_max: int = Field(500, ge=1, description="verdicts taken per tuning step")
    feedback_batch_within_s: float = Field(0.5, ge=0, description="how long a feedback batch waits to fill")
    decisions_batch_max: int = Field(256, ge=1, description="decisions indexed per batch")
    decisions_batch_within_s: float = Field(0.05, ge=0, description="how long a decisions batch waits")
    expire_interval_s: float = Field(60.0, gt=0, description="how often expired index entries are removed")
    tenant_evidence_ttl_s: float = Field(
        30 * 24 * 3600.0, gt=0, description="with scope: tenant, a tenant's evidence is forgotten after this "
        "long without a verdict (it starts afresh; its threshold stays), so memory does not grow with "
        "every tenant ever seen")
    report_interval_s: float = Field(30.0, gt=0, description="how often the tuner logs its counters")
    catchup_timeout_s: float = Field(30.0, gt=0, description="warn if the thresholds topic is not read "
                                     "by then (the tuner keeps waiting: it never tunes without it)")
    web_port: int = Field(6067, ge=0, le=65535, description="tuner HTTP port for /metrics, /healthz, /readyz (0 = none; "
                          "not the workers' 6066, so both can run on one host)")
    web_host: str = Field("127.0.0.1", description="address the tuner's HTTP port binds (0.0.0.0 in containers)")
    index_wait_s: float = Field(
        60.0, ge=0, description="a verdict whose decision is not indexed waits up to this long for the "
        "decisions already on the topic to be indexed (after a tuner outage both topics have a "
        "backlog); a decision still missing then counts as unknown (0 = no wait; at most half "
        "GUARD_TUNER_STALL_TIMEOUT_S)")
    stall_timeout_s: float = Field(
        120.0, ge=0, description="an assigned feedback or decisions partition with a backlog that has not moved "
        "this long makes the tuner exit, to be restarted (0 = never)")
    recovery_timeout_s: float = Field(
        900.0, ge=0, description="Faust rebalancing or restoring this long without a break makes the tuner "
        "exit to start over (0 = never)")
    crash_exit_s: float = Field(
        30.0, gt=0, description="a tuner that crashed (a stall) and has not exited after this many seconds is "
        "ended without a graceful shutdown")

    @property
    def index_wait_budget_s(self) -> float:
        """The index wait, kept under half the stall timeout: a feedback batch that waits does not
        move its partition, and the watch must not take the wait for a stall."""
        return self.index_wait_s if self.stall_timeout_s <= 0 else min(self.index_wait_s, self.stall_timeout_s / 2)


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- pure helpers: specs, codecs, validation -----------------------------------------------------------


def tuning_specs(policies: PolicySet) -> dict[tuple[str, str], TuningSpec]:
    """``(policy, category)`` → spec, for semantic principles with ``tuning``; others never move."""
    out: dict[tuple[str, str], TuningSpec] = {}
    for name, spec in policies.policies.items():
        for p in spec.principles:
            if p.tuning is not None and "semantic" in p.detectors:
                for c in p.categories:
                    out[(name, c)] = p.tuning
    return out


class _Record(msgspec.Struct, frozen=True, array_like=True):
    """A ``DecisionRecord`` on the ``decisions`` changelog (compact: one per decision)."""

    policy: str
    tenant: str | None
    version: int
    ts_ms: int
    scores: dict[str, float]
    semantic: list[str]
    other: list[str]


class _Evidence(msgspec.Struct, frozen=True):
    """An ``Evidence`` on the ``evidence`` changelog: non-zero bins only (most of 1000 are empty)."""

    pos: dict[int, float]
    neg: dict[int, float]
    fresh: tuple[float, float, float, float]
    epoch: int
    updated_ms: int
    folded: dict[int, tuple[int, int]] = {}  # feedback partition → (offset, record time)


_record_dec = msgspec.json.Decoder(_Record)
_evidence_dec = msgspec.json.Decoder(_Evidence)
_json = msgspec.json.Encoder()
_SEP = "\x1f"  # unit separator: cannot appear in ids a reviewer types


def encode_record(rec: DecisionRecord) -> bytes:
    return _json.encode(_Record(rec.policy, rec.tenant, rec.thresholds_version, rec.ts_ms,
                                dict(rec.scores), sorted(rec.semantic), sorted(rec.other)))


def decode_record(decision_id: str, raw: bytes) -> DecisionRecord:
    r = _record_dec.decode(raw)
    return DecisionRecord(decision_id, r.policy, r.tenant, r.version, r.ts_ms,
                          MappingProxyType(r.scores), frozenset(r.semantic), frozenset(r.other))


def record_ts(raw: bytes) -> int:
    return _record_dec.decode(raw).ts_ms


def _sparse(a: np.ndarray) -> dict[int, float]:
    return {int(i): float(a[i]) for i in np.flatnonzero(a)}


def _dense(d: Mapping[int, float]) -> np.ndarray:
    a = np.zeros(BINS, dtype=np.float64)
    for i, v in d.items():
        a[i] = v
    a.flags.writeable = False
    return a


def encode_evidence(ev: Evidence) -> bytes:
    f = ev.fresh
    return _json.encode(_Evidence(_sparse(ev.positives), _sparse(ev.negatives),
                                  (f.tp, f.fp, f.fn, f.tn), ev.epoch, ev.updated_ms, dict(ev.folded)))


def decode_evidence(raw: bytes) -> Evidence:
    e = _evidence_dec.decode(raw)
    return Evidence(_dense(e.pos), _dense(e.neg), Counts(*e.fresh), e.epoch, e.updated_ms,
                    MappingProxyType(e.folded))


def parse_key(topic_key: str) -> ThresholdKey:
    """Inverse of ``ThresholdKey.topic_key`` (``*`` is the policy-wide threshold)."""
    tenant, policy, category = topic_key.split("/", 2) if topic_key.count("/") >= 2 else ("", "", "")
    if not policy or not category:
        raise ValueError(f"not a threshold key: {topic_key!r}")
    return ThresholdKey(None if tenant == "*" else tenant, policy, category)


def identity_key(ident: Identity) -> bytes:
    return _SEP.join(ident).encode()


def parse_identity(raw: bytes) -> Identity:
    """Inverse of ``identity_key``, read from the right: the category never holds the separator,
    a decision id may (stream ids are producers' strings). Keys written before identities
    dropped the source (``decision, category, source``) read as their decision and category."""
    parts = raw.decode().split(_SEP)
    if len(parts) == 3 and parts[1] in CATEGORIES or \
            len(parts) > 3 and parts[-2] in CATEGORIES and parts[-1] not in CATEGORIES:
        return _SEP.join(parts[:-2]), parts[-2]
    return _SEP.join(parts[:-1]), parts[-1]


def restore(evidence: Iterable[tuple[bytes, bytes]], seen: Iterable[tuple[bytes, bytes]]) -> TunerState:
    """The tuner state as its tables hold it (after changelog recovery)."""
    ev = {parse_key(k.decode()): decode_evidence(v) for k, v in evidence}
    sn = {parse_identity(k): int(v) for k, v in seen}
    return TunerState(MappingProxyType(ev), MappingProxyType(sn))


# -- shadow sets ---------------------------------------------------------------------------------------


@dataclass
class ShadowScorer:
    """Scores each frozen labelled set once (per window size) and serves ``(scores, labels)``."""

    detector: Any
    policy_dir: Path
    _cache: dict[tuple[Path, str | None, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = \
        field(default_factory=dict)

    async def sets(self, policies: PolicySet) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        from guard.evaluation import score_texts
        from guard.models.data import read_examples

        out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for name, spec in policies.policies.items():
            for p in spec.principles:
                if p.tuning is None or p.tuning.shadow is None or "semantic" not in p.detectors:
                    continue
                sh = p.tuning.shadow
                path = (self.policy_dir / sh.dataset).resolve()
                ck = (path, sh.split, spec.window.tokens, spec.window.stride)
                if ck not in self._cache:
                    t0 = time.perf_counter()
                    try:
                        data = read_examples([path], splits=[sh.split] if sh.split else None)
                        scores, n_windows = await score_texts(self.detector, data.texts,
                                                              spec.window.tokens, spec.window.stride)
                    except (OSError, ValueError, KeyError, GuardError) as exc:
                        # the gate then fails closed ("not loaded"): no change of this key passes
                        log.error("shadow_set_failed", policy=name, dataset=sh.dataset, error=str(exc))
                        continue
                    self._cache[ck] = (scores, data.y, data.known)
                    log.info("shadow_set_scored", policy=name, dataset=sh.dataset, texts=len(data),
                             windows=n_windows, seconds=round(time.perf_counter() - t0, 2))
                scores, y, known = self._cache[ck]
                cats = list(getattr(self.detector, "categories", CATEGORIES))
                for c in p.categories:
                    j, jd = CATEGORIES.index(c), cats.index(c)
                    m = known[:, j]
                    out[(name, c)] = (scores[m, jd].astype(np.float64), y[m, j] > 0)
        return out


# -- the tuner core --------------------------------------------------------------------------------------


@dataclass
class Brain:
    """The tuner's state and its one step; everything that is not Kafka plumbing.

    One writer: every mutation happens under ``lock`` (feedback batches, expiry, policy reloads).
    """

    settings: Settings
    tuner: TunerSettings
    follower: ThresholdFollower
    policies: PolicyStore
    scorer: ShadowScorer | None = None
    shadow: ShadowSets = field(default_factory=dict)
    state: TunerState | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: TunerMetrics = field(default_factory=TunerMetrics)
    _specs: tuple[PolicySet, dict[tuple[str, str], TuningSpec]] | None = None

    def specs(self) -> dict[tuple[str, str], TuningSpec]:
        current = self.policies.current
        if self._specs is None or self._specs[0] is not current:
            self._specs = (current, tuning_specs(current))
        return self._specs[1]

    async def prepare(self) -> None:
        """Wait until every threshold event is read, score the shadow sets, then open for feedback."""
        if not self.follower.caught_up.is_set():
            log.info("tuner_waiting_for_thresholds", topic=self.settings.topic_thresholds)
        await self.follower.caught_up.wait()
        self.follower.set_defaults(policy_defaults(self.policies.current))
        if self.scorer is not None:
            self.shadow = await self.scorer.sets(self.policies.current)
        self.ready.set()
        log.info("tuner_ready", thresholds_version=self.follower.current.version,
                 tuned=len(self.specs()), shadow_sets=len(self.shadow))

    async def reload(self) -> None:
        async with self.lock:
            if not self.policies.reload_if_changed():
                return
            self.follower.set_defaults(policy_defaults(self.policies.current))
            if self.scorer is not None:
                self.shadow = await self.scorer.sets(self.policies.current)

    def index(self, d: Decision) -> DecisionRecord | None:
        """What to remember of a decision, or None when no verdict on it could move a threshold."""
        specs = self.specs()
        tuned = {c for (p, c) in specs if p == d.policy}
        if not tuned or not d.scores:
            return None
        rec = DecisionRecord.from_decision(d)
        scores = {c: s for c, s in rec.scores.items() if c in tuned}
        return DecisionRecord(rec.decision_id, rec.policy, rec.tenant, rec.thresholds_version,
                              rec.ts_ms, MappingProxyType(scores), rec.semantic, rec.other)

    def step(self, batch: Sequence[Feedback], records: Mapping[str, DecisionRecord], now_ms: int,
             positions: Sequence[FeedbackAt] | None = None
             ) -> tuple[TunerState, TunerState, list[ThresholdChange]]:
        """Fold a batch in and propose changes: (state before, state after, changes); no I/O."""
        assert self.state is not None
        before = self.state
        th = self.follower.current
        specs = self.specs()
        after = observe(before, batch, records, th, specs, now_ms, positions)
        changes = tune(after, th, specs, now_ms, self.shadow)
        return before, after, changes


def changed_identities(before: TunerState, after: TunerState, batch: Iterable[Feedback]
                       ) -> list[tuple[Identity, int]]:
    """Verdict identities this batch added (to write to the ``seen`` table)."""
    out: dict[Identity, int] = {}
    for fb in batch:
        ident = (fb.decision_id, fb.category)
        if ident in after.seen and ident not in before.seen:
            out[ident] = after.seen[ident]
    return list(out.items())


def changed_evidence(before: TunerState, after: TunerState) -> list[tuple[ThresholdKey, Evidence]]:
    return [(k, ev) for k, ev in after.evidence.items() if before.evidence.get(k) is not ev]


# -- composition ---------------------------------------------------------------------------------------


@dataclass
class Tuner:
    app: faust.App
    topics: Topics
    brain: Brain
    server: Server


def create_tuner(s: Settings, ts: TunerSettings) -> Tuner:
    app = new_app(s, ts.app_id)
    topics = declare(app, s)
    table = {"key_type": bytes, "value_type": bytes, "partitions": s.partitions, "use_partitioner": True}
    decisions = app.Table("decisions", help="recent decisions of tuned policies (decision_id → record)",
                          **table)
    seen = app.Table("seen", help="verdict identities already counted → decision time", **table)
    evidence = app.Table("evidence", help="labelled score bins per tenant/policy/category", **table)

    follower = ThresholdFollower(s.kafka_bootstrap, s.topic_thresholds, options=client_options(s))
    brain = Brain(s, ts, follower, PolicyStore(s.policy_dir))
    metrics = brain.metrics
    # Both inputs are watched like a worker's chunks (streams.watchdog): a stalled decisions
    # partition leaves verdicts without their decisions, a stalled feedback one leaves them unread.
    inputs = {"feedback": s.topic_feedback, "decisions": s.topic_decisions}
    progress = {name: Progress() for name in inputs}
    partitions = GroupPartitions(app.consumer, app.conf.id, client_options(s))
    watches = {name: StallWatch.paced(partitions, topic, progress[name], ts.stall_timeout_s,
                                      busy=lambda: bool(app.rebalancing or app.in_recovery),
                                      busy_timeout_s=ts.recovery_timeout_s)
               for name, topic in inputs.items()}
    healths = {name: Health() for name in inputs}
    server = Server(routes(metrics.registry, lambda: per_topic({inputs[n]: h for n, h in healths.items()}),
                           brain.ready.is_set), ts.web_host, ts.web_port)

    class Lifecycle(mode.Service):
        _stack: AsyncExitStack
        _prep: asyncio.Task[None] | None = None

        async def on_start(self) -> None:
            from guard import assemble

            brain.policies.current  # a bad policy file fails start-up, loudly
            self._stack = AsyncExitStack()
            self._stack.push_async_callback(follower.stop)
            await declare_thresholds(topics)
            await follower.start(catchup_timeout_s=ts.catchup_timeout_s)
            if any(p.tuning is not None and p.tuning.shadow is not None
                   for spec in brain.policies.current.policies.values() for p in spec.principles):
                det = await self._stack.enter_async_context(
                    assemble.semantic_detector(s.triton_url, s.triton_model, s.triton_timeout_s,
                                               assemble.retry_policy(s), s.triton_pad_to_multiple,
                                               assemble.triton_tls(s), s.triton_startup_wait_s))
                brain.scorer = ShadowScorer(det, s.policy_dir)
            self._prep = asyncio.create_task(brain.prepare(), name="tuner-prepare")

        async def on_stop(self) -> None:
            if self._prep is not None:
                self._prep.cancel()
            await self._stack.aclose()

    app.service(Lifecycle)

    async def dead(event: faust.EventT, error: Exception) -> None:
        metrics.deadletters.labels(deadletter.code_of(error)).inc()
        await deadletter.send(topics.deadletter, event, error, log)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: faust.App, assigned: set, **_: object) -> None:
        for name in inputs:  # offsets of an earlier assignment say nothing about this one
            progress[name].reset()
            watches[name].reset()

    @app.agent(topics.decisions, name="tuner-decisions", concurrency=1)
    async def index_decisions(stream: faust.StreamT) -> None:
        async for events in stream.take_events(ts.decisions_batch_max, within=ts.decisions_batch_within_s):
            progress["decisions"].reached_all((ev.message.partition, ev.message.offset) for ev in events)
            for ev in events:
                try:
                    if not isinstance(ev.value, bytes | bytearray):
                        raise SchemaError("record value is empty")
                    rec = brain.index(decode(Decision, ev.value))
                except GuardError as exc:
                    await dead(ev, exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - one bad record must not stop indexing
                    log.exception("index_failed")
                    await dead(ev, exc)
                    continue
                if rec is not None:
                    decisions[rec.decision_id.encode()] = encode_record(rec)
                    metrics.indexed.inc()
            progress["decisions"].handled_all((ev.message.partition, ev.message.offset) for ev in events)

    async def handle(events: Sequence[faust.EventT]) -> None:
        await brain.ready.wait()
        batch: list[Feedback] = []
        positions: list[FeedbackAt] = []
        for ev in events:
            try:
                batch.append(validate_feedback(ev.value))
            except GuardError as exc:
                await dead(ev, exc)
                continue
            m = ev.message
            positions.append((m.partition, m.offset, round(m.timestamp * 1000) if m.timestamp else 0))
        if not batch:
            return
        missing = sum(decisions.get(fb.decision_id.encode()) is None for fb in batch)
        if missing and ts.index_wait_budget_s > 0:
            t0 = time.monotonic()
            reached = await caught_up(partitions, s.topic_decisions, progress["decisions"], ts.index_wait_budget_s,
                                      abort=lambda: bool(app.rebalancing) or app.should_stop
                                      or not app.flow_control.is_active())
            log.info("verdicts_waited_for_index", verdicts=missing, reached=reached,
                     found=missing - sum(decisions.get(fb.decision_id.encode()) is None for fb in batch),
                     waited_s=round(time.monotonic() - t0, 2))
        async with brain.lock:
            if brain.state is None:  # first batch: the tables have been recovered by now
                brain.state = restore(evidence.items(), seen.items())
                log.info("tuner_state_restored", keys=len(brain.state.evidence),
                         identities=len(brain.state.seen))
            records: dict[str, DecisionRecord] = {}
            for fb in batch:
                raw = decisions.get(fb.decision_id.encode())
                if raw is not None and fb.decision_id not in records:
                    records[fb.decision_id] = decode_record(fb.decision_id, raw)
            now = _now_ms()
            before, after, changes = brain.step(batch, records, now, positions)
            for name, n in asdict(after.counts).items():
                if n > getattr(before.counts, name):
                    metrics.verdicts.labels(name).inc(n - getattr(before.counts, name))
            # The evidence first, acknowledged, then the identities: a crash between the two leaves
            # evidence that knows its records (``Evidence.folded``), so the re-read batch is not
            # counted twice; identities written first would have lost those verdicts for good.
            # Each changelog write is awaited itself: Faust's producer flush returns with a message
            # still being handed over, and a failed send is only logged there.
            sent = []
            for key, ev in changed_evidence(before, after):
                k, v = key.topic_key.encode(), encode_evidence(ev)
                evidence.data[k] = v  # the table's own copy (``evidence[k] = v`` without the send)
                sent.append(evidence.send_changelog(None, k, v))
            try:
                await asyncio.gather(*sent)
            except Exception as exc:  # noqa: BLE001 - not knowing what was written, start again
                # Neither handled nor dead-lettered: the batch's offsets stay uncommitted, and the
                # restarted tuner reads it again against what its tables hold.
                log.error("evidence_write_failed", **traced(exc))
                await crash(exc)
                await asyncio.Event().wait()  # cancelled by the shutdown
            for ident, ts_ms in changed_identities(before, after, batch):
                seen[identity_key(ident)] = str(ts_ms).encode()
            brain.state = after
            for change in changes:
                key = ThresholdKey.of(change)
                with bound_contextvars(threshold_key=key.topic_key, version=change.version):
                    # sent now and acknowledged before it counts as in force here (a plain
                    # ``topic.send`` in an agent would wait for the batch's ack: after this step)
                    await app.producer.send_and_wait(s.topic_thresholds, key.topic_key.encode(),
                                                     encode(change), None, None, None)
                    brain.follower.apply_local(change)
                    metrics.changes.labels(change.status).inc()
                    metrics.version.set(brain.follower.current.version)
                    log.info("threshold_change_published", status=change.status, old=change.old,
                             value=change.value, reason=change.reason)
            log.info("feedback_batch", size=len(events), valid=len(batch), changes=len(changes),
                     counts=asdict(after.counts), thresholds_version=brain.follower.current.version)

    @app.agent(topics.feedback, name="tuner-feedback", concurrency=1)
    async def tune_feedback(stream: faust.StreamT) -> None:
        await deadletter.consume(stream, ts.feedback_batch_max, ts.feedback_batch_within_s, handle, dead, log,
                                 failed_event="feedback_batch_failed", progress=progress["feedback"])

    crash = crash_then_exit(app.crash, ts.crash_exit_s, log)

    async def watch_inputs() -> None:
        if not app.consumer.started:
            return
        busy = any(w.busy() for w in watches.values())
        if not busy and not brain.ready.is_set():  # verdicts wait for the thresholds topic on purpose
            return
        for name, watch in watches.items():
            lag, waited = metrics.lag[name]
            healths[name] = after_check(healths[name], await patrol(watch, lag, waited, crash, log, what=name,
                                                                    refetches=metrics.refetches[name]))

    Probes(server, min(w.interval_s for w in watches.values()), watch_inputs,
           closers=[partitions.close]).attach(app)

    @app.timer(interval=s.policy_reload_s)
    async def reload_policies() -> None:
        if brain.ready.is_set():
            await brain.reload()

    @app.timer(interval=ts.expire_interval_s)
    async def expire_index() -> None:
        """Forget decisions (and the identities of verdicts on them) older than the TTL."""
        before = _now_ms() - int(ts.decision_ttl_s * 1000)
        async with brain.lock:
            stale = [k for k, raw in list(decisions.items()) if record_ts(raw) < before]
            for k in stale:
                del decisions[k]
            old = [k for k, raw in list(seen.items()) if int(raw) < before]
            for k in old:
                del seen[k]
            idle: list[ThresholdKey] = []
            if brain.state is not None:
                brain.state = expire(brain.state, before)
                brain.state, idle = forget_idle_tenants(
                    brain.state, _now_ms() - int(ts.tenant_evidence_ttl_s * 1000))
                for key in idle:
                    evidence.pop(key.topic_key.encode(), None)
        if stale or old or idle:
            log.info("index_expired", decisions=len(stale), identities=len(old), idle_tenant_keys=len(idle))

    @app.timer(interval=ts.report_interval_s)
    async def report() -> None:
        st = brain.state
        metrics.index_size.set(len(decisions))
        metrics.version.set(follower.current.version)
        log.info("tuner_status", ready=brain.ready.is_set(), index_size=len(decisions),
                 identities=len(st.seen) if st else None, keys=len(st.evidence) if st else None,
                 counts=asdict(st.counts) if st else None, thresholds_version=follower.current.version,
                 **metrics.totals())

    return Tuner(app, topics, brain, server)


def main(argv: list[str] | None = None) -> int:
    """Run the tuner (one instance) until interrupted. Configuration: ``GUARD_*`` and ``GUARD_TUNER_*``."""
    return run("guard tuner", main.__doc__, lambda s: create_tuner(s, TunerSettings()).app, argv,
               "score shadow sets on Triton (overrides GUARD_TRITON_URL)")


if __name__ == "__main__":
    raise SystemExit(main())
