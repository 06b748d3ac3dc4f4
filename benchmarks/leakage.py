"""Leakage and added latency versus the hold-back bound.

Leakage is harmful text released before the block: on streams made of a benign lead-in followed by a
harmful LLM output (dev split of ``../shared/data``), it counts the characters released before the
block from the start of the harmful span on — the span whose detection fired the block (a semantic
window's new text, a blocklisted phrase). ``from_labeled_start`` is the stricter count from where the
labeled harmful text begins, which includes text no layer could yet recognise as harmful. Added latency is
how long each character waits between arriving and being released, for streams cut like an LLM
server cuts them (about one token per chunk) at a fixed token rate, plus the pipeline's own compute
time per chunk. Both are measured for hold-back 0 (release everything at once), the default and a
large bound, side by side in one run, through the same in-process pipeline the worker runs.

    python -m benchmarks.leakage --out benchmarks/results/pii.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from guard.assemble import fast_scanners, semantic_detector
from guard.messages import Chunk
from guard.models.tokenizer import WindowTokenizer
from guard.pipeline import Pipeline
from guard.policy.load import PolicySet, default_policy_dir, load_policy

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HARM = ("hate", "harassment", "violence", "self_harm", "sexual", "sexual_minors", "dangerous")
OUTPUT_SOURCES = ("jbb_responses", "xstest_completions")
_TOKEN = re.compile(r"\S+\s*|\s+")


def rows(name: str) -> list[dict]:
    with (DATA / f"{name}.jsonl").open() as f:
        return [r for r in map(json.loads, f) if r["split"] == "dev"]


def harmful_streams(n: int, rng: random.Random) -> list[tuple[str, int]]:
    """(text, index where the harmful part begins): benign lead-in + harmful model output."""
    leads = [r["text"] for r in rows("alpaca_eval_outputs") if 80 < len(r["text"]) < 600]
    harmful = [r["text"] for src in OUTPUT_SOURCES for r in rows(src)
               if any(r["labels"].get(c) == 1 for c in HARM) and len(r["text"]) > 60]
    rng.shuffle(harmful)
    out = []
    for text in harmful[:n]:
        lead = rng.choice(leads).strip() + "\n\n"
        out.append((lead + text[:1500], len(lead)))
    return out


def benign_streams(n: int, rng: random.Random) -> list[str]:
    texts = [r["text"][:1500] for r in rows("alpaca_eval_outputs") if len(r["text"]) > 200]
    rng.shuffle(texts)
    return texts[:n]


def token_chunks(text: str, sid: str) -> list[Chunk]:
    pieces = _TOKEN.findall(text) or [""]
    return [Chunk(stream_id=sid, seq=i, text=p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]


async def run_stream(pipe: Pipeline, chunks: list[Chunk]
                     ) -> tuple[list[tuple[int, int, float]], int | None, int | None]:
    """Per chunk: (chars arrived so far, watermark after, compute seconds); index of the block;
    where the span that fired the block starts."""
    state, trace, block, flagged = None, [], None, None
    arrived = 0
    for i, c in enumerate(chunks):
        arrived += len(c.text)
        t0 = time.perf_counter()
        (out,) = await pipe.process([(state, c)])
        dt = time.perf_counter() - t0
        state = out.state
        d = out.decisions[0]
        trace.append((arrived, d.released_offset, dt))
        if d.action == "block" and block is None:
            block = i
            starts = [e.start for e in d.evidence if e.action == "block"]
            flagged = min(starts) if starts else None
            break
    return trace, block, flagged


def char_delays_ms(trace: list[tuple[int, int, float]], chunk_interval_ms: float) -> list[float]:
    """Each character's wait: chunks between its arrival and its release, plus compute time."""
    delays: list[float] = []
    arrived_at: list[int] = []  # chunk index at which each char arrived
    released = 0
    for i, (arrived, watermark, dt) in enumerate(trace):
        arrived_at += [i] * (arrived - len(arrived_at))
        for pos in range(released, min(watermark, len(arrived_at))):
            delays.append((i - arrived_at[pos]) * chunk_interval_ms + dt * 1000.0)
        released = max(released, watermark)
    return delays


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return float(xs[min(len(xs) - 1, round(q * (len(xs) - 1)))])


async def measure(hold: int, streams: list[tuple[str, int]], benign: list[str], det, tpm: float) -> dict:
    base = load_policy(default_policy_dir() / "default.yaml")
    spec = base.model_copy(update={"max_hold_back_chars": hold})
    ps = PolicySet({"default": spec})
    pipe = Pipeline(policies=lambda: ps, scanners=fast_scanners(default_policy_dir()), semantic=det,
                    tokenizer=WindowTokenizer.from_file())
    leaks, from_label, blocked = [], [], 0
    for k, (text, h) in enumerate(streams):
        trace, block, flagged = await run_stream(pipe, token_chunks(text, f"h{k}"))
        if block is not None:
            blocked += 1
            released = trace[block][1]
            # the harmful span: where the span that fired the block begins
            leaks.append(max(0, released - (flagged if flagged is not None else h)))
            # stricter: everything after the labeled harmful text began (the lead-in is benign)
            from_label.append(max(0, released - h))
    delays: list[float] = []
    compute: list[float] = []
    interval = 60_000.0 / tpm
    for k, text in enumerate(benign):
        trace, _, _ = await run_stream(pipe, token_chunks(text, f"b{k}"))
        delays += char_delays_ms(trace, interval)
        compute += [dt * 1000.0 for _, _, dt in trace]
    return {
        "max_hold_back_chars": hold,
        "harmful_streams": len(streams),
        "blocked": blocked,
        "median_chars": pct(leaks, 0.5),
        "p95_chars": pct(leaks, 0.95),
        "mean_chars": round(statistics.fmean(leaks), 2) if leaks else 0.0,
        "from_labeled_start": {"median_chars": pct(from_label, 0.5), "p95_chars": pct(from_label, 0.95)},
        "added_latency_ms_p50": round(pct(delays, 0.5), 2),
        "added_latency_ms_p95": round(pct(delays, 0.95), 2),
        "compute_ms_per_chunk_p50": round(pct(compute, 0.5), 3),
        "tokens_per_minute": tpm,
    }


async def main_async(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    streams = harmful_streams(args.streams, rng)
    benign = benign_streams(args.benign, rng)
    out: dict = {}
    async with semantic_detector(args.triton_url) as det:
        for hold in args.hold_back:
            out[str(hold)] = await measure(hold, streams, benign, det, args.tokens_per_s * 60)
            print(json.dumps(out[str(hold)]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pii.json")
    p.add_argument("--streams", type=int, default=120, help="harmful streams")
    p.add_argument("--benign", type=int, default=30, help="benign streams for latency")
    p.add_argument("--hold-back", type=int, nargs="+", default=[0, 256, 2048])
    p.add_argument("--tokens-per-s", type=float, default=40.0)
    p.add_argument("--triton-url")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    leakage = asyncio.run(main_async(args))
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=REPO).stdout.strip()
    existing["leakage"] = leakage
    existing["leakage_meta"] = {"command": "python -m benchmarks.leakage " + " ".join(argv or sys.argv[1:]),
                                "git_sha": sha, "default_hold_back": 256,
                                "detector": args.triton_url or "in-process"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
