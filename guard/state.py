"""Per-stream state: everything a worker must remember about one stream between chunks.

It is a msgspec Struct so it can live in a changelog-backed Faust table (JSON bytes) and a
restarted worker resumes exactly where the previous one stopped. It holds a bounded amount of text:
the unreleased tail plus the left context the layers need, never the whole history.
"""

from __future__ import annotations

import msgspec

from guard.errors import StateError

from guard.messages import Chunk, Decision, Evidence


class Opener(msgspec.Struct, frozen=True):
    """The text that opened an entity still open at ``start`` (a private key's BEGIN line)."""

    start: int
    text: str


class StreamState(msgspec.Struct, kw_only=True):
    stream_id: str
    policy: str
    tenant: str | None = None
    next_seq: int = 0
    #: absolute offset of ``text[0]``; text before it has been forgotten
    base: int = 0
    #: retained text: left context before the watermark and everything not yet released
    text: str = ""
    #: watermark: original characters released so far
    released: int = 0
    #: output already covers original text up to here (a placeholder can run ahead of the watermark)
    covered: int = 0
    #: the semantic layer has scored windows that end here: text before it is semantically cleared
    sem_cursor: int = 0
    #: context layer (``guard.context.Carry``): decayed maximum of the scores of windows that ended
    #: before the latest one began, per category (empty until one has), and the (end offset,
    #: scores) of the windows that may still overlap the next
    risk: list[float] = []
    recent: list[tuple[int, list[float]]] = []
    #: per category, the highest effective score among the windows scored for the latest chunk that
    #: had any (every decision carries scores for feedback)
    last_scores: list[float] = []
    #: the prompt's scores, when the producer sent a prompt
    prompt_risk: list[float] | None = None
    #: the prompt until its scores are in (a failed call retries it with the next chunk's windows)
    prompt: str | None = None
    #: a block was decided; text is released up to here (once every layer cleared it), then the stream stops
    block_at: int | None = None
    block_evidence: tuple[Evidence, ...] = ()
    block_principle: str | None = None
    blocked: bool = False
    final: bool = False
    #: per scanner, the opener of an entity still open (see ``ScanResult.opened``): kept because
    #: the entity can outlast the retained text, and shown to the scanner again once it has
    #: left the scan context, so the entity stays open (and masked) until it ends
    openers: dict[str, Opener] = {}
    #: chunks that arrived ahead of a gap, by seq
    pending: dict[int, Chunk] = {}
    #: decisions not yet known to be delivered (newest last, at most ``MAX_OUTBOX``): a worker that
    #: dies after this state reached the changelog but before a decision reached its topic replays
    #: the chunk, finds it a duplicate, and sends the decision from here (same ``decision_id``).
    #: Whoever delivers decisions prunes it (``streams.agents.guard``); ``Pipeline.moderate`` empties it
    outbox: tuple[Decision, ...] = ()
    #: for outbox decisions of chunks that waited behind a gap: decided seq → seq of the record
    #: whose arrival decided it (the one redelivered after a crash; the held one's was committed)
    decided_by: dict[int, int] = {}
    #: the last gaps given up (first, last seq): a chunk from one that turns up is dead-lettered
    skipped: list[tuple[int, int]] = []
    gap_since_ms: int | None = None
    updated_ms: int = 0

    def keep_outbox(self, outbox: tuple[Decision, ...]) -> None:
        """Set the outbox, forgetting who decided the decisions no longer in it."""
        self.outbox = outbox
        kept = {d.seq for d in outbox}
        if any(k not in kept for k in self.decided_by):
            self.decided_by = {k: v for k, v in self.decided_by.items() if k in kept}

    @property
    def end(self) -> int:
        return self.base + len(self.text)

    def slice(self, start: int, end: int) -> str:
        return self.text[start - self.base : end - self.base]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StreamState)


def dump_state(state: StreamState) -> bytes:
    return _encoder.encode(state)


def load_state(raw: bytes) -> StreamState:
    """Raises ``StateError`` (a ``GuardError``) for a state this version cannot read, so the caller
    can set that one stream aside instead of failing everything around it."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise StateError(f"stream state unreadable: {exc}") from None
