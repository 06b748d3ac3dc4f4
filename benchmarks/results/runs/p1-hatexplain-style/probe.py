"""Run p1's probe (see RULE.md): heads v9 on punctuated dev rows as given and in hatexplain's style.

Run from the repo root: ``.venv/bin/python benchmarks/results/runs/p1-hatexplain-style/probe.py``
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
SOURCES = ("davidson", "edos", "stormfront", "ethos", "toxigen_seed", "hatemoji_build", "olid",
           "kaggle_insults")
CATS = ("hate", "harassment")


def bare(text: str) -> str:
    """hatexplain's punctuation: letters, digits and spaces only, case folded."""
    text = re.sub(r"['’]", "", text)
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip().lower() or text


def hatexplain_style(text: str) -> str:
    text = re.sub(r"https?://\S+|\bURL\b", " ", text)
    text = re.sub(r"@\w+:?", " user ", text)
    text = re.sub(r"\d+", " number ", text)
    return bare(text)


def main() -> None:
    data = read_examples(jsonl_files([REPO.parent / "shared/data"]), splits=["dev"])
    data = data.subset(np.isin(data.sources, SOURCES))
    texts = list(data.texts)
    det = LocalDetector.from_build_dir()
    scores = {"given": asyncio.run(score_texts(det, texts))[0]}
    variants = {"bare": [bare(t) for t in texts], "hatexplain": [hatexplain_style(t) for t in texts]}
    for name, vt in variants.items():
        scores[name] = asyncio.run(score_texts(det, vt))[0]
    det.close()
    report: dict = {"model": det.model_version, "sources": {}}
    print("| source | category | transform | changed rows | positives (changed) | AUPRC given → transformed "
          "| changed pos mean | changed neg mean |")
    print("|---|---|---|---|---|---|---|---|")
    for src in SOURCES:
        m = data.sources == src
        entry: dict = {"rows": int(m.sum()), "categories": {}}
        for cat in CATS:
            j = CATEGORIES.index(cat)
            k = m & data.known[:, j]
            y = data.y[:, j] > 0
            if not k.any() or y[k].sum() == 0:
                continue
            per: dict = {"positives": int(y[k].sum()),
                         "auprc_given": round(float(average_precision(y[k], scores["given"][k, j])), 4)}
            for name, vt in variants.items():
                changed = np.array([a != b for a, b in zip(texts, vt, strict=True)])
                kc = k & changed
                c = {"changed": int(kc.sum()), "changed_positives": int(y[kc].sum()),
                     "auprc": round(float(average_precision(y[k], scores[name][k, j])), 4)}
                for lab, sel in (("pos", kc & y), ("neg", kc & ~y)):
                    if sel.any():
                        c[f"{lab}_mean_given"] = round(float(scores["given"][sel, j].mean()), 4)
                        c[f"{lab}_mean_transformed"] = round(float(scores[name][sel, j].mean()), 4)
                per[name] = c
                pm = f"{c.get('pos_mean_given', np.nan):.3f} → {c.get('pos_mean_transformed', np.nan):.3f}"
                nm = f"{c.get('neg_mean_given', np.nan):.3f} → {c.get('neg_mean_transformed', np.nan):.3f}"
                print(f"| {src} | {cat} | {name} | {c['changed']} | {per['positives']} ({c['changed_positives']}) "
                      f"| {per['auprc_given']:.4f} → {c['auprc']:.4f} | {pm} | {nm} |")
            entry["categories"][cat] = per
        report["sources"][src] = entry
    (HERE / "probe.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
