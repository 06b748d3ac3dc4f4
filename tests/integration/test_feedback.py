"""Feedback → tuner → thresholds → every worker, end to end over the real broker.

Two workers (one consumer group, in-process semantic detector) and one tuner run as processes for
the whole module, on topics and app ids of their own. Each test tunes its own test policy (same
text, same category, different tuning knobs), so the tests share processes but never a threshold.

The texts and starting thresholds are chosen from the model's own scores (measured in-process once,
through the same windowing the workers use), so the tests hold for whatever heads are trained:
"low" scores a little above the start threshold, "high" above "low".
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from guard.devenv._proc import free_port
from guard.devenv.kafka import create_topics
from guard.messages import Chunk, Decision, Feedback, ThresholdChange, encode
from guard.settings import Settings
from guard.thresholds import ThresholdKey
from streams import topics
from streams.client import ChunkProducer, Collector, WorkerProcess, log_events
from streams.follower import ThresholdFollower

from .conftest import LOGS

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
CATEGORY = "violence"
PARTITIONS = 4
#: decisions queued in front of the ones the late-verdict test's verdicts are on
FILLER = 20_000
#: short texts (one semantic window each) of graded violence; two are picked by their scores
CANDIDATES = (
    "I will kill you and your whole family tonight.",
    "Listen carefully. I know where you live and I will hurt you badly.",
    "He beat the man with a bat until he stopped moving.",
    "If you say that again I will punch you in the face.",
    "The soldiers shot the prisoners and burned the village.",
    "They should all be lined up and shot.",
    "She stabbed him twice in the chest and ran away.",
    "Let's go beat up that kid after school.",
    "I am so angry I could smash something.",
    "The boxer knocked out his opponent in the third round.",
    "The history book describes the battle in detail, with many casualties.",
    "We will crush the other team on Saturday!",
    "The movie had a lot of fight scenes and explosions.",
    # milder ones, so the mid-range picks below survive a retrained model (heads v9 moved them)
    "Someone should teach them a lesson they won't forget.",
    "They dragged him out of the car and kicked him.",
    "I'm going to hit him if he keeps doing that.",
    "I could strangle my brother sometimes, he is so annoying.",
    "You'd better watch your back.",
    "I wanted to slap him so hard.",
)
BENIGN = ("The capital of France is Paris.", "Water boils at 100 degrees Celsius at sea level.",
          "Our meeting moved to Thursday afternoon.", "The recipe needs two eggs and a cup of flour.",
          "Photosynthesis turns light into chemical energy.")


# -- processes and logs ----------------------------------------------------------------------------


def counted_so_far(s: "System", *also: str) -> int:
    """Verdicts the tuner has counted in its life (its latest ``feedback_batch`` log line), plus
    those it filed under ``also`` (``stale``, ...)."""
    batches = s.tuner.events("feedback_batch")
    counts = batches[-1]["counts"] if batches else {}
    return sum(int(counts.get(k, 0)) for k in ("counted", *also))


async def poll(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


# -- the system under test -------------------------------------------------------------------------


@dataclass
class System:
    bootstrap: str
    settings: Settings
    env: dict[str, str]
    workers: list[WorkerProcess]
    tuner: WorkerProcess
    tuner_group: str
    worker_group: str
    low: str
    high: str
    scores: dict[str, float]
    start: float  # the test policies' starting threshold
    edge: str  # the shadow set's text whose score sits just above fb-shadow's threshold
    edge_start: float  # fb-shadow's starting threshold: the 0.001 bin holding the edge text's score
    policies: dict[str, dict[str, Any]]
    history: list[ThresholdChange] = field(default_factory=list)

    def key(self, policy: str) -> ThresholdKey:
        return ThresholdKey(None, policy, CATEGORY)

    def events(self, policy: str) -> list[ThresholdChange]:
        return [ch for ch in self.history if ThresholdKey.of(ch) == self.key(policy)]

    def tuning(self, policy: str) -> dict[str, Any]:
        return self.policies[policy]["principles"][0]["tuning"]


def _policy(name: str, threshold: float, tuning: dict[str, Any]) -> dict[str, Any]:
    return {"policy": name, "description": "feedback integration test",
            "principles": [{"id": "no-violence", "text": "Do not threaten or incite violence.",
                            "categories": [CATEGORY], "detectors": ["semantic"],
                            "threshold": threshold, "action": "block",
                            "tuning": {"target_precision": 0.9, "floor": 0.01, **tuning}}]}


def _measure() -> dict[str, float]:
    """The model's violence score of each candidate, as the shadow gate and the workers see it."""
    from guard import assemble
    from guard.evaluation import score_texts

    async def run() -> dict[str, float]:
        async with assemble.semantic_detector(None) as det:
            scores, _ = await score_texts(det, list(CANDIDATES), 64, 16)
            j = list(det.categories).index(CATEGORY)
            getattr(det, "close", lambda: None)()
            return {t: round(float(scores[i, j]), 4) for i, t in enumerate(CANDIDATES)}

    return asyncio.run(run())


