"""The policy file format, validated on load.

A policy is a small constitution: principles in plain words, each naming what it watches (harm
categories and/or PII entities), which detector layers may fire it, the threshold, the action, and
what to do when a detector cannot answer. Unknown keys are rejected so a typo never silently turns a
rule off.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guard.detectors.pii import ENTITIES
from guard.thresholds import ShadowSpec, TuningSpec
from guard.types import CATEGORIES

__all__ = ["ContextSpec", "PolicySpec", "Principle", "ShadowSpec", "TuningSpec", "WindowSpec"]

Layer = Literal["lexical", "pii", "semantic"]
ActionName = Literal["allow", "redact", "block"]
FailMode = Literal["closed", "open"]

PII_ENTITIES: tuple[str, ...] = ENTITIES  # what the PII layer can recognise


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Principle(_Model):
    id: Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    text: str = Field(min_length=1, description="the principle in plain words")
    categories: tuple[str, ...] = ()
    entities: tuple[str, ...] = Field((), description="PII entity types (for the pii layer)")
    detectors: tuple[Layer, ...] = Field(("semantic", "lexical"), description="layers that may fire it")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="semantic probability at which it fires")
    action: ActionName
    on_detector_error: FailMode | None = Field(None, description="overrides the policy-wide fail mode")
    tuning: TuningSpec | None = None
    examples: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Principle:
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {list(CATEGORIES)}")
        bad = [e for e in self.entities if e not in PII_ENTITIES]
        if bad:
            raise ValueError(f"unknown PII entities {bad}; known: {list(PII_ENTITIES)}")
        if "pii" in self.detectors and not self.entities:
            raise ValueError("a principle using the pii detector must list entities")
        if self.entities and "pii" not in self.detectors:
            raise ValueError("entities need the pii detector in detectors")
        if not self.categories and not self.entities:
            raise ValueError("a principle must name categories or entities")
        if self.entities and self.action == "allow":
            raise ValueError("a PII principle must redact or block")
        return self


class WindowSpec(_Model):
    tokens: int = Field(64, ge=8, le=254, description="tokens per semantic window")
    stride: int = Field(16, ge=1, description="new tokens between two scored windows")

    @model_validator(mode="after")
    def _stride(self) -> WindowSpec:
        if self.stride > self.tokens:
            raise ValueError("stride must not exceed tokens")
        return self


class ContextSpec(_Model):
    decay: float = Field(0.5, ge=0.0, lt=1.0, description="how much of earlier windows' risk carries over")
    prompt_weight: float = Field(0.5, ge=0.0, le=1.0, description="how much the prompt's risk counts")


class PolicySpec(_Model):
    policy: Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str = ""
    max_hold_back_chars: int = Field(256, ge=0, description="upper bound on text held per stream")
    window: WindowSpec = WindowSpec()
    context: ContextSpec = ContextSpec()
    on_detector_error: FailMode = "closed"
    replacement: str = "[response withheld by policy]"
    principles: tuple[Principle, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PolicySpec:
        ids = [p.id for p in self.principles]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate principle ids {dup}")
        sem = [c for p in self.principles if "semantic" in p.detectors for c in p.categories]
        dup = sorted({c for c in sem if sem.count(c) > 1})
        if dup:
            raise ValueError(f"categories {dup} appear in more than one semantic principle "
                             "(each category has one threshold per policy)")
        return self
