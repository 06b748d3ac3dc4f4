"""Benchmarks: each writes machine-readable results under ``benchmarks/results/`` with the command
and the commit that made them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def git_sha() -> str:
    """The short commit results are stamped with ("unknown" outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(res: dict[str, Any], out: str | Path, md: str, markdown_path: str | Path | None) -> None:
    """The JSON to ``out``, the Markdown to ``markdown_path`` (when given) and to stdout."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    if markdown_path:
        Path(markdown_path).write_text(md)
    print(md)
