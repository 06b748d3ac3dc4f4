"""Replay LLM answer streams through Kafka, guard workers and Triton at rising loads: do the latency SLOs hold?

The demo's latency line is one run of five streams. An operator sizing a deployment needs to know
how many concurrent streams a worker (and its Triton) carries before the latency users feel breaks
its objective, and what the semantic layer costs on top of the fast ones. So this harness drives the
real system the way a gateway does — an aiokafka producer sending token chunks at an LLM's pace,
a consumer reading decisions — at each load level in turn, for each policy, and measures:

* **decision latency** per chunk: chunk sent → its decision received (both Kafka hops, the batch
  wait, the pipeline);
* **release delay** per character: chunk that carried it sent → decision that released it
  received. This is what a reader of the stream waits for, hold-back included; characters a block
  withheld are counted apart (``withheld_chars``), not as delays;
* **worker time** per chunk (``Decision.latency_ms``: the pipeline call only).

Each load level is ``streams`` concurrent streams, each sending at ``--tokens-per-s``; a slot
starts its next answer as soon as one ends, for ``--duration-s``. A level passes when every chunk got
its decision and the percentiles are within the SLOs. The semantic layer's cost is reported as a
ratio of the ``default`` policy's percentiles over ``pii-only``'s at the same load, measured in the
same run (machine load changes between runs; ratios within one run are comparable).

    python -m benchmarks.slo --out benchmarks/results/slo.json

starts Kafka and Triton from the dev tools (or uses ``--bootstrap`` / ``--triton-url``) and one
worker per ``--workers`` on topics of its own, so earlier traffic never mixes in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import REPO, git_sha
from benchmarks.machine import describe
from guard.messages import Chunk
from guard.settings import Settings
from streams import topics
from streams.client import ChunkProducer, Collector, WorkerProcess
from streams.demo import ANSWERS, cut



@dataclass(frozen=True)
class Slo:
    """The objectives a load level must meet (milliseconds)."""

    decision_p99_ms: float = 250.0
    release_p95_ms: float = 1000.0


def corpus(n: int, seed: int, harmful_share: float) -> tuple[list[str], str]:
    """Answers to replay: LLM answers from the dev split (``harmful_share`` of them harmful output
    after a benign lead-in, as in ``benchmarks.leakage``), else the demo's answers."""
    from benchmarks import leakage

    rng = random.Random(seed)
    if not leakage.DATA.is_dir():
        return [text for _, text in ANSWERS.values()], "demo answers (../shared/data not found)"
    k = round(n * harmful_share)
    texts = [t for t, _ in leakage.harmful_streams(k, rng)] + leakage.benign_streams(n - k, rng)
    rng.shuffle(texts)
    return texts, f"dev split: {n - k} benign LLM answers, {k} harmful outputs after a benign lead-in"


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(float(xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]), 1)


def summary(xs: list[float]) -> dict[str, float | None]:
    return {"p50_ms": pct(xs, 0.50), "p95_ms": pct(xs, 0.95), "p99_ms": pct(xs, 0.99), "n": len(xs)}


@dataclass
class Sent:
    """What one replayed stream sent: each chunk's character range of the stream's text."""

    stream_id: str
    ranges: list[tuple[int, int]]


async def stream_one(prod: ChunkProducer, sid: str, text: str, policy: str, tokens_per_s: float,
                     rng: random.Random) -> Sent:
    pieces = cut(text, rng)
    ranges, at = [], 0
    for seq, piece in enumerate(pieces):
        await prod.send(Chunk(stream_id=sid, seq=seq, text=piece, final=seq == len(pieces) - 1,
                              ts_ms=int(time.time() * 1000), policy=policy))
        ranges.append((at, at + len(piece)))
        at += len(piece)
        await asyncio.sleep(max(1, len(piece.split())) / tokens_per_s)
    return Sent(sid, ranges)


async def replay(prod: ChunkProducer, texts: list[str], policy: str, streams: int, duration_s: float,
                 tokens_per_s: float, tag: str, seed: int) -> list[Sent]:
    """``streams`` slots, each streaming answers back to back until ``duration_s`` has passed."""
    end = time.monotonic() + duration_s
    rng = random.Random(seed)
    order = [rng.randrange(len(texts)) for _ in range(10_000)]

    async def slot(i: int) -> list[Sent]:
        out, k = [], 0
        r = random.Random(seed * 1000 + i)
        await asyncio.sleep(r.random() * 1.0)  # stagger the starts
        while time.monotonic() < end:
            text = texts[order[(i * 97 + k) % len(order)]]
            out.append(await stream_one(prod, f"{tag}-{i}-{k}", text, policy, tokens_per_s, r))
            k += 1
        return out

    return [s for per in await asyncio.gather(*(slot(i) for i in range(streams))) for s in per]


