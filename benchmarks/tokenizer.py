"""What the tokenizer's options cost the worker: client tokenization with each setting.

The worker tokenizes every chunk before any window reaches the encoder, and since heads v7 it
spells the emoji the vocabulary lacks as their names (``guard.models.tokenizer``). Text without
emoji pays one regex scan; text with emoji pays a Python loop per emoji. Since heads v9 it also
skips tweet-platform artefacts, one more regex scan per text. This measures the settings side by
side in one run, on the dev texts as they are and on the dev texts that hold an emoji, and puts
them beside the encoder's cost per character so the ratio that matters is visible.

    python -m benchmarks.tokenizer --out benchmarks/results/tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import REPO, git_sha
from benchmarks.machine import describe
from guard.models.data import read_examples
from guard.models.tokenizer import WindowTokenizer, emoji_table


def chars_per_second(tok: WindowTokenizer, texts: Sequence[str], seconds: float, batch: int = 64) -> float:
    """Characters tokenized per second by ``encode_batch``, over whole passes of ``texts``."""
    chars, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, len(texts), batch):
            part = texts[i:i + batch]
            tok.encode_batch(part)
            chars += sum(map(len, part))
    return chars / (time.perf_counter() - t0)


def run(texts: Sequence[str], seconds: float) -> dict[str, Any]:
    table = emoji_table()
    with_emoji = [t for t in texts if table.starts.search(t)]
    settings = {"plain": WindowTokenizer.from_file(emoji_names=False, platform_artefacts=False),
                "names": WindowTokenizer.from_file(emoji_names=True, platform_artefacts=False),
                "names+artefacts": WindowTokenizer.from_file(emoji_names=True, platform_artefacts=True)}
    out: dict[str, Any] = {}
    for corpus, rows in (("dev", list(texts)), ("dev_with_emoji", with_emoji)):
        speed = {name: chars_per_second(tok, rows, seconds) for name, tok in settings.items()}
        out[corpus] = {"texts": len(rows), "chars": sum(map(len, rows)),
                       "chars_per_s": {k: round(v) for k, v in speed.items()},
                       "names_over_plain": round(speed["names"] / speed["plain"], 3),
                       "artefacts_over_names": round(speed["names+artefacts"] / speed["names"], 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--seconds", type=float, default=5.0, help="per setting and corpus")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    texts = read_examples([args.data], splits=["dev"]).texts
    result = {"command": "python -m benchmarks.tokenizer" + (f" --out {args.out}" if args.out else ""),
              "git_sha": git_sha(), "machine": describe(), "results": run(texts, args.seconds)}
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
