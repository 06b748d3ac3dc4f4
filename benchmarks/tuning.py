"""Feedback tuning, simulated: does a badly set threshold converge to its target precision, safely?

A seeded, labeled stream of decisions (per category: a base rate and beta score distributions for
positives and negatives) is decided against live thresholds that start too low. A simulated
reviewer labels a random sample of decisions, late and with some verdicts flipped; some verdicts
are redelivered and some name decisions the index never saw. The tuner loop (``guard.tuning``:
observe → tune → apply, exactly what the feedback agent will run) moves the thresholds. We record
threshold, precision and recall over time and count the feedback events until precision stays
within ±2 points of the target. A second scenario asks for a precision that the shadow set's
recall floor forbids, to show the gate rejecting the change.

    python -m benchmarks.tuning --out benchmarks/results/tuning.json --plots benchmarks/results/tuning
"""

from __future__ import annotations

import argparse
import heapq
import json
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.messages import Feedback, ThresholdChange, Verdict
from guard.thresholds import ShadowSpec, Thresholds, TuningSpec
from guard.tuning import DecisionRecord, TunerState, expire, observe, operating_point, tune

Array = npt.NDArray[Any]
POLICY = "default"
CONVERGE_BAND = 0.02


@dataclass(frozen=True)
class Category:
    """A synthetic category: how often it is really present and how the model scores it."""

    name: str
    base_rate: float
    pos: tuple[float, float]  # beta(a, b) of scores of true positives
    neg: tuple[float, float]  # beta(a, b) of scores of true negatives
    start: float  # the badly set starting threshold
    spec: TuningSpec

    def draw(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        y = rng.random(n) < self.base_rate
        s = np.where(y, rng.beta(*self.pos, n), rng.beta(*self.neg, n))
        return s, y


@dataclass(frozen=True)
class Curve:
    """Precision and recall of every threshold on a large sample: the 'true' operating point."""

    scores: Array  # sorted ascending
    cum_pos_above: Array  # positives with score >= scores[i]
    n_pos: int

    @classmethod
    def of(cls, scores: Array, labels: Array) -> Curve:
        order = np.argsort(scores)
        s, y = scores[order], labels[order].astype(np.int64)
        above = np.cumsum(y[::-1])[::-1]
        return cls(s, above, int(y.sum()))

    def at(self, t: float) -> tuple[float, float]:
        i = int(np.searchsorted(self.scores, t, side="left"))
        fired = len(self.scores) - i
        tp = int(self.cum_pos_above[i]) if i < len(self.scores) else 0
        return (tp / fired if fired else 1.0), tp / self.n_pos


def build_spec(target: float, *, label_noise: float, shadow: ShadowSpec | None,
               floor: float = 0.1, ceiling: float = 0.98) -> TuningSpec:
    return TuningSpec(target_precision=target, min_evidence=30, max_step=0.02, floor=floor,
                      ceiling=ceiling, max_changes_per_hour=6, label_noise=label_noise,
                      confidence_z=1.0, shadow=shadow)


def categories(label_noise: float) -> list[Category]:
    gate = ShadowSpec(dataset="synthetic:dev", min_recall=0.5)

    def spec(target: float) -> TuningSpec:
        return build_spec(target, label_noise=label_noise, shadow=gate)

    return [
        Category("hate", 0.06, (6.0, 2.0), (1.6, 7.0), 0.30, spec(0.90)),
        Category("violence", 0.10, (5.0, 2.5), (2.0, 6.0), 0.35, spec(0.90)),
        Category("self_harm", 0.04, (4.0, 2.0), (1.2, 8.0), 0.25, spec(0.85)),
    ]


def recall_breaking() -> list[Category]:
    """A category whose precision target lies beyond what the recall floor allows."""
    gate = ShadowSpec(dataset="synthetic:dev", min_recall=0.75)
    spec = TuningSpec(target_precision=0.97, min_evidence=30, max_step=0.03, floor=0.1, ceiling=0.98,
                      max_changes_per_hour=6, label_noise=0.05, shadow=gate)
    return [Category("dangerous", 0.08, (5.0, 2.5), (2.0, 6.0), 0.40, spec)]


@dataclass
class Trace:
    t_h: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    precision: list[float] = field(default_factory=list)  # population precision at the threshold
    recall: list[float] = field(default_factory=list)
    window_precision: list[float | None] = field(default_factory=list)  # last hour, true labels
    events: list[int] = field(default_factory=list)  # feedback events delivered so far
    fired_events: list[int] = field(default_factory=list)  # of which on decisions that fired


@dataclass
class Run:
    cats: list[Category]
    traces: dict[str, Trace]
    changes: list[ThresholdChange]
    state: TunerState
    thresholds: Thresholds
    curves: dict[str, Curve]
    shadow: dict[str, tuple[Array, Array]]
    delivered: dict[str, int]


def simulate(cats: Sequence[Category], *, seed: int, hours: float, rate: float, review: float,
             flip: float, tick_s: int = 60, delay_mean_s: float = 900.0, dup_rate: float = 0.03,
             unknown_rate: float = 0.01, retention_h: float = 6.0) -> Run:
    rng = np.random.default_rng(seed)
    names = [c.name for c in cats]
    specs = {(POLICY, c.name): c.spec for c in cats}
    curves = {c.name: Curve.of(*c.draw(np.random.default_rng([seed, 1, i]), 400_000))
              for i, c in enumerate(cats)}
    shadow = {c.name: c.draw(np.random.default_rng([seed, 2, i]), 10_000) for i, c in enumerate(cats)}
    shadow_sets = {(POLICY, n): shadow[n] for n in names}
    thresholds = Thresholds.from_defaults({(POLICY, c.name): c.start for c in cats})
    state = TunerState()
    index: dict[str, DecisionRecord] = {}
    index_order: deque[tuple[int, str]] = deque()
    pending: list[tuple[int, int, Feedback]] = []  # (arrival_ms, tiebreak, feedback)
    window: deque[tuple[int, Array, Array]] = deque()  # (ts, fired[C,n], labels[C,n])
    traces = {n: Trace() for n in names}
    delivered = dict.fromkeys(names, 0)
    delivered_fired = dict.fromkeys(names, 0)
    changes: list[ThresholdChange] = []
    seq = 0
    tiebreak = 0
    tick_ms = tick_s * 1000
    for tick in range(int(hours * 3600 / tick_s)):
        t0, now = tick * tick_ms, (tick + 1) * tick_ms
        n = int(rng.poisson(rate * tick_s))
        ts = np.sort(rng.integers(t0, now, n))
        drawn = [c.draw(rng, n) for c in cats]
        scores = np.stack([d[0] for d in drawn])
        labels = np.stack([d[1] for d in drawn])
        thr = np.array([thresholds.get(POLICY, c) for c in names])[:, None]
        fired = scores >= thr
        window.append((now, fired, labels))
        while window and window[0][0] <= now - 3_600_000:
            window.popleft()
        # the reviewer's sample: each category of a sampled decision gets a (possibly wrong) verdict
        for j in np.flatnonzero(rng.random(n) < review):
            did = f"s{seq + j}:0"
            rec = DecisionRecord(did, POLICY, None, thresholds.version, int(ts[j]),
                                 {c: float(scores[i, j]) for i, c in enumerate(names)},
                                 frozenset(c for i, c in enumerate(names) if fired[i, j]))
            index[did] = rec
            index_order.append((rec.ts_ms, did))
            for i, c in enumerate(names):
                verdict = _verdict(bool(fired[i, j]), bool(labels[i, j]), rng.random() < flip)
                arrive = int(ts[j] + rng.exponential(delay_mean_s * 1000))
                fb = Feedback(decision_id=did, stream_id=f"s{seq + j}", category=c, verdict=verdict,
                              source="reviewer", ts_ms=arrive)
                for _ in range(2 if rng.random() < dup_rate else 1):
                    heapq.heappush(pending, (arrive, tiebreak, fb))
                    tiebreak += 1
                    arrive += int(rng.exponential(600_000))  # redelivered later
            if rng.random() < unknown_rate:
                heapq.heappush(pending, (now, tiebreak, Feedback(
                    decision_id=f"ghost{tiebreak}", stream_id="ghost", category=names[0],
                    verdict="false_positive", source="reviewer", ts_ms=now)))
                tiebreak += 1
        seq += n
        # the tuner: feedback that has arrived by now, then at most one bounded move per key
        batch = []
        while pending and pending[0][0] <= now:
            batch.append(heapq.heappop(pending)[2])
        for fb in batch:
            if fb.category in delivered:
                delivered[fb.category] += 1
                seen = index.get(fb.decision_id)
                delivered_fired[fb.category] += seen is not None and fb.category in seen.semantic
        horizon = now - int(retention_h * 3_600_000)
        while index_order and index_order[0][0] < horizon:
            index.pop(index_order.popleft()[1], None)
        state = observe(state, batch, index, thresholds, specs, now)
        state = expire(state, horizon)
        for change in tune(state, thresholds, specs, now, shadow_sets):
            changes.append(change)
            thresholds = thresholds.apply(change)
        # record
        fw = np.concatenate([w[1] for w in window], axis=1)
        lw = np.concatenate([w[2] for w in window], axis=1)
        for i, c in enumerate(names):
            t = thresholds.get(POLICY, c)
            p, r = curves[c].at(t)
            tr = traces[c]
            tr.t_h.append(now / 3_600_000)
            tr.threshold.append(t)
            tr.precision.append(p)
            tr.recall.append(r)
            nf = int(fw[i].sum())
            tr.window_precision.append(float((fw[i] & lw[i]).sum() / nf) if nf else None)
            tr.events.append(delivered[c])
            tr.fired_events.append(delivered_fired[c])
    return Run(list(cats), traces, changes, state, thresholds, curves, shadow, delivered)


def _verdict(fired: bool, positive: bool, flipped: bool) -> Verdict:
    right = fired == positive
    if flipped:
        right = not right
    if right:
        return "correct"
    return "false_positive" if fired else "false_negative"


def converged_at(trace: Trace, target: float) -> int | None:
    """Index of the tick from which precision stays within ±2 points of the target (None: never)."""
    off = [i for i, p in enumerate(trace.precision) if abs(p - target) > CONVERGE_BAND]
    if not off:
        return 0
    return None if off[-1] == len(trace.precision) - 1 else off[-1] + 1


def events_to_converge(trace: Trace, target: float) -> tuple[int | None, float | None]:
    """Feedback events (and hours) until precision enters ±2 points of the target for good."""
    i = converged_at(trace, target)
    return (None, None) if i is None else (trace.events[i], trace.t_h[i])


def _change_row(ch: ThresholdChange) -> dict[str, Any]:
    return {"category": ch.category, "version": ch.version, "t_h": round(ch.ts_ms / 3_600_000, 3),
            "old": round(ch.old, 4), "proposed": round(ch.value, 4), "status": ch.status,
            "reason": ch.reason, "evidence": dict(ch.evidence)}


def summarize(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in run.cats:
        tr = run.traces[c.name]
        target = c.spec.target_precision or 0.0
        events, hours = events_to_converge(tr, target)
        i = converged_at(tr, target)
        mine = [ch for ch in run.changes if ch.category == c.name]
        out[c.name] = {
            "target_precision": target,
            "final_precision": round(tr.precision[-1], 4),
            "final_recall": round(tr.recall[-1], 4),
            "events_to_converge": events,
            "fired_events_to_converge": None if i is None else tr.fired_events[i],
            "hours_to_converge": None if hours is None else round(hours, 2),
            "final_threshold": round(tr.threshold[-1], 4),
            "start_threshold": c.start,
            "converged": events is not None,
            "feedback_events": run.delivered[c.name],
            "changes": sum(1 for ch in mine if ch.status == "promoted"),
            "rejected": sum(1 for ch in mine if ch.status == "rejected"),
            "max_changes_in_any_hour": _max_per_hour([ch.ts_ms for ch in mine]),
            "max_abs_step": round(max((abs(ch.value - ch.old) for ch in mine), default=0.0), 4),
            "spec": c.spec.model_dump(exclude={"shadow"}),
        }
    return out


def _max_per_hour(ts: Sequence[int]) -> int:
    ts = sorted(ts)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - 3_600_000:
            j += 1
        best = max(best, i - j + 1)
    return best


def plot(run: Run, folder: Path, prefix: str = "") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in run.cats:
        tr = run.traces[c.name]
        target = c.spec.target_precision or 0.0
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, dpi=80)
        ax1.plot(tr.t_h, tr.threshold, color="k", lw=1.2, label="threshold")
        ax1.axhline(c.spec.floor, color="grey", ls=":", lw=0.8)
        ax1.axhline(c.spec.ceiling, color="grey", ls=":", lw=0.8)
        rej = [ch for ch in run.changes if ch.category == c.name and ch.status == "rejected"]
        if rej:
            ax1.scatter([ch.ts_ms / 3_600_000 for ch in rej], [ch.value for ch in rej], marker="x",
                        color="red", s=18, label="rejected by shadow gate", zorder=3)
        ax1.set_ylabel("threshold")
        ax1.set_ylim(0, 1)
        ax1.legend(loc="lower right", fontsize=8)
        ax1.set_title(f"{prefix}{c.name}: start {c.start}, target precision {target}", fontsize=10)
        wp = [np.nan if v is None else v for v in tr.window_precision]
        ax2.plot(tr.t_h, wp, color="tab:blue", lw=0.5, alpha=0.4, label="precision (last hour)")
        ax2.plot(tr.t_h, tr.precision, color="tab:blue", lw=1.4, label="precision")
        ax2.plot(tr.t_h, tr.recall, color="tab:orange", lw=1.4, label="recall")
        ax2.axhspan(target - CONVERGE_BAND, target + CONVERGE_BAND, color="tab:green", alpha=0.15)
        events, hours = events_to_converge(tr, target)
        if hours is not None:
            ax2.axvline(hours, color="tab:green", ls="--", lw=0.8, label=f"converged ({events} events)")
        if c.spec.shadow is not None and c.spec.shadow.min_recall > 0.5:
            ax2.axhline(c.spec.shadow.min_recall, color="red", ls=":", lw=0.8,
                        label="recall floor (on the shadow set)")
        ax2.set_ylim(0, 1.02)
        ax2.set_xlabel("simulated hours")
        ax2.legend(loc="lower right", fontsize=7, ncol=2)
        fig.tight_layout()
        path = folder / f"{c.name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(str(path))
    return paths


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tuning.json"))
    ap.add_argument("--plots", type=Path, default=None, help="folder for PNG plots")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--hours", type=float, default=120.0)
    ap.add_argument("--rate", type=float, default=2.0, help="decisions per second")
    ap.add_argument("--review", type=float, default=0.10, help="share of decisions a reviewer labels")
    ap.add_argument("--flip", type=float, default=0.05, help="share of verdicts the reviewer gets wrong")
    args = ap.parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    sim = {"seed": args.seed, "hours": args.hours, "rate": args.rate, "review": args.review,
           "flip": args.flip}

    main_run = simulate(categories(args.flip), **sim)
    cats = summarize(main_run)
    # the same stream with verdict noise left uncorrected: the bias label_noise removes
    naive = summarize(simulate(categories(0.0), **sim))
    gate_run = simulate(recall_breaking(), **sim)
    gate_cat = summarize(gate_run)["dangerous"]
    gate_spec = gate_run.cats[0].spec
    sc, sl = gate_run.shadow["dangerous"]
    final_op = operating_point(gate_run.thresholds.get(POLICY, "dangerous"), sc, sl)

    result: dict[str, Any] = {
        "command": "python -m benchmarks.tuning " + " ".join(argv_list),
        "git_sha": _git_sha(),
        "config": sim | {"tick_s": 60, "reviewer_delay_mean_s": 900, "duplicate_rate": 0.03,
                         "unknown_rate": 0.01, "index_retention_h": 6, "converge_band": CONVERGE_BAND},
        "categories": cats,
        "all_converged": all(v["converged"] for v in cats.values()),
        "feedback_counts": asdict(main_run.state.counts),
        "ablation_uncorrected_noise": {n: {k: v[k] for k in ("target_precision", "final_precision",
                                                             "final_recall", "final_threshold",
                                                             "events_to_converge")}
                                       for n, v in naive.items()},
        "shadow_gate": {
            "accepted": [_change_row(ch) for ch in main_run.changes + gate_run.changes
                         if ch.status == "promoted"],
            "rejected": [_change_row(ch) for ch in gate_run.changes + main_run.changes
                         if ch.status == "rejected"],
            "scenario": {
                "category": "dangerous",
                "target_precision": gate_cat["target_precision"],
                "min_recall": gate_spec.shadow.min_recall if gate_spec.shadow else None,
                "start_threshold": gate_cat["start_threshold"],
                "final_threshold": gate_cat["final_threshold"],
                "final_precision": gate_cat["final_precision"],
                "final_recall": gate_cat["final_recall"],
                "final_shadow_recall": round(final_op.recall or 0.0, 4),
                "promoted": gate_cat["changes"],
                "rejected": gate_cat["rejected"],
            },
        },
    }
    if args.plots is not None:
        result["plots"] = plot(main_run, args.plots) + plot(gate_run, args.plots, prefix="shadow gate: ")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for n, v in cats.items():
        print(f"{n:10s} target {v['target_precision']:.2f}  final precision {v['final_precision']:.3f}"
              f"  recall {v['final_recall']:.3f}  threshold {v['start_threshold']:.2f} -> "
              f"{v['final_threshold']:.3f}  events_to_converge {v['events_to_converge']}")
    s = result["shadow_gate"]["scenario"]
    print(f"shadow gate: {s['promoted']} promoted, {s['rejected']} rejected; final threshold "
          f"{s['final_threshold']}, shadow recall {s['final_shadow_recall']} (floor {s['min_recall']})")
    return 0 if result["all_converged"] and s["rejected"] > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