def measure(sent: list[Sent], col: Collector, prod: ChunkProducer) -> dict[str, Any]:
    """Latencies of one level from what was sent and what the collector received, and when."""
    decision_ms, worker_ms, release_ms = [], [], []
    chunks = decided = withheld = 0
    for s in sent:
        ds = {d.seq: d for d in col.decisions.get(s.stream_id, ())}
        chunks += len(s.ranges)
        decided += sum(1 for seq in range(len(s.ranges)) if seq in ds)
        released = carrier = 0
        for seq in range(len(s.ranges)):
            d = ds.get(seq)
            if d is None:
                continue
            got = col.received_at[(s.stream_id, seq)]
            decision_ms.append(1000 * (got - prod.sent_at[(s.stream_id, seq)]))
            worker_ms.append(d.latency_ms)
            for offset in range(released, d.released_offset):
                while s.ranges[carrier][1] <= offset:
                    carrier += 1
                release_ms.append(1000 * (got - prod.sent_at[(s.stream_id, carrier)]))
            released = max(released, d.released_offset)
        withheld += s.ranges[-1][1] - released if s.ranges else 0
    return {"streams_replayed": len(sent), "chunks": chunks, "decided": decided,
            "withheld_chars": withheld, "decision": summary(decision_ms), "release": summary(release_ms),
            "worker": summary(worker_ms)}


def verdict(m: dict[str, Any], slo: Slo) -> dict[str, bool]:
    def within(x: float | None, limit: float) -> bool:
        return x is not None and x <= limit

    return {"every_chunk_decided": m["decided"] == m["chunks"],
            "decision_p99": within(m["decision"]["p99_ms"], slo.decision_p99_ms),
            "release_p95": within(m["release"]["p95_ms"], slo.release_p95_ms)}


async def run_levels(bootstrap: str, settings: Settings, texts: list[str], policies: list[str],
                     loads: list[int], duration_s: float, tokens_per_s: float, slo: Slo, seed: int,
                     drain_s: float = 120.0) -> list[dict[str, Any]]:
    results = []
    async with Collector(bootstrap, settings.topic_decisions, settings.topic_deadletter) as col, \
            ChunkProducer(bootstrap, settings.topic_chunks) as prod:
        warm = f"warmup-{uuid.uuid4().hex[:6]}"
        await prod.send(Chunk(stream_id=warm, seq=0, text="Hello there.", final=True))
        await col.wait_for(lambda c: c.final(warm), timeout=240)
        for streams in loads:
            for policy in policies:
                tag = f"{policy}-{streams}-{uuid.uuid4().hex[:4]}"
                t0 = time.monotonic()
                sent = await replay(prod, texts, policy, streams, duration_s, tokens_per_s, tag, seed)
                await prod.flush()
                # each slot finishes the answer it is on after duration_s: the rate is over the
                # time chunks were sent, not duration_s (which overstated it by about 15 %)
                send_s = time.monotonic() - t0
                total = {s.stream_id: len(s.ranges) for s in sent}
                try:
                    await col.wait_for(lambda c: all(c.complete(k, n) for k, n in total.items()),
                                       timeout=drain_s)
                except TimeoutError:
                    pass  # reported: decided < chunks, and the level fails
                m = measure(sent, col, prod)
                m.update(policy=policy, streams=streams, wall_s=round(time.monotonic() - t0, 1),
                         send_s=round(send_s, 1), chunks_per_s=round(m["chunks"] / send_s, 1),
                         deadletters=sum(1 for d in col.deadletters if d.topic == settings.topic_chunks))
                m["slo"] = verdict(m, slo)
                m["within_slo"] = all(m["slo"].values())
                results.append(m)
                print(json.dumps({k: m[k] for k in ("policy", "streams", "chunks", "decided", "within_slo")}
                                 | {"decision_p99_ms": m["decision"]["p99_ms"],
                                    "release_p95_ms": m["release"]["p95_ms"]}), flush=True)
    return results


def ratios(results: list[dict[str, Any]], policy: str, baseline: str) -> list[dict[str, Any]]:
    """``policy``'s percentiles over ``baseline``'s at each load both ran (same run, same machine)."""
    by = {(r["policy"], r["streams"]): r for r in results}
    out = []
    for (p, n), r in sorted(by.items(), key=lambda kv: kv[0][1]):
        b = by.get((baseline, n))
        if p != policy or b is None:
            continue
        row: dict[str, Any] = {"streams": n}
        for metric in ("decision", "release", "worker"):
            for q in ("p50_ms", "p95_ms", "p99_ms"):
                x, y = r[metric][q], b[metric][q]
                row[f"{metric}_{q[:-3]}"] = round(x / y, 2) if x is not None and y else None
        out.append(row)
    return out


