"""Live thresholds: policy defaults plus the overrides feedback tuning has published.

``Thresholds`` is an immutable value. A worker holds one, swaps it for ``thresholds.apply(change)``
on every event from the compacted ``guard.thresholds`` topic, and hands the current object to
``decide`` as its snapshot: nothing a decision reads can change under it, and the decision records
``version`` so feedback on it can later be matched to the thresholds that produced it.

Why the apply rule is "per key, the newest event wins unless its version is older, and the state
of a key is a function of that event alone": the topic is compacted (only the newest event per key
survives), delivery may repeat after a crash, and a restarted worker replays from the start. With
that rule a replica that saw every event, one that saw them twice and one that only saw the
compacted log all end in the same state. Two writers (the tuner and ``guard thresholds pin``) can
pick the same version for one key; the event later in the key's partition then wins, because it is
the one compaction keeps. An older version never replaces a newer one.

``TuningSpec`` (how feedback may move one category's threshold) lives here, below both
``guard.policy`` and ``guard.tuning`` in the import layers, because both need it and, as siblings,
they may not import each other. ``guard.tuning`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guard.messages import ThresholdChange

__all__ = [
    "DEFAULT_TARGET_PRECISION",
    "Override",
    "ShadowSpec",
    "ThresholdKey",
    "Thresholds",
    "TuningSpec",
]

DEFAULT_TARGET_PRECISION = 0.9


class ThresholdKey(NamedTuple):
    """What one threshold belongs to; ``tenant=None`` is the policy-wide threshold."""

    tenant: str | None
    policy: str
    category: str

    @property
    def topic_key(self) -> str:
        """The Kafka key on ``guard.thresholds`` (``*`` for the policy-wide threshold)."""
        return f"{self.tenant if self.tenant is not None else '*'}/{self.policy}/{self.category}"

    @classmethod
    def of(cls, change: ThresholdChange) -> ThresholdKey:
        return cls(change.tenant, change.policy, change.category)


@dataclass(frozen=True, slots=True)
class Override:
    """The in-force state of one key, as set by its newest threshold event."""

    value: float
    version: int
    pinned: bool
    ts_ms: int
    status: str
    reason: str = ""
    proposed: float | None = None  # the value a rejected proposal asked for
    base: float | None = None  # the policy file's value the event was made against

    @property
    def in_force(self) -> bool:
        """False once released: lookups fall back past this key as if it had no event."""
        return self.status != "released"


def _in_force(change: ThresholdChange) -> tuple[float, bool]:
    """Value and pin a key has after ``change``, from that event alone (compaction-safe).

    A rejected proposal leaves the old value in force; it still becomes the key's newest event, so
    the event must say which value stays (``old``), or compaction would lose it.
    """
    value = change.old if change.status == "rejected" else change.value
    if change.status == "pinned":
        return value, True
    if change.status in ("unpinned", "released"):
        return value, False
    return value, change.pinned


@dataclass(frozen=True, slots=True)
class Thresholds:
    """An immutable snapshot of every live threshold; satisfies ``guard.policy.decide.ThresholdView``.

    ``defaults`` maps ``(policy, category)`` to the policy's threshold; ``overrides`` holds the
    newest event per ``ThresholdKey``. ``version`` is the highest event version applied so far: it
    only grows, and decisions carry it.
    """

    defaults: Mapping[tuple[str, str], float] = field(default_factory=lambda: MappingProxyType({}))
    overrides: Mapping[ThresholdKey, Override] = field(default_factory=lambda: MappingProxyType({}))
    version: int = 0

    @classmethod
    def from_defaults(cls, defaults: Mapping[tuple[str, str], float], version: int = 0) -> Thresholds:
        return cls(MappingProxyType(dict(defaults)), MappingProxyType({}), version)

    def with_defaults(self, defaults: Mapping[tuple[str, str], float]) -> Thresholds:
        """After a policy reload: new defaults, tuned overrides and version kept."""
        return Thresholds(MappingProxyType(dict(defaults)), self.overrides, self.version)

    # -- writing ---------------------------------------------------------------------------------

    def apply(self, change: ThresholdChange) -> Thresholds:
        """The thresholds after ``change``, applied in the topic's order; ``self`` when the event is
        older for its key than the one in force, or changes nothing.

        Idempotent (a redelivered event changes nothing) and order-insensitive across keys. An event
        of the same version as the one in force replaces it: of two writers' events with one version,
        the later one in the partition is the one compaction keeps, so every replica must end there.
        """
        key = ThresholdKey.of(change)
        current = self.overrides.get(key)
        if current is not None and change.version < current.version:
            return self
        value, pinned = _in_force(change)
        new = Override(value=value, version=change.version, pinned=pinned, ts_ms=change.ts_ms,
                       status=change.status, reason=change.reason,
                       proposed=change.value if change.status == "rejected" else None,
                       base=change.base)
        if new == current:
            return self
        overrides = dict(self.overrides)
        overrides[key] = new
        return Thresholds(self.defaults, MappingProxyType(overrides),
                          max(self.version, change.version))

    # -- reading ---------------------------------------------------------------------------------

    def get(self, policy: str, category: str, tenant: str | None = None,
            default: float | None = None) -> float:
        """Tenant override, else policy-wide override, else ``default``, else the policy default.

        ``default`` (the threshold of the policy object the caller is deciding with) wins over the
        stored default because it is at least as fresh; raises ``KeyError`` when nothing is known.
        """
        file = default if default is not None else self.defaults.get((policy, category))
        if tenant is not None:
            o = self.overrides.get(ThresholdKey(tenant, policy, category))
            if _holds(o, file):
                return o.value  # type: ignore[union-attr]
        o = self.overrides.get(ThresholdKey(None, policy, category))
        if _holds(o, file):
            return o.value  # type: ignore[union-attr]
        if file is not None:
            return file
        raise KeyError((policy, category))

    def value(self, policy: str, category: str, tenant: str | None, default: float) -> float:
        """``ThresholdView`` protocol of ``guard.policy.decide``."""
        return self.get(policy, category, tenant, default)

    def entry(self, key: ThresholdKey) -> Override | None:
        return self.overrides.get(key)

    def overrides_key(self, key: ThresholdKey) -> bool:
        """Whether ``key`` holds a value of its own (an event that was not a release)."""
        return _holds(self.overrides.get(key), self.defaults.get((key.policy, key.category)))

    def key_version(self, key: ThresholdKey) -> int:
        """Version of the newest event for ``key`` (0 when it has none): decisions older are stale."""
        o = self.overrides.get(key)
        return o.version if o is not None else 0

    def changed_ms(self, key: ThresholdKey) -> int | None:
        """When ``key`` last had an event (promoted or rejected); feeds the tuner's rate bound."""
        o = self.overrides.get(key)
        return o.ts_ms if o is not None else None

    def is_pinned(self, key: ThresholdKey) -> bool:
        o = self.overrides.get(key)
        return o is not None and o.pinned and _holds(o, self.defaults.get((key.policy, key.category)))

    def view(self, policy: str, tenant: str | None = None) -> Mapping[str, float]:
        """Every known threshold of ``policy`` for ``tenant``, by category (for display and logs)."""
        cats = {c for (p, c) in self.defaults if p == policy}
        cats |= {k.category for k in self.overrides
                 if k.policy == policy and k.tenant in (None, tenant)}
        out: dict[str, float] = {}
        for c in sorted(cats):
            try:
                out[c] = self.get(policy, c, tenant)
            except KeyError:  # pragma: no cover - every collected category has a value
                continue
        return MappingProxyType(out)


