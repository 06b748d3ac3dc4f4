"""The pipeline over fake layers: release, redaction, blocking, sequencing, fail modes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.detectors.pii import PiiScanner
from guard.detectors.retry import RetryingDetector, RetryPolicy
from guard.errors import DetectorUnavailable, InternalError, PolicyError, SchemaError, StreamError
from guard.messages import Chunk, Decision
from guard.pipeline import MAX_PENDING_BYTES, Pipeline, chunk_text
from guard.policy.load import PolicySet
from guard.policy.schema import PolicySpec
from guard.state import StreamState, dump_state, load_state
from guard.testing import BuggyScanner, FailingDetector, FakeDetector, RegexScanner, SimpleTokenizer

EMAIL = r"[\w.+-]+@[\w-]+\.[\w.]+\w"


def policy(**over: object) -> PolicySet:
    raw = {
        "policy": "default",
        "max_hold_back_chars": 400,
        "window": {"tokens": 16, "stride": 4},
        "principles": [
            {"id": "privacy", "text": "no pii", "detectors": ["pii"], "entities": ["EMAIL"],
             "action": "redact"},
            {"id": "no-hate", "text": "no hate", "categories": ["hate"], "threshold": 0.5,
             "action": "block", "detectors": ["semantic"]},
        ],
    }
    raw.update(over)
    return PolicySet({"default": PolicySpec.model_validate(raw)})


def make(detector: object = None, **over: object) -> Pipeline:
    ps = policy(**over)
    return Pipeline(policies=lambda: ps,
                    scanners={"pii": RegexScanner("pii", EMAIL, "pii", "EMAIL")},
                    semantic=detector or FakeDetector({"hate": ["hateword"]}),
                    tokenizer=SimpleTokenizer())


async def run(p: Pipeline, chunks: list[Chunk]):
    state, decisions = None, []
    for c in chunks:
        (out,) = await p.process([(state, c)])
        assert out.error is None, out.error
        state = out.state
        decisions += out.decisions
    return decisions


def released(decisions) -> str:
    return "".join(d.text for d in decisions)


async def test_benign_text_is_released_whole_and_one_decision_per_chunk():
    text = "The capital of France is Paris. It is known for the Eiffel Tower and fine food."
    ds = await run(make(), chunk_text(text, 7))
    assert [d.seq for d in ds] == list(range(len(ds)))
    assert released(ds) == text
    assert all(d.action == "allow" for d in ds)
    assert ds[-1].final and ds[-1].held_chars == 0 and ds[-1].released_offset == len(text)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
async def test_a_combining_mark_after_a_masked_span_is_masked_with_it(size: int):
    text = "Write to jane.doe@example.com\u0301\u0308 for details."
    assert released(await run(make(), chunk_text(text, size))) == "Write to [EMAIL] for details."


async def test_email_cut_across_chunks_is_redacted():
    text = "Write to jane.doe@example.com for details."
    ds = await run(make(), chunk_text(text, 3))
    assert released(ds) == "Write to [EMAIL] for details."
    assert any(d.action == "redact" for d in ds)
    assert "@" not in released(ds)


async def test_harmful_window_blocks_and_later_chunks_are_swallowed():
    text = "A calm start to the answer. Then hateword appears here and more text follows after it."
    ds = await run(make(), chunk_text(text, 5))
    actions = [d.action for d in ds]
    first_block = actions.index("block")
    assert all(a == "block" for a in actions[first_block:])
    assert "hateword" not in released(ds)
    blocked = ds[first_block]
    assert blocked.principle == "no-hate" and blocked.replacement
    assert any(e.category == "hate" and e.detector == "semantic" for e in blocked.evidence)
    assert all(d.text == "" for d in ds[first_block + 1 :])


async def test_detector_failure_fails_closed_by_default():
    p = make(FailingDetector(DetectorUnavailable("fake", "down")))
    ds = await run(p, chunk_text("Some ordinary words keep coming in this answer today.", 6))
    assert any(d.action == "block" for d in ds)
    assert released(ds) == ""


async def test_a_detector_blip_is_retried_instead_of_failing_closed():
    class Blip(FakeDetector):
        failures = 1

        async def score(self, windows):
            if self.failures:
                self.failures -= 1
                raise DetectorUnavailable("fake", "StatusCode.UNAVAILABLE")
            return await super().score(windows)

    async def no_wait(_: float) -> None:
        return None

    text = "Some ordinary words keep coming in this answer today."
    flaky = make(RetryingDetector(Blip({"hate": ["hateword"]}), RetryPolicy(retries=2), sleep=no_wait))
    assert released(await run(flaky, chunk_text(text, 100))) == text
    unretried = make(Blip({"hate": ["hateword"]}))
    assert (await run(unretried, chunk_text(text, 100)))[0].action == "block"


async def test_detector_failure_fails_open_when_policy_says_so():
    p = make(FailingDetector(DetectorUnavailable("fake", "down")), on_detector_error="open")
    text = "Some ordinary words keep coming in this answer today."
    ds = await run(p, chunk_text(text, 6))
    assert released(ds) == text and all(d.action == "allow" for d in ds)
    assert sum(d.unjudged_chars for d in ds) == len(text), "every character went out unjudged, and says so"


def buggy(trigger: str = "kaboom") -> Pipeline:
    p = make()
    p.replace_scanners({"pii": BuggyScanner(RegexScanner("pii", EMAIL, "pii", "EMAIL"), trigger)})
    return p


async def test_a_layer_bug_fails_its_chunk_alone_and_its_stream_waits_for_it():
    """A scanner that raises on one stream's text: that chunk is refused as an internal error
    (naming the exception's type, not its message, which quotes the text), the other stream of the
    batch is decided, and the failing stream is as it was, so the chunk can be sent again."""
    p = buggy()
    a0, a1 = chunk_text("Fine so far. Then kaboom happens here.", 13, stream_id="a")[:2]
    (b0,) = chunk_text("Another stream, all fine.", 100, stream_id="b")
    ok, = await p.process([(None, a0)])
    saved = dump_state(ok.state)
    outs = await p.process([(load_state(saved), a1), (None, b0)])
    assert isinstance(outs[0].error, InternalError) and outs[0].error.code == "internal-error"
    assert "ValueError" in str(outs[0].error) and "kaboom" not in str(outs[0].error)
    assert outs[0].decisions == [] and outs[0].state.next_seq == 1 and outs[0].state.text == ok.state.text
    assert outs[0].state.gap_since_ms is not None, "the gap it leaves is open from the failure on"
    assert msgspec.structs.replace(outs[0].state, gap_since_ms=None) == load_state(saved), "else as it was"
    assert outs[1].error is None and [d.text for d in outs[1].decisions] == ["Another stream, all fine."]
    fixed = make()
    (again,) = await fixed.process([(outs[0].state, a1)])
    assert again.error is None and [d.seq for d in again.decisions] == [1]


async def test_a_layer_bug_in_a_held_chunk_rejects_that_chunk_and_keeps_the_rest():
    """The chunk that fills a gap releases the chunk held behind it; that one trips the bug. It is
    reported as a rejected held chunk (its record was consumed earlier), the filling chunk keeps its
    decision, and the stream waits at the failed seq."""
    p = buggy()
    c0, c1, c2 = chunk_text("Fine text here. More fine text. Now kaboom.", 15, stream_id="s")
    (first,) = await p.process([(None, c0)])
    (held,) = await p.process([(first.state, c2)])
    assert held.decisions == [] and 2 in held.state.pending
    (filled,) = await p.process([(held.state, c1)])
    assert [d.seq for d in filled.decisions] == [1]
    assert [(c.seq, e.code) for c, e in filled.rejected] == [(2, "internal-error")]
    assert filled.state.next_seq == 2 and not filled.state.pending


async def test_a_layer_bug_in_the_chunk_a_given_up_gap_lets_through_loses_nothing():
    """seq 1 is lost, seq 2 (which trips the bug) waits behind it, and seq 3 arrives after the gap
    timeout: the gap is given up and seq 2 decided, and fails. seq 2 is reported as a rejected held
    chunk, seq 3 stays held, the given-up gap stays given up, and seq 2 is the stream's first
    missing seq, waited for a full ``gap_timeout_ms`` from the failure."""
    now = [0]
    p = buggy()
    p.wall_ms = lambda: now[0]
    p.gap_timeout_ms = 1000
    c = chunk_text("Fine text here. Lost part here. Then kaboom now. And the end of it.", 17, stream_id="g")
    assert len(c) == 4
    (o0,) = await p.process([(None, c[0])])
    (o2,) = await p.process([(o0.state, c[2])])
    now[0] = 5000
    (o3,) = await p.process([(o2.state, c[3])])
    assert [(g.first, g.last) for g in o3.skipped] == [(1, 1)] and o3.error is None and not o3.decisions
    assert [(ch.seq, e.code) for ch, e in o3.rejected] == [(2, "internal-error")]
    st = o3.state
    assert st.next_seq == 2 and set(st.pending) == {3} and st.skipped == [(1, 1)]
    assert st.gap_since_ms == 5000, "the gap clock starts at the failure"
    fixed = make()
    fixed.wall_ms = lambda: 5500
    (late,) = await fixed.process([(st, c[1])])
    assert late.error is not None and late.error.code == "stream-error", "seq 1 stays given up"
    (again,) = await fixed.process([(late.state, c[2])])
    assert [d.seq for d in again.decisions] == [2, 3] and again.decisions[-1].final


async def test_a_semantic_client_bug_is_a_detector_failure_not_a_lost_batch():
    p = make(FailingDetector(KeyError("outputs")))
    ds = await run(p, chunk_text("Some ordinary words keep coming in this answer today.", 6))
    assert any(d.action == "block" for d in ds) and released(ds) == "", "fails closed, as for an outage"


async def test_text_the_layers_cleared_is_not_marked_unjudged():
    text = "The capital of France is Paris. Write to jane.doe@example.com for details."
    ds = await run(make(), chunk_text(text, 5))
    assert released(ds).startswith("The capital") and all(d.unjudged_chars == 0 for d in ds)


async def test_text_forced_out_by_the_hold_back_bound_is_marked_unjudged():
    """A stride the text never reaches before the bound: the bound wins, and the decisions say
    how much of what they released no window had cleared yet."""
    p = make(max_hold_back_chars=10, window={"tokens": 64, "stride": 60})
    text = "word " * 30
    ds = await run(p, chunk_text(text, 5))
    assert released(ds) == text
    forced = [d for d in ds if d.unjudged_chars]
    assert forced and not ds[-1].unjudged_chars, "the final chunk's windows judge the rest"
    assert sum(d.unjudged_chars for d in ds) <= len(text) - 10


async def test_duplicates_dropped_gaps_reordered_late_chunks_rejected():
    p = make()
    cs = chunk_text("one two three four five six seven", 6)
    order = [cs[0], cs[2], cs[1], cs[1], *cs[3:]]
    state, ds = None, []
    for c in order:
        (out,) = await p.process([(state, c)])
        state = out.state
        ds += out.decisions
    assert [d.seq for d in ds] == list(range(len(cs)))
    assert released(ds) == "one two three four five six seven"
    (late,) = await p.process([(state, Chunk(stream_id="s", seq=len(cs), text="x"))])
    assert isinstance(late.error, StreamError)


async def test_a_gap_is_given_up_when_the_text_behind_it_outgrows_its_bound():
    """The held chunks live in the state record; a few large ones must not push it past Kafka's
    message limit, so their bytes bound the wait as well as their number."""
    p = make()
    p.wall_ms = lambda: 0  # the timeout never runs out here
    big = "x" * 60_000 + " "
    (out,) = await p.process([(None, Chunk(stream_id="s", seq=0, text="start "))])
    state, skipped = out.state, []
    for seq in range(2, 8):  # seq 1 lost
        (out,) = await p.process([(state, Chunk(stream_id="s", seq=seq, text=big))])
        assert out.error is None
        state, skipped = out.state, skipped + out.skipped
    assert [(g.first, g.last) for g in skipped] == [(1, 1)]
    assert state is not None and state.next_seq == 8 and not state.pending
    assert len(dump_state(state)) < MAX_PENDING_BYTES * 2


async def test_the_bound_counts_held_text_as_the_state_record_stores_it():
    """JSON writes a control character as six bytes: 256 KiB of UTF-8 made a 1.2 MB record."""
    p = make()
    p.wall_ms = lambda: 0
    (out,) = await p.process([(None, Chunk(stream_id="s", seq=0, text="start "))])
    state = out.state
    for seq in range(2, 6):  # seq 1 lost
        (out,) = await p.process([(state, Chunk(stream_id="s", seq=seq, text="\x01" * 65_536))])
        assert out.error is None
        state = out.state
        assert state is not None and len(dump_state(state)) < 1_000_000


async def test_the_embedded_api_says_when_a_stream_ends_with_text_never_released():
    async def chunks(*cs: Chunk):
        for c in cs:
            yield c

    text = "Contact me at jane.doe@example.com and I will reply"
    with pytest.raises(StreamError, match="without its final chunk.*characters were never released"):
        _ = [d async for d in make().moderate(chunks(Chunk(stream_id="s", seq=0, text=text)))]
    with pytest.raises(StreamError, match=r"seqs \[2\] still wait behind a gap"):
        _ = [d async for d in make().moderate(chunks(Chunk(stream_id="s", seq=0, text="Hi. "),
                                                     Chunk(stream_id="s", seq=2, text="End.", final=True)))]
    shown = [d async for d in make().moderate(chunks(Chunk(stream_id="s", seq=0, text=text, final=True)))]
    assert "".join(d.text for d in shown) == "Contact me at [EMAIL] and I will reply"


@pytest.mark.parametrize("field", ["prompt", "policy", "tenant"])
async def test_lone_surrogates_in_any_chunk_field_are_a_schema_error_not_a_crash(field: str):
    chunk = Chunk(stream_id="s", seq=0, text="hi", **{field: "why \ud800 x"})
    (out,) = await make().process([(None, chunk)])
    assert isinstance(out.error, SchemaError) and field in str(out.error)


async def test_harm_behind_a_gap_is_scored_before_the_chunk_that_fills_the_gap_releases_it():
    """The filling chunk and the chunks it frees used to be planned together and settled one by
    one: the first settle released the held chunk's text before its windows counted."""
    p = make()
    fine, bad = "fine text " * 20, "hateword " * 10 + "more text " * 20
    cs = [Chunk(stream_id="s", seq=0, text=fine), Chunk(stream_id="s", seq=1, text=bad)]
    in_order = await run(make(), cs)
    state, ds = None, []
    for c in (cs[1], cs[0]):  # seq 1 waits behind the gap, seq 0 fills it
        (out,) = await p.process([(state, c)])
        state = out.state
        ds += out.decisions
    assert "hateword" not in released(ds)
    assert [(d.seq, d.action, d.text) for d in ds] == [(d.seq, d.action, d.text) for d in in_order]
    assert ds[-1].action == "block"


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_a_word_longer_than_a_window_is_unjudged_and_the_fail_mode_decides(mode):
    """A 48-character piece of a run is one word of 48 tokens here, and the windows hold 16: its
    head was in no scored window and was released as if cleared."""
    text = "Fine words. " + "hateword" + "!" * 40 + " and then the end."
    ds = await run(make(on_detector_error=mode), [Chunk(stream_id="s", seq=0, text=text, final=True)])
    (d,) = ds
    if mode == "closed":
        assert d.action == "block" and released(ds) == "Fine words."
        assert [(e.label, e.detector) for e in d.evidence] == [("window-overflow", "semantic")]
    else:
        assert d.action == "allow" and d.unjudged_chars >= len("hateword" + "!" * 40)


async def test_a_window_filled_exactly_by_new_words_is_no_overflow():
    """Its first token starts after the space that ends the previous window: no text is left out."""
    text = "Fine words here. " + "!" * 16 + " and the end."
    (d,) = await run(make(), [Chunk(stream_id="s", seq=0, text=text, final=True)])
    assert d.action == "allow" and d.unjudged_chars == 0 and d.text == text


@pytest.mark.parametrize("tenant", ["org/team", "*", ""])
async def test_a_chunk_whose_tenant_would_break_its_threshold_key_is_refused(tenant):
    (out,) = await make().process([(None, Chunk(stream_id="s", seq=0, text="hi", tenant=tenant))])
    assert isinstance(out.error, SchemaError) and "tenant" in str(out.error)
    assert out.decisions == [] and out.state is None


async def test_scores_that_are_not_probabilities_are_a_detector_failure():
    """NaN fails every threshold test: the window passed as cleared, and the stream's state, with
    NaN in its risk, could no longer be read back."""
    class Nan(FakeDetector):
        async def score(self, windows):  # type: ignore[no-untyped-def]
            return np.full((len(windows), 8), np.nan, np.float32)

    ds = await run(make(Nan({})), [Chunk(stream_id="s", seq=0, text="hateword " * 20, final=True)])
    assert [d.action for d in ds] == ["block"] and released(ds) == ""
    assert ds[0].evidence[0].label == "detector-error"


async def test_chunks_held_after_the_final_chunk_are_rejected_not_decided():
    p = make()
    cs = [Chunk(stream_id="s", seq=0, text="hello there "), Chunk(stream_id="s", seq=1, text="the end.", final=True),
          Chunk(stream_id="s", seq=2, text="after final"), Chunk(stream_id="s", seq=4, text="later still")]
    state, ds, rejected = None, [], []
    for c in (cs[1], cs[2], cs[3], cs[0]):
        (out,) = await p.process([(state, c)])
        assert out.error is None
        state = out.state
        ds += out.decisions
        rejected += out.rejected
    assert [d.seq for d in ds] == [0, 1] and ds[-1].final and state.final
    assert released(ds) == "hello there the end."
    assert [(c.seq, type(e)) for c, e in rejected] == [(2, StreamError), (4, StreamError)]
    assert state.pending == {}


async def test_chunks_held_behind_a_gap_of_a_blocked_stream_still_get_their_decisions():
    """Blocking used to clear the held chunks with the rest of the state: they got no decision."""
    cs = chunk_text("hateword " * 6 + "and then some more words to follow", 9)
    in_order = await run(make(), cs)
    blocks_at = [d.action for d in in_order].index("block")
    p, state, ds = make(), None, []
    # chunks after a gap wait; the chunk that blocks arrives, then the one that closes the gap
    arrival = [*cs[:blocks_at], *cs[blocks_at + 2 :], cs[blocks_at], cs[blocks_at + 1]]
    for c in arrival:
        (out,) = await p.process([(state, c)])
        assert out.error is None and not out.rejected
        state = out.state
        ds += out.decisions
    assert [(d.seq, d.action, d.text) for d in ds] == [(d.seq, d.action, d.text) for d in in_order]
    assert all(d.action == "block" and d.text == "" for d in ds[blocks_at + 1 :])


async def test_a_duplicate_gets_its_decisions_from_the_outbox_unchanged():
    """The state keeps each decision (``outbox``) until whoever delivers them prunes it: a chunk
    replayed after a crash that lost its decision finds it there, byte for byte."""
    from guard.messages import encode
    from guard.pipeline import MAX_OUTBOX

    p = make()
    cs = chunk_text("one two three four five six seven", 6)
    state, ds = None, []
    for c in cs[:3]:
        (out,) = await p.process([(state, c)])
        state, ds = out.state, ds + out.decisions
    assert state is not None and [d.seq for d in state.outbox] == [0, 1, 2]
    (dup,) = await p.process([(load_state(dump_state(state)), cs[1])])  # as a restarted worker reads it
    assert not dup.decisions and [encode(d) for d in dup.replayed] == [encode(ds[1])]
    state.outbox = ()  # delivered and pruned: a duplicate is only dropped
    (dup,) = await p.process([(state, cs[1])])
    assert not dup.decisions and not dup.replayed

    many = chunk_text("w " * (MAX_OUTBOX + 10), 2)
    state = None
    for c in many:
        (out,) = await p.process([(state, c)])
        state = out.state
    assert len(state.outbox) == MAX_OUTBOX and state.outbox[-1].seq == many[-1].seq


async def test_batch_of_interleaved_streams_scores_windows_in_one_call():
    det = FakeDetector({"hate": ["hateword"]})
    p = make(det)
    a = chunk_text("alpha beta gamma delta epsilon zeta eta theta", 100, stream_id="a")
    b = chunk_text("one two three four five six seven eight nine", 100, stream_id="b")
    outs = await p.process([(None, a[0]), (None, b[0])])
    assert len(det.calls) == 1 and det.calls[0] >= 2
    assert [o.decisions[0].text for o in outs] == [a[0].text, b[0].text]


async def test_hold_back_cap_forces_release():
    p = make(max_hold_back_chars=0, principles=[
        {"id": "privacy", "text": "no pii", "detectors": ["pii"], "entities": ["EMAIL"],
         "action": "redact"}])
    ds = await run(p, chunk_text("abcdefghijklmnop", 4))
    assert [d.text for d in ds] == ["abcd", "efgh", "ijkl", "mnop"]


WORDS = st.sampled_from(["the", "quick", "fox", "a.b@ex.com", "hateword", "mail", "x@y.org",
                         "jumps", "over", ",", ".", "lazy", "dog"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.lists(WORDS, min_size=1, max_size=40), seps=st.lists(st.sampled_from([" ", "  ", "\n"]),
       min_size=40, max_size=40), cuts=st.lists(st.integers(1, 400), max_size=30))
def test_release_does_not_depend_on_chunking(words, seps, cuts):
    text = "".join(w + s for w, s in zip(words, seps))
    pieces, pos = [], 0
    for c in sorted(set(cuts)):
        if c < len(text):
            pieces.append(text[pos:c])
            pos = c
    pieces.append(text[pos:])
    chunks = [Chunk(stream_id="s", seq=i, text=t, final=i == len(pieces) - 1)
              for i, t in enumerate(pieces)]
    one = asyncio.run(run(make(), [Chunk(stream_id="s", seq=0, text=text, final=True)]))
    many = asyncio.run(run(make(), chunks))
    assert released(many) == released(one)
    assert "@" not in released(many)
    assert (one[-1].action == "block") == (many[-1].action == "block")


async def test_policy_needing_semantic_without_a_detector_fails_as_declared():
    ps = policy()
    p = Pipeline(policies=lambda: ps, scanners={"pii": RegexScanner("pii", EMAIL, "pii", "EMAIL")},
                 semantic=None, tokenizer=None)
    ds = await run(p, chunk_text("Plain words here.", 5))
    assert ds[0].action == "block" and released(ds) == ""
    assert ds[0].evidence[0].label == "detector-unavailable"


def copy(state: StreamState) -> StreamState:
    return load_state(dump_state(state))


def same(d: Decision) -> Decision:
    """A decision without its timing fields."""
    return msgspec.structs.replace(d, ts_ms=0, latency_ms=0.0)


def untimed(state: StreamState | None) -> StreamState | None:
    """A state whose outbox decisions lack their timing fields."""
    if state is None:
        return None
    return msgspec.structs.replace(state, outbox=tuple(same(d) for d in state.outbox))


def two_policies() -> dict[str, PolicySpec]:
    default = policy().policies["default"]
    strict = PolicySpec.model_validate({**default.model_dump(), "policy": "strict"})
    return {"default": default, "strict": strict}


async def test_a_policy_removed_mid_stream_fails_only_that_streams_chunks():
    live = two_policies()

    def build(policies: Callable[[], PolicySet]) -> Pipeline:
        return Pipeline(policies=policies, scanners={"pii": RegexScanner("pii", EMAIL, "pii", "EMAIL")},
                        semantic=FakeDetector({"hate": ["hateword"]}), tokenizer=SimpleTokenizer(),
                        wall_ms=lambda: 1_000)

    p = build(lambda: PolicySet(dict(live)))
    a = chunk_text("alpha beta gamma delta epsilon zeta eta theta", 12, stream_id="a", policy="strict")
    b = chunk_text("one two three four five six seven eight nine", 12, stream_id="b")
    (oa, ob) = await p.process([(None, a[0]), (None, b[0])])
    (oa,) = await p.process([(oa.state, a[2])])  # waits behind the missing a[1]
    assert oa.error is None and ob.error is None and list(oa.state.pending) == [2]
    a_before = copy(oa.state)
    (control,) = await build(lambda: PolicySet(dict(live))).process([(copy(ob.state), b[1])])

    del live["strict"]  # an operator removes strict.yaml; the reload drops it
    ra, rb = await p.process([(oa.state, a[1]), (ob.state, b[1])])
    assert rb.error is None and untimed(rb.state) == untimed(control.state)
    assert [same(d) for d in rb.decisions] == [same(d) for d in control.decisions] != []
    assert isinstance(ra.error, PolicyError) and ra.error.code == "policy-error"
    assert "'strict'" in str(ra.error) and "no longer loaded" in str(ra.error)
    assert ra.decisions == [] and ra.state == a_before, "the stream, and the chunk it holds, as they were"

    (later,) = await p.process([(ra.state, a[3])])  # every further chunk: the same clear error
    assert isinstance(later.error, PolicyError) and later.state == a_before


KEY_LINES = [("MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"[i:] +
              "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK"[:i]) for i in range(25)]
PEM = ("-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_LINES) + "\n-----END RSA PRIVATE KEY-----")


def pii_pipeline(hold_back: int = 256) -> Pipeline:
    ps = policy(max_hold_back_chars=hold_back, principles=[
        {"id": "privacy", "text": "no keys", "detectors": ["pii"], "entities": ["PRIVATE_KEY"],
         "action": "redact"}])
    return Pipeline(policies=lambda: ps, scanners={"pii": PiiScanner()})


@pytest.mark.parametrize("size", [4, 8, 50, 200])
async def test_private_key_longer_than_the_hold_back_is_masked_as_it_is_forced_out(size):
    # the audit's probe: a 25-line key through a 256-character hold-back leaked 192-256 characters
    # of key body, and differently for each chunk size
    text = f"Here is the key:\n{PEM}\nKeep it safe."
    p, state, ds, trimmed = pii_pipeline(), None, [], False
    for c in chunk_text(text, size):
        (out,) = await p.process([(state, c)])
        state = out.state
        ds += out.decisions
        opener = state.openers.get("pii")
        trimmed |= opener is not None and opener.start < state.base  # BEGIN no longer retained
    assert released(ds) == "Here is the key:\n[PRIVATE_KEY]\nKeep it safe."
    assert trimmed, "the block should outlive the retained text"
    assert max(d.held_chars for d in ds) <= 256


async def test_unterminated_private_key_is_masked_to_the_end():
    text = f"Key:\n{PEM[:-40]}"
    ds = await run(pii_pipeline(), chunk_text(text, 7))
    assert released(ds) == "Key:\n[PRIVATE_KEY]"


async def test_private_key_body_is_never_shown_even_without_hold_back():
    # with no hold-back the BEGIN line's first characters may go out before it is complete, but
    # nothing after it
    text = f"Key:\n{PEM}\nDone."
    ds = await run(pii_pipeline(hold_back=0), chunk_text(text, 5))
    shown = released(ds)
    assert shown.startswith("Key:\n") and shown.endswith("\nDone.")
    middle = shown[len("Key:\n"):-len("\nDone.")]
    assert middle == "[PRIVATE_KEY]" or "-----BEGIN RSA PRIVATE KEY-----".startswith(middle), middle


async def test_a_huge_final_chunk_is_judged_to_its_end():
    """A 50,000-character chunk with the harmful word last is blocked, not released unjudged
    (the production tokenizer caps one call at 4096 tokens; windowing counts in pieces)."""
    from guard.models.tokenizer import WindowTokenizer

    ps = policy()
    p = Pipeline(policies=lambda: ps, scanners={}, semantic=FakeDetector({"hate": ["hateword"]}),
                 tokenizer=WindowTokenizer.from_file())
    text = "All is calm and ordinary here. " * 1600 + "hateword"
    (out,) = await p.process([(None, Chunk(stream_id="big", seq=0, text=text, final=True))])
    (d,) = out.decisions
    assert d.action == "block" and "hateword" not in d.text


async def test_replaced_scanners_judge_the_next_chunks():
    p = make()
    text = "Call 555-0100 now. "
    (a,) = await p.process([(None, Chunk(stream_id="r1", seq=0, text=text, final=True))])
    assert a.decisions[0].text == text
    p.replace_scanners({"pii": RegexScanner("pii", r"\d{3}-\d{4}", "pii", "EMAIL")})
    (b,) = await p.process([(None, Chunk(stream_id="r2", seq=0, text=text, final=True))])
    assert "555-0100" not in b.decisions[0].text and b.decisions[0].action == "redact"


async def test_a_prompt_whose_scoring_failed_is_scored_with_the_next_chunk():
    """Producers send the prompt on the first chunk only. A detector blip on that chunk's call
    lost the prompt for the whole stream, silently: the first chunk planned no window, so nothing
    failed closed, and the prompt's risk never reached the answer's windows."""
    from guard.errors import DetectorError
    from guard.types import CATEGORIES, Window

    class BlipOnce:
        name, model_version, categories = "blip", "blip-1", CATEGORIES

        def __init__(self) -> None:
            self.calls = 0

        async def score(self, windows: list[Window]) -> np.ndarray:
            self.calls += 1
            if self.calls == 1:
                raise DetectorError("semantic", "unavailable", retriable=True)
            out = np.full((len(windows), len(CATEGORIES)), 0.01, np.float32)
            for i, w in enumerate(windows):
                if w.end == 0:  # the prompt's window
                    out[i, CATEGORIES.index("hate")] = 0.9
            return out

    p = make(BlipOnce(), context={"decay": 0.0, "prompt_weight": 0.6})
    ds = await run(p, [Chunk(stream_id="s", seq=0, text="Well", prompt="a hateful prompt"),
                       Chunk(stream_id="s", seq=1, text=" here is my answer to that, in a few words", final=True)])
    assert ds[-1].action == "block" and ds[-1].scores["hate"] >= 0.5


async def test_a_pending_prompt_keeps_only_the_tail_its_window_reads():
    """The whole prompt went into the state changelog on every chunk until scored."""
    p = make(FailingDetector(DetectorUnavailable("semantic", "down")), on_detector_error="open")
    (out,) = await p.process([(None, Chunk(stream_id="s", seq=0, text="Well", prompt="x" * 10_000))])
    assert out.state.prompt == "x" * (16 * 12)  # max_window_chars of this policy's 16-token window