def within_slo_up_to(results: list[dict[str, Any]], policy: str) -> int:
    """The largest load the policy held with every load below it held too (0 when the first
    failed): the best passing load alone could name 12 after 4 and 8 had failed."""
    best = 0
    for r in sorted((r for r in results if r["policy"] == policy), key=lambda r: r["streams"]):
        if not r["within_slo"]:
            break
        best = r["streams"]
    return best


def report(results: list[dict[str, Any]], slo: Slo, policies: list[str]) -> dict[str, Any]:
    best = {p: within_slo_up_to(results, p) for p in policies}
    out: dict[str, Any] = {"slo": asdict(slo), "levels": results, "max_streams_within_slo": best}
    if len(policies) > 1:
        out["ratios"] = {"policy": policies[0], "over": policies[1],
                         "by_load": ratios(results, policies[0], policies[1])}
    return out


def main(argv: list[str] | None = None) -> int:
    import sys

    p = argparse.ArgumentParser(prog="python -m benchmarks.slo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "slo.json")
    p.add_argument("--loads", default="4,12,24", help="concurrent streams per level, comma-separated")
    p.add_argument("--policies", default="default,pii-only",
                   help="policies to replay at each load; the first over the second gives the ratios")
    p.add_argument("--duration-s", type=float, default=30.0, help="how long each level sends")
    p.add_argument("--tokens-per-s", type=float, default=40.0, help="token rate of each stream")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--answers", type=int, default=200, help="distinct answers to replay")
    p.add_argument("--harmful-share", type=float, default=0.2)
    p.add_argument("--decision-p99-ms", type=float, default=Slo.decision_p99_ms)
    p.add_argument("--release-p95-ms", type=float, default=Slo.release_p95_ms)
    p.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    p.add_argument("--triton-url", help="use this Triton (gRPC host:port) instead of starting one")
    p.add_argument("--seed", type=int, default=11)
    a = p.parse_args(argv)
    from guard.devenv._proc import repo_root
    from guard.devenv.kafka import create_topics
    from guard.logging import configure

    configure(json=True, level="WARNING")
    loads = [int(x) for x in a.loads.split(",")]
    policies = a.policies.split(",")
    slo = Slo(a.decision_p99_ms, a.release_p95_ms)
    texts, source = corpus(a.answers, a.seed, a.harmful_share)
    log_dir = repo_root() / "build" / "slo"
    with ExitStack() as stack:
        bootstrap, triton_url = a.bootstrap, a.triton_url
        if not bootstrap or not triton_url:
            from guard.devenv.services import start_services

            ep = stack.enter_context(start_services(kafka=not bootstrap, triton=not triton_url, log_dir=log_dir))
            bootstrap, triton_url = bootstrap or ep.kafka_bootstrap, triton_url or ep.triton_grpc
        run_id = uuid.uuid4().hex[:6]
        names = {f"topic_{t}": f"slo-{run_id}.{t}" for t in
                 ("chunks", "decisions", "deadletter", "feedback", "thresholds")}
        settings = Settings(kafka_bootstrap=bootstrap, triton_url=triton_url, **names)
        asyncio.run(create_topics(bootstrap, topics.specs(settings)))
        env = {"GUARD_APP_ID": f"slo-{run_id}", "GUARD_WEB_PORT": "0", "GUARD_LOG_LEVEL": "WARNING",
               **{f"GUARD_{k.upper()}": v for k, v in names.items()}}
        for i in range(a.workers):
            stack.enter_context(WorkerProcess(bootstrap, triton_url, log_dir / f"worker-{run_id}-{i}.log", env))
        results = asyncio.run(run_levels(bootstrap, settings, texts, policies, loads, a.duration_s,
                                         a.tokens_per_s, slo, a.seed))
    out = report(results, slo, policies)
    out.update(command="python -m benchmarks.slo " + " ".join(argv if argv is not None else sys.argv[1:]),
               git_sha=git_sha(), machine=describe(), corpus=source,
               config={"loads": loads, "policies": policies, "duration_s": a.duration_s,
                       "tokens_per_s": a.tokens_per_s, "workers": a.workers, "answers": len(texts),
                       "seed": a.seed, "partitions": settings.partitions,
                       "batch_max": settings.batch_max, "batch_within_s": settings.batch_within_s})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"max streams within the SLOs: {out['max_streams_within_slo']} -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
