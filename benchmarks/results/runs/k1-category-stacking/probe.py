"""k1: a stacking layer over heads v9's window logits, fitted on the held-out train fold (RULE.md).

    python benchmarks/results/runs/k1-category-stacking/probe.py --cache build/features-repro \
        > benchmarks/results/runs/k1-category-stacking/probe.json

Reads the feature cache a ``guard models train`` run filled (the held-out fold and dev, encoded by
the int8 serving graph) and the committed heads; fits nothing that ships.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from guard.evaluation import average_precision
from guard.models import paths
from guard.models import train as T
from guard.models.heads import Heads
from guard.types import CATEGORIES

C = len(CATEGORIES)
PULLS = (0.1, 1.0, 10.0)
STEPS = 300


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parts(heads: Heads, pooled: np.ndarray, ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per window: the MLP's hidden units and the n-gram logits (what v9's last step combines)."""
    h = np.maximum(heads.features(pooled) @ heads.weights[0] + heads.biases[0], 0.0)
    assert heads.ngram is not None
    return h.astype(np.float32), heads.ngram.logits(ids)


def inputs(variant: str, heads: Heads, h: np.ndarray, zn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacker input and its start (W0, b0) such that ``x @ W0 + b0`` is exactly v9's logit."""
    assert heads.mix is not None
    z = h @ heads.weights[1] + heads.biases[1] + heads.mix * zn
    if variant == "A":
        return z, np.eye(C, dtype=np.float32), np.zeros(C, np.float32)
    x = np.concatenate([h, zn], axis=1)
    w0 = np.concatenate([heads.weights[1], np.diag(heads.mix)], axis=0).astype(np.float32)
    return x, w0, heads.biases[1].astype(np.float32)


def fit(x: np.ndarray, offsets: np.ndarray, y: np.ndarray, w: np.ndarray, w0: np.ndarray, b0: np.ndarray,
        pull: float) -> tuple[np.ndarray, np.ndarray]:
    """Masked weighted BCE on max-over-windows text logits + pull·‖W−W0‖²/1000; Adam, full batch."""
    starts = offsets[:-1]
    owner = np.repeat(np.arange(len(starts)), np.diff(offsets))
    W, b = w0.copy(), b0.copy()
    mw, vw, mb, vb = (np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b))
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    wsum = float(w.sum())
    for t in range(1, STEPS + 1):
        z = x @ W + b
        zt, share = T._segment_max(z, starts, owner)
        g_text = w * (1.0 / (1.0 + np.exp(-np.clip(zt, -40, 40))) - y) / wsum
        g = share * g_text[owner]
        gW = x.T @ g + (2.0 * pull / 1000.0) * (W - w0)
        gb = g.sum(0)
        mw = b1 * mw + (1 - b1) * gW
        vw = b2 * vw + (1 - b2) * gW ** 2
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb ** 2
        W -= lr * (mw / (1 - b1 ** t)) / (np.sqrt(vw / (1 - b2 ** t)) + eps)
        b -= lr * (mb / (1 - b1 ** t)) / (np.sqrt(vb / (1 - b2 ** t)) + eps)
    return W, b


