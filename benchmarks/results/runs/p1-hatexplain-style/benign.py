"""p1 addendum (measured after p1's rule was settled; decides nothing): how often heads v9 flags
benign dev text, LLM answers among it, as given and in hatexplain's unpunctuated formatting.

Run from the repo root: ``.venv/bin/python benchmarks/results/runs/p1-hatexplain-style/benign.py``
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from guard.detectors.semantic import LocalDetector
from guard.evaluation import load_thresholds, score_texts
from guard.models.augment import unpunctuated
from guard.models.data import jsonl_files, read_examples
from guard.types import CATEGORIES

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
SOURCES = ("alpaca_eval_outputs", "counsel_chat", "safety_tuned_refusals", "xstest_completions", "ag_news")


def main() -> None:
    data = read_examples(jsonl_files([REPO.parent / "shared/data"]), splits=["dev"])
    benign = (data.known.sum(1) == len(CATEGORIES)) & (data.y.sum(1) == 0)
    data = data.subset(np.isin(data.sources, SOURCES) & benign)
    texts = list(data.texts)
    thr = np.asarray(load_thresholds(None))
    det = LocalDetector.from_build_dir()
    given = asyncio.run(score_texts(det, texts))[0]
    bare = asyncio.run(score_texts(det, [unpunctuated(t) for t in texts]))[0]
    det.close()
    h = CATEGORIES.index("hate")
    report: dict = {"model": det.model_version, "sources": {}}
    print("| source | benign dev rows | flagged as given | unpunctuated | mean hate score: given → unpunctuated |")
    print("|---|---|---|---|---|")
    for src in SOURCES:
        m = data.sources == src
        fg, fb = (given[m] >= thr).any(1).mean(), (bare[m] >= thr).any(1).mean()
        e = {"rows": int(m.sum()), "flagged_given": round(float(fg), 4), "flagged_unpunctuated": round(float(fb), 4),
             "hate_mean_given": round(float(given[m, h].mean()), 4),
             "hate_mean_unpunctuated": round(float(bare[m, h].mean()), 4),
             "flagged_by_category_unpunctuated": {c: int((bare[m, j] >= thr[j]).sum()) for j, c in enumerate(CATEGORIES)}}
        report["sources"][src] = e
        print(f"| {src} | {e['rows']} | {100 * fg:.1f} % | {100 * fb:.1f} % | "
              f"{e['hate_mean_given']:.3f} → {e['hate_mean_unpunctuated']:.3f} |")
    (HERE / "benign.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
