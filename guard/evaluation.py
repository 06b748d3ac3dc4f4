"""``guard eval``: score labeled JSONL the way streams are scored and write a metrics report.

Scoring path: every text is cut into the windows a stream of that text would be scored on
(``guard.windowing``, 64 tokens every 16 by default, as in ``policies/default.yaml``), the windows
go through the same detector the worker uses — in-process ``LocalDetector`` by default, Triton's
``TritonDetector`` with ``--triton-url`` — and a text's score per category is the max over its windows.

Metrics per category, on the rows whose source labels that category (a missing label key is
*unknown*, so the row is left out of that category; a category no row labels is left out):
AUPRC (average precision, step-wise, as scikit-learn's ``average_precision_score``), precision /
recall / F1 at the category's threshold (``calibration.json``, else 0.5) and recall at 1 % and 5 %
false-positive rate.

The ``any`` rule (documented in the report): on rows that label at least one category,
label = any labeled category is positive; score = the max of the calibrated probabilities over the
labeled categories (used for AUPRC and recall at FPR); predicted positive = some labeled category's
score reaches *that category's* threshold (the policy's decision rule), so ``any.threshold`` is null.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.types import CATEGORIES

ANY_RULE = ("label: any labeled category positive; score: max calibrated probability over the "
            "labeled categories; predicted positive: any labeled category >= its own threshold")

# --------------------------------------------------------------------------------------------
# metrics (pure numpy)


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct score, from the highest score down."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s_sorted))
    idx = np.r_[distinct, len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[idx]
    fps = 1 + idx - tps
    return tps.astype(np.float64), fps.astype(np.float64), s_sorted[idx]


def average_precision(y: np.ndarray, s: np.ndarray) -> float | None:
    """Step-wise average precision: ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds."""
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if y.size == 0 or y.sum() == 0:
        return None
    tps, fps, _ = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(y: np.ndarray, s: np.ndarray, max_fpr: float) -> float | None:
    """Highest recall of any threshold whose false-positive rate is at most ``max_fpr``."""
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    n_pos, n_neg = y.sum(), y.size - y.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    tps, fps, _ = _curve(y, s)
    ok = fps / n_neg <= max_fpr + 1e-12
    return float(tps[ok].max() / n_pos) if ok.any() else 0.0


def prf(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of boolean predictions (0 where undefined)."""
    y = np.asarray(y, bool)
    pred = np.asarray(pred, bool)
    tp = float(np.sum(y & pred))
    p = tp / pred.sum() if pred.sum() else 0.0
    r = tp / y.sum() if y.sum() else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def best_f1_threshold(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 when predicting ``s >= threshold``."""
    y = np.asarray(y, dtype=np.float64)
    if y.sum() == 0:
        return 1.0, 0.0
    tps, fps, thr = _curve(y, np.asarray(s, dtype=np.float64))
    f1 = 2 * tps / (tps + fps + y.sum())
    k = int(np.argmax(f1))
    return float(thr[k]), float(f1[k])


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def metric_block(y: np.ndarray, s: np.ndarray, pred: np.ndarray, threshold: float | None) -> dict[str, Any]:
    p, r, f = prf(y, pred)
    return {
        "auprc": _r(average_precision(y, s)),
        "precision": _r(p),
        "recall": _r(r),
        "f1": _r(f),
        "threshold": _r(threshold),
        "n": int(len(y)),
        "positives": int(np.sum(y)),
        "recall_at_1pct_fpr": _r(recall_at_fpr(y, s, 0.01)),
        "recall_at_5pct_fpr": _r(recall_at_fpr(y, s, 0.05)),
    }


def any_rule(scores: np.ndarray, y: np.ndarray, known: np.ndarray,
             thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the "any harm" label, score and prediction (``ANY_RULE``), defined once for the
    report and the per-source figures. A row with no labeled category scores -inf and is neither
    harmful nor flagged."""
    thr = np.asarray(thresholds, dtype=np.float64)
    masked = np.where(known, np.asarray(scores, dtype=np.float64), -np.inf)
    harmful = (np.where(known, y, 0) > 0).any(axis=1)
    return harmful, masked.max(axis=1), (masked >= thr[None, :]).any(axis=1)


def evaluate_scores(scores: np.ndarray, y: np.ndarray, known: np.ndarray,
                    thresholds: Sequence[float], categories: Sequence[str] = CATEGORIES) -> dict[str, Any]:
    """The report core: ``{"any": {...}, "categories": {cat: {...}}}`` (unlabeled categories left out)."""
    scores = np.asarray(scores, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    cats: dict[str, Any] = {}
    for j, cat in enumerate(categories):
        k = known[:, j]
        if not k.any():
            continue
        s = scores[k, j]
        cats[cat] = metric_block(y[k, j], s, s >= thr[j], float(thr[j]))
    rows = known.any(axis=1)
    y_any, s_any, pred_any = (a[rows] for a in any_rule(scores, y, known, thr))
    any_block = metric_block(y_any, s_any, pred_any, None)
    return {"any": any_block, "categories": cats}


def by_source(scores: np.ndarray, y: np.ndarray, known: np.ndarray, sources: np.ndarray,
              categories: Sequence[str] = CATEGORIES,
              thresholds: Sequence[float] | None = None) -> dict[str, dict[str, Any]]:
    """AUPRC (or, for one-class sources, mean score) per source and labeled category.

    With thresholds, each source also gets an ``any`` entry: the share of its harmless rows that
    the any rule flags (``flagged_negatives``) and of its harmful rows (``flagged_positives``).
    A benign source's AUPRC is undefined, and a mean score hides a tail, but the share of benign
    assistant answers or news a policy would stop is what a deployment pays for.
    """
    out: dict[str, dict[str, Any]] = {}
    if thresholds is not None:
        harmful, _, flagged = any_rule(scores, y, known, thresholds)
    for src in sorted(set(sources.tolist())):
        m = sources == src
        row: dict[str, Any] = {}
        if thresholds is not None:
            rows = m & known.any(axis=1)
            neg, pos = rows & ~harmful, rows & harmful
            row["any"] = {"n": int(rows.sum()), "positives": int(pos.sum()),
                          "flagged_negatives": _r(float(flagged[neg].mean())) if neg.any() else None,
                          "flagged_positives": _r(float(flagged[pos].mean())) if pos.any() else None}
        for j, cat in enumerate(categories):
            k = m & known[:, j]
            if not k.any():
                continue
            yy, ss = y[k, j], scores[k, j]
            row[cat] = {"n": int(k.sum()), "positives": int(yy.sum()),
                        "auprc": _r(average_precision(yy, ss)) if 0 < yy.sum() < len(yy) else None,
                        "mean_score": _r(float(ss.mean()))}
        out[src] = row
    return out


# --------------------------------------------------------------------------------------------
# scoring through the serving detector


def load_thresholds(path: str | Path | None, categories: Sequence[str] = CATEGORIES) -> list[float]:
    """Per-category thresholds from ``calibration.json`` (``categories.<cat>.threshold``), else 0.5."""
    if path is None:
        from guard.models import paths

        default = paths.heads_path().parent / "calibration.json"
        path = default if default.is_file() else None
    if path is None:
        return [0.5] * len(categories)
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    cats = doc.get("categories", doc)
    out = []
    for c in categories:
        v = cats.get(c, 0.5)
        out.append(float(v["threshold"] if isinstance(v, dict) else v))
    return out


async def score_texts(detector: Any, texts: Sequence[str], tokens: int = 64, stride: int = 16,
                      batch: int = 64, progress: bool = False) -> tuple[np.ndarray, int]:
    """Max-over-windows scores ``[n, C]`` of each text, and the number of windows scored."""
    from guard.models.features import PlanTokenizer, stream_window_objects

    tok = PlanTokenizer()
    windows = []
    owner = []
    for i, text in enumerate(texts):
        for w in stream_window_objects(text, f"eval-{i}", tok, tokens, stride):
            windows.append(w)
            owner.append(i)
    n_cat = len(detector.categories)
    out = np.full((len(texts), n_cat), -np.inf, dtype=np.float32)
    owner_a = np.asarray(owner, dtype=np.int64)
    # group similar lengths into a batch: less padding, same scores
    order = np.argsort([w.n_tokens for w in windows], kind="stable")
    t0 = time.perf_counter()
    for b in range(0, len(order), batch):
        idx = order[b:b + batch]
        sc = np.asarray(await detector.score([windows[i] for i in idx]), dtype=np.float32)
        np.maximum.at(out, owner_a[idx], sc)
        if progress and (b // batch) % 50 == 0:
            el = time.perf_counter() - t0
            print(f"  scored {b + len(idx)}/{len(order)} windows ({(b + len(idx)) / max(el, 1e-9):.0f}/s)",
                  file=sys.stderr, flush=True)
    return out, len(windows)


async def measure_throughput(detector: Any, texts: Sequence[str], tokens: int = 64, batch: int = 64,
                             seconds: float = 8.0) -> dict[str, Any]:
    """Windows/s of ``detector.score`` on full ``tokens``-token windows in batches of ``batch``."""
    from guard.models.features import PlanTokenizer, stream_window_objects

    tok = PlanTokenizer()
    pool = []
    for i, text in enumerate(texts):
        for w in stream_window_objects(text, f"tp-{i}", tok, tokens, stride=tokens):
            if w.n_tokens == tokens:
                pool.append(w)
        if len(pool) >= 4 * batch:
            break
    if len(pool) < batch:  # short texts only: repeat what there is up to a full window
        ids = np.concatenate([w.input_ids for w in pool] or [np.arange(1000, 1000 + tokens)])
        ids = np.resize(ids, tokens)
        from guard.types import Window

        pool = [Window(stream_id="tp", start=0, end=0, text="", input_ids=ids)] * batch
    batches = [pool[i:i + batch] for i in range(0, len(pool) - batch + 1, batch)]
    await detector.score(batches[0])  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        for bt in batches:
            await detector.score(bt)
            n += len(bt)
    el = time.perf_counter() - t0
    return {"windows_per_s": round(n / el, 1), "window_tokens": tokens, "batch": batch,
            "windows": n, "seconds": round(el, 2), "detector": type(detector).__name__}


def make_local_detector(heads_path: str | Path | None = None) -> Any:
    """The in-process semantic detector the worker uses (int8 ONNX encoder + committed heads)."""
    from guard.detectors.semantic import LocalDetector

    return LocalDetector.from_build_dir(heads_path=heads_path)


def triton_detector(url: str) -> Any:
    """An async context manager yielding the worker's Triton detector."""
    from guard.detectors.semantic import TritonDetector

    return TritonDetector.connect(url)


# --------------------------------------------------------------------------------------------
# plots and markdown


def write_plots(out_dir: Path, scores: np.ndarray, y: np.ndarray, known: np.ndarray,
                thresholds: Sequence[float], categories: Sequence[str] = CATEGORIES,
                title: str = "") -> list[str]:
    """Per category: reliability diagram (calibrated score vs observed rate) and PR curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for j, cat in enumerate(categories):
        k = known[:, j]
        if not k.any() or y[k, j].sum() == 0:
            continue
        yy, ss = y[k, j], scores[k, j].astype(np.float64)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
        edges = np.linspace(0, 1, 11)
        b = np.clip(np.digitize(ss, edges) - 1, 0, 9)
        xs, obs, cnt = [], [], []
        for i in range(10):
            m = b == i
            if m.any():
                xs.append(ss[m].mean())
                obs.append(yy[m].mean())
                cnt.append(int(m.sum()))
        a1.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        a1.plot(xs, obs, marker="o")
        for x_, o_, c_ in zip(xs, obs, cnt, strict=True):
            a1.annotate(str(c_), (x_, o_), fontsize=6, xytext=(2, 2), textcoords="offset points")
        a1.axvline(thresholds[j], color="red", lw=0.8)
        a1.set(xlabel="calibrated score", ylabel="observed positive rate", xlim=(0, 1), ylim=(0, 1),
               title=f"{cat}: reliability (n={len(yy)}, pos={int(yy.sum())})")
        tps, fps, _ = _curve(yy, ss)
        a2.step(tps / tps[-1], tps / (tps + fps), where="post")
        a2.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
               title=f"PR, AUPRC={average_precision(yy, ss):.3f}")
        fig.suptitle(title, fontsize=8)
        fig.tight_layout()
        path = out_dir / f"calibration_{cat}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    return written


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def implied_auprc(scores: np.ndarray, data: Any, thresholds: Sequence[float]) -> dict[str, float | None]:
    """AUPRC of ``scores`` against the labels ``implied_labels`` fills into ``data``, for the
    categories it changes (e.g. violence among hateful posts); empty when it changes none."""
    from guard.models.data import implied_labels

    implied = implied_labels(data)
    changed = [j for j in range(len(CATEGORIES)) if (implied.known[:, j] != data.known[:, j]).any()]
    if not changed:
        return {}
    rep = evaluate_scores(scores, implied.y, implied.known, thresholds)
    return {CATEGORIES[j]: rep["categories"][CATEGORIES[j]]["auprc"] for j in changed}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f} %"


def markdown(report: dict[str, Any]) -> str:
    meta = report.get("meta", {})
    lines = [f"# guard eval — {meta.get('detector', '')}", ""]
    if meta:
        lines += [f"- command: `{meta.get('command', '')}`",
                  f"- files: {', '.join(meta.get('files', []))}",
                  f"- split: {meta.get('split') or 'all'}; texts: {meta.get('texts')}; windows: "
                  f"{meta.get('windows')} ({meta.get('window_tokens')} tokens, stride {meta.get('stride')})",
                  f"- model: {meta.get('model_version', '?')}; thresholds: {meta.get('thresholds_file')}",
                  f"- any rule: {ANY_RULE}"]
        if "tokenizer" in meta:
            lines.append(f"- tokenizer: emoji read as names: {meta['tokenizer']['emoji_names']}")
    if meta.get("implied_labels"):
        lines.append("- labels filled in by --implied-labels: " + "; ".join(meta["implied_labels"]))
    lines.append("")
    cols = ["auprc", "precision", "recall", "f1", "threshold", "n", "positives",
            "recall_at_1pct_fpr", "recall_at_5pct_fpr"]
    lines.append("| category | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    rows = [("any", report["any"])] + list(report["categories"].items())
    for name, blk in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(blk.get(c)) for c in cols) + " |")
    tp = report.get("throughput")
    if tp:
        lines += ["", f"Throughput ({tp.get('detector')}, in-process, {tp.get('window_tokens')}-token windows, "
                      f"batch {tp.get('batch')}): **{tp.get('windows_per_s')} windows/s**"]
    src = report.get("by_source")
    if src:
        flag = any("any" in row for row in src.values())
        head = (["flagged harmless", "flagged harmful"] if flag else []) + list(CATEGORIES)
        lines += ["", "## Per source (AUPRC where the source has both classes, else mean score)", ""]
        if flag:
            lines += ["\"flagged\": share of the source's harmless / harmful rows that some labeled "
                      "category's threshold flags (the any rule).", ""]
        lines += ["| source | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
        for s, row in src.items():
            cells = []
            if flag:
                a = row.get("any", {})
                cells += [_pct(a.get("flagged_negatives")), _pct(a.get("flagged_positives"))]
            for c in CATEGORIES:
                v = row.get(c)
                if v is None:
                    cells.append("")
                elif v["auprc"] is not None:
                    cells.append(f"{v['auprc']:.3f}")
                else:
                    cells.append(f"μ={v['mean_score']:.2f} ({'+' if v['positives'] else '−'}{v['n']})")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    if report.get("plots"):
        lines += ["", "Plots: " + ", ".join(Path(p).name for p in report["plots"])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# command


def _close(detector: Any) -> None:
    close = getattr(detector, "close", None)
    if close is not None:
        close()


def _in_range(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi] (a stride of 0 or below scored nonsense windows)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is not in [{lo}, {hi}]")
        return v
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guard eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True,
                   help="labeled JSONL file, or a directory of them (repeatable)")
    p.add_argument("--out", required=True, help="report JSON path")
    p.add_argument("--markdown", help="also write a Markdown report here")
    p.add_argument("--plots", help="directory for per-category calibration / PR plots (PNG)")
    p.add_argument("--triton-url", help="score through Triton (gRPC host:port) instead of in-process")
    p.add_argument("--split", help="keep only rows of this split (train/dev); default all rows")
    p.add_argument("--thresholds", help="calibration.json with per-category thresholds "
                                        "(default: the committed heads' calibration.json)")
    p.add_argument("--heads", help="heads.npz for the in-process detector (default: the committed heads)")
    p.add_argument("--exclude-source", action="append", default=[], help="drop a source (repeatable)")
    p.add_argument("--implied-labels", action="store_true",
                   help="also fill in the labels training implies (guard.models.data.IMPLIED_RULES), "
                        "e.g. violence=0 on hateful EDOS/HatemojiBuild posts that are no threat")
    p.add_argument("--window-tokens", type=_in_range(8, 254), default=64,
                   help="tokens per window, 8-254 as a policy's window (default 64)")
    p.add_argument("--stride", type=_in_range(1, 254), default=16,
                   help="new tokens between windows, at most --window-tokens (policy default 16)")
    p.add_argument("--batch", type=_in_range(1, 4096), default=64)
    p.add_argument("--limit", type=int, help="evaluate only the first N rows (smoke tests)")
    p.add_argument("--no-throughput", action="store_true", help="skip the in-process windows/s measurement")
    return p


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from guard.models.data import implied_labels, implied_rules_doc, jsonl_files, read_examples
    from guard.models.tokenizer import tokenizer_settings

    files = jsonl_files(args.data)
    data = read_examples(files, splits=[args.split] if args.split else None,
                         exclude_sources=args.exclude_source)
    if args.implied_labels:
        data = implied_labels(data)
    if args.limit:
        data = data.subset(np.arange(len(data)) < args.limit)
    if len(data) == 0:
        raise SystemExit("guard eval: no rows to evaluate")
    if args.thresholds is None and args.heads:
        sibling = Path(args.heads).with_name("calibration.json")
        args.thresholds = str(sibling) if sibling.is_file() else None
    thresholds = load_thresholds(args.thresholds)
    t0 = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        if args.triton_url:
            detector = await stack.enter_async_context(triton_detector(args.triton_url))
        else:
            detector = make_local_detector(args.heads)
            stack.callback(_close, detector)
        scores, n_windows = await score_texts(detector, data.texts, args.window_tokens,
                                              args.stride, args.batch, progress=True)
        elapsed = time.perf_counter() - t0
        if not args.no_throughput:
            local = detector
            if args.triton_url:
                local = make_local_detector(args.heads)
                stack.callback(_close, local)
            throughput = await measure_throughput(local, data.texts, args.window_tokens, args.batch)
    report = evaluate_scores(scores, data.y, data.known, thresholds)
    report["by_source"] = by_source(scores, data.y, data.known, data.sources, thresholds=thresholds)
    report["meta"] = {
        "command": "guard eval " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["eval"] else sys.argv[1:]),
        "files": [f.name for f in files], "split": args.split, "texts": len(data), "windows": n_windows,
        "window_tokens": args.window_tokens, "stride": args.stride,
        "detector": type(detector).__name__ + (f" @ {args.triton_url}" if args.triton_url else ""),
        "model_version": str(getattr(detector, "model_version", "?")),
        "thresholds_file": args.thresholds or "committed calibration.json",
        "any_rule": ANY_RULE,
        "tokenizer": tokenizer_settings(),
        "implied_labels": implied_rules_doc() if args.implied_labels else [],
        "thresholds": dict(zip(CATEGORIES, thresholds, strict=True)),
        "scoring_seconds": round(elapsed, 1),
    }
    if not args.no_throughput:
        report["throughput"] = throughput
    if args.plots:
        report["plots"] = write_plots(Path(args.plots), scores, data.y, data.known, thresholds,
                                      title=report["meta"]["model_version"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.stride > args.window_tokens:
        parser.error(f"--stride {args.stride} exceeds --window-tokens {args.window_tokens}")
    report = asyncio.run(_run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown(report), encoding="utf-8")
    a = report["any"]
    print(f"any: AUPRC {_fmt(a['auprc'])}  P {_fmt(a['precision'])}  R {_fmt(a['recall'])}  n {a['n']}")
    for cat, blk in report["categories"].items():
        print(f"{cat:>14}: AUPRC {_fmt(blk['auprc'])}  F1 {_fmt(blk['f1'])}  n {blk['n']} pos {blk['positives']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