def text_logits(x: np.ndarray, offsets: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum.reduceat(x @ W + b, offsets[:-1], axis=0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def window_slices(offsets: np.ndarray, text_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window indices of the selected texts and their new offsets."""
    lens = np.diff(offsets)[text_mask]
    idx = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in np.flatnonzero(text_mask)] or [[]])
    return idx.astype(np.int64), np.concatenate([[0], np.cumsum(lens)])


def cross_fit(x, off, y, w, w0, b0, pull, k=5, seed=0):
    """Honest text logits for every text: each from a stacker fitted without its fold."""
    n = len(off) - 1
    fold = np.random.default_rng(seed).integers(0, k, n)
    out = np.zeros((n, C), np.float32)
    for f in range(k):
        tr_idx, tr_off = window_slices(off, fold != f)
        W, b = fit(x[tr_idx], tr_off, y[fold != f], w[fold != f], w0, b0, pull)
        te_idx, te_off = window_slices(off, fold == f)
        out[fold == f] = text_logits(x[te_idx], te_off, W, b)
    return out


def auprcs(scores: np.ndarray, y: np.ndarray, known: np.ndarray, thr: np.ndarray) -> dict[str, float]:
    rep = T.evaluate_scores(scores, y, known, thr)
    out = {"any": rep["any"]["auprc"]}
    out.update({c: v["auprc"] for c, v in rep["categories"].items()})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="build/features-repro")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    root = paths.repo_root()
    data_dir = Path(args.data) if args.data else root.parent / "shared" / "data"
    t0 = time.perf_counter()
    head = T.AdapterHead.load(paths.adapter_head_path(), paths.adapter_path().with_suffix(".json"))
    prep = T.prepare(data_dir, Path(args.cache), [], head.holdout_folds, log, augment=0.15, obf_dev=0.0,
                     train_windows="stream", encode_folds=[head.holdout_fold], implied=False, unpunctuated=0.0)
    heads = Heads.load(paths.heads_path())
    cfg = T.TrainConfig()
    rows = (prep.folds == head.holdout_fold) & ~prep.is_aug
    hidx, wh = T._subset_windows(prep.wtr, rows)
    y, known = prep.train.y[rows], prep.train.known[rows]
    wts = T.example_weights(prep.train, cfg)[rows]
    src = prep.train.sources[rows]
    off = wh.offsets
    h_tr, zn_tr = parts(heads, prep.pooled_tr[hidx], wh.ids)
    h_dv, zn_dv = parts(heads, prep.pooled_dv, prep.wdv.ids)
    dv_off = prep.wdv.offsets
    ydv, kdv, src_dv = prep.dev.y, prep.dev.known, prep.dev.sources
    log(f"fold {head.holdout_fold}: {int(rows.sum())} texts, {len(hidx)} windows; dev {len(prep.dev)} texts")

    # v9 as shipped: its own calibration and thresholds
    thr_v9 = np.array([json.loads((paths.heads_path().parent / "calibration.json").read_text())
                       ["categories"][c]["threshold"] for c in CATEGORIES])
    x_dv_a, w0a, b0a = inputs("A", heads, h_dv, zn_dv)
    raw_v9 = sigmoid(text_logits(x_dv_a, dv_off, w0a, b0a))
    cal_v9 = T.apply_calibration(raw_v9, heads.calib_x, heads.calib_y)
    result: dict = {"v9": {"dev": auprcs(cal_v9, ydv, kdv, thr_v9)}}
    log(f"v9 dev: {result['v9']['dev']}")

    best = None
    for variant in ("A", "B"):
        x_tr, w0, b0 = inputs(variant, heads, h_tr, zn_tr)
        x_dv, _, _ = inputs(variant, heads, h_dv, zn_dv)
        per_pull = {}
        for pull in PULLS:
            z_cf = cross_fit(x_tr, off, y, wts, w0, b0, pull)
            cx, cy, _, thr, met = T.calibrate_on(sigmoid(z_cf), y, known, np.ones(len(y), bool))
            per_pull[pull] = (met["any"]["auprc"], cx, cy, thr)
            log(f"{variant} pull {pull}: cross-fitted fold any {met['any']['auprc']}")
        pull = max(PULLS, key=lambda p: per_pull[p][0])
        _, cx, cy, thr = per_pull[pull]
        W, b = fit(x_tr, off, y, wts, w0, b0, pull)
        cal = T.apply_calibration(sigmoid(text_logits(x_dv, dv_off, W, b)), cx, cy)
        result[variant] = {"pull": pull, "fold_cross_fitted_any": {str(p): per_pull[p][0] for p in PULLS},
                           "dev": auprcs(cal, ydv, kdv, thr),
                           "shift_from_start": float(np.abs(W - w0).mean())}
        log(f"{variant} dev (pull {pull}): {result[variant]['dev']}")
        if best is None or result[variant]["dev"]["any"] > result[best]["dev"]["any"]:
            best = variant

    # leave one source out: the better variant, refitted without each source, scores that source's dev rows
    assert best is not None
    x_tr, w0, b0 = inputs(best, heads, h_tr, zn_tr)
    x_dv, _, _ = inputs(best, heads, h_dv, zn_dv)
    pull = result[best]["pull"]
    loso = np.zeros((len(ydv), C), np.float32)
    base = text_logits(x_dv, dv_off, w0, b0)
    for s in np.unique(src_dv):
        keep = src != s
        tr_idx, tr_off = window_slices(off, keep)
        W, b = fit(x_tr[tr_idx], tr_off, y[keep], wts[keep], w0, b0, pull)
        m = src_dv == s
        te_idx, te_off = window_slices(dv_off, m)
        loso[m] = text_logits(x_dv[te_idx], te_off, W, b)
    half = np.full(C, 0.5)
    result["loso"] = {"variant": best, "pull": pull,
                      "v9_raw": auprcs(sigmoid(base), ydv, kdv, half),
                      "stacked_raw": auprcs(sigmoid(loso), ydv, kdv, half),
                      "per_source_delta": {}}
    for s in np.unique(src_dv):
        m = src_dv == s
        d = {}
        for j, c in enumerate(CATEGORIES):
            k = m & kdv[:, j]
            if k.any() and 0 < ydv[k, j].sum() < k.sum():
                d[c] = round((average_precision(ydv[k, j], loso[k, j]) or 0)
                             - (average_precision(ydv[k, j], base[k, j]) or 0), 4)
        if d:
            result["loso"]["per_source_delta"][str(s)] = d
    log(f"loso raw v9 {result['loso']['v9_raw']}")
    log(f"loso raw stacked {result['loso']['stacked_raw']}")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
