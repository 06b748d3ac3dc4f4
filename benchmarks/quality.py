"""Detection quality side by side on the dev split: guard's layers vs a peer baseline.

Systems, all scored on the same dev rows (``split == "dev"`` of the shared data), as streams are:

- ``guard-semantic``: the in-process semantic detector (int8 MiniLM + committed heads) over the
  stream windows of each text (``guard.windowing``, 64 tokens every 16), max over windows;
- ``guard-lexical``: the lexical layer alone (``guard.detectors.lexical.LexicalScanner`` and the
  blocklists in ``policies/blocklists/``), score per category = max finding score, else 0;
- ``guard-combined``: per category the max of the two (what the pipeline's policy sees);
- ``alt-profanity-check``: its ``predict_prob`` as the score of every category (a peer baseline:
  a linear SVM on bag-of-words, trained for offensive language).

AUPRC per category and for ``any`` (rules: ``guard.evaluation``), plus cost: windows/s of each
system on 64-token windows, in-process on this machine.

AUPRC ranks scores; a deployment pays for decisions. So the report also gives precision, recall
and F1 of what a policy's principles fire on (``--policy``, default ``default``), from the same
scores: the semantic score against each principle's threshold, and blocklist terms either all
firing (``every-term``, the rule before blocklist weights gated firing) or only where their weight
reaches the threshold (``weight-gated``, ``guard.policy.decide``'s rule). It is per text, max over
windows, without the pipeline's context carry-over.

    python -m benchmarks.quality --out benchmarks/results/quality.json \
        --markdown benchmarks/results/quality.md
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks import REPO, git_sha, write_results
from benchmarks.machine import describe
from guard import evaluation as ev
from guard.models.data import read_examples
from guard.policy.decide import term_gate
from guard.policy.load import default_policy_dir, load_policy
from guard.policy.schema import PolicySpec
from guard.types import CATEGORIES


def lexical_scorer() -> Callable[[Sequence[str]], np.ndarray] | None:
    """Max finding score per category of the lexical layer, or None when it is not there."""
    try:
        from guard.detectors import lexical
    except ImportError:
        return None
    scanner = _make_lexical(lexical)

    def score(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(CATEGORIES)), np.float32)
        for i, t in enumerate(texts):
            for f in scanner.scan(t, True).findings:
                if f.category in CATEGORIES:
                    j = CATEGORIES.index(f.category)
                    out[i, j] = max(out[i, j], float(f.score))
        return out

    return score


def _make_lexical(lexical: Any) -> Any:
    return lexical.LexicalScanner.from_directory(REPO / "policies" / "blocklists")


def policy_fires(spec: PolicySpec, sem: np.ndarray, lex: np.ndarray, gated: bool) -> np.ndarray:
    """Per text and category, whether one of the policy's principles fires (block or redact).

    ``gated``: a blocklist finding fires only where its weight reaches ``term_gate``, as
    ``guard.policy.decide`` rules; otherwise every finding fires.
    """
    fires = np.zeros(sem.shape, bool)
    for p in spec.principles:
        if p.action == "allow":
            continue
        for c in p.categories:
            j = CATEGORIES.index(c)
            if "semantic" in p.detectors:
                fires[:, j] |= sem[:, j] >= p.threshold
            if "lexical" in p.detectors:
                found = lex[:, j] > 0  # 0: no term of the category in the text
                fires[:, j] |= found & (lex[:, j] >= term_gate(p)) if gated else found
    return fires


def profanity_check_scorer() -> Callable[[Sequence[str]], np.ndarray] | None:
    try:
        from profanity_check import predict_prob
    except ImportError:
        return None

    def score(texts: Sequence[str]) -> np.ndarray:
        p = np.asarray(predict_prob(list(texts)), np.float32)
        return np.repeat(p[:, None], len(CATEGORIES), axis=1)

    return score


def window_texts_64(texts: Sequence[str], n: int = 512) -> list[str]:
    """Texts of full 64-token windows (for a like-for-like windows/s of text-level systems)."""
    from guard.models.features import PlanTokenizer, stream_window_objects

    tok = PlanTokenizer()
    out: list[str] = []
    for i, t in enumerate(texts):
        for w in stream_window_objects(t, f"w{i}", tok, 64, 64):
            if w.n_tokens == 64:
                out.append(w.text)
        if len(out) >= n:
            break
    return out[:n]


def time_text_scorer(fn: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str],
                     seconds: float = 5.0, batch: int = 64) -> float:
    fn(texts[:batch])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        for b in range(0, len(texts), batch):
            fn(texts[b:b + batch])
            n += len(texts[b:b + batch])
    return round(n / (time.perf_counter() - t0), 1)


def markdown(res: dict[str, Any]) -> str:
    systems = list(res["systems"])
    cats = ["any"] + [c for c in CATEGORIES if any(c in s["report"]["categories"] for s in res["systems"].values())]
    lines = ["# Detection quality on the dev split", "",
             f"`{res['command']}` — git {res['git']}, {res['texts']} dev texts, "
             f"{res['windows']} stream windows (64 tokens, stride 16). Metric: AUPRC "
             "(average precision); text score = max over its windows.", "",
             "| category | n (pos) | " + " | ".join(systems) + " |",
             "|---|---|" + "---|" * len(systems)]
    for c in cats:
        ref = next(iter(res["systems"].values()))["report"]
        blk = ref["any"] if c == "any" else ref["categories"].get(c)
        cells = []
        for s in systems:
            rep = res["systems"][s]["report"]
            b = rep["any"] if c == "any" else rep["categories"].get(c)
            cells.append("–" if not b or b["auprc"] is None else f"{b['auprc']:.3f}")
        lines.append(f"| {c} | {blk['n']} ({blk['positives']}) | " + " | ".join(cells) + " |")
    lines += ["", "Recall at 1 % FPR:", "", "| category | " + " | ".join(systems) + " |",
              "|---|" + "---|" * len(systems)]
    for c in cats:
        cells = []
        for s in systems:
            rep = res["systems"][s]["report"]
            b = rep["any"] if c == "any" else rep["categories"].get(c)
            v = None if not b else b["recall_at_1pct_fpr"]
            cells.append("–" if v is None else f"{v:.3f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    flagged = [s for s in systems if "by_source" in res["systems"][s]]
    benign = sorted(src for src, row in res["systems"][flagged[0]]["by_source"].items()
                    if row.get("any", {}).get("positives") == 0) if flagged else []
    if benign:
        lines += ["", "Harmless rows flagged at each system's thresholds (sources with no harmful dev row):", "",
                  "| source | rows | " + " | ".join(flagged) + " |", "|---|---|" + "---|" * len(flagged)]
        for src in benign:
            a = [res["systems"][s]["by_source"][src]["any"] for s in flagged]
            lines.append(f"| {src} | {a[0]['n']} | " + " | ".join(
                f"{100 * x['flagged_negatives']:.1f} %" for x in a) + " |")
    if res.get("policy"):
        pol = res["policy"]
        rules = list(pol["rules"])
        lines += ["", f"Decisions under policy `{pol['name']}` (what its principles fire on; precision / "
                  "recall / F1; per text, max over windows):", "",
                  "| category | " + " | ".join(rules) + " |", "|---|" + "---|" * len(rules)]
        for c in cats:
            cells = []
            for r in rules:
                rep = pol["rules"][r]["report"]
                b = rep["any"] if c == "any" else rep["categories"].get(c)
                cells.append("–" if not b or b["f1"] is None else
                             f"{b['precision']:.3f} / {b['recall']:.3f} / {b['f1']:.3f}")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        if benign:
            lines += ["", f"Harmless rows `{pol['name']}` stops or redacts:", "",
                      "| source | rows | " + " | ".join(rules) + " |", "|---|---|" + "---|" * len(rules)]
            for src in benign:
                a = [pol["rules"][r]["by_source"][src]["any"] for r in rules]
                lines.append(f"| {src} | {a[0]['n']} | " + " | ".join(
                    f"{100 * x['flagged_negatives']:.1f} %" for x in a) + " |")
    lines += ["", "Cost (in-process, this machine, 64-token windows):", "",
              "| system | windows/s |", "|---|---|"]
    for s in systems:
        lines.append(f"| {s} | {res['systems'][s].get('windows_per_s') or '–'} |")
    if res.get("notes"):
        lines += [""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


async def _semantic(texts: Sequence[str]) -> tuple[np.ndarray, int, dict[str, Any], str]:
    det = ev.make_local_detector()
    try:
        scores, n_windows = await ev.score_texts(det, texts, 64, 16, 64, progress=True)
        tp = await ev.measure_throughput(det, texts, 64, 64)
    finally:
        det.close()
    return scores, n_windows, tp, str(getattr(det, "model_version", "?"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--split", default="dev")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality.json"))
    p.add_argument("--markdown", default=None)
    p.add_argument("--thresholds", default=None, help="calibration.json (default: committed)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--policy", default="default",
                   help="policy whose decisions are measured (a name under policies/, or a YAML path)")
    args = p.parse_args(argv)
    spec = load_policy(args.policy if args.policy.endswith((".yaml", ".yml"))
                       else default_policy_dir() / f"{args.policy}.yaml")

    data = read_examples([args.data], splits=[args.split])
    if args.limit:
        data = data.subset(np.arange(len(data)) < args.limit)
    texts = data.texts
    thr_sem = ev.load_thresholds(args.thresholds)
    notes: list[str] = []
    systems: dict[str, Any] = {}
    win64 = window_texts_64(texts)

    t0 = time.perf_counter()
    sem, n_windows, tp, version = asyncio.run(_semantic(texts))
    print(f"semantic scored in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    def assess(scores: np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
        return {"report": ev.evaluate_scores(scores, data.y, data.known, thresholds),
                "by_source": ev.by_source(scores, data.y, data.known, data.sources, thresholds=thresholds)}

    at_half = [0.5] * len(CATEGORIES)
    systems["guard-semantic"] = {**assess(sem, thr_sem), "windows_per_s": tp["windows_per_s"],
                                 "model_version": version}

    lex_fn = lexical_scorer()
    if lex_fn is not None:
        lex = lex_fn(texts)
        systems["guard-lexical"] = {**assess(lex, at_half), "windows_per_s": time_text_scorer(lex_fn, win64)}
        comb = np.maximum(sem, lex)
        systems["guard-combined"] = {"report": ev.evaluate_scores(comb, data.y, data.known, thr_sem),
                                     "windows_per_s": None}
        notes.append("guard-combined = per-category max(semantic, lexical); its cost is the sum of both. "
                     "Lexical hits score 1.0 and outrank every calibrated semantic score, so max() lowers "
                     "AUPRC where blocklist terms also occur in negatives (quoted, counter-speech, "
                     "clinical or news text): the lexical layer is a precision rule for listed terms, "
                     "not a ranking signal.")
        policy = {"name": spec.policy, "rules": {}}
        for rule, gated in (("every-term", False), ("weight-gated", True)):
            fired = policy_fires(spec, sem, lex, gated).astype(np.float64)
            policy["rules"][rule] = assess(fired, at_half)
    else:
        policy = None
        notes.append("guard.detectors.lexical not importable: lexical-only system left out.")

    prof_fn = profanity_check_scorer()
    if prof_fn is not None:
        prof = prof_fn(texts)
        systems["alt-profanity-check"] = {**assess(prof, at_half),
                                          "windows_per_s": time_text_scorer(prof_fn, win64)}
        pr = systems["alt-profanity-check"]["by_source"]
        sm = systems["guard-semantic"]["by_source"]
        notes.append("profanity by source, AUPRC guard-semantic vs alt-profanity-check: " + ", ".join(
            f"{src} {sm[src]['profanity']['auprc']} vs {pr[src]['profanity']['auprc']}"
            for src in sorted(pr) if "profanity" in pr[src] and pr[src]["profanity"]["auprc"] is not None)
            + ". Most dev profanity rows are Davidson et al. tweets; alt-profanity-check's upstream "
            "write-up names that corpus among its training data, so its figure there is likely in-sample.")
    else:
        notes.append("alt-profanity-check not installed (pip install 'guard[bench]').")
    notes.append("Thresholds: guard from calibration.json (P/R/F1 in the JSON); baselines at 0.5. "
                 "AUPRC does not depend on thresholds.")
    notes.append("Dev is the same mixture of sources as train (a 10 % hash split): figures are "
                 "in-distribution; held-out benchmarks judge generalisation.")

    res = {"command": "python -m benchmarks.quality " + " ".join(argv if argv is not None else sys.argv[1:]),
           "git": git_sha(), "machine": describe(), "split": args.split, "texts": len(texts), "windows": n_windows,
           "systems": systems, "policy": policy, "notes": notes}
    write_results(res, args.out, markdown(res), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