def _pick(scores: dict[str, float]) -> tuple[str, str]:
    """'low': mid-range score; 'high': 0.05 to 0.4 above it. Margins keep rounding out of play."""
    mid = sorted((t for t, s in scores.items() if 0.2 <= s <= 0.85), key=lambda t: abs(scores[t] - 0.5))
    for low in mid:
        # at most 0.4 above: one max_step (0.5) from the start (low - 0.05) passes it
        highs = sorted((t for t, s in scores.items()
                        if scores[low] + 0.05 <= s <= min(0.985, scores[low] + 0.4)),
                       key=lambda t: scores[t])
        if highs:
            return low, highs[0]
    pytest.fail(f"no two candidate texts with usable {CATEGORY} scores: {sorted(scores.values())}")


def _edge(scores: dict[str, float], below: float) -> str:
    """A text scoring well inside a 0.001 bin (so float noise cannot cross the bin's edges), below
    ``below``: a threshold at that bin's floor fires on it, and every raise, however small, misses it."""
    for t, sc in sorted(scores.items(), key=lambda kv: -kv[1]):
        frac = sc * 1000 % 1
        if 0.1 <= sc <= below and 0.2 <= frac <= 0.9:
            return t
    pytest.fail(f"no candidate text with a usable {CATEGORY} score below {below}: {sorted(scores.values())}")


def _heads_ready() -> None:
    from guard.models import paths

    if not paths.heads_path().exists():
        pytest.fail(f"{paths.heads_path()} missing: train the heads (`guard models train`)")


