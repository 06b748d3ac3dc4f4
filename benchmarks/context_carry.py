"""What the context layer's carried risk does to a policy's decisions on the dev split.

Every dev text is cut into the stream windows the pipeline scores (``guard.windowing``, 64
tokens every 16), each window is scored once by the in-process semantic detector, and the same
scores are then combined three ways, side by side:

- ``window-only``: no carried risk (each window on its own);
- ``overlap-counted``: the rule before ``guard.context.Carry``: every earlier window's score joins
  the noisy-OR, although the three before it share most of its text;
- ``disjoint`` (``guard.context.Carry``, what the pipeline does): only windows that ended before
  the current one began join it.

A text is flagged for a category when one of its windows' effective score reaches the threshold
of the policy's semantic principle for it (the file's thresholds). Precision, recall and F1 per
such category and for "any" (over the labeled categories; one the policy does not judge
semantically, such as profanity under ``default``, counts as never flagged), and the share of harmless rows flagged in the sources without harmful
dev rows. No prompt (the dev data has none).

    python -m benchmarks.context_carry --out benchmarks/results/context-carry.json \
        --markdown benchmarks/results/context-carry.md
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import numpy as np

from benchmarks import REPO, git_sha, write_results
from benchmarks.machine import describe
from guard import evaluation as ev
from guard.context import Carry, combine
from guard.models.data import read_examples
from guard.models.features import PlanTokenizer, stream_window_objects
from guard.policy.load import default_policy_dir, load_policy
from guard.policy.schema import PolicySpec
from guard.types import CATEGORIES, Window

RULES = ("window-only", "overlap-counted", "disjoint")


def effective(rule: str, scores: np.ndarray, spans: list[tuple[int, int]], spec: PolicySpec) -> np.ndarray:
    """``[windows, C]`` effective scores of one text's windows under ``rule``."""
    out = np.empty_like(scores, dtype=np.float64)
    risk, carry = None, Carry()
    for i, (raw, (start, end)) in enumerate(zip(scores, spans, strict=True)):
        if rule == "window-only":
            out[i] = raw
        elif rule == "overlap-counted":
            out[i], risk = combine(raw, risk, None, spec.context)
        else:
            out[i], carry = carry.step(raw, start, end, None, spec.context)
    return out


def flagged(eff: np.ndarray, spec: PolicySpec) -> np.ndarray:
    """``[C]`` whether a semantic principle of ``spec`` fires on one of the windows."""
    out = np.zeros(len(CATEGORIES), bool)
    for p in spec.principles:
        if "semantic" in p.detectors and p.action != "allow":
            for c in p.categories:
                j = CATEGORIES.index(c)
                out[j] |= bool((eff[:, j] >= p.threshold).any())
    return out


async def _score(windows: list[Window], batch: int = 64) -> np.ndarray:
    det = ev.make_local_detector()
    try:
        parts = []
        for b in range(0, len(windows), batch):
            parts.append(await det.score(windows[b:b + batch]))
            if b % (batch * 50) == 0:
                print(f"  scored {b + len(parts[-1])}/{len(windows)} windows", file=sys.stderr, flush=True)
        return np.concatenate(parts) if parts else np.zeros((0, len(CATEGORIES)), np.float32)
    finally:
        det.close()


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Context carry on the dev split, policy `{res['policy']}`", "",
             f"`{res['command']}` — git {res['git']}, {res['texts']} dev texts, {res['windows']} windows. "
             "Precision / recall / F1 of what the policy's semantic principles flag (a text is flagged "
             "when one of its windows' effective score reaches the threshold).", "",
             "| category | " + " | ".join(RULES) + " |", "|---|" + "---|" * len(RULES)]
    first = res["rules"][RULES[0]]["report"]
    for c in ["any"] + [c for c in res["categories"] if c in first["categories"]]:
        cells = []
        for r in RULES:
            rep = res["rules"][r]["report"]
            b = rep["any"] if c == "any" else rep["categories"][c]
            cells.append("–" if b["f1"] is None else f"{b['precision']:.3f} / {b['recall']:.3f} / {b['f1']:.3f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    srcs = res["rules"][RULES[0]]["by_source"]
    benign = sorted(s for s, row in srcs.items() if row.get("any", {}).get("positives") == 0)
    lines += ["", "Harmless rows flagged (sources with no harmful dev row):", "",
              "| source | rows | " + " | ".join(RULES) + " |", "|---|---|" + "---|" * len(RULES)]
    for s in benign:
        a = [res["rules"][r]["by_source"][s]["any"] for r in RULES]
        lines.append(f"| {s} | {a[0]['n']} | " + " | ".join(f"{100 * x['flagged_negatives']:.1f} %" for x in a) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--split", default="dev")
    p.add_argument("--policy", default="default", help="a policy name under policies/")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "context-carry.json"))
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)

    spec = load_policy(default_policy_dir() / f"{args.policy}.yaml")
    data = read_examples([args.data], splits=[args.split])
    if args.limit:
        data = data.subset(np.arange(len(data)) < args.limit)
    tok = PlanTokenizer()
    per_text = [stream_window_objects(t, f"t{i}", tok, spec.window.tokens, spec.window.stride)
                for i, t in enumerate(data.texts)]
    windows = [w for ws in per_text for w in ws]
    scores = asyncio.run(_score(windows))
    at = np.cumsum([0] + [len(ws) for ws in per_text])
    rules: dict[str, Any] = {}
    for rule in RULES:
        flags = np.stack([flagged(effective(rule, scores[at[i]:at[i + 1]], [(w.start, w.end) for w in ws], spec), spec)
                          for i, ws in enumerate(per_text)]).astype(np.float64)
        half = [0.5] * len(CATEGORIES)
        rules[rule] = {"report": ev.evaluate_scores(flags, data.y, data.known, half),
                       "by_source": ev.by_source(flags, data.y, data.known, data.sources, thresholds=half)}
    res = {"command": "python -m benchmarks.context_carry " + " ".join(argv if argv is not None else sys.argv[1:]),
           "git": git_sha(), "machine": describe(), "policy": spec.policy, "texts": len(data),
           "categories": [c for p in spec.principles if "semantic" in p.detectors for c in p.categories],
           "windows": len(windows), "rules": rules}
    write_results(res, args.out, markdown(res), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
