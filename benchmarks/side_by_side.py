"""Two checkouts measured in one run, for ratios that compare code rather than machines or moments.

Each measurement runs a probe (a short script) in a process of its own with one checkout first on
``sys.path``, alternating between the checkouts round by round (ABAB), and reads the JSON the probe
prints last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.machine import describe

T = TypeVar("T")
K = TypeVar("K")
NAMES = ("base", "new")


def run_probe(tree: Path, probe: str, *args: str) -> Any:
    """The JSON the probe printed last, run with ``tree``'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    res = subprocess.run([sys.executable, "-c", probe, *args], cwd=tree, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def commit_of(tree: Path) -> str:
    """The checkout's commit, marked ``-dirty`` where its code has changes not committed (results
    written by an earlier benchmark of the same run do not count)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tree, check=True, capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    return git("rev-parse", "--short", "HEAD") + ("-dirty" if changed else "")


def parser(doc: str, rounds: int | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--trees", nargs=2, type=Path, required=True, metavar=("BASE", "NEW"))
    if rounds is not None:
        ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--out", type=Path)
    return ap


def alternate(trees: list[Path], rounds: int, measure: Callable[[Path], T]) -> dict[str, list[T]]:
    """``measure`` of each checkout, base then new, ``rounds`` times."""
    runs: dict[str, list[T]] = {name: [] for name in NAMES}
    for _ in range(rounds):
        for name, tree in zip(NAMES, trees, strict=True):
            runs[name].append(measure(tree.resolve()))
    return runs


def command(module: str, argv: list[str] | None) -> str:
    return f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv)


def medians(runs: dict[str, list[dict[K, float]]]) -> dict[str, dict[K, float]]:
    """Per checkout, the median of each measured key over the rounds."""
    return {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}


def ratios(med: dict[str, dict[K, float]]) -> dict[K, float]:
    return {k: round(med["new"][k] / med["base"][k], 3) for k in med["new"]}


def record(module: str, argv: list[str] | None, trees: list[Path], **fields: Any) -> dict[str, Any]:
    """What a result file holds besides its figures: the command, the commits, the machine."""
    return {"command": command(module, argv), "commits": dict(zip(NAMES, map(commit_of, trees), strict=True)),
            **fields, "machine": describe()}


def write(out: Path | None, result: dict[str, Any]) -> None:
    if out:
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