@pytest.fixture(scope="module")
def system(kafka_broker, tmp_path_factory) -> Iterator[System]:
    _heads_ready()
    scores = _measure()
    low, high = _pick(scores)
    start = round(scores[low] - 0.05, 3)
    edge = _edge(scores, below=scores[high] - 0.01)
    edge_start = int(scores[edge] * 1000) / 1000
    run = uuid.uuid4().hex[:6]
    pdir = tmp_path_factory.mktemp("policies")
    for f in (REPO / "policies").glob("*.yaml"):
        (pdir / f.name).write_text(f.read_text())
    (pdir / "blocklists").symlink_to(REPO / "policies" / "blocklists")
    fast = {"max_step": 0.5, "ceiling": 0.99, "max_changes_per_hour": 3600}
    policies = {
        "fb-live": _policy("fb-live", start, {**fast, "min_evidence": 4}),
        "fb-resume": _policy("fb-resume", start, {**fast, "min_evidence": 6}),
        "fb-ceiling": _policy("fb-ceiling", start, {**fast, "min_evidence": 3,
                                                    "ceiling": round(start + 0.02, 3)}),
        "fb-rate": _policy("fb-rate", start, {**fast, "min_evidence": 3, "max_step": 0.01,
                                              "max_changes_per_hour": 1}),
        "fb-shadow": _policy("fb-shadow", edge_start, {**fast, "min_evidence": 3, "shadow": {
            "dataset": "shadow-violence.jsonl", "min_recall": 0.9}}),
        "fb-pin": _policy("fb-pin", start, {**fast, "min_evidence": 3}),
        "fb-late": _policy("fb-late", start, {**fast, "min_evidence": 6}),
        "fb-tenant": _policy("fb-tenant", start, {**fast, "min_evidence": 50, "scope": "tenant"}),
        "fb-tenant-live": _policy("fb-tenant-live", start, {**fast, "min_evidence": 4, "scope": "tenant"}),
    }
    for name, doc in policies.items():
        (pdir / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    # The frozen set says the edge text and the high one are violent (20 positives, the gate's
    # minimum) and the benign ones are not. fb-shadow starts at the floor of the edge text's 0.001
    # bin, so any raise misses half the positives (recall 0.5 < 0.9): no part of it can pass.
    rows = [{"text": t, "labels": {CATEGORY: 1}, "source": "test", "split": "dev"}
            for t in (edge, high) * 10]
    rows += [{"text": t, "labels": {CATEGORY: 0}, "source": "test", "split": "dev"} for t in BENIGN]
    (pdir / "shadow-violence.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    env = {"GUARD_POLICY_DIR": str(pdir), "GUARD_TRITON_URL": "", "GUARD_LOG_LEVEL": "INFO", "GUARD_WEB_PORT": "0",
           "GUARD_STALL_TIMEOUT_S": "60",
           "GUARD_PARTITIONS": str(PARTITIONS),
           **{f"GUARD_TOPIC_{t.upper()}": f"fb-{run}.{t}" for t in
              ("chunks", "decisions", "deadletter", "feedback", "thresholds")}}
    worker_group, tuner_group = f"guard-fb-{run}", f"tuner-fb-{run}"
    settings = Settings(kafka_bootstrap=kafka_broker.bootstrap, partitions=PARTITIONS,
                        **{f"topic_{t}": f"fb-{run}.{t}" for t in
                           ("chunks", "decisions", "deadletter", "feedback", "thresholds")})
    asyncio.run(create_topics(kafka_broker.bootstrap, topics.specs(settings)))
    logs = LOGS
    tuner_env = {**env, "GUARD_TUNER_APP_ID": tuner_group, "GUARD_TUNER_REPORT_INTERVAL_S": "1",
                 "GUARD_TUNER_FEEDBACK_BATCH_WITHIN_S": "0.2", "GUARD_TUNER_WEB_PORT": str(free_port()),
                 "GUARD_TUNER_STALL_TIMEOUT_S": "60",
                 # fb-tenant and fb-tenant-live tune per tenant: evidence goes idle within a test
                 "GUARD_TUNER_TENANT_EVIDENCE_TTL_S": "3", "GUARD_TUNER_EXPIRE_INTERVAL_S": "1"}
    tuner = WorkerProcess(kafka_broker.bootstrap, None, logs / f"tuner-{run}.log", tuner_env,
                          args=("-m", "streams.tuner"))
    workers = [WorkerProcess(kafka_broker.bootstrap, None, logs / f"worker-{run}-{i}.log",
                             {**env, "GUARD_APP_ID": worker_group}) for i in range(2)]
    sysm = System(kafka_broker.bootstrap, settings, tuner_env, workers, tuner, tuner_group,
                  worker_group, low, high, scores, start, edge, edge_start, policies)
    tuner.start()
    for w in workers:
        w.start()
    try:
        asyncio.run(_wait_started(sysm))
        yield sysm
    finally:
        tuner.stop()
        for w in workers:
            w.stop()


async def _wait_started(s: System) -> None:
    revived: set[int] = set()

    def alive() -> None:
        # A worker that left on a stalled partition (the faust-streaming rebalance bug the watchdog
        # exists for) comes back once, as the restart policy brings it back in production.
        for i, w in enumerate(s.workers):
            if not w.alive() and i not in revived and w.events("partition_stalled"):
                revived.add(i)
                w.start()
        dead = [p.log_path for p in (*s.workers, s.tuner) if not p.alive()]
        if dead:
            pytest.fail(f"process died; log: {dead[0].read_text()[-3000:]}")

    async def group_members() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap)
        await admin.start()
        try:
            (resp,) = await admin.describe_consumer_groups([s.worker_group])
            (g,) = resp.groups
            return len(g[5]) if g[2] == "Stable" else 0  # (error, group, state, ptype, protocol, members)
        except KafkaError:  # a fresh broker has no group coordinator for a moment
            return 0
        finally:
            await admin.close()

    deadline = time.monotonic() + 240
    while await group_members() < 2:
        alive()
        if time.monotonic() > deadline:
            pytest.fail("workers never formed a stable group of two")
        await asyncio.sleep(1)
    # one warm-up stream per partition: whichever worker owns it is serving
    sids = partition_ids("warmup")
    async with Collector(s.bootstrap, s.settings.topic_decisions, s.settings.topic_deadletter) as col, \
            ChunkProducer(s.bootstrap, s.settings.topic_chunks) as prod:
        for sid in sids:
            await prod.send(Chunk(stream_id=sid, seq=0, text="Hello there.", final=True))
        deadline = time.monotonic() + 240
        try:
            while True:
                alive()
                try:
                    await col.wait_for(lambda c: all(c.final(x) for x in sids), timeout=5)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        except TimeoutError:
            unserved = [p for p, sid in enumerate(sids) if not col.final(sid)]
            said = {str(w.log_path.name): [e.get("chunks") for e in log_events(w.log_path, 0, "partitions_assigned")]
                    for w in s.workers}
            pytest.fail(f"no decision from chunk partitions {unserved} in 240 s; each worker's "
                        f"partitions_assigned events: {said}")
    # each worker says which chunk partitions it serves; together, after the last rebalance, all of them
    last = [log_events(w.log_path, 0, "partitions_assigned")[-1]["chunks"] for w in s.workers]
    assert sorted(p for chunks in last for p in chunks) == list(range(PARTITIONS)), last
    await poll(lambda: alive() or s.tuner.events("tuner_ready"), 240, "the tuner to be ready")


# -- helpers ---------------------------------------------------------------------------------------


def partition_ids(prefix: str, per_partition: int = 1) -> list[str]:
    """Stream ids that land on every partition (``per_partition`` each), as the producer keys them."""
    part = DefaultPartitioner()
    have: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(v) < per_partition for v in have.values()):
        sid = f"{prefix}-{uuid.uuid4().hex[:6]}-{i}"
        p = part(sid.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))
        if len(have[p]) < per_partition:
            have[p].append(sid)
        i += 1
    return [sid for v in have.values() for sid in v]


