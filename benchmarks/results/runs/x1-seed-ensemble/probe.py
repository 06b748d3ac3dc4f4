"""Run x1's probe (see RULE.md): dev scored by heads v8, by s1 and by their per-window mean, in one run.

Scoring is ``guard eval``'s (stream windows of 64 tokens, stride 16; a text's score is the max over
its windows), through the in-process ``LocalDetector`` the worker uses. Run from the repo root:

    .venv/bin/python benchmarks/results/runs/x1-seed-ensemble/probe.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from guard.detectors.semantic import LocalDetector
from guard.evaluation import by_source, evaluate_scores, load_thresholds
from guard.models import paths
from guard.models.data import jsonl_files, read_examples
from guard.models.features import PlanTokenizer, stream_window_objects
from guard.types import CATEGORIES

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
MEMBERS = {  # name -> (build dir with the merged int8 graph, heads.npz, calibration.json)
    "v8": (paths.build_dir(), paths.heads_path(), paths.heads_path().with_name("calibration.json")),
    "s1": (REPO / "build/models-s1", REPO / "build/heads-s1/heads.npz", REPO / "build/heads-s1/calibration.json"),
}
BATCH = 64


def main() -> None:
    data = read_examples(jsonl_files([REPO.parent / "shared/data"]), splits=["dev"])
    tok = PlanTokenizer()
    windows, owner = [], []
    for i, text in enumerate(data.texts):
        for w in stream_window_objects(text, f"x1-{i}", tok, 64, 16):
            windows.append(w)
            owner.append(i)
    owner_a = np.asarray(owner)
    order = np.argsort([w.n_tokens for w in windows], kind="stable")
    per_window: dict[str, np.ndarray] = {}
    versions: dict[str, str] = {}
    for name, (bdir, heads, _) in MEMBERS.items():
        det = LocalDetector.from_build_dir(bdir, heads)
        versions[name] = det.model_version
        out = np.empty((len(windows), len(CATEGORIES)), np.float32)
        t0 = time.perf_counter()
        for b in range(0, len(order), BATCH):
            idx = order[b:b + BATCH]
            out[idx] = det.score_sync([windows[i] for i in idx])
        print(f"{name}: {len(windows)} windows in {time.perf_counter() - t0:.0f} s", flush=True)
        per_window[name] = out
        det.close()
    per_window["ensemble"] = (per_window["v8"] + per_window["s1"]) / 2

    thresholds = {n: load_thresholds(m[2]) for n, m in MEMBERS.items()}
    thresholds["ensemble"] = list((np.asarray(thresholds["v8"]) + np.asarray(thresholds["s1"])) / 2)
    report: dict = {"members": versions, "texts": len(data), "windows": len(windows), "models": {}}
    for name, pw in per_window.items():
        text_scores = np.full((len(data), len(CATEGORIES)), -np.inf, np.float32)
        np.maximum.at(text_scores, owner_a, pw)
        rep = evaluate_scores(text_scores, data.y, data.known, thresholds[name])
        rep["by_source"] = by_source(text_scores, data.y, data.known, data.sources, thresholds=thresholds[name])
        report["models"][name] = rep

    report["throughput"] = throughput(windows)
    (HERE / "probe.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    cats = ["any", *[c for c in CATEGORIES if c in report["models"]["v8"]["categories"]]]
    print("| dev AUPRC | " + " | ".join(cats) + " |")
    for name, rep in report["models"].items():
        vals = [rep["any"]["auprc"], *[rep["categories"][c]["auprc"] for c in cats[1:]]]
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    print(json.dumps(report["throughput"]))


def throughput(windows: list, seconds: float = 8.0) -> dict:
    """In-process windows/s of one member and of both in turn (what an ensemble costs), same batches."""
    full = [w for w in windows if w.n_tokens == 64][: 4 * BATCH]
    batches = [full[i:i + BATCH] for i in range(0, len(full), BATCH)]
    dets = [LocalDetector.from_build_dir(m[0], m[1]) for m in MEMBERS.values()]
    res = {}
    for label, use in (("one", dets[:1]), ("pair", dets), ("one_again", dets[:1])):
        for d in use:
            d.score_sync(batches[0])  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for bt in batches:
                for d in use:
                    d.score_sync(bt)
                n += len(bt)
        res[label] = round(n / (time.perf_counter() - t0), 1)
    for d in dets:
        d.close()
    return {"windows_per_s": res, "window_tokens": 64, "batch": BATCH}


if __name__ == "__main__":
    main()
