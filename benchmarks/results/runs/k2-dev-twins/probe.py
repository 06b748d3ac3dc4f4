"""k2: heads v9's dev figures without the dev texts that read exactly as a train text does.

    python benchmarks/results/runs/k2-dev-twins/probe.py --cache build/features-repro \
        > benchmarks/results/runs/k2-dev-twins/probe.json

The split hashes the raw string, but the tokenizer ignores case, @mentions, URLs, RT and invisible
characters, so some dev texts are, to the model, train texts (``guard.models.train.token_keys``).
Scores come from the feature cache of one ``guard models train`` run (int8 serving graph).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from guard.models import paths
from guard.models import train as T
from guard.models.data import read_examples
from guard.models.features import STREAM_STRIDE, WINDOW_TOKENS, stream_windows
from guard.models.heads import Heads
from guard.types import CATEGORIES


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="build/features-repro")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data_dir = paths.repo_root().parent / "shared" / "data"
    train, dev = T.train_dev(read_examples([data_dir]))
    train_keys = set(T.token_keys(train.texts))
    twin = np.array([k in train_keys for k in T.token_keys(dev.texts)], bool)
    heads = Heads.load(paths.heads_path())
    wdv = stream_windows(dev.texts, WINDOW_TOKENS, STREAM_STRIDE)
    pooled = T.FeatureCache(Path(args.cache)).get(wdv.ids)
    scores = np.maximum.reduceat(heads.predict(pooled, wdv.ids), wdv.offsets[:-1], axis=0)
    cal = json.loads((paths.heads_path().parent / "calibration.json").read_text())
    thr = np.array([cal["categories"][c]["threshold"] for c in CATEGORIES])

    def auprc(mask: np.ndarray) -> dict[str, float]:
        rep = T.evaluate_scores(scores[mask], dev.y[mask], dev.known[mask], thr)
        return {"any": rep["any"]["auprc"], **{c: v["auprc"] for c, v in rep["categories"].items()}}

    twins_pos = {c: int(dev.y[twin & dev.known[:, j], j].sum()) for j, c in enumerate(CATEGORIES)}
    out = {"dev_texts": len(dev), "twins": int(twin.sum()),
           "twins_by_source": dict(Counter(dev.sources[twin].tolist()).most_common()),
           "twin_positives": twins_pos,
           "dev": auprc(np.ones(len(dev), bool)), "dev_without_twins": auprc(~twin),
           "seconds": round(time.perf_counter() - t0, 1)}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