@asynccontextmanager
async def following(system: System) -> AsyncIterator[ThresholdFollower]:
    """Every threshold event of the module, in order, into ``system.history`` (in the test's loop)."""
    system.history.clear()
    f = ThresholdFollower(system.bootstrap, system.settings.topic_thresholds,
                          on_change=lambda ch, _: system.history.append(ch))
    assert await f.start(catchup_timeout_s=30)
    try:
        yield f
    finally:
        await f.stop()


async def decide(s: System, policy: str, texts: list[tuple[str, str]],
                 tenant: str | None = None) -> dict[str, Decision]:
    """Send each (stream id, text) as a one-chunk stream; the final decision of each."""
    async with Collector(s.bootstrap, s.settings.topic_decisions, s.settings.topic_deadletter) as col, \
            ChunkProducer(s.bootstrap, s.settings.topic_chunks) as prod:
        for sid, text in texts:
            await prod.send(Chunk(stream_id=sid, seq=0, text=text, final=True, policy=policy, tenant=tenant))
        await prod.flush()
        await col.wait_for(lambda c: all(c.final(sid) for sid, _ in texts), timeout=120)
        return {sid: next(d for d in col.decisions[sid] if d.final) for sid, _ in texts}


async def consumed(s: System, topic: str, timeout: float = 60.0) -> None:
    """Until the tuner has committed every record now on ``topic`` (it commits after processing)."""
    c = AIOKafkaConsumer(bootstrap_servers=s.bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap)
    await c.start()
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        end = await c.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while True:
            done = await admin.list_consumer_group_offsets(s.tuner_group, partitions=tps)
            if all(end[tp] == 0 or (tp in done and done[tp].offset >= end[tp]) for tp in tps):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"tuner has not consumed {topic}: at {done}, end {end}")
            await asyncio.sleep(0.3)
    finally:
        await admin.close()
        await c.stop()


def verdicts(decisions: list[Decision], source: str, verdict: str = "false_positive") -> list[bytes]:
    return [encode(Feedback(decision_id=d.decision_id, stream_id=d.stream_id, category=CATEGORY,
                            verdict=verdict, source=source, ts_ms=int(time.time() * 1000)))  # type: ignore[arg-type]
            for d in decisions]


async def send_feedback(s: System, records: list[bytes | None], key: bytes | None = None) -> None:
    prod = AIOKafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await prod.start()
    try:
        futs = [await prod.send(s.settings.topic_feedback, key=key if r is not None else b"empty",
                                value=r) for r in records]
        await prod.flush()
        await asyncio.gather(*futs)
    finally:
        await prod.stop()


async def applied_by_workers(s: System, version: int, timeout: float = 30.0) -> None:
    """Both workers' followers logged the event of ``version``."""
    def seen() -> bool:
        return all(any(e.get("version") == version for e in log_events(w.log_path, 0, "threshold_event"))
                   for w in s.workers)
    await poll(seen, timeout, f"both workers to apply thresholds version {version}")


def fired(d: Decision) -> list[float]:
    """The thresholds the semantic layer compared the category's score with, where it fired."""
    return [e.threshold for e in d.evidence if e.category == CATEGORY and e.detector == "semantic"]


# -- the tests -------------------------------------------------------------------------------------


async def test_false_positive_flood_raises_threshold_live_on_both_workers(system: System):
    """Verdicts that the category over-fires raise its threshold once, within bounds; both workers
    apply the new version live and let the same text through afterwards."""
    async with following(system) as follower:
        s, policy = system, "fb-live"
        v_before = follower.current.version
        before = await decide(s, policy, [(f"live-h-{i}-{uuid.uuid4().hex[:4]}", s.high) for i in range(6)]
                              + [(f"live-l-{i}-{uuid.uuid4().hex[:4]}", s.low) for i in range(2)])
        assert all(d.action == "block" and fired(d) == [s.start] for d in before.values())
        assert all(d.thresholds_version == v_before for d in before.values())
        high = [d for d in before.values() if d.stream_id.startswith("live-h")]
        await consumed(s, s.settings.topic_decisions)

        # a flood: six decisions, five reviewers each, all saying "false positive"
        await send_feedback(s, [r for i in range(5) for r in verdicts(high, f"reviewer-{i}")])
        (change,) = await poll(lambda: s.events(policy), 60, "a threshold change")
        await consumed(s, s.settings.topic_feedback)
        assert s.events(policy) == [change], "one change: later verdicts were on the old threshold"
        spec = s.tuning(policy)
        score_high = high[0].scores[CATEGORY]
        assert change.status == "promoted" and change.old == s.start
        assert change.value > score_high, "moved past every score the reviewers called a false positive"
        assert change.value <= min(spec["ceiling"], s.start + spec["max_step"])
        assert change.version > v_before and change.evidence["tp"] == 0
        assert change.evidence["fresh_fp"] >= spec["min_evidence"]

        await applied_by_workers(s, change.version)
        texts = [(sid, s.low) for sid in partition_ids("live-after-l")]
        texts += [(sid, s.high) for sid in partition_ids("live-after-h")]
        after = await decide(s, policy, texts)
        assert len({DefaultPartitioner()(sid.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))
                    for sid in after}) == PARTITIONS, "decisions from every partition, so from both workers"
        assert all(d.thresholds_version >= change.version for d in after.values())
        for sid, d in after.items():
            score = d.scores[CATEGORY]
            if abs(score - change.value) > 1e-3:
                assert d.action == ("block" if score >= change.value else "allow"), (sid, score, d.action)
        assert all(d.action == "allow" for sid, d in after.items() if sid.startswith("live-after-l"))
        print(f"\nfb-live: {s.start} -> {change.value} (version {v_before} -> {change.version}) "
              f"on {len(high) * 5} verdicts; low text {s.scores[s.low]}, high text {score_high}")


