"""What one PII scan costs on the text a stream holds (about 600 characters: unreleased text plus
left context), per script, for two checkouts side by side (alternating, each in its own process).

Text that is not ASCII is searched for the digits, dashes and spaces the layer reads as ASCII
(``guard.detectors.pii._NUMERIC_ASCII``) before anything else; this shows what that costs where
there are none, and where there are.

    python -m benchmarks.pii_scan_cost --trees OLD_CHECKOUT . --out benchmarks/results/pii-scan-cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.machine import describe

ROUNDS = 3

_PROBE = r"""
import json, time
from guard.detectors.pii import PiiScanner
s = PiiScanner()
texts = {
    "english": ("The meeting is at the town hall; please confirm as soon as you can, and bring the forms. " * 8)[:600],
    "french": ("La réunion est prévue à l'hôtel de ville ; merci de confirmer votre présence dès que possible. " * 8)[:600],
    "chinese": ("联系方式：请在工作日拨打客服热线，我们会尽快回复您的问题。订单已经发货，预计三天内送达。" * 12)[:600],
    "typographic numbers": ("Call 415\u2011555\u20112671 or +44\u202f20\u202f7946\u202f0958 between 9\u201317 h. " * 12)[:600],
}
out = {}
for name, t in texts.items():
    for _ in range(200):
        s.scan(t, False)
    t0 = time.perf_counter()
    for i in range(2000):
        s.scan(t[: 400 + i % 200], False)
    out[name] = (time.perf_counter() - t0) / 2000
print(json.dumps(out))
"""


def probe(tree: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    res = subprocess.run([sys.executable, "-c", _PROBE], cwd=tree, env=env, check=True, capture_output=True,
                         text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def git_sha(tree: Path) -> str:
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=tree, check=True,
                          capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs=2, type=Path, required=True, metavar=("BASE", "NEW"))
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    for _ in range(args.rounds):
        for name, tree in zip(("base", "new"), args.trees, strict=True):
            runs[name].append(probe(tree.resolve()))
    texts = list(runs["new"][0])
    med = {name: {t: statistics.median(r[t] for r in rs) for t in texts} for name, rs in runs.items()}
    result: dict[str, Any] = {
        "command": "python -m benchmarks.pii_scan_cost " + " ".join(sys.argv[1:] if argv is None else argv),
        "commits": {"base": git_sha(args.trees[0]), "new": git_sha(args.trees[1])}, "rounds": args.rounds,
        "microseconds_per_scan": {n: {t: round(v * 1e6, 1) for t, v in m.items()} for n, m in med.items()},
        "ratio_new_over_base": {t: round(med["new"][t] / med["base"][t], 3) for t in texts},
        "machine": describe(),
    }
    for t in texts:
        print(f"{t:20} base {med['base'][t] * 1e6:7.1f} us  new {med['new'][t] * 1e6:7.1f} us  "
              f"ratio {result['ratio_new_over_base'][t]}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
