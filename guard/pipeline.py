"""The only sequencer: chunk in → stream window → detectors → policy → decision out.

``Pipeline.process`` takes a batch of chunks from many streams (with each stream's state), runs the
fast layers in-process, sends every window of the batch to the semantic detector in one call (so
Triton batches across streams), applies the policy and returns one decision per chunk plus the new
state. It never raises for a bad chunk: the outcome carries the error for the caller to dead-letter.
No Kafka here: the Faust agent and the embedded API are thin shells around it.
"""

from __future__ import annotations

import copy
import time
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
import structlog

from guard import context, windowing
from guard.detectors.base import Scanner, SemanticDetector
from guard.errors import (DetectorError, GuardError, InternalError, PolicyError, SchemaError, SequenceGap,
                          StreamError, traced)
from guard.messages import TENANT_ID_RULE, Chunk, Decision, Span, decision_id, is_tenant_id
from guard.policy.decide import ScoredWindow, StaticThresholds, ThresholdView, decide
from guard.policy.load import PolicySet
from guard.policy.schema import PolicySpec
from guard.release import cut, settle_frontier
from guard.state import Opener, StreamState
from guard.types import CATEGORIES, Finding, Window

log = structlog.get_logger(__name__)

#: chunks held ahead of a sequence gap before the gap is declared lost
MAX_PENDING = 64
#: ... or their size as the state record stores them (JSON bytes): the held chunks live in that
#: record, and one over Kafka's default 1 MB message limit could not reach the table's changelog
MAX_PENDING_BYTES = 256 * 1024
#: gaps given up that a stream remembers, so a chunk arriving after its gap was given up is
#: dead-lettered with its text instead of being taken for a duplicate
MAX_SKIPPED = 8
#: decisions a stream's state keeps until their delivery is confirmed (``StreamState.outbox``):
#: one record can decide its own chunk and every chunk held behind a gap, and a batch may hold
#: more of the stream's chunks; all of them must survive for the replay after a crash
MAX_OUTBOX = 2 * MAX_PENDING + 2


def _layers(spec: PolicySpec) -> set[str]:
    return {d for p in spec.principles for d in p.detectors}


def _now_ms() -> int:
    return int(time.time() * 1000)


_json = msgspec.json.Encoder().encode


def _copy(state: StreamState | None) -> StreamState | None:
    """A stream's state as it is now. Shallow is enough: the pipeline replaces a state's fields,
    it never changes a list or mapping inside one."""
    return None if state is None else copy.copy(state)


def _held_bytes(state: StreamState) -> int:
    """The held chunks' size as the state record stores them (JSON: a control character is six bytes)."""
    return sum(len(_json(c)) for c in state.pending.values())


def _to_outbox(state: StreamState, decision: Decision, arrived: int) -> None:
    """Keep ``decision`` for replay, and which record's arrival made it (``StreamState.decided_by``)."""
    state.keep_outbox((*state.outbox, decision)[-MAX_OUTBOX:])
    if arrived != decision.seq:
        state.decided_by = {**state.decided_by, decision.seq: arrived}


@dataclass
class Outcome:
    """What became of one input chunk.

    ``decisions`` may be empty (a duplicate, or a chunk waiting behind a gap) or hold several (a gap
    was filled and the chunks behind it were decided too, each in its own round, in order).
    ``error`` is set when the chunk was rejected; the caller dead-letters it with ``error.code`` and
    the text of the error.
    ``replayed``: for a duplicate chunk, its decisions still in the state's outbox (their delivery
    was never confirmed): the caller sends them again, unchanged.
    """

    stream_id: str
    state: StreamState | None
    decisions: list[Decision] = field(default_factory=list)
    error: GuardError | None = None
    skipped: list[SequenceGap] = field(default_factory=list)  # gaps given up: report, don't reject
    replayed: list[Decision] = field(default_factory=list)
    #: chunks the stream held behind a gap, refused when their turn came (they follow its final
    #: chunk, or handling them raised): their records were consumed earlier, so the caller
    #: dead-letters the chunk itself
    rejected: list[tuple[Chunk, GuardError]] = field(default_factory=list)