async def test_tuner_restart_resumes_and_replay_counts_once(system: System):
    """Evidence and verdict identities live in changelog-backed tables: a restarted tuner finishes
    a move that needed verdicts from both sides of the restart, and replayed verdicts move nothing."""
    async with following(system) as follower:
        s, policy = system, "fb-resume"
        ds = list((await decide(s, policy, [(f"resume-{i}-{uuid.uuid4().hex[:4]}", s.high)
                                            for i in range(6)])).values())
        assert all(d.action == "block" for d in ds)
        await consumed(s, s.settings.topic_decisions)
        first, second = verdicts(ds[:3], "reviewer"), verdicts(ds[3:], "reviewer")
        await send_feedback(s, first)
        await consumed(s, s.settings.topic_feedback)
        assert s.events(policy) == [], "3 verdicts < min_evidence 6: no move yet"

        s.tuner.stop()
        s.tuner.start()
        await poll(lambda: s.tuner.events("tuner_ready"), 120, "the restarted tuner")
        await send_feedback(s, second)
        (change,) = await poll(lambda: s.events(policy), 60, "the change after the restart")
        assert change.status == "promoted" and change.evidence["fresh_fp"] == 6, \
            "the three verdicts from before the restart were remembered"
        versions = [ch.version for ch in s.history]
        assert versions == sorted(set(versions)), "versions only grow, across the restart"

        await send_feedback(s, first + second + first)  # replays
        await consumed(s, s.settings.topic_feedback)
        await asyncio.sleep(1.0)
        assert s.events(policy) == [change], "replayed verdicts changed nothing"
        batches = s.tuner.events("feedback_batch")
        assert batches[-1]["counts"]["duplicate"] >= 9 and batches[-1]["counts"]["counted"] == 3
        print(f"\nfb-resume: {change.old} -> {change.value} v{change.version} on 3 + 3 verdicts across "
              f"a restart; {batches[-1]['counts']['duplicate']} replays counted as duplicates")


async def test_verdicts_read_before_their_decisions_are_indexed_wait_for_the_index(system: System):
    """After a tuner outage both inputs have a backlog, and the verdicts' is far shorter: they used
    to reach the tuner first and count as unknown. Now they wait for the decisions that were on the
    topic when they were read, and move the threshold."""
    async with following(system):
        s, policy, run = system, "fb-late", uuid.uuid4().hex[:4]
        (template,) = (await decide(s, policy, [(f"late-t-{run}", s.high)])).values()
        s.tuner.stop()
        # a backlog of decisions in front of the ones the verdicts are on
        prod = AIOKafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=50, max_batch_size=512 * 1024)
        await prod.start()
        try:
            for i in range(FILLER):
                rid = f"late-fill-{run}-{i}"
                await prod.send(s.settings.topic_decisions, key=rid.encode(),
                                value=encode(msgspec.structs.replace(template, decision_id=rid, stream_id=rid)))
            await prod.flush()
        finally:
            await prod.stop()
        ds = list((await decide(s, policy, [(f"late-{i}-{run}", s.high) for i in range(6)])).values())
        assert all(d.action == "block" for d in ds)
        await send_feedback(s, verdicts(ds, "reviewer"))

        s.tuner.start()
        (change,) = await poll(lambda: s.events(policy), 180, "the change once the index caught up")
        assert change.status == "promoted" and change.evidence["fresh_fp"] == 6
        waits = [e for e in s.tuner.events("verdicts_waited_for_index") if e.get("found")]
        assert waits and all(e["reached"] for e in waits), "the verdicts came before their decisions"
        print(f"\nfb-late: {sum(e['found'] for e in waits)} verdicts waited "
              f"{max(e['waited_s'] for e in waits)} s behind {FILLER} decisions; {change.old} -> {change.value}")


