"""``guard moderate``: stream a text through the same pipeline, in-process, without Kafka.

For people who are not on Kafka and for quick checks. The text is cut into chunks of N characters
and fed as one stream; the released text is printed as it is released (or one decision per line as
JSON). The same pipeline is the Python API ``Pipeline.moderate`` over an async iterator of chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from guard import assemble
from guard.logging import configure
from guard.messages import Chunk, encode
from guard.policy.load import PolicySet, default_policy_dir


async def _chunks(text: str, size: int, policy: str | None, prompt: str | None) -> AsyncIterator[Chunk]:
    pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    for i, piece in enumerate(pieces):
        yield Chunk(stream_id="cli", seq=i, text=piece, final=i == len(pieces) - 1, policy=policy,
                    prompt=prompt if i == 0 else None)


async def run(text: str, *, policy: str | None, chunk_chars: int, triton_url: str | None,
              as_json: bool, policy_dir: Path, prompt: str | None) -> int:
    async with assemble.pipeline(policy_dir, triton_url) as (pipe, _):
        last = None
        async for d in pipe.moderate(_chunks(text, chunk_chars, policy, prompt)):
            last = d
            if as_json:
                sys.stdout.write(encode(d).decode() + "\n")
            else:
                sys.stdout.write(d.text)
                if d.action == "block":
                    sys.stdout.write(("\n" if d.text else "") + (d.replacement or "") + "\n")
            sys.stdout.flush()
        if not as_json and last is not None and last.action != "block":
            sys.stdout.write("\n")
        if last is not None and last.action == "block":
            return 3
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="guard moderate", description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", default="-", help="text file, or - for standard input")
    p.add_argument("--policy", help="policy name (default: 'default')")
    p.add_argument("--chunk-chars", type=int, default=16, help="characters per chunk (default 16)")
    p.add_argument("--triton-url", help="score on Triton at host:port instead of in-process")
    p.add_argument("--prompt", help="the prompt the answer responds to (context layer)")
    p.add_argument("--policy-dir", type=Path, default=None, help="folder of policies")
    p.add_argument("--json", action="store_true", help="print one decision per line as JSON")
    a = p.parse_args(argv)
    if a.chunk_chars < 1:
        p.error("--chunk-chars must be at least 1")
    configure(json=True, level="WARNING")
    policy_dir = a.policy_dir or default_policy_dir()
    PolicySet.load(policy_dir).select(a.policy)  # a wrong name fails before models load
    text = sys.stdin.read() if a.file == "-" else Path(a.file).read_text(encoding="utf-8")
    return asyncio.run(run(text, policy=a.policy, chunk_chars=a.chunk_chars, triton_url=a.triton_url,
                           as_json=a.json, policy_dir=policy_dir, prompt=a.prompt))
