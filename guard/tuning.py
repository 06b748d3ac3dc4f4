"""Feedback tuning, the pure core: verdicts in, bounded threshold changes out.

No I/O, no clock, no logging: time comes in as ``now_ms``, the recent-decisions index and the
thresholds come in as values, and every function returns a new value. The feedback agent owns the
state, the index and the clock; it calls, per batch::

    state = observe(state, batch, index, thresholds, specs, now_ms)
    state = expire(state, before_ms=now_ms - index_retention_ms)
    for change in tune(state, thresholds, specs, now_ms, shadow_sets):
        publish(change); thresholds = thresholds.apply(change)

Why the pieces look the way they do:

* A verdict only means something next to what the decision did. ``false_positive`` on a decision
  where the category's score fired is a false positive of the threshold (it is too low);
  ``false_negative`` where it did not fire is a miss (too high); ``correct`` is a true positive
  or a true negative. A verdict that contradicts the decision, or a category that fired through
  another layer (a blocklist term), says nothing about the threshold and is only counted.
* A verdict labels a scored decision, and that label stays true when the threshold moves. So
  evidence is labeled counts per score bin, read back as (tp, fp, fn, tn) at any threshold: each
  move is judged on every verdict so far (decayed if the spec says so), and can aim at the
  threshold where the target is met instead of guessing a step from a gap. Only the
  ``min_evidence`` gate is about verdicts since the last change.
* A decision counts once per category, through its first verdict: replays, retries, a second
  reviewer and a flood under made-up source names cannot add weight (whoever may write to the
  feedback topic decides a decision's data point by answering first: grant it to reviewers).
  Verdicts on decisions the index no longer holds are ``unknown``.
* ``propose`` moves only when the evidence at the current threshold clears the target's dead band
  by ``confidence_z`` standard errors (Wilson bounds, so more false positives can only push the
  threshold up and more misses only down), at most ``max_step``, inside ``[floor, ceiling]``,
  never faster than ``max_changes_per_hour``, never when pinned.
* ``shadow_gate`` scores the proposal on a frozen labeled set, because live feedback cannot see
  what a raised threshold starts to miss on known harmful text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from guard.messages import Decision, Feedback, ThresholdChange, Verdict
from guard.thresholds import ShadowSpec, ThresholdKey, Thresholds, TuningSpec

__all__ = [
    "BINS",
    "Counts",
    "DecisionRecord",
    "Evidence",
    "FeedbackCounts",
    "GateResult",
    "OperatingPoint",
    "Outcome",
    "Proposal",
    "ShadowSpec",
    "TunerState",
    "TuningSpec",
    "classify",
    "expire",
    "observe",
    "operating_point",
    "propose",
    "shadow_gate",
    "to_change",
    "tune",
]

Outcome = Literal["tp", "fp", "fn", "tn"]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# -- evidence ---------------------------------------------------------------------------------------

#: Score resolution of the evidence: verdicts are kept as labeled counts per score bin of this width
#: (0.001), so the counts at any threshold, not just the one in force, can be read back.
BINS = 1000


def classify(fired: bool, verdict: Verdict) -> Outcome | None:
    """The confusion cell a verdict puts a decision in; None when it contradicts the decision."""
    if fired:
        return {"correct": "tp", "false_positive": "fp"}.get(verdict)  # type: ignore[return-value]
    return {"correct": "tn", "false_negative": "fn"}.get(verdict)  # type: ignore[return-value]


_EPS = 1e-9  # so that k / BINS lands in bin k despite binary fractions
#: how much newer than every record folded in a record at an old offset must be to count as one of
#: a feedback topic made again. Record times are the producers' clocks: two producers a few ms
#: apart put a newer time at a lower offset, and with no margin a crash re-read of such a record
#: (unknown the first time, its decision indexed by the restart) lowered the offsets folded and
#: counted the later records of the batch a second time
RECREATED_AFTER_MS = 10 * 60 * 1000


def _bin(score: float) -> int:
    return min(max(math.floor(score * BINS + _EPS), 0), BINS - 1)


def _edge(threshold: float) -> int:
    """First bin a threshold fires on.

    The bin holding the threshold counts as firing, so a score that fired (``score >= threshold``)
    is always read back as fired; a miss within 0.001 below the threshold reads as a hit. The one
    exception is the top edge: threshold 1.0 is edge ``BINS``, where nothing fires (the tuner's
    "raise as far as it goes"), while a score of exactly 1.0 (a saturated sigmoid) sits in the last
    bin and would fire on a worker at 1.0.
    """
    return min(max(math.floor(threshold * BINS + _EPS), 0), BINS)


def _wilson(x: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a rate; monotone: more successes raise it, more failures lower it."""
    if n <= 0.0:
        return 0.0, 1.0
    p = min(max(x / n, 0.0), 1.0)
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0))
    denom = 1 + z2 / n
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)