async def test_hostile_feedback_cannot_exceed_ceiling_or_rate(system: System):
    """10,000 identical verdicts count once; unknown decisions are counted; malformed records are
    dead-lettered with the reason; moves stop at the ceiling and at the rate bound."""
    async with following(system) as follower:
        s = system
        run = uuid.uuid4().hex[:4]
        ceil = {sid: d for sid, d in (await decide(s, "fb-ceiling", [(f"ceil-{i}-{run}", s.high)
                                                                     for i in range(6)])).items()}
        rate = {sid: d for sid, d in (await decide(s, "fb-rate", [(f"rate-{i}-{run}", s.high)
                                                                  for i in range(6)])).items()}
        await consumed(s, s.settings.topic_decisions)
        c0 = list(ceil.values())
        bad = [b'{"decision_id": "x:1", "stream_id": ', b"[]",
               encode(Feedback(decision_id=c0[0].decision_id, stream_id=c0[0].stream_id, category="gore",
                               verdict="false_positive", source="m")),
               b'{"decision_id":"%s","stream_id":"%s","category":"violence","verdict":"wrong","source":"m"}'
               % (c0[0].decision_id.encode(), c0[0].stream_id.encode()),
               encode(Feedback(decision_id=c0[0].decision_id, stream_id="other-stream", category=CATEGORY,
                               verdict="false_positive", source="m")),
               None]
        ghosts = [encode(Feedback(decision_id=f"ghost-{run}-{i}:0", stream_id=f"ghost-{run}-{i}",
                                  category=CATEGORY, verdict="false_positive", source="mallory"))
                  for i in range(500)]
        async with Collector(s.bootstrap, s.settings.topic_decisions, s.settings.topic_deadletter) as col:
            t0 = time.perf_counter()
            await send_feedback(s, verdicts(c0[:1], "mallory") * 10_000 + ghosts + bad)
            await consumed(s, s.settings.topic_feedback, timeout=180)
            took = time.perf_counter() - t0
            assert s.events("fb-ceiling") == [] and s.events("fb-rate") == [], \
                "10,000 copies of one verdict are one verdict (< min_evidence 3)"
            counts = s.tuner.events("feedback_batch")[-1]["counts"]
            assert counts["duplicate"] >= 9_999 and counts["unknown"] >= 500
            await col.wait_for(lambda c: len([d for d in c.deadletters
                                              if d.topic == s.settings.topic_feedback]) >= len(bad), 30)
            dead = [d for d in col.deadletters if d.topic == s.settings.topic_feedback]
            assert len(dead) == len(bad) and {d.code for d in dead} == {"schema-error"}
            reasons = " | ".join(d.error for d in dead)
            for why in ("invalid Feedback", "unknown category 'gore'", "verdict", "does not belong",
                        "record value is empty"):
                assert why in reasons, (why, reasons)

        # now enough distinct verdicts to move both, then more on decisions under the new thresholds
        await send_feedback(s, verdicts(c0[1:], "mallory") + verdicts(list(rate.values()), "mallory"))
        (up_c,) = await poll(lambda: s.events("fb-ceiling"), 60, "the fb-ceiling change")
        (up_r,) = await poll(lambda: s.events("fb-rate"), 60, "the fb-rate change")
        ceiling = s.tuning("fb-ceiling")["ceiling"]
        assert up_c.value == ceiling and up_c.value < s.scores[s.high], "clamped at the ceiling"
        assert up_r.value == pytest.approx(s.start + 0.01), "one max_step, no more"
        await applied_by_workers(s, max(up_c.version, up_r.version))
        more_c = await decide(s, "fb-ceiling", [(f"ceil2-{i}-{run}", s.high) for i in range(4)])
        more_r = await decide(s, "fb-rate", [(f"rate2-{i}-{run}", s.high) for i in range(4)])
        assert all(d.action == "block" and fired(d) == [ceiling] for d in more_c.values())
        assert all(d.action == "block" and fired(d) == [pytest.approx(up_r.value, abs=1e-4)]
                   for d in more_r.values())
        await consumed(s, s.settings.topic_decisions)
        await send_feedback(s, [r for src in ("mallory", "eve", "trudy")
                                for r in verdicts([*more_c.values(), *more_r.values()], src)])
        await consumed(s, s.settings.topic_feedback)
        await asyncio.sleep(1.0)
        assert s.events("fb-ceiling") == [up_c], "at the ceiling: no further move"
        assert s.events("fb-rate") == [up_r], "max_changes_per_hour 1: no second move this hour"
        print(f"\nhostile: 10,000 copies + 500 unknown + {len(bad)} malformed in {took:.1f} s; "
              f"fb-ceiling {up_c.old} -> {up_c.value} (ceiling), fb-rate {up_r.old} -> {up_r.value}")