def _holds(o: Override | None, file: float | None) -> bool:
    """Whether an override is in force against the policy file's current value ``file``.

    An event made when the file said something else is superseded: an operator who edits a
    threshold in the file means the new value, over whatever tuning or a pin had set against the
    old one (before, the edit was silently ignored once the key had had an event). The next event
    for the key is made against the new value."""
    return o is not None and o.in_force and (o.base is None or file is None or o.base == file)


# -- tuning specification (part of a policy file) -------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShadowSpec(_Model):
    """A frozen labeled set a proposed change is scored on before it is promoted.

    The gate guards floors the live feedback cannot see: raising a threshold to fix precision must
    not silently give up recall on known harmful examples.
    """

    dataset: str = Field(description="labeled JSONL file (path relative to the policy file)")
    split: str | None = Field(default=None, description="only rows of this split (e.g. dev)")
    min_recall: float = Field(default=0.0, ge=0.0, le=1.0,
                              description="reject a change whose recall on the set falls below this")
    min_precision: float = Field(default=0.0, ge=0.0, le=1.0,
                                 description="reject a change whose precision on the set falls below this")
    max_fpr: float | None = Field(default=None, ge=0.0, le=1.0,
                                  description="reject a change whose false-positive rate exceeds this")
    min_positives: int = Field(default=20, ge=1,
                               description="fewer labeled positives than this: the gate cannot vouch, reject")


