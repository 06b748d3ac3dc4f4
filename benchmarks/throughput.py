"""Semantic-layer throughput: windows/s at a fixed window length, through Triton and in-process.

Closed-loop load: ``--concurrency`` workers each send a call, wait for the answer, send the next.
Scenarios (each ``--seconds`` long after a warm-up):

- ``triton-per-window``: every call is one window (one gRPC request); Triton's dynamic batcher
  forms the batches — what many concurrent streams look like.
- ``triton-batch``: every call is ``--batch`` windows in one request (client-side micro-batching,
  as a Faust agent with ``stream.take`` would do).
- ``local``: ``LocalDetector`` in this process, calls of ``--batch`` windows.

``--encoder-instances 1x2,2x1`` repeats the Triton scenarios, in the same run, for each layout of
the encoder's CPU cores: model instances x ONNX Runtime threads per instance (the committed
config first, then copies of the repository with only those two settings changed).

Client and server share the machine's cores, as they would in a one-box deployment; the load
average is recorded because the numbers mean little on a busy box.

    python -m benchmarks.throughput --out benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import describe
from guard.detectors.semantic import LocalDetector, TritonDetector
from guard.models import paths, repository
from guard.types import Window

Call = Callable[[], Awaitable[int]]

#: distinct windows a run cycles through; no call may ask for more
WINDOW_POOL = 256


def make_windows(n: int, tokens: int, seed: int = 0) -> list[Window]:
    """Windows of ``tokens`` ids in total ([CLS]/[SEP] included) drawn from ordinary word pieces."""
    rng = np.random.default_rng(seed)
    return [Window("bench", 0, 0, "", rng.integers(2000, 29000, tokens - 2).astype(np.int64)) for _ in range(n)]


async def closed_loop(call: Call, concurrency: int, seconds: float, warmup_s: float) -> dict[str, float]:
    """Run ``concurrency`` workers for warm-up + ``seconds``; count only the measured part.

    A call that straddles an edge of the measured span counts for the share of its duration
    inside it: counting whole calls by their start added the time of calls in flight at the
    warm-up's end without their windows (about one call's duration over ``seconds`` too slow).
    """
    calls: list[tuple[float, float, int]] = []  # start, end, windows
    t_measure = time.perf_counter() + warmup_s
    t_end = t_measure + seconds

    async def worker() -> None:
        while (start := time.perf_counter()) < t_end:
            n = await call()
            calls.append((start, time.perf_counter(), n))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = sum(n * max(0.0, min(e, t_end) - max(s, t_measure)) / max(e - s, 1e-9) for s, e, n in calls)
    lat = np.array([e - s for s, e, _ in calls if s >= t_measure]) * 1e3
    return {"windows_per_s": round(done / seconds, 1), "calls": len(lat),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def layout_repo(src: Path, dst: Path, instances: int, threads: int) -> Path:
    """A copy of the Triton repository ``src`` whose encoder runs ``instances`` x ``threads``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    shutil.copytree(src, dst, symlinks=True)
    cfg_path = dst / repository.ENCODER_MODEL / "config.pbtxt"
    cfg = text_format.Parse(cfg_path.read_text(), mc.ModelConfig())
    cfg.instance_group[0].count = instances
    cfg.parameters["intra_op_threads"].string_value = str(threads)
    cfg_path.write_text(text_format.MessageToString(cfg))
    return dst