async def test_shadow_gate_rejects_a_change_that_breaks_recall(system: System):
    """Reviewers call a text false positive that the frozen labelled set calls violent. Every raise,
    down to the smallest step, would drop recall on the set below its floor, so the change is
    published rejected, with the figures, and workers keep deciding at the old threshold."""
    async with following(system) as follower:
        s, policy = system, "fb-shadow"
        ds = list((await decide(s, policy, [(f"shadow-{i}-{uuid.uuid4().hex[:4]}", s.high)
                                            for i in range(4)])).values())
        assert all(d.action == "block" and fired(d) == [s.edge_start] for d in ds)
        await consumed(s, s.settings.topic_decisions)
        await send_feedback(s, verdicts(ds, "reviewer"))
        (change,) = await poll(lambda: s.events(policy), 60, "the gated change")
        assert change.status == "rejected" and change.old == s.edge_start and change.value > change.old
        fig = change.evidence
        assert fig["shadow_old_recall"] == 1.0 and fig["shadow_new_recall"] < 0.9
        assert fig["shadow_positives"] == 20 and "recall" in change.reason
        await applied_by_workers(s, change.version)
        after = await decide(s, policy, [(sid, s.high) for sid in partition_ids("shadow-after")])
        assert all(d.thresholds_version >= change.version for d in after.values())
        assert all(d.action == "block" and fired(d) == [s.edge_start] for d in after.values()), \
            "a rejected change is not applied"
        # the same evidence, the same frozen set: the tuner does not publish the rejection again
        await consumed(s, s.settings.topic_feedback)
        await asyncio.sleep(1.0)
        assert s.events(policy) == [change]
        print(f"\nshadow: proposed {change.old} -> {change.value}, rejected: recall "
              f"{fig['shadow_old_recall']} -> {fig['shadow_new_recall']} (floor 0.9)")