@dataclass
class _Work:
    """One chunk of one stream in flight through a round."""

    state: StreamState
    chunk: Chunk
    spec: PolicySpec
    planned: list[windowing.PlannedWindow]
    prompt: Window | None
    t0: float
    #: the policy needs the semantic layer but none is configured: text from here fails as declared
    unjudged_from: int | None = None


@dataclass
class Pipeline:
    """Composes the layers; constructed by a composition root with its collaborators.

    ``scanners`` maps a layer name ("lexical", "pii") to its scanner; ``semantic`` may be None for
    deployments that run fast layers only (then policies that need it fail as they declare).
    """

    policies: Callable[[], PolicySet]
    scanners: Mapping[str, Scanner]
    semantic: SemanticDetector | None = None
    tokenizer: windowing.Tokenizer | None = None
    thresholds: Callable[[], ThresholdView] = StaticThresholds
    wall_ms: Callable[[], int] = _now_ms
    clock: Callable[[], float] = time.perf_counter
    gap_timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        self.replace_scanners(self.scanners)

    def replace_scanners(self, scanners: Mapping[str, Scanner]) -> None:
        """Take new fast-layer scanners (the worker's reload, after a blocklist edit): every scan
        from now on uses them. Swapping the mapping whole keeps a scan from seeing half of each."""
        self.scanners = dict(scanners)
        self._context_chars = max((getattr(s, "context_chars", 64) for s in self.scanners.values()),
                                  default=0)

    # -- public API ------------------------------------------------------------------------------

    async def process(self, items: Sequence[tuple[StreamState | None, Chunk]]) -> list[Outcome]:
        """Process a batch. Chunks of the same stream are handled in order, in successive rounds.

        A round decides at most one chunk per stream. A chunk that fills a gap releases the chunks
        held behind it, and they get further rounds of their own before the stream's next chunk in
        the batch: each chunk's text is released only after its own windows were scored, so what
        the stream releases does not depend on the order its chunks arrived in."""
        t0 = self.clock()
        outcomes = [Outcome(stream_id=c.stream_id, state=s) for s, c in items]
        arrived = [c.seq for _, c in items]  # the record behind each outcome's decisions
        states: dict[str, StreamState | None] = {}
        rounds: list[list[tuple[int, Chunk]]] = []
        seen: dict[str, int] = {}
        for i, (state, chunk) in enumerate(items):
            if chunk.stream_id not in states:
                states[chunk.stream_id] = state
            r = seen.get(chunk.stream_id, 0)
            seen[chunk.stream_id] = r + 1
            if r == len(rounds):
                rounds.append([])
            rounds[r].append((i, chunk))
        owner: dict[str, int] = {}  # the outcome that a stream's held chunks are reported under
        for rnd in rounds:
            owner.update((c.stream_id, i) for i, c in rnd)
            await self._round([(i, c, False) for i, c in rnd], states, outcomes, arrived, t0)
            while held := self._next_held(states, owner, outcomes):
                await self._round(held, states, outcomes, arrived, t0)
        return outcomes

    @staticmethod
    def _next_held(states: dict[str, StreamState | None], owner: dict[str, int],
                   outcomes: list[Outcome]) -> list[tuple[int, Chunk, bool]]:
        """The next round of held chunks: per stream, the one its gap-free sequence reaches now.
        Chunks held behind a final chunk can never be decided: they are rejected here."""
        rnd: list[tuple[int, Chunk, bool]] = []
        for sid, state in states.items():
            if state is None or not state.pending or sid not in owner:
                continue
            if state.final:
                for seq in sorted(state.pending):
                    outcomes[owner[sid]].rejected.append(
                        (state.pending[seq], StreamError(f"chunk seq {seq} after the stream's final chunk")))
                state.pending, state.gap_since_ms = {}, None
            elif state.next_seq in state.pending:
                pending = dict(state.pending)
                rnd.append((owner[sid], pending.pop(state.next_seq), True))
                state.pending = pending
                state.gap_since_ms = state.gap_since_ms if pending else None
        return rnd

    async def moderate(self, chunks: AsyncIterable[Chunk]) -> AsyncIterator[Decision]:
        """The embedded API: moderate one stream's chunks, yielding a decision per chunk."""
        state: StreamState | None = None
        async for chunk in chunks:
            (out,) = await self.process([(state, chunk)])
            if out.error is not None:
                raise out.error
            state = out.state
            if state is not None:
                state.keep_outbox(())  # yielded is delivered: nothing to replay
            for d in out.decisions:
                yield d
            if out.rejected:  # a chunk held behind the gap followed the final one
                raise out.rejected[0][1]
            if out.skipped:
                gap = out.skipped[0]
                raise StreamError(f"sequence gap: seqs {gap.first}..{gap.last} never came")
        # The end of the iterator is the end of the stream: text still held back (no final chunk,
        # or chunks waiting behind a gap) would otherwise vanish without a word.
        if state is not None and not state.blocked and (state.pending or not state.final):
            raise StreamError(f"the stream ended at seq {state.next_seq - 1} without its final chunk"
                              + (f"; seqs {sorted(state.pending)} still wait behind a gap" if state.pending else "")
                              + f"; {state.end - state.released} characters were never released")

    # -- one round: at most one new chunk per stream ----------------------------------------------

    async def _round(self, rnd: list[tuple[int, Chunk, bool]], states: dict[str, StreamState | None],
                     outcomes: list[Outcome], arrived: Sequence[int], t0: float) -> None:
        """``rnd``: (outcome index, chunk, held): at most one chunk per stream; a held chunk is one
        the stream kept behind a gap, now next in its sequence. ``arrived``: per outcome, the seq of
        the record whose arrival it reports.

        A chunk whose handling raises anything unforeseen (a bug in a layer) fails alone
        (``_fail``), and the other streams of the batch are decided as usual."""
        works: list[tuple[int, _Work, StreamState]] = []
        policies = self.policies()  # one snapshot per round, even if a reload lands mid-batch
        for i, chunk, held in rnd:
            entry, gaps = _copy(states.get(chunk.stream_id)), len(outcomes[i].skipped)
            try:
                if held:
                    state = states[chunk.stream_id]
                    assert state is not None
                    ready = [(state, chunk)]
                    spec = self._policy_of(state, policies)
                else:
                    spec, ready = self._admit(states, chunk, outcomes[i], policies)
            except GuardError as exc:  # this chunk's fault, raised before its stream changed
                self._report(i, chunk, held, exc, states, outcomes)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug must not take the batch's other streams down
                del outcomes[i].skipped[gaps:]  # the stream goes back to before: so do its gap reports
                self._fail(i, chunk, held, exc, states, outcomes, entry)
                continue
            for state, ch in ready:
                # the stream once the chunk was taken: gaps given up, later chunks held, this one out
                taken = _copy(state)
                assert taken is not None
                try:
                    works.append((i, self._plan(state, ch, spec, t0), taken))
                except Exception as exc:  # noqa: BLE001 - as above
                    self._fail(i, ch, ch.seq != arrived[i], exc, states, outcomes, taken)
        scores, failure = await self._score(w for _, w, _ in works)
        for i, work, taken in works:
            try:
                decision = self._settle(work, scores, failure)
                _to_outbox(work.state, decision, arrived[i])
            except Exception as exc:  # noqa: BLE001 - as above
                self._fail(i, work.chunk, work.chunk.seq != arrived[i], exc, states, outcomes, taken)
                continue
            states[work.state.stream_id] = work.state
            outcomes[i].decisions.append(decision)
        for i, chunk, _ in rnd:
            outcomes[i].state = states.get(chunk.stream_id)

    @staticmethod
    def _report(i: int, chunk: Chunk, held: bool, exc: GuardError, states: dict[str, StreamState | None],
                outcomes: list[Outcome]) -> None:
        """Refuse ``chunk`` in its outcome. ``held``: its record is not the one this outcome reports
        (it was consumed earlier, and the chunk waited behind a gap), so the chunk itself is."""
        if held:
            outcomes[i].rejected.append((chunk, exc))
            return
        outcomes[i].error = exc
        outcomes[i].state = states.get(chunk.stream_id)

    def _fail(self, i: int, chunk: Chunk, held: bool, exc: Exception, states: dict[str, StreamState | None],
              outcomes: list[Outcome], restore: StreamState | None) -> None:
        """``chunk`` raised something unforeseen: it is refused as an ``InternalError``, and its
        stream is put back to ``restore``, its state once the chunk was taken for deciding (gaps
        given up, later chunks held, the chunk itself out of the held ones). So its seq is the
        stream's first missing one, with the gap clock started now: the chunk sent again within
        ``gap_timeout_ms`` (a bug fixed, its dead letter re-driven) fills the gap; else the
        stream's next chunk after that gives it up, as for a chunk lost on the way."""
        err = InternalError.wrap(exc)
        log.error("chunk_failed", stream_id=chunk.stream_id, seq=chunk.seq, code=err.code, **traced(exc))
        if restore is not None and restore.next_seq == chunk.seq:
            restore.gap_since_ms = self.wall_ms()
        states[chunk.stream_id] = restore
        self._report(i, chunk, held, err, states, outcomes)

    def _admit(self, states: dict[str, StreamState | None], chunk: Chunk, outcome: Outcome,
               policies: PolicySet) -> tuple[PolicySpec, list[tuple[StreamState, Chunk]]]:
        """Order chunks per stream: drop duplicates, hold chunks behind a gap, reject late ones.

        Returns the chunk to decide now, if any: the arriving one when it is next in sequence. A
        gap that stays open longer than ``gap_timeout_ms`` (checked when the stream's next chunk
        arrives) is given up: the first chunk behind it is decided now, the outcome reports the
        skipped range, and the chunks after it follow in later rounds (``_next_held``).

        Raises before the state changes, so a rejected chunk leaves its stream as it was.
        """
        for name in ("text", "prompt", "stream_id", "policy", "tenant"):
            value = getattr(chunk, name)
            if value and any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
                raise SchemaError(f"chunk {name} contains lone surrogates (not valid Unicode text)")
        if chunk.tenant is not None and not is_tenant_id(chunk.tenant):
            raise SchemaError(f"chunk tenant: {TENANT_ID_RULE}")
        state = states.get(chunk.stream_id)
        if state is None:
            spec = policies.select(chunk.policy, chunk.tenant)
            state = StreamState(stream_id=chunk.stream_id, policy=spec.policy, tenant=chunk.tenant,
                                updated_ms=self.wall_ms())
            states[chunk.stream_id] = state
        else:
            spec = self._policy_of(state, policies)
        if any(lo <= chunk.seq <= hi for lo, hi in state.skipped):
            raise StreamError(f"chunk seq {chunk.seq} arrived after its sequence gap was given up; "
                              "the text after it was released without it")
        if chunk.seq < state.next_seq or chunk.seq in state.pending:
            # a held chunk's decision was made when the record that filled its gap arrived: that
            # record is the one a restarted worker sees again (the held one's offset was committed)
            outcome.replayed.extend(d for d in state.outbox if state.decided_by.get(d.seq, d.seq) == chunk.seq)
            log.info("duplicate_chunk_dropped", stream_id=chunk.stream_id, seq=chunk.seq,
                     replayed=len(outcome.replayed))
            return spec, []
        if state.final:
            raise StreamError(f"chunk seq {chunk.seq} after the stream's final chunk")
        if chunk.seq > state.next_seq:
            state.pending = {**state.pending, chunk.seq: chunk}
            now = self.wall_ms()
            if state.gap_since_ms is None:
                state.gap_since_ms = now
            # Given up after the timeout, or sooner when the held chunks outgrow their bound: a
            # token-per-chunk stream fills it within a second of losing one chunk, and refusing
            # every later chunk would lose the rest of the stream, its final chunk included.
            if (now - state.gap_since_ms <= self.gap_timeout_ms and len(state.pending) <= MAX_PENDING
                    and _held_bytes(state) <= MAX_PENDING_BYTES):
                return spec, []
            first = min(state.pending)
            outcome.skipped.append(SequenceGap(state.next_seq, first - 1, now - state.gap_since_ms))
            state.skipped = [*state.skipped, (state.next_seq, first - 1)][-MAX_SKIPPED:]
            state.next_seq = first
            chunk = state.pending[first]
        pending = {k: v for k, v in state.pending.items() if k != chunk.seq}
        state.pending = pending
        state.gap_since_ms = state.gap_since_ms if pending else None
        return spec, [(state, chunk)]

    @staticmethod
    def _policy_of(state: StreamState, policies: PolicySet) -> PolicySpec:
        """The policy a stream started with, for its whole life.

        When that policy was removed on a reload, each further chunk of the stream is rejected (and
        dead-lettered) rather than judged by another policy: the stream's hold-back, risk and block
        state were built under its own rules, and falling back to ``default`` could release text that
        the chosen policy (a children's app's, say) would block. Chunks already waiting behind a gap
        stay in the state, so nothing is dropped. If the file comes back, the stream goes on once the
        gap its dead-lettered chunks left is given up (``gap_timeout_ms``).
        """
        try:
            return policies.select(state.policy)
        except PolicyError:
            raise PolicyError(f"policy {state.policy!r} of this stream is no longer loaded (removed on a "
                              f"reload?); known: {sorted(policies.policies)}; the chunk was not "
                              "moderated") from None

    def _plan(self, state: StreamState, chunk: Chunk, spec: PolicySpec, t0: float) -> _Work:
        state.next_seq = chunk.seq + 1
        state.updated_ms = self.wall_ms()
        state.final = chunk.final
        if state.blocked:
            return _Work(state, chunk, spec, [], None, t0)
        state.text += chunk.text
        planned: list[windowing.PlannedWindow] = []
        prompt = None
        if "semantic" in _layers(spec) and self.semantic is not None and self.tokenizer is not None:
            cursor, planned = windowing.plan(state.text, state.base, state.sem_cursor,
                                             state.stream_id, self.tokenizer, spec.window.tokens,
                                             spec.window.stride, chunk.final)
            state.sem_cursor = cursor
            pending = chunk.prompt[-windowing.max_window_chars(spec.window.tokens):] if chunk.prompt \
                else state.prompt
            if pending and state.prompt_risk is None and spec.context.prompt_weight > 0:
                # Kept until it is scored (only the tail its window reads): producers send the
                # prompt on the first chunk only, so a detector blip on that call lost it for the
                # whole stream, with nothing to show.
                state.prompt = pending
                prompt = windowing.prompt_window(state.stream_id, pending, self.tokenizer,
                                                 spec.window.tokens)
            return _Work(state, chunk, spec, planned, prompt, t0)
        unjudged = None
        if "semantic" in _layers(spec) and state.sem_cursor < state.end:
            unjudged = state.sem_cursor  # no semantic detector here: the policy's fail mode decides
        state.sem_cursor = state.end
        return _Work(state, chunk, spec, planned, prompt, t0, unjudged)

    async def _score(self, works: Iterable[_Work]) -> tuple[dict[int, np.ndarray], DetectorError | None]:
        batch: list[Window] = []
        keys: list[int] = []
        for w in works:
            if w.prompt is not None:
                batch.append(w.prompt)
                keys.append(id(w.prompt))
            for p in w.planned:
                batch.append(p.window)
                keys.append(id(p.window))
        if not batch:
            return {}, None
        assert self.semantic is not None
        try:
            probs = await self.semantic.score(batch)
            if not (np.all(np.isfinite(probs)) and np.all((probs >= 0.0) & (probs <= 1.0))):
                # NaN would fail every threshold test: the windows would pass as cleared
                raise DetectorError("semantic", "scores that are not probabilities", retriable=False)
        except DetectorError as exc:
            log.warning("semantic_detector_failed", code=exc.code, windows=len(batch))
            return {}, exc
        except Exception as exc:  # noqa: BLE001 - a client bug: the windows are unjudged, not the batch lost
            log.error("semantic_detector_raised", windows=len(batch), **traced(exc))
            return {}, DetectorError("semantic", f"unexpected {type(exc).__name__}", retriable=False)
        return {k: probs[j] for j, k in enumerate(keys)}, None

    def _settle(self, work: _Work, scores: dict[int, np.ndarray],
                failure: DetectorError | None) -> Decision:
        state, chunk, spec = work.state, work.chunk, work.spec
        tview = self.thresholds()
        if state.blocked:
            return self._decision(state, chunk, spec, "block", "", work, tview, (), {}, None, ())

        # context layer: the prompt first, then the windows in text order
        if work.prompt is not None and id(work.prompt) in scores:
            state.prompt_risk = [float(x) for x in scores[id(work.prompt)]]
            state.prompt = None
        scored: list[ScoredWindow] = []
        failed_from = work.unjudged_from
        carry = context.Carry(np.asarray(state.risk) if state.risk else None,
                              tuple((e, np.asarray(s)) for e, s in state.recent))
        prompt = np.asarray(state.prompt_risk) if state.prompt_risk else None
        overflow = False
        for pw in work.planned:
            raw = scores.get(id(pw.window))
            if raw is None:
                failed_from = pw.new_start if failed_from is None else failed_from
                continue
            if failed_from is None and pw.unread_until is not None:
                # one word with more tokens than a window (a run piece of long-named emoji, or a
                # policy with small windows): its head is in no scored window, so it is unjudged
                # and the policy's fail mode decides, as for a detector that could not score it
                failed_from, overflow = pw.new_start, True
            eff, carry = carry.step(raw, pw.window.start, pw.window.end, prompt, spec.context)
            scored.append(ScoredWindow(pw.window.start, pw.new_start, pw.window.end, eff))
        if carry.risk is not None:
            state.risk = [float(x) for x in carry.risk]
        state.recent = [(e, [float(x) for x in s]) for e, s in carry.recent]

        # fast layers over the unreleased text plus the left context they need
        findings, fast_frontier = self._scan(state, spec)
        code = failure.code if failure else ("" if failed_from is None else
                                              "window-overflow" if overflow else "detector-unavailable")
        verdict = decide(spec, tview, state.tenant, findings, scored, failed_from, code)
        if verdict.block_at is not None:
            at = max(verdict.block_at, state.released)
            if state.block_at is None or at < state.block_at:
                state.block_at = at
                state.block_principle = verdict.principle
                state.block_evidence = tuple(e for e in verdict.evidence if e.action == "block")

        frontier = min(fast_frontier, state.sem_cursor)
        if state.final:
            frontier = state.end
        # how far every layer has cleared the text (a failed window clears nothing)
        judged = min(fast_frontier, failed_from if failed_from is not None else
                     (state.end if state.final else state.sem_cursor))
        was_released = state.released
        held_cap = state.end - spec.max_hold_back_chars
        action = "allow"
        if state.block_at is not None:
            stop = frontier >= state.block_at or state.final or held_cap > frontier
            target = settle_frontier(min(frontier, state.block_at), state.released,
                                     verdict.redactions)
            out = cut(state.text, state.base, state.released, state.covered, target,
                      verdict.redactions)
            if stop:
                action = "block"
                state.blocked = True
        else:
            forced = held_cap > frontier
            target = held_cap if forced else settle_frontier(frontier, state.released,
                                                             verdict.redactions)
            out = cut(state.text, state.base, state.released, state.covered, target,
                      verdict.redactions)
            if out.redacted:
                action = "redact"
        state.released, state.covered = out.released, out.covered
        if scored:
            state.last_scores = [float(max(w.scores[j] for w in scored)) for j in range(len(CATEGORIES))]
        window_scores = {c: round(v, 4) for c, v in zip(CATEGORIES, state.last_scores, strict=False)}
        unjudged = max(0, state.released - max(was_released, judged))
        decision = self._decision(state, chunk, spec, action, out.text, work, tview,
                                  verdict.evidence, window_scores, verdict.principle, findings, unjudged)
        self._trim(state, spec)
        return decision

    def _scan(self, state: StreamState, spec: PolicySpec) -> tuple[list[Finding], int]:
        """Settled findings of the fast layers, and how far they vouch for the text.

        Each scanner sees the unreleased text plus its left context. An entity a scanner reports
        as opened (a private key block) can outgrow both; its opener is kept in the state and put
        back in front of the context once it has left it, so the scanner still reads the entity as
        open, and until it closes the entity counts as a finding up to the end of the text: a
        forced release masks it (``ScanResult.opened``).
        """
        layers = _layers(spec)
        start = max(state.base, state.released - self._context_chars)
        text = state.slice(start, state.end)
        findings: list[Finding] = []
        frontier = state.end
        openers = dict(state.openers)
        for name, scanner in self.scanners.items():
            if name not in layers:
                continue
            opener = openers.get(name)
            head = opener if opener is not None and opener.start < start else None
            view = (head.text if head else "") + text
            at = _placer(head, start)
            res = scanner.scan(view, state.final)
            stable = at(res.stable_until)
            frontier = min(frontier, stable)
            for f in res.findings:
                g = Finding(at(f.start), at(_grapheme_end(view, f.end) - 1) + 1, f.category, f.label,
                            f.score, f.detector)
                if g.start < stable and g.end > state.released:
                    findings.append(g)
            if res.opened is None:
                openers.pop(name, None)
                continue
            o = res.opened
            openers[name] = Opener(start=at(o.start), text=view[o.start:o.end])
            findings.append(Finding(at(o.start), state.end, o.category, o.label, o.score, o.detector))
        state.openers = openers
        return findings, frontier

    def _decision(self, state: StreamState, chunk: Chunk, spec: PolicySpec, action: str, text: str,
                  work: _Work, tview: ThresholdView, evidence: Sequence, scores: dict[str, float],
                  principle: str | None, findings: Sequence[Finding], unjudged: int = 0) -> Decision:
        blocked = action == "block"
        spans = tuple(Span(start=e.start, end=e.end, category=e.category, detector=e.detector,
                           label=e.label, score=e.score) for e in evidence)
        return Decision(
            decision_id=decision_id(state.stream_id, chunk.seq),
            stream_id=state.stream_id,
            seq=chunk.seq,
            action=action,  # type: ignore[arg-type]
            text=text,
            released_offset=state.released,
            held_chars=0 if blocked else state.end - state.released,
            final=chunk.final or blocked,
            spans=spans,
            scores=scores,
            principle=state.block_principle if blocked else principle,
            evidence=state.block_evidence if blocked and not evidence else tuple(evidence),
            replacement=spec.replacement if blocked else None,
            policy=spec.policy,
            tenant=state.tenant,
            thresholds_version=tview.version,
            model_version=self.semantic.model_version if self.semantic else "",
            ts_ms=self.wall_ms(),
            latency_ms=round((self.clock() - work.t0) * 1000.0, 3),
            unjudged_chars=unjudged,
        )

    def _trim(self, state: StreamState, spec: PolicySpec) -> None:
        """Forget text no layer can need again: O(chunk + context) memory per stream."""
        if state.blocked or state.final:
            # chunks still held behind a gap are kept: each gets its decision (block) or dead letter
            state.base, state.text = state.end, ""
            state.openers = {}
            return
        keep = min(state.released - self._context_chars,
                   windowing.retain_from(state.sem_cursor, spec.window.tokens))
        keep = max(state.base, keep)
        if keep > state.base:
            state.text = state.text[keep - state.base :]
            state.base = keep


def _grapheme_end(text: str, end: int) -> int:
    """``end`` moved past the combining marks that follow it: they belong to the span's last
    letter, and one left after a mask would sit on the placeholder ("[PROFANITY]\u0301")."""
    while end < len(text) and unicodedata.category(text[end])[0] == "M":
        end += 1
    return end


def _placer(head: Opener | None, start: int) -> Callable[[int], int]:
    """Where offset ``i`` of a scanned view lies in the stream: the view is the text from
    ``start``, after ``head`` (an opener put back in front of it) if there is one."""
    if head is None:
        return lambda i: start + i
    n = len(head.text)
    return lambda i: head.start + i if i < n else start + i - n


def chunk_text(text: str, size: int, stream_id: str = "s", prompt: str | None = None,
               policy: str | None = None) -> list[Chunk]:
    """Cut ``text`` into chunks of ``size`` characters (the last one final)."""
    pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    return [Chunk(stream_id=stream_id, seq=i, text=p, final=i == len(pieces) - 1,
                  prompt=prompt if i == 0 else None, policy=policy)
            for i, p in enumerate(pieces)]


__all__ = ["Outcome", "Pipeline", "chunk_text"]
