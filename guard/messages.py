"""Wire contracts: frozen, versioned msgspec Structs, JSON on every topic.

Every message carries ``v`` (schema version). Decoders validate types and constraints at the edge;
anything that fails becomes a ``SchemaError`` whose text is safe to log (it names the field, never
the payload).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar

import msgspec

from guard.errors import SchemaError

SCHEMA_VERSION = 1

Action = Literal["allow", "redact", "block"]
Verdict = Literal["false_positive", "false_negative", "correct"]

StreamId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
#: a tenant id is the first part of a threshold key ``tenant/policy/category``, where ``*`` stands
#: for every tenant: with either in it the key would not read back, or would be the policy-wide one
_TENANT_ID = r"^[^/*]+$"
TenantId = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_TENANT_ID)]
TENANT_ID_RULE = "a tenant id is not empty and has no '/' or '*' (they delimit threshold keys " \
                 "tenant/policy/category, '*' for every tenant)"


def is_tenant_id(tenant: str) -> bool:
    """``TenantId``'s rule, for chunks: their stored form keeps a plain ``str`` so that states
    holding chunks from before the rule still load, and the pipeline checks it where they enter."""
    return re.match(_TENANT_ID, tenant) is not None


class Chunk(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A piece of an LLM answer on ``llm.chunks`` (key ``stream_id``)."""

    v: Literal[1] = 1
    stream_id: StreamId
    seq: NonNegInt
    text: Annotated[str, msgspec.Meta(max_length=65_536)] = ""
    final: bool = False
    ts_ms: NonNegInt = 0
    tenant: str | None = None  # a TenantId: checked where chunks enter (Pipeline), not here,
    # so a state that holds a chunk from before the check still loads
    policy: str | None = None
    prompt: Annotated[str, msgspec.Meta(max_length=65_536)] | None = None


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """A judged span, in absolute character offsets of the stream's original text."""

    start: NonNegInt
    end: NonNegInt
    category: str
    detector: str
    label: str = ""
    score: float = 1.0


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """Why a principle fired: which detector, on what span, with what score against what threshold."""

    principle: str
    action: Action
    category: str
    detector: str
    score: float
    threshold: float
    start: NonNegInt
    end: NonNegInt
    label: str = ""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one chunk on ``guard.decisions`` (key ``stream_id``).

    ``text`` is what may be shown now: the newly released part of the stream, redacted; it is empty
    while text is held and once the stream is blocked. ``released_offset`` is the number of original
    characters of the stream released so far (the watermark); ``held_chars`` what is still held.
    ``unjudged_chars``: how many of the characters released by this decision no layer of the policy
    had cleared: let through by a fail-open policy while a detector failed, or forced out by the
    policy's ``max_hold_back_chars`` before the layers settled them. 0 is the normal case.
    """

    v: Literal[1] = 1
    decision_id: str
    stream_id: StreamId
    seq: NonNegInt
    action: Action
    text: str
    released_offset: NonNegInt
    held_chars: NonNegInt = 0
    final: bool = False
    spans: tuple[Span, ...] = ()
    scores: dict[str, float] = {}
    principle: str | None = None
    evidence: tuple[Evidence, ...] = ()
    replacement: str | None = None
    policy: str = "default"
    tenant: str | None = None
    thresholds_version: NonNegInt = 0
    model_version: str = ""
    ts_ms: NonNegInt = 0
    latency_ms: float = 0.0
    unjudged_chars: NonNegInt = 0


class Feedback(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A reviewer's or user's verdict on a decision, on ``guard.feedback``."""

    v: Literal[1] = 1
    decision_id: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    stream_id: StreamId
    category: str
    verdict: Verdict
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    ts_ms: NonNegInt = 0
    feedback_id: str | None = None


class ThresholdChange(msgspec.Struct, frozen=True, kw_only=True):
    """A threshold event on the compacted ``guard.thresholds`` topic (key ``tenant/policy/category``)."""

    v: Literal[1] = 1
    policy: str
    category: str
    tenant: TenantId | None = None
    old: Probability  # in force again if the change is rejected, so held to the same range as value
    value: Probability
    version: NonNegInt
    # released: an operator's override ends and the key falls back (tenant → policy-wide → the
    # policy file's value); the event stays the key's newest, so compaction keeps the release
    status: Literal["promoted", "rejected", "pinned", "unpinned", "released"] = "promoted"
    pinned: bool = False
    reason: str = ""
    evidence: dict[str, float] = {}
    ts_ms: NonNegInt = 0
    #: the policy file's threshold for the category when the event was written: once the file says
    #: otherwise (an operator edited it), the event no longer holds. None (older events): it holds
    base: Probability | None = None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A record guard could not use, on ``guard.deadletter``, with the reason and the raw bytes.

    Some dead letters are about a stream rather than one consumed record, and say so: a gap given
    up names the ``skipped`` seqs and has no raw bytes (nothing was received), and a chunk still
    waiting when its stream expired carries that chunk re-encoded. Both have ``offset`` -1 and name
    the ``stream_id``. The two fields are optional, so older readers and records still fit.
    """

    v: Literal[1] = 1
    error: str
    code: str
    topic: str
    partition: int = -1
    offset: int = -1
    raw_b64: str = ""
    ts_ms: NonNegInt = 0
    stream_id: str | None = None
    #: first and last seq of a range given up behind a gap
    skipped: tuple[NonNegInt, NonNegInt] | None = None


def decision_id(stream_id: str, seq: int) -> str:
    """Deterministic, so a replay after a crash produces the same ids (idempotent downstream)."""
    return f"{stream_id}:{seq}"


_T = TypeVar("_T")
_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {
    t: msgspec.json.Decoder(t)
    for t in (Chunk, Decision, Feedback, ThresholdChange, DeadLetter)
}


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def decode(kind: type[_T], raw: bytes | str) -> _T:
    """Decode and validate ``raw`` as ``kind``; raise ``SchemaError`` naming the field at fault."""
    try:
        return _decoders[kind].decode(raw)  # type: ignore[no-any-return]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SchemaError(f"invalid {kind.__name__}: {exc}") from None