async def test_pinned_threshold_does_not_move(system: System):
    """A pin from ``guard thresholds pin`` holds against feedback that would move the threshold."""
    async with following(system) as follower:
        s, policy = system, "fb-pin"
        env = {**os.environ, **s.env, "GUARD_KAFKA_BOOTSTRAP": s.bootstrap}
        cli = [sys.executable, "-m", "guard.cli"]
        out = subprocess.run(cli + ["thresholds", "pin", "--policy", policy, "--category", CATEGORY,
                                    "--by", "tester"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        (pin,) = await poll(lambda: s.events(policy), 30, "the pin event")
        assert pin.status == "pinned" and pin.value == s.start
        await poll(lambda: any(e.get("version") == pin.version
                               for e in s.tuner.events("threshold_event")), 30, "the tuner to see the pin")
        # decided under the pin, so the verdicts are fresh evidence (on decisions made before it
        # they would be stale, and move nothing pinned or not)
        deadline = time.monotonic() + 60
        while True:
            ds = list((await decide(s, policy, [(f"pin-{i}-{uuid.uuid4().hex[:4]}", s.high)
                                                for i in range(4)])).values())
            if all(d.thresholds_version >= pin.version for d in ds):
                break
            assert time.monotonic() < deadline, "the workers never applied the pin"
            await asyncio.sleep(1.0)
        await consumed(s, s.settings.topic_decisions)
        counted0, seen0 = counted_so_far(s), counted_so_far(s, "stale")  # counts over the tuner's life
        for d in ds:  # through the CLI, as a reviewer would
            out = subprocess.run(cli + ["feedback", "--decision-id", d.decision_id, "--category", CATEGORY,
                                        "--verdict", "false_positive", "--source", "cli"],
                                 env=env, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
        await consumed(s, s.settings.topic_feedback)
        await poll(lambda: counted_so_far(s, "stale") >= seen0 + 4, 30, "the tuner to take the four verdicts")
        await asyncio.sleep(1.0)
        assert s.events(policy) == [pin], "pinned: four false positives moved nothing"
        assert counted_so_far(s) >= counted0 + 4, "as fresh evidence, decided under the pin"
        show = subprocess.run(cli + ["thresholds", "show", "--policy", policy, "--json"], env=env,
                              capture_output=True, text=True, timeout=60)
        (row,) = [json.loads(line) for line in show.stdout.splitlines()]
        assert row["pinned"] and row["value"] == s.start and row["version"] == pin.version


def _samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one Prometheus series family in the text format."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            series, value = line.rsplit(" ", 1)
            out[series[len(name):]] = float(value)
    return out


async def test_an_idle_tenants_evidence_is_forgotten(system: System):
    """With ``scope: tenant`` the tuner kept evidence for every tenant it had seen, for good. A
    tenant idle past ``GUARD_TUNER_TENANT_EVIDENCE_TTL_S`` (3 s here) is forgotten, table entry
    included; its threshold is untouched. (The expiry event gives a count only: this test runs
    before the module's other tenant-scoped test, whose tenants could expire too.)"""
    s, policy = system, "fb-tenant"
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    ds = list((await decide(s, policy, [(f"tenant-{i}-{uuid.uuid4().hex[:4]}", s.high) for i in range(2)],
                            tenant=tenant)).values())
    await consumed(s, s.settings.topic_decisions)
    counted0 = counted_so_far(s)
    await send_feedback(s, verdicts(ds, "reviewer"))
    await consumed(s, s.settings.topic_feedback)
    await poll(lambda: [e for e in s.tuner.events("index_expired") if e.get("idle_tenant_keys")], 30,
               "the tenant's evidence to be forgotten")
    assert s.events(policy) == [], "min_evidence 50: nothing moved"
    assert counted_so_far(s) >= counted0 + len(ds), "the verdicts were counted for the tenant before it went idle"


async def test_tenant_scoped_tuning_moves_that_tenants_threshold_alone(system: System):
    """``scope: tenant``: one tenant's false-positive verdicts raise that tenant's own threshold;
    both workers apply it to the tenant's streams, while another tenant of the same policy is
    still judged at the policy's threshold."""
    async with following(system):
        s, policy = system, "fb-tenant-live"
        noisy, quiet = f"t-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:6]}"
        ds = list((await decide(s, policy, [(f"tl-{i}-{uuid.uuid4().hex[:4]}", s.high) for i in range(6)],
                                tenant=noisy)).values())
        assert all(d.action == "block" and fired(d) == [s.start] and d.tenant == noisy for d in ds)
        await consumed(s, s.settings.topic_decisions)
        await send_feedback(s, [r for i in range(5) for r in verdicts(ds, f"reviewer-{i}")])
        mine = lambda: [ch for ch in s.history if ch.policy == policy]  # noqa: E731
        (change,) = await poll(mine, 60, "the tenant's threshold change")
        assert ThresholdKey.of(change) == ThresholdKey(noisy, policy, CATEGORY), "the tenant's key, not the policy's"
        assert change.status == "promoted" and change.old == s.start
        assert change.value > ds[0].scores[CATEGORY]
        await applied_by_workers(s, change.version)
        after_noisy = await decide(s, policy, [(sid, s.high) for sid in partition_ids("tl-noisy")], tenant=noisy)
        after_quiet = await decide(s, policy, [(sid, s.high) for sid in partition_ids("tl-quiet")], tenant=quiet)
        assert all(d.action == "allow" and d.thresholds_version >= change.version for d in after_noisy.values())
        assert all(d.action == "block" and fired(d) == [s.start] for d in after_quiet.values())
        assert mine() == [change]


async def test_tuner_serves_metrics_and_health(system: System):
    """The tuner's /readyz, /healthz (both inputs held and read, no backlog) and /metrics, which
    count what it indexes and what became of each verdict, on the real broker."""
    s = system
    base = f"http://127.0.0.1:{s.env['GUARD_TUNER_WEB_PORT']}"
    async with aiohttp.ClientSession() as http:
        async def metrics() -> str:
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                return await r.text()

        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200
        before = await metrics()
        indexed0 = _samples(before, "guard_tuner_decisions_indexed_total").get("", 0.0)
        unknown0 = _samples(before, "guard_tuner_verdicts_total").get('{result="unknown"}', 0.0)

        ds = list((await decide(s, "fb-live", [(sid, s.low) for sid in partition_ids("http")])).values())
        await consumed(s, s.settings.topic_decisions)
        ghost = Feedback(decision_id="no-such-stream:0", stream_id="no-such-stream", category=CATEGORY,
                         verdict="false_positive", source="http-test", ts_ms=int(time.time() * 1000))
        await send_feedback(s, [encode(ghost)])
        await consumed(s, s.settings.topic_feedback)

        async def counted() -> str | None:
            text = await metrics()
            got = _samples(text, "guard_tuner_verdicts_total").get('{result="unknown"}', 0.0)
            return text if got >= unknown0 + 1 else None

        deadline = time.monotonic() + 30
        while (text := await counted()) is None:
            assert time.monotonic() < deadline, "the unknown verdict was never counted"
            await asyncio.sleep(0.5)
        assert _samples(text, "guard_tuner_decisions_indexed_total")[""] >= indexed0 + len(ds)
        # the gauge shows the version the tuner works from, as its last batch logged it
        assert _samples(text, "guard_tuner_thresholds_version")[""] == \
            s.tuner.events("feedback_batch")[-1]["thresholds_version"]
        assert set(_samples(text, "guard_tuner_feedback_partition_lag")) == {
            f'{{partition="{p}"}}' for p in range(PARTITIONS)}

        deadline = time.monotonic() + 30
        while True:  # the watch looks every 5 s
            async with http.get(f"{base}/healthz") as r:
                body = await r.json()
            topics_ = body["topics"]
            if body["status"] == "ok" and not any(t["backlogs"] for t in topics_.values()):
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(1.0)
        assert r.status == 200
        assert {t: v["assigned"] for t, v in topics_.items()} == {
            s.settings.topic_feedback: list(range(PARTITIONS)), s.settings.topic_decisions: list(range(PARTITIONS))}