def _denoise(p: float, noise: float) -> float:
    """The true rate behind a rate observed through symmetric verdict flips at ``noise``."""
    return min(max((p - noise) / (1 - 2 * noise), 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Counts:
    """A confusion matrix (floats: decayed counts), with estimates corrected for verdict flips."""

    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0

    @property
    def total(self) -> float:
        return self.tp + self.fp + self.fn + self.tn

    def add(self, outcome: Outcome) -> Counts:
        return replace(self, **{outcome: getattr(self, outcome) + 1.0})

    def precision(self, noise: float = 0.0) -> float | None:
        n = self.tp + self.fp
        return None if n <= 0 else _denoise(self.tp / n, noise)

    def misses(self, noise: float = 0.0) -> float:
        """Estimated real misses: reported misses less the true negatives flipped into them."""
        return max(0.0, (self.fn * (1 - noise) - self.tn * noise) / (1 - 2 * noise))

    def recall(self, noise: float = 0.0) -> float | None:
        tp = max(0.0, (self.tp * (1 - noise) - self.fp * noise) / (1 - 2 * noise))
        fn = self.misses(noise)
        return None if tp + fn <= 0 else tp / (tp + fn)

    def negatives(self, noise: float = 0.0) -> tuple[float, float]:
        """Estimated real (false positives, true negatives).

        The not-fired side is taken as ``tn / (1 - noise)``: it drops the (small) share of real
        misses flipped to "correct", so the estimate never depends on the miss count and more misses
        can never push an FPR-targeted threshold up.
        """
        fp = max(0.0, (self.fp * (1 - noise) - self.tp * noise) / (1 - 2 * noise))
        return fp, self.tn / (1 - noise)

    def fpr(self, noise: float = 0.0) -> float | None:
        fp, tn = self.negatives(noise)
        return None if fp + tn <= 0 else fp / (fp + tn)


def _frozen(a: FloatArray) -> FloatArray:
    a.flags.writeable = False
    return a


def _zeros() -> FloatArray:
    return _frozen(np.zeros(BINS, dtype=np.float64))


@dataclass(frozen=True, slots=True, eq=False)
class Evidence:
    """What the verdicts say about one threshold key.

    ``positives``/``negatives`` are labeled decisions by score bin (the label is what the verdict
    implies: ``correct`` on a fired decision is a positive, ``false_positive`` a negative, ...). A
    verdict stays valid when the threshold moves (the label and the score do not change), so they
    are kept across changes and ``at(t)`` reads the confusion counts any threshold ``t`` would have
    had: every move is judged on all the evidence, not only what came after the last one.
    ``fresh`` counts only verdicts on decisions made under the threshold in force (since
    ``epoch``, the key's version): the ``min_evidence`` gate is about those. The bins decay when
    the spec sets a half-life; on a model rollout the caller starts a new ``TunerState``, since
    scores of another model live on another scale.

    ``folded`` is the last feedback record folded in, per feedback partition (offset and record
    time): the ``seen`` identities and the evidence are two writes, and a tuner that dies between
    them re-reads its uncommitted records with the evidence written and the identities not. Those
    records are known by it and are not counted twice (see ``observe``).
    """

    positives: FloatArray = field(default_factory=_zeros)
    negatives: FloatArray = field(default_factory=_zeros)
    fresh: Counts = Counts()
    epoch: int = 0
    updated_ms: int = 0
    folded: Mapping[int, Position] = field(default_factory=lambda: MappingProxyType({}))

    def has_folded(self, at: FeedbackAt) -> bool:
        """Whether the record at ``at`` (partition, offset, time) is in this evidence already. The
        time tells a re-read record from a new one on a feedback topic deleted and made again (its
        offsets start over, its records are newer): those count."""
        last = self.folded.get(at[0])
        return last is not None and at[1] <= last[0] and at[2] <= last[1] + RECREATED_AFTER_MS

    @property
    def total(self) -> float:
        return float(self.positives.sum() + self.negatives.sum())

    def decayed(self, now_ms: int, half_life_s: float | None) -> Evidence:
        """The bins as seen at ``now_ms``: old verdicts fade so a drifting stream is judged on recent ones."""
        if half_life_s is None or now_ms <= self.updated_ms:
            return self
        f = 0.5 ** ((now_ms - self.updated_ms) / (half_life_s * 1000.0))
        return Evidence(_frozen(self.positives * f), _frozen(self.negatives * f), self.fresh,
                        self.epoch, now_ms, self.folded)

    def restarted(self, epoch: int) -> Evidence:
        """The evidence after the key's threshold changed: bins kept, fresh counts from zero."""
        return Evidence(self.positives, self.negatives, Counts(), epoch, self.updated_ms, self.folded)

    def add(self, score: float, positive: bool, now_ms: int, half_life_s: float | None = None,
            fresh: Outcome | None = None, at: FeedbackAt | None = None) -> Evidence:
        """One more labeled decision; ``fresh`` its cell when it was decided under the current
        threshold, ``at`` the feedback record it came from."""
        e = self.decayed(now_ms, half_life_s)
        pos, neg = e.positives, e.negatives
        if positive:
            pos = pos.copy()
            pos[_bin(score)] += 1.0
        else:
            neg = neg.copy()
            neg[_bin(score)] += 1.0
        folded = e.folded
        if at is not None:
            last = folded.get(at[0])
            if last is None or at[1] > last[0]:
                folded = MappingProxyType({**folded, at[0]: (at[1], max(at[2], last[1] if last else 0))})
            elif at[2] > last[1] + RECREATED_AFTER_MS:  # offsets started over, newer records: made again
                folded = MappingProxyType({**folded, at[0]: (at[1], at[2])})
        return Evidence(_frozen(pos), _frozen(neg), e.fresh.add(fresh) if fresh else e.fresh,
                        e.epoch, max(e.updated_ms, now_ms), folded)

    def above(self) -> tuple[FloatArray, FloatArray]:
        """Positives and negatives firing at each bin edge ``k`` (threshold ``k / BINS``), k = 0..BINS."""
        pos = np.concatenate([np.cumsum(self.positives[::-1])[::-1], [0.0]])
        neg = np.concatenate([np.cumsum(self.negatives[::-1])[::-1], [0.0]])
        return pos, neg

    def at(self, threshold: float) -> Counts:
        """The confusion counts had every judged decision been decided at ``threshold``."""
        k = _edge(threshold)
        pos_above, neg_above = self.above()
        p, n = float(pos_above[0]), float(neg_above[0])
        tp, fp = float(pos_above[k]), float(neg_above[k])
        return Counts(tp=tp, fp=fp, fn=p - tp, tn=n - fp)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What the tuner must remember of a decision to read a verdict on it."""

    decision_id: str
    policy: str
    tenant: str | None
    thresholds_version: int
    ts_ms: int
    scores: Mapping[str, float]  # category → the score its threshold was compared with
    semantic: frozenset[str]  # categories whose score reached the threshold
    other: frozenset[str] = frozenset()  # categories fired by another layer (blocklist, ...)

    @classmethod
    def from_decision(cls, d: Decision) -> DecisionRecord:
        # Fail-closed evidence (a detector that could not answer) carries threshold 0: no score
        # was compared, so it says nothing about the threshold.
        semantic = [e for e in d.evidence
                    if e.detector == "semantic" and e.threshold > 0.0 and e.action != "allow"]
        sem = {e.category for e in semantic}
        other = {e.category for e in d.evidence if e.action != "allow"} - sem
        scores = dict(d.scores)
        for e in semantic:  # the firing score, where the chunk's scores lack it
            scores[e.category] = max(scores.get(e.category, 0.0), e.score)
        return cls(d.decision_id, d.policy, d.tenant, d.thresholds_version, d.ts_ms,
                   MappingProxyType(scores), frozenset(sem), frozenset(other))


@dataclass(frozen=True, slots=True)
class FeedbackCounts:
    """What became of verdicts (for metrics and the benchmark)."""

    counted: int = 0
    stale: int = 0  # counted, but decided under an older threshold: not fresh evidence
    duplicate: int = 0
    unknown: int = 0  # decision not (or no longer) in the recent-decisions index
    untuned: int = 0  # no tuning spec for the decision's policy and category
    unscored: int = 0  # the decision has no score for the category
    inconsistent: int = 0  # verdict contradicts the decision (false_positive on an allowed one)
    other_layer: int = 0  # the category fired through a non-threshold layer
    overridden: int = 0  # policy-scoped tuning, but the tenant has its own threshold
    recovered: int = 0  # re-read after a crash: in the evidence already, its identity was not written

    def bump(self, name: str) -> FeedbackCounts:
        return replace(self, **{name: getattr(self, name) + 1})


#: (decision id, category): one decision is one data point for a category's threshold, however
#: many verdicts it gets. Keyed by source too, as before, one decision counted once per source
#: name: 40 verdicts on one decision under 40 made-up sources were 40 units of evidence.
Identity = tuple[str, str]
#: (offset, record time in ms) of a feedback record, within its partition
Position = tuple[int, int]
#: (partition, offset, record time in ms) of a feedback record
FeedbackAt = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class TunerState:
    """Evidence per threshold key, the verdict identities already counted, and counters.

    ``seen`` maps an identity to its decision's time so ``expire`` can forget identities together
    with their decisions: a verdict on a forgotten decision is ``unknown`` anyway.
    """

    evidence: Mapping[ThresholdKey, Evidence] = field(default_factory=lambda: MappingProxyType({}))
    seen: Mapping[Identity, int] = field(default_factory=lambda: MappingProxyType({}))
    counts: FeedbackCounts = FeedbackCounts()


K = TypeVar("K")
V = TypeVar("V")


def _thawed(m: Mapping[K, V]) -> dict[K, V]:
    """A mutable copy. ``dict(proxy)`` walks a ``MappingProxyType`` key by key (0.44 s per million
    identities, on every feedback batch); its ``copy`` copies the dict underneath at C speed."""
    return m.copy() if isinstance(m, MappingProxyType | dict) else dict(m)


def observe(
    state: TunerState,
    feedback: Iterable[Feedback],
    decisions: Mapping[str, DecisionRecord],
    thresholds: Thresholds,
    specs: Mapping[tuple[str, str], TuningSpec],
    now_ms: int,
    positions: Sequence[FeedbackAt] | None = None,
) -> TunerState:
    """Fold a batch of verdicts into the evidence.

    ``decisions`` is the recent-decisions index (any mapping: a dict, a Faust table); ``specs`` maps
    ``(policy, category)`` to the category's tuning spec. A decision counts once per category:
    its first verdict, from whichever source (later ones, replays included, are duplicates).
    ``positions``: where each verdict was read (partition, offset, record time), in order. With
    them the state tells a record it has already folded in (``Evidence.has_folded``) even where
    its identity was lost, so the caller can write the evidence first and the identities after it.
    """
    evidence = _thawed(state.evidence)
    seen = _thawed(state.seen)
    counts = state.counts
    batch = list(feedback)
    if positions is not None and len(positions) != len(batch):
        raise ValueError(f"{len(positions)} positions for {len(batch)} verdicts")
    for i, fb in enumerate(batch):
        at = positions[i] if positions is not None else None
        rec = decisions.get(fb.decision_id)
        if rec is None:
            counts = counts.bump("unknown")
            continue
        spec = specs.get((rec.policy, fb.category))
        if spec is None:
            counts = counts.bump("untuned")
            continue
        ident = (fb.decision_id, fb.category)
        if ident in seen:
            counts = counts.bump("duplicate")
            continue
        seen[ident] = rec.ts_ms
        fired = fb.category in rec.semantic
        if fb.category in rec.other and not fired:
            counts = counts.bump("other_layer")
            continue
        outcome = classify(fired, fb.verdict)
        if outcome is None:
            counts = counts.bump("inconsistent")
            continue
        score = rec.scores.get(fb.category)
        if score is None:
            counts = counts.bump("unscored")
            continue
        tenant = rec.tenant if spec.scope == "tenant" else None
        if tenant is None and rec.tenant is not None \
                and thresholds.overrides_key(ThresholdKey(rec.tenant, rec.policy, fb.category)):
            counts = counts.bump("overridden")
            continue
        key = ThresholdKey(tenant, rec.policy, fb.category)
        epoch = thresholds.key_version(key)
        ev = evidence.get(key) or Evidence(epoch=epoch, updated_ms=now_ms)
        if at is not None and ev.has_folded(at):
            counts = counts.bump("recovered")
            continue
        if ev.epoch != epoch:
            ev = ev.restarted(epoch)
        # decided under this key's threshold in force: after its last event, and, for a tenant
        # whose own key was pinned and then released, after the release (before it, the tenant's
        # decisions were made at the pinned value, not at this key's)
        since = max(epoch, thresholds.key_version(ThresholdKey(rec.tenant, rec.policy, fb.category))
                    if tenant is None and rec.tenant is not None else 0)
        fresh = rec.thresholds_version >= since
        evidence[key] = ev.add(score, outcome in ("tp", "fn"), now_ms, spec.half_life_s,
                               outcome if fresh else None, at)
        counts = counts.bump("counted" if fresh else "stale")
    return TunerState(MappingProxyType(evidence), MappingProxyType(seen), counts)


def expire(state: TunerState, before_ms: int) -> TunerState:
    """Forget identities of decisions older than ``before_ms``.

    Use the recent-decisions index's horizon (or an older one): an identity forgotten while its
    decision is still indexed could be counted twice.
    """
    seen = {k: ts for k, ts in state.seen.items() if ts >= before_ms}
    if len(seen) == len(state.seen):
        return state
    return replace(state, seen=MappingProxyType(seen))


def forget_idle_tenants(state: TunerState, before_ms: int) -> tuple[TunerState, list[ThresholdKey]]:
    """Drop the evidence of tenant keys (``scope: tenant``) with no verdict since ``before_ms``.

    One key per tenant seen, about 16 KB each, was kept for good: memory grew with every tenant
    that ever sent feedback. A tenant idle this long starts its evidence afresh when it returns;
    its threshold stays as published (that lives on the thresholds topic, not here). Policy-wide
    keys are bounded by the policy files and are kept.
    """
    idle = [k for k, ev in state.evidence.items() if k.tenant is not None and ev.updated_ms < before_ms]
    if not idle:
        return state, []
    gone = set(idle)
    kept = {k: ev for k, ev in state.evidence.items() if k not in gone}
    return replace(state, evidence=MappingProxyType(kept)), idle


# -- proposals --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    """A bounded move of one threshold, with why and the figures it rests on."""

    old: float
    new: float
    reason: str
    figures: Mapping[str, float]
    ts_ms: int

    @property
    def delta(self) -> float:
        return self.new - self.old


def _r(x: float) -> float:
    return float(round(x, 4))


def _goal_up(ok: BoolArray, k: int) -> int:
    """First bin edge above ``k`` that meets the target (BINS when none does)."""
    hits = np.flatnonzero(ok[k + 1:])
    return k + 1 + int(hits[0]) if hits.size else BINS


def _goal_down(ok: BoolArray, k: int) -> int:
    """Lowest edge below ``k`` from which every edge up to ``k`` meets the target (``k``: none)."""
    fails = np.flatnonzero(~ok[:k])
    return int(fails[-1]) + 1 if fails.size else 0


def propose(
    current: float,
    evidence: Evidence,
    spec: TuningSpec,
    now_ms: int,
    last_change_ms: int | None,
    *,
    pinned: bool = False,
) -> Proposal | None:
    """The next threshold for one key, or None when it should stay.

    Moves when the evidence at ``current`` clears the target's dead band by ``confidence_z``
    standard errors (Wilson bounds, verdict flips corrected), towards the nearest threshold whose
    estimated rate meets the target, at most ``max_step`` away, inside ``[floor, ceiling]``.
    ``last_change_ms`` is when the key last had an event (``Thresholds.changed_ms``); ``pinned`` a
    runtime pin (``Thresholds.is_pinned``) on top of ``spec.pinned``.

    The ``min_evidence`` gate counts fresh verdicts on the side a move is about: judged firings
    to raise for precision, judged negatives to raise for FPR, judged positives (hits and misses)
    to lower. So a false positive can never unlock a lowering, nor a miss a raise.
    """
    if pinned or spec.pinned or spec.max_changes_per_hour == 0:
        return None
    # an event stamped ahead of this clock (a skewed host, a crafted ts_ms) says nothing usable
    # about when it was made: taken as is, it froze the key until that time came
    if last_change_ms is not None and last_change_ms <= now_ms and now_ms - last_change_ms < spec.min_interval_ms:
        return None
    ev = evidence.decayed(now_ms, spec.half_life_s)
    e, z, band = spec.label_noise, spec.confidence_z, spec.band
    c = ev.at(current)
    f = ev.fresh
    k = _edge(current)
    pos_above, neg_above = ev.above()
    figures: dict[str, float] = {
        "tp": _r(c.tp), "fp": _r(c.fp), "fn": _r(c.fn), "tn": _r(c.tn),
        "fresh_tp": f.tp, "fresh_fp": f.fp, "fresh_fn": f.fn, "fresh_tn": f.tn,
        "label_noise": e,
    }
    misses = c.misses(e)
    direction, goal, why = 0, current, ""
    if spec.target_fpr is None:
        target = spec.target_precision or 0.0
        lo_obs, hi_obs = _wilson(c.tp, c.tp + c.fp, z)
        lo, hi = _denoise(lo_obs, e), _denoise(hi_obs, e)
        est = c.precision(e)
        fired = pos_above + neg_above
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(fired > 0, pos_above / np.maximum(fired, 1e-12), 1.0)
        ok = (rate - e) / (1 - 2 * e) >= target  # nothing firing: nothing wrong
        figures |= {"target_precision": target, "precision_low": _r(lo), "precision_high": _r(hi)}
        if est is not None:
            figures["precision"] = _r(est)
        if f.tp + f.fp >= spec.min_evidence and est is not None and hi < target - band:
            direction, goal = 1, _goal_up(ok, k) / BINS
            why = f"precision {est:.3f} (at most {hi:.3f}) below target {target:.3f}"
        elif f.tp + f.fn >= spec.min_evidence and misses >= 1.0 and est is not None \
                and lo > target + band:
            direction, goal = -1, _goal_down(ok, k) / BINS
            why = f"precision {est:.3f} (at least {lo:.3f}) above target {target:.3f} with misses"
    else:
        target = spec.target_fpr
        fp_true, tn_true = c.negatives(e)
        lo, hi = _wilson(fp_true, fp_true + tn_true, z)
        est = c.fpr(e)
        neg_total = float(neg_above[0])
        fp_k = np.maximum(0.0, (neg_above * (1 - e) - pos_above * e) / (1 - 2 * e))
        tn_k = (neg_total - neg_above) / (1 - e)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = np.where(fp_k + tn_k > 0, fp_k / np.maximum(fp_k + tn_k, 1e-12), 0.0) <= target
        figures |= {"target_fpr": target, "fpr_low": _r(lo), "fpr_high": _r(hi)}
        if est is not None:
            figures["fpr"] = _r(est)
        if f.fp + f.tn >= spec.min_evidence and est is not None and lo > target + band:
            direction, goal = 1, _goal_up(ok, k) / BINS
            why = f"false-positive rate {est:.4f} (at least {lo:.4f}) above target {target:.4f}"
        elif f.tp + f.fn >= spec.min_evidence and misses >= 1.0 and est is not None \
                and hi < target - band:
            direction, goal = -1, _goal_down(ok, k) / BINS
            why = (f"false-positive rate {est:.4f} (at most {hi:.4f}) below target {target:.4f} "
                   "with misses")
    recall = c.recall(e)
    if recall is not None:
        figures["recall"] = _r(recall)
    figures["misses"] = _r(misses)
    if direction == 0:
        return None
    if direction > 0:
        new = min(goal, current + spec.max_step)
    else:
        new = max(goal, current - spec.max_step)
    new = min(max(new, spec.floor), spec.ceiling)
    if new == current or (new - current) * direction < 0:
        return None  # the goal is where we are, or the bounds forbid going that way
    figures |= {"goal": _r(goal), "step": _r(new - current)}
    verb = "raise" if new > current else "lower"
    reason = (f"{verb} {current:.4f} -> {new:.4f} (goal {goal:.3f}): {why}, "
              f"on {c.total:.0f} verdicts ({f.total:.0f} since the last change)")
    return Proposal(old=current, new=new, reason=reason, figures=MappingProxyType(figures),
                    ts_ms=now_ms)


# -- shadow gate ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Precision, recall and false-positive rate of one threshold on a labeled set."""

    threshold: float
    precision: float | None  # None when nothing fires
    recall: float | None  # None without positives
    fpr: float | None  # None without negatives
    positives: int
    negatives: int


def operating_point(threshold: float, scores: npt.ArrayLike, labels: npt.ArrayLike) -> OperatingPoint:
    """Where ``threshold`` operates on a labeled set (fires at ``score >= threshold``, as decide does)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be equal-length vectors")
    fired = s >= threshold
    tp = int(np.count_nonzero(fired & y))
    fp = int(np.count_nonzero(fired & ~y))
    pos = int(np.count_nonzero(y))
    neg = int(y.size - pos)
    return OperatingPoint(
        threshold=threshold,
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / pos if pos else None,
        fpr=fp / neg if neg else None,
        positives=pos,
        negatives=neg,
    )


@dataclass(frozen=True, slots=True)
class GateResult:
    """The shadow gate's verdict on a proposal, with the figures it was taken on."""

    accepted: bool
    reason: str
    old: OperatingPoint | None
    new: OperatingPoint | None

    def figures(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for tag, op in (("old", self.old), ("new", self.new)):
            if op is None:
                continue
            for name in ("precision", "recall", "fpr"):
                v = getattr(op, name)
                if v is not None:
                    out[f"shadow_{tag}_{name}"] = _r(v)
        if self.new is not None:
            out["shadow_positives"] = float(self.new.positives)
            out["shadow_negatives"] = float(self.new.negatives)
        return out


def shadow_gate(
    proposal: Proposal,
    scores: npt.ArrayLike | None,
    labels: npt.ArrayLike | None,
    spec: TuningSpec,
) -> GateResult:
    """Accept ``proposal`` only if the new threshold keeps the floors ``spec.shadow`` sets.

    Fails closed: a configured gate without data, or with too few positives to measure recall,
    rejects. Without a configured gate every proposal passes (figures still reported when given).
    """
    gate = spec.shadow
    if scores is None or labels is None:
        if gate is None:
            return GateResult(True, "no shadow gate", None, None)
        return GateResult(False, f"shadow set {gate.dataset!r} not loaded", None, None)
    old = operating_point(proposal.old, scores, labels)
    new = operating_point(proposal.new, scores, labels)
    if gate is None:
        return GateResult(True, "no shadow gate", old, new)
    if new.positives < gate.min_positives:
        return GateResult(False, f"shadow set has {new.positives} positives "
                                 f"(< {gate.min_positives}); cannot vouch", old, new)
    recall = new.recall or 0.0
    # A floor fails the move when the move breaks it, or makes worse one the threshold in force
    # already breaks. Judged on the new point alone, a floor broken now (a frozen set made
    # stricter, a threshold pinned out of it) also refused every move that mends it, for good.
    failures = []
    if _fails(recall, old.recall or 0.0, gate.min_recall):
        failures.append(f"recall {recall:.3f} < {gate.min_recall:.3f}")
    if gate.min_precision > 0.0 and new.precision is not None \
            and _fails(new.precision, old.precision, gate.min_precision):
        failures.append(f"precision {new.precision:.3f} < {gate.min_precision:.3f}")
    if gate.max_fpr is not None and new.fpr is not None \
            and _fails(-new.fpr, None if old.fpr is None else -old.fpr, -gate.max_fpr):
        failures.append(f"fpr {new.fpr:.4f} > {gate.max_fpr:.4f}")
    at = f"at {proposal.new:.4f} on {gate.dataset}"
    if failures:
        return GateResult(False, f"shadow gate: {', '.join(failures)} {at}", old, new)
    return GateResult(True, f"shadow gate: recall {recall:.3f} >= {gate.min_recall:.3f} {at}",
                      old, new)


def _fails(new: float, old: float | None, floor: float) -> bool:
    """A figure where higher is better, ``new`` after the move and ``old`` before it: under its
    floor, where it held before or got worse."""
    return new < floor and (old is None or old >= floor or new < old)


# -- the tuner step ---------------------------------------------------------------------------------


def to_change(key: ThresholdKey, proposal: Proposal, version: int,
              gate: GateResult | None = None, base: float | None = None) -> ThresholdChange:
    """The ``guard.thresholds`` event for a proposal: promoted, or rejected by its gate.

    A rejected event keeps ``old`` in force (see ``guard.thresholds``) and still restarts the
    key's evidence and rate clock, so a rejected move is not re-proposed on every batch.
    """
    accepted = gate is None or gate.accepted
    figures = dict(proposal.figures)
    reason = proposal.reason
    if gate is not None:
        figures |= gate.figures()
        reason = f"{reason}; {gate.reason}"
    return ThresholdChange(
        policy=key.policy, category=key.category, tenant=key.tenant,
        old=proposal.old, value=proposal.new, version=version,
        status="promoted" if accepted else "rejected",
        reason=reason, evidence=figures, ts_ms=proposal.ts_ms, base=base,
    )


ShadowData = tuple[npt.ArrayLike, npt.ArrayLike]


def tune(
    state: TunerState,
    thresholds: Thresholds,
    specs: Mapping[tuple[str, str], TuningSpec],
    now_ms: int,
    shadow_sets: Mapping[tuple[str, str], ShadowData] | None = None,
) -> list[ThresholdChange]:
    """Every change the evidence justifies now, gated and versioned after ``thresholds.version``.

    ``shadow_sets`` maps ``(policy, category)`` to ``(scores, labels)`` of that category's frozen
    set. The caller publishes the changes and applies them to its own ``thresholds`` before the
    next call (``apply`` is idempotent, so the echo from the topic is harmless).
    """
    changes: list[ThresholdChange] = []
    version = thresholds.version
    for key in sorted(state.evidence, key=lambda k: (k.policy, k.category, k.tenant or "")):
        ev = state.evidence[key]
        spec = specs.get((key.policy, key.category))
        if spec is None:
            continue
        if ev.epoch != thresholds.key_version(key):
            ev = ev.restarted(thresholds.key_version(key))  # fresh counts were for an older value
        current = thresholds.get(key.policy, key.category, key.tenant)
        proposal = propose(current, ev, spec, now_ms, thresholds.changed_ms(key),
                           pinned=thresholds.is_pinned(key))
        if proposal is None:
            continue
        data = (shadow_sets or {}).get((key.policy, key.category))
        scores, labels = data if data is not None else (None, None)
        gate = shadow_gate(proposal, scores, labels, spec)
        if not gate.accepted and data is not None:
            proposal, gate = _clip_to_gate(proposal, data, spec) or (proposal, gate)
        if not gate.accepted:
            last = thresholds.entry(key)
            if last is not None and last.status == "rejected" and last.value == proposal.old \
                    and last.proposed == proposal.new:
                continue  # the key's newest event already says this: the gate's set is frozen
        version += 1
        changes.append(to_change(key, proposal, version, gate,
                                 thresholds.defaults.get((key.policy, key.category))))
    return changes


def _clip_to_gate(proposal: Proposal, data: ShadowData,
                  spec: TuningSpec) -> tuple[Proposal, GateResult] | None:
    """The furthest part of a rejected move that the gate accepts, if any.

    Moving to the edge of the gate's floor is as close to the target as the floor allows; the
    remainder stays rejected until the evidence or the floor changes.
    """
    lo, hi = sorted((_edge(proposal.old), _edge(proposal.new)))
    edges = range(hi - 1, lo, -1) if proposal.new > proposal.old else range(lo + 1, hi)
    for k in edges:
        t = k / BINS
        if (t - proposal.old) * (proposal.new - proposal.old) <= 0:
            continue
        clipped = replace(proposal, new=t, reason=f"{proposal.reason}; clipped from "
                                                  f"{proposal.new:.4f} to {t:.4f}")
        gate = shadow_gate(clipped, data[0], data[1], spec)
        if gate.accepted:
            return clipped, gate
    return None