def committed_layout(repo: Path) -> str:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = text_format.Parse((repo / repository.ENCODER_MODEL / "config.pbtxt").read_text(), mc.ModelConfig())
    return f"{cfg.instance_group[0].count}x{cfg.parameters['intra_op_threads'].string_value}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    windows = make_windows(WINDOW_POOL, args.tokens)
    heads = paths.triton_repo("cpu") / repository.HEADS_MODEL / "1" / repository.HEADS_FILE
    results: list[dict[str, Any]] = []

    def cycle(size: int) -> Callable[[], Sequence[Window]]:
        i = 0
        ring = windows * 2  # a call that runs past the end wraps to the start

        def nxt() -> Sequence[Window]:
            nonlocal i
            i = (i + size) % len(windows)
            return ring[i:i + size]
        return nxt

    if "local" in args.scenarios:
        det = LocalDetector.from_build_dir(heads_path=heads)
        try:
            nxt = cycle(args.batch)

            async def local_call() -> int:
                return len(await det.score(nxt()))
            r = await closed_loop(local_call, 1, args.seconds, args.warmup)
            results.append({"scenario": "local", "concurrency": 1, "batch": args.batch, **r})
            print(results[-1], flush=True)
        finally:
            det.close()

    repo = paths.triton_repo("cpu")
    committed = committed_layout(repo)
    layouts = [committed] + [lay for lay in args.encoder_instances if lay != committed]
    if args.url is not None or not any(s.startswith("triton") for s in args.scenarios):
        layouts = layouts[:1]
    with tempfile.TemporaryDirectory(prefix="guard-layouts-") as tmp:
        for layout in layouts:
            n, t = (int(v) for v in layout.split("x"))
            lrepo = repo if layout == committed else layout_repo(repo, Path(tmp) / layout, n, t)
            results += [{**r, "encoder_instances": layout, "committed": layout == committed}
                        for r in await _triton(args, cycle, lrepo)]
    return {"results": results}


async def _triton(args: argparse.Namespace, cycle: Callable[[int], Callable[[], Sequence[Window]]],
                  repo: Path) -> list[dict[str, Any]]:
    """The Triton scenarios against a server on ``repo`` (or on ``--url``)."""
    results: list[dict[str, Any]] = []
    server = None
    url = args.url
    if url is None and any(s.startswith("triton") for s in args.scenarios):
        from guard.devenv.triton import TritonServer

        server = TritonServer(repo)
        url = server.start()
    try:
        for scenario in [s for s in args.scenarios if s.startswith("triton")]:
            size = 1 if scenario == "triton-per-window" else args.batch
            mode = "per_window" if size == 1 else "batch"
            conc_list = args.concurrency if size == 1 else [max(1, c // size) for c in args.concurrency]
            for conc in conc_list:
                async with TritonDetector.connect(url, mode=mode, timeout_s=30.0) as tdet:  # type: ignore[arg-type]
                    nxt = cycle(size)

                    async def triton_call() -> int:
                        return len(await tdet.score(nxt()))
                    r = await closed_loop(triton_call, conc, args.seconds, args.warmup)
                results.append({"scenario": scenario, "concurrency": conc, "batch": size,
                                "windows_in_flight": conc * size, **r})
                print(results[-1], flush=True)
        if url is not None:
            results.append({"scenario": "triton-encoder-stats", **_encoder_stats(url)})
    finally:
        if server is not None:
            server.stop()
    return results


def _encoder_stats(url: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        (s,) = client.get_inference_statistics(repository.ENCODER_MODEL).model_stats
        inf, exe = int(s.inference_count), int(s.execution_count)
        return {"inference_count": inf, "execution_count": exe, "mean_batch": round(inf / max(exe, 1), 2)}
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=64, help="window length including [CLS]/[SEP]")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32],
                   help="windows in flight, comma-separated")
    p.add_argument("--batch", type=int, default=8, choices=range(1, WINDOW_POOL + 1), metavar=f"1..{WINDOW_POOL}",
                   help="windows per call for batch/local scenarios")
    p.add_argument("--scenarios", type=lambda s: s.split(","),
                   default=["local", "triton-per-window", "triton-batch"])
    p.add_argument("--url", help="an already running Triton (gRPC host:port); default: start one")
    p.add_argument("--encoder-instances", type=lambda s: s.split(","), default=[],
                   help="also measure these encoder layouts, INSTANCESxTHREADS comma-separated (e.g. 1x2,2x1)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = p.parse_args(argv)

    load_before = os.getloadavg()
    report = asyncio.run(run(args))
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=paths.repo_root()).stdout.strip()
    report.update({
        "command": "python -m benchmarks.throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_sha": sha,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {**describe(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
