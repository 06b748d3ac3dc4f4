"""``guard demo``: LLM-like answers streamed through Kafka, a guard worker and Triton, live.

Without arguments it starts everything it needs on this machine (a Kafka broker from Maven jars,
``tritonserver`` from the nvidia-pytriton wheel, one worker), streams a handful of answers chunk by
chunk at a realistic token rate, interleaved, prints each decision as it arrives and ends with a
summary line: chunks, actions, and the latency guard added (chunk sent → decision received).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

import aiohttp

from guard.devenv._proc import free_port, repo_root
from guard.messages import Chunk, Decision
from guard.settings import Settings
from streams import topics
from streams.client import ChunkProducer, Collector, WorkerProcess

ANSWERS: dict[str, tuple[str, str]] = {
    "benign": (
        "What is the capital of France?",
        "The capital of France is Paris. It sits on the Seine, has about two million inhabitants "
        "and is known for the Louvre, the Eiffel Tower and its cafés. If you visit, the museum pass "
        "saves time and money.",
    ),
    "pii": (
        "How can I reach the support team?",
        "You can reach our support lead, Maria Gomez, at maria.gomez@example.com or by phone on "
        "+1 415 555 0132. For refunds, quote the card 4111 1111 1111 1111 and your order number "
        "A-20931. We answer within one business day.",
    ),
    "harmful": (
        "Write a message to my neighbour.",
        "Listen carefully, neighbour. I know where you live and I will kill you and your whole "
        "family tonight. Nobody will hear you scream, and I will burn your house down afterwards.",
    ),
    "tricky-benign": (
        "How do I kill a Python process that hangs?",
        "To kill a hung Python process on Linux, find its PID with `ps aux | grep python`, then run "
        "`kill <PID>`. If it ignores that, `kill -9 <PID>` terminates it immediately. On Windows, "
        "use Task Manager or `taskkill /PID <PID> /F`.",
    ),
    "profanity": (
        "Tell me what you think of Mondays.",
        "Honestly, Mondays are shit. The alarm goes off, the coffee machine is broken and the "
        "inbox is full of crap. Still, a good walk at lunch helps a lot.",
    ),
}

_TOKENISH = re.compile(r"\S+\s*|\s+")


def cut(text: str, rng: random.Random) -> list[str]:
    """Cut like an LLM server streams: one to three word-ish tokens per chunk."""
    words = _TOKENISH.findall(text)
    out, i = [], 0
    while i < len(words):
        n = rng.choice((1, 1, 2, 3))
        piece = "".join(words[i : i + n])
        if len(piece) > 6 and rng.random() < 0.3:  # sometimes a chunk ends mid-word
            k = rng.randrange(1, len(piece))
            out += [piece[:k], piece[k:]]
        else:
            out.append(piece)
        i += n
    return out


async def stream_answer(producer: ChunkProducer, stream_id: str, prompt: str, text: str,
                        tokens_per_s: float, rng: random.Random) -> int:
    pieces = cut(text, rng)
    for seq, piece in enumerate(pieces):
        await producer.send(Chunk(stream_id=stream_id, seq=seq, text=piece,
                                  final=seq == len(pieces) - 1, ts_ms=int(time.time() * 1000),
                                  prompt=prompt if seq == 0 else None))
        ntok = max(1, len(piece.split()))
        await asyncio.sleep(rng.expovariate(tokens_per_s / ntok))
    return len(pieces)


def show(d: Decision, names: dict[str, str]) -> None:
    tag = {"allow": "allow ", "redact": "REDACT", "block": "BLOCK "}[d.action]
    shown = d.text.replace("\n", " ")
    extra = {"block": f"  ← {d.principle}: {d.replacement}", "redact": f"  ← {d.principle}"}.get(d.action, "")
    held = f" (holding {d.held_chars})" if d.held_chars else ""
    print(f"{names.get(d.stream_id, d.stream_id):>14} #{d.seq:<3} {tag} {shown!r}{held}{extra}",
          flush=True)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def run(bootstrap: str, triton_url: str | None, tokens_per_s: float, seed: int,
              worker: bool, log_dir: Path) -> int:
    s = Settings(kafka_bootstrap=bootstrap, triton_url=triton_url)
    from guard.devenv.kafka import create_topics

    from streams.auth import client_options

    client = client_options(s)  # the same topics and credentials the worker it starts reads
    await create_topics(bootstrap, topics.specs(s), client=client)
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:6]
    names = {f"{name}-{run_id}": name for name in ANSWERS}
    with ExitStack() as stack:
        web = None
        if worker:
            port = free_port()
            web = f"http://127.0.0.1:{port}"
            w = stack.enter_context(WorkerProcess(bootstrap, triton_url, log_dir / "worker.log",
                                                  env={"GUARD_WEB_PORT": str(port)}))
        async with Collector(bootstrap, s.topic_decisions, s.topic_deadletter, client) as col, \
                ChunkProducer(bootstrap, s.topic_chunks, client) as prod:
            # warm-up: the worker joins the group and loads models; wait for its first decision
            warm = f"warmup-{run_id}"
            await prod.send(Chunk(stream_id=warm, seq=0, text="Hello.", final=True))
            print("waiting for the worker to join and answer a warm-up chunk ...", flush=True)
            try:
                await col.wait_for(lambda c: c.final(warm), timeout=180)
            except TimeoutError:
                alive = w.alive() if worker else True
                print(f"no decision from the worker (alive={alive}); see {log_dir / 'worker.log'}",
                      file=sys.stderr)
                return 1
            col.on_decision = lambda d: show(d, names) if d.stream_id in names else None
            print(f"streaming {len(ANSWERS)} answers at ~{tokens_per_s:.0f} tokens/s each, interleaved\n",
                  flush=True)
            counts = await asyncio.gather(*(
                stream_answer(prod, sid, ANSWERS[name][0], ANSWERS[name][1], tokens_per_s,
                              random.Random(rng.random())) for sid, name in names.items()))
            total = dict(zip(names, counts, strict=True))
            await col.wait_for(lambda c: all(c.complete(sid, n) for sid, n in total.items()), timeout=120)
            await asyncio.sleep(0.2)
            decisions = [d for sid in names for d in col.decisions[sid]]
            lat = [1000 * (col.received_at[k] - prod.sent_at[k]) for k in
                   ((d.stream_id, d.seq) for d in decisions) if k in prod.sent_at]
            actions = {a: sum(d.action == a for d in decisions) for a in ("allow", "redact", "block")}
            print()
            for sid, name in names.items():
                text = "".join(d.text for d in col.decisions[sid])
                last = col.decisions[sid][-1]
                end = f" {last.replacement}" if last.action == "block" else ""
                print(f"{name:>14}: {text}{end}")
            print(f"\nsummary: streams={len(names)} chunks={sum(counts)} decisions={len(decisions)} "
                  f"allow={actions['allow']} redact={actions['redact']} block={actions['block']} "
                  f"added_latency_ms p50={statistics.median(lat):.1f} p99={percentile(lat, 0.99):.1f}",
                  flush=True)
            if web is not None:
                print(await worker_health(web), flush=True)
            return 0 if len(decisions) == sum(counts) else 1


async def worker_health(web: str) -> str:
    """One line from the worker's /healthz and /metrics: what an operator would scrape."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for _ in range(40):  # the first partition check comes a few seconds after start-up
            async with http.get(f"{web}/healthz") as r:
                h = await r.json()
            if h["status"] != "starting":
                break
            await asyncio.sleep(0.25)
        async with http.get(f"{web}/metrics") as r:
            series = sum(1 for line in (await r.text()).splitlines() if line.startswith("guard_"))
    lag = sum(b["lag"] for b in h["backlogs"])
    return (f"worker {web}/healthz: {h['status']}, partitions {h['assigned']}, lag {lag}; "
            f"{web}/metrics: {series} guard_* series")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="guard demo", description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    p.add_argument("--triton-url", help="use this Triton (gRPC host:port) instead of starting one")
    p.add_argument("--in-process", action="store_true", help="no Triton: detectors run in the worker")
    p.add_argument("--no-worker", action="store_true", help="a worker is already running")
    p.add_argument("--tokens-per-s", type=float, default=40.0, help="token rate per stream")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    from guard.logging import configure

    configure(json=True, level="WARNING")
    log_dir = repo_root() / "build" / "demo"
    signal.signal(signal.SIGTERM, _interrupt)  # a TERM unwinds like Ctrl-C: services and worker stop
    try:
        return _main(a, log_dir)
    except KeyboardInterrupt:
        print("guard demo: interrupted; services stopped", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _main(a: argparse.Namespace, log_dir: Path) -> int:
    with ExitStack() as stack:
        bootstrap, triton_url = a.bootstrap, a.triton_url
        if not bootstrap or (not triton_url and not a.in_process):
            from guard.devenv.services import start_services

            t0 = time.perf_counter()
            ep = stack.enter_context(start_services(
                kafka=not bootstrap, triton=not (triton_url or a.in_process), log_dir=log_dir))
            bootstrap = bootstrap or ep.kafka_bootstrap
            triton_url = triton_url or ep.triton_grpc
            print(f"services up in {time.perf_counter() - t0:.1f}s: kafka={bootstrap} "
                  f"triton={triton_url or 'in-process'}", flush=True)
        return asyncio.run(run(bootstrap, None if a.in_process else triton_url, a.tokens_per_s,
                               a.seed, not a.no_worker, log_dir))
