"""Run a1's probe (see RULE.md): heads v8 on dev rows with and without tweet-platform artefacts.

Run from the repo root: ``.venv/bin/python benchmarks/results/runs/a1-platform-artefacts/probe.py``
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np

from guard.detectors.semantic import LocalDetector
from guard.evaluation import average_precision, score_texts
from guard.models.data import jsonl_files, read_examples
from guard.types import CATEGORIES

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
SOURCES = ("davidson", "olid", "suicide_tweets")
ARTEFACTS = (
    (re.compile(r"(?i)@\w+:?"), " "),          # @mentions, OLID's @USER
    (re.compile(r"^\s*RT\b:?"), " "),          # a leading retweet marker
    (re.compile(r"(?i)https?://\S+|\bURL\b"), " "),
    (re.compile(r"&amp;"), "&"),
)


def strip(text: str) -> str:
    for pattern, repl in ARTEFACTS:
        text = pattern.sub(repl, text)
    return re.sub(r"\s+", " ", text).strip() or text


def main() -> None:
    data = read_examples(jsonl_files([REPO.parent / "shared/data"]), splits=["dev"])
    data = data.subset(np.isin(data.sources, SOURCES))
    stripped = [strip(t) for t in data.texts]
    changed = np.array([a != b for a, b in zip(data.texts, stripped, strict=True)])
    det = LocalDetector.from_build_dir()
    raw_s = asyncio.run(score_texts(det, list(data.texts)))[0]  # guard eval's windows and max
    str_s = asyncio.run(score_texts(det, stripped))[0]
    det.close()
    report: dict = {"model": det.model_version, "sources": {}}
    rows = []
    for src in SOURCES:
        m = data.sources == src
        entry: dict = {"rows": int(m.sum()), "changed": int((m & changed).sum()), "categories": {}}
        for j, cat in enumerate(CATEGORIES):
            k = m & data.known[:, j]
            if not k.any() or data.y[k, j].sum() == 0:
                continue
            y = data.y[:, j] > 0
            kc = k & changed
            c = {
                "positives": int(y[k].sum()), "changed_positives": int(y[kc].sum()),
                "auprc_as_given": round(float(average_precision(y[k], raw_s[k, j])), 4),
                "auprc_stripped": round(float(average_precision(y[k], str_s[k, j])), 4),
            }
            for name, sel in (("pos", kc & y), ("neg", kc & ~y)):
                if sel.any():
                    c[f"changed_{name}_mean_as_given"] = round(float(raw_s[sel, j].mean()), 4)
                    c[f"changed_{name}_mean_stripped"] = round(float(str_s[sel, j].mean()), 4)
            entry["categories"][cat] = c
            rows.append((src, cat, entry["changed"], c))
        report["sources"][src] = entry
    (HERE / "probe.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("| source | category | changed rows | positives (changed) | AUPRC as given | stripped "
          "| changed pos mean: given → stripped | changed neg mean: given → stripped |")
    print("|---|---|---|---|---|---|---|---|")
    for src, cat, n, c in rows:
        pm = f"{c.get('changed_pos_mean_as_given', float('nan')):.3f} → {c.get('changed_pos_mean_stripped', float('nan')):.3f}"
        nm = f"{c.get('changed_neg_mean_as_given', float('nan')):.3f} → {c.get('changed_neg_mean_stripped', float('nan')):.3f}"
        print(f"| {src} | {cat} | {n} | {c['positives']} ({c['changed_positives']}) | {c['auprc_as_given']:.4f} "
              f"| {c['auprc_stripped']:.4f} | {pm} | {nm} |")


if __name__ == "__main__":
    main()