class TuningSpec(_Model):
    """How feedback may move one category's threshold: towards a target, slowly, inside bounds.

    Exactly one target: ``target_precision`` (default 0.9 when neither is given) or ``target_fpr``.
    """

    target_precision: float | None = Field(default=None, gt=0.0, le=1.0,
                                           description="precision the tuner steers to")
    target_fpr: float | None = Field(default=None, gt=0.0, lt=1.0,
                                     description="false-positive rate the tuner steers to")
    tolerance: float | None = Field(default=None, ge=0.0, le=0.5,
        description="dead band around the target, in the target's units; no move inside it "
                    "(default 0.01 for precision, a tenth of target_fpr for FPR)")
    min_evidence: int = Field(default=30, ge=1,
                              description="verdicts needed since the last change before a move")
    max_step: float = Field(default=0.02, gt=0.0, le=0.5,
                            description="largest change of one update")
    floor: float = Field(default=0.05, ge=0.0, le=1.0,
                         description="lowest value the threshold may take")
    ceiling: float = Field(default=0.99, ge=0.0, le=1.0,
                           description="highest value the threshold may take")
    max_changes_per_hour: float = Field(
        default=6, ge=0,
        description="rate bound on changes (promoted or rejected); 0 freezes the threshold")
    pinned: bool = Field(default=False, description="a pinned threshold never moves")
    confidence_z: float = Field(default=1.0, ge=0.0, le=5.0,
        description="standard errors by which the evidence must clear the dead band before a move")
    label_noise: float = Field(default=0.0, ge=0.0, lt=0.5,
        description="known rate of wrong verdicts (from audits); estimates are corrected for it")
    half_life_s: float | None = Field(
        default=None, gt=0.0,
        description="evidence older than this counts half (exponential decay); None: no decay")
    scope: Literal["policy", "tenant"] = Field(
        default="policy", description="one threshold per policy, or one per tenant of the policy")
    shadow: ShadowSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_target(cls, data: object) -> object:
        if isinstance(data, Mapping) and data.get("target_precision") is None \
                and data.get("target_fpr") is None:
            return {**data, "target_precision": DEFAULT_TARGET_PRECISION}
        return data

    @model_validator(mode="after")
    def _check(self) -> TuningSpec:
        if self.target_precision is not None and self.target_fpr is not None:
            raise ValueError("give one target: target_precision or target_fpr, not both")
        if self.floor > self.ceiling:
            raise ValueError("floor must not exceed ceiling")
        return self

    @property
    def band(self) -> float:
        """The dead band in the target's units."""
        if self.tolerance is not None:
            return self.tolerance
        return 0.01 if self.target_fpr is None else self.target_fpr / 10.0

    @property
    def min_interval_ms(self) -> float:
        """Least time between two changes that keeps any hour under ``max_changes_per_hour``."""
        return float("inf") if self.max_changes_per_hour == 0 else 3_600_000.0 / self.max_changes_per_hour
