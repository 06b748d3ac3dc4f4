"""The chunk agent's handler and expiry, over fake topics and a dict table (no Kafka).

The pipeline is the real one over the test doubles of ``guard.testing``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from guard.messages import Chunk, DeadLetter, Decision, decode, encode
from guard.metrics import Metrics
from guard.pipeline import MAX_PENDING, Pipeline
from guard.policy.load import PolicySet
from guard.policy.schema import PolicySpec
from guard.state import StreamState, dump_state, load_state
from guard.testing import FakeDetector, SimpleTokenizer
from streams.agents.guard import ChunkHandler, expire
from streams.topics import Topics

TTL_S = 600.0
EXPIRED_AT = 600_001  # ms: just past the TTL of a state last updated at 0


@dataclass
class FakeTopic:
    name: str
    sent: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    fail: bool = False
    #: delivery callbacks not yet run: ``confirm`` runs them, as the producer does on the broker's ack
    unconfirmed: list[Callable[[object], object]] = field(default_factory=list)

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key: bytes | None = None, value: bytes = b"",
                   callback: Callable[[object], object] | None = None) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((key, value))
        if callback is not None:
            self.unconfirmed.append(callback)

    def confirm(self) -> None:
        for cb in self.unconfirmed:
            cb(object())
        self.unconfirmed.clear()


@dataclass
class Message:
    key: bytes | None
    topic: str = "llm.chunks"
    partition: int = 2
    offset: int = 0


@dataclass
class Event:
    value: bytes
    message: Message


def topics() -> Topics:
    return Topics(*(FakeTopic(n) for n in ("llm.chunks", "guard.decisions", "guard.deadletter",  # type: ignore[arg-type]
                                           "guard.feedback", "guard.thresholds")))


def spec(name: str) -> PolicySpec:
    return PolicySpec.model_validate({
        "policy": name, "max_hold_back_chars": 400, "window": {"tokens": 16, "stride": 4},
        "principles": [{"id": "no-hate", "text": "no hate", "categories": ["hate"], "threshold": 0.5,
                        "action": "block", "detectors": ["semantic"]}]})


def events(*chunks: Chunk, offset: int = 0) -> list[Event]:
    return [Event(encode(c), Message(c.stream_id.encode(), offset=offset + i)) for i, c in enumerate(chunks)]


def dead_letters(t: Topics) -> list[DeadLetter]:
    return [decode(DeadLetter, v) for _, v in t.deadletter.sent]  # type: ignore[attr-defined]


def decisions(t: Topics) -> list[Decision]:
    return [decode(Decision, v) for _, v in t.decisions.sent]  # type: ignore[attr-defined]


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@dataclass
class Rig:
    policies: dict[str, PolicySpec] = field(default_factory=lambda: {"default": spec("default"),
                                                                     "strict": spec("strict")})
    now_ms: int = 1_000
    topics: Topics = field(default_factory=topics)
    table: dict[bytes, bytes] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        pipe = Pipeline(policies=lambda: PolicySet(dict(self.policies)), scanners={},
                        semantic=FakeDetector({"hate": ["hateword"]}), tokenizer=SimpleTokenizer(),
                        wall_ms=lambda: self.now_ms, gap_timeout_ms=5_000)

        async def get() -> Pipeline:
            return pipe

        self.handle = ChunkHandler(self.topics, self.table, get, self.metrics)


# -- gaps given up ---------------------------------------------------------------------------------


async def test_a_gap_given_up_is_dead_lettered_as_a_range_without_the_decided_chunk():
    rig = Rig()
    cs = [Chunk(stream_id="s", seq=i, text=f"word{i} ") for i in range(5)]
    await rig.handle(events(cs[0]))
    await rig.handle(events(cs[3], offset=1))  # seq 1 and 2 missing: waits
    rig.now_ms += 6_000
    await rig.handle(events(cs[4], offset=2))  # past the gap timeout: 1..2 are given up

    assert [d.seq for d in decisions(rig.topics)] == [0, 3, 4], "the chunk that revealed the gap was decided"
    (gap,) = dead_letters(rig.topics)
    assert gap.code == "sequence-gap" and gap.skipped == (1, 2) and gap.stream_id == "s"
    assert "seq 1..2 missing" in gap.error
    assert gap.raw_b64 == "" and gap.offset == -1, "no record is presented as the failed one"
    assert gap.topic == "llm.chunks" and gap.partition == 2
    assert rig.topics.deadletter.sent[0][0] == b"s"  # type: ignore[attr-defined]
    assert count(rig.metrics, "guard_deadletters_total", code="sequence-gap") == 1


async def test_a_chunk_held_behind_a_gap_that_follows_the_final_chunk_is_dead_lettered_as_itself():
    rig = Rig()
    cs = [Chunk(stream_id="s", seq=0, text="hello "), Chunk(stream_id="s", seq=1, text="end.", final=True),
          Chunk(stream_id="s", seq=2, text="after the end")]
    await rig.handle(events(cs[1], cs[2]))  # both wait for seq 0
    assert decisions(rig.topics) == [] and dead_letters(rig.topics) == []
    await rig.handle(events(cs[0], offset=2))

    assert [(d.seq, d.final) for d in decisions(rig.topics)] == [(0, False), (1, True)]
    (dl,) = dead_letters(rig.topics)
    assert dl.code == "stream-error" and "seq 2 after the stream's final chunk" in dl.error
    assert dl.offset == -1 and dl.stream_id == "s"  # its record was consumed when it arrived
    assert decode(Chunk, base64.b64decode(dl.raw_b64)) == cs[2]
    assert saved(rig).final and saved(rig).pending == {}
    assert count(rig.metrics, "guard_deadletters_total", code="stream-error") == 1


async def test_a_lost_chunk_in_a_long_stream_is_given_up_once_the_chunks_behind_it_fill_their_bound():
    """One chunk lost in a token-per-chunk stream: 64 chunks pile up behind it within seconds.
    The bound used to refuse every later chunk (the final one too), so the gap was never given up."""
    rig = Rig()
    n = MAX_PENDING + 60
    cs = [Chunk(stream_id="s", seq=i, text=f"w{i} ", final=i == n - 1) for i in range(n)]
    await rig.handle(events(cs[0]))
    for off, c in enumerate(cs[2:], start=1):  # seq 1 lost; 20 chunks a second
        await rig.handle(events(c, offset=off))
        rig.now_ms += 50

    assert [d.seq for d in decisions(rig.topics)] == [0, *range(2, n)]
    (gap,) = dead_letters(rig.topics)
    assert gap.code == "sequence-gap" and gap.skipped == (1, 1)
    assert "".join(d.text for d in decisions(rig.topics)) == "".join(c.text for c in cs if c.seq != 1)
    assert saved(rig).final and saved(rig).pending == {}


async def test_a_chunk_that_turns_up_after_its_gap_was_given_up_is_dead_lettered_with_its_text():
    rig = Rig()
    cs = [Chunk(stream_id="s", seq=i, text=f"word{i} ") for i in range(4)]
    await rig.handle(events(cs[0]))
    await rig.handle(events(cs[2], offset=1))
    rig.now_ms += 6_000
    await rig.handle(events(cs[3], offset=2))  # 1..1 given up
    await rig.handle(events(cs[1], offset=3))  # the lost chunk after all

    assert [d.seq for d in decisions(rig.topics)] == [0, 2, 3]
    gap, late = dead_letters(rig.topics)
    assert gap.code == "sequence-gap" and late.code == "stream-error"
    assert "seq 1 arrived after its sequence gap was given up" in late.error
    assert decode(Chunk, base64.b64decode(late.raw_b64)) == cs[1] and late.offset == 3


def test_older_dead_letters_still_decode():
    old = b'{"v":1,"error":"e","code":"schema-error","topic":"llm.chunks","partition":0,"offset":7,' \
          b'"raw_b64":"","ts_ms":1}'
    dl = decode(DeadLetter, old)
    assert dl.skipped is None and dl.stream_id is None and dl.offset == 7


# -- a policy removed on reload ----------------------------------------------------------------------


async def test_removed_policy_dead_letters_only_that_streams_chunk_and_names_the_policy():
    rig = Rig()
    await rig.handle(events(Chunk(stream_id="a", seq=0, text="secret words ", policy="strict"),
                            Chunk(stream_id="b", seq=0, text="other words ")))
    del rig.policies["strict"]
    await rig.handle(events(Chunk(stream_id="a", seq=1, text="more secret "),
                            Chunk(stream_id="b", seq=1, text="more words "), offset=2))

    (dl,) = dead_letters(rig.topics)
    assert dl.code == "policy-error" and "'strict'" in dl.error and "secret" not in dl.error
    assert decode(Chunk, base64.b64decode(dl.raw_b64)).seq == 1, "the rejected record itself is kept"
    assert [(d.stream_id, d.seq) for d in decisions(rig.topics)] == [("a", 0), ("b", 0), ("b", 1)]


# -- expiry ------------------------------------------------------------------------------------------


def stale_state(**over: object) -> StreamState:
    fields: dict = {"stream_id": "s", "policy": "default", "updated_ms": 0}
    fields.update(over)
    return StreamState(**fields)


async def test_expiry_dead_letters_chunks_waiting_behind_a_gap():
    rig = Rig()
    waiting = {3: Chunk(stream_id="s", seq=3, text="three "), 4: Chunk(stream_id="s", seq=4, text="four ")}
    rig.table[b"s"] = dump_state(stale_state(next_seq=1, base=0, text="zero ", released=5, covered=5,
                                             pending=waiting, gap_since_ms=0))
    rig.table[b"fresh"] = dump_state(stale_state(stream_id="fresh", updated_ms=EXPIRED_AT - 1))

    assert await expire(rig.table, TTL_S, rig.topics, rig.metrics, now_ms=EXPIRED_AT) == 1
    assert list(rig.table) == [b"fresh"]
    dls = dead_letters(rig.topics)
    assert [d.code for d in dls] == ["stream-expired"] * 2
    assert [decode(Chunk, base64.b64decode(d.raw_b64)) for d in dls] == [waiting[3], waiting[4]]
    assert all(d.stream_id == "s" and d.offset == -1 and d.topic == "llm.chunks" for d in dls)
    assert "missing seq 1" in dls[0].error and "three" not in dls[0].error
    assert count(rig.metrics, "guard_deadletters_total", code="stream-expired") == 2
    assert count(rig.metrics, "guard_streams_expired_total") == 1
    assert count(rig.metrics, "guard_expired_unreleased_chars_total") == 0


async def test_expiry_counts_text_received_but_never_released(capsys: pytest.CaptureFixture[str]):
    rig = Rig()
    rig.table[b"s"] = dump_state(stale_state(next_seq=2, text="released part, held tail", released=15,
                                             covered=15))
    rig.table[b"done"] = dump_state(stale_state(stream_id="done", text="", base=40, released=40, final=True))
    rig.table[b"blocked"] = dump_state(stale_state(stream_id="blocked", text="", base=9, released=3,
                                                   blocked=True))

    assert await expire(rig.table, TTL_S, rig.topics, rig.metrics, now_ms=EXPIRED_AT) == 3
    assert rig.table == {} and dead_letters(rig.topics) == []
    assert count(rig.metrics, "guard_expired_unreleased_chars_total") == len("held tail")
    assert count(rig.metrics, "guard_streams_expired_total") == 3
    out = capsys.readouterr().out
    assert "stream_expired_with_unreleased_text" in out and "held tail" not in out


async def test_expiry_keeps_the_state_when_dead_lettering_fails():
    rig = Rig()
    state = dump_state(stale_state(next_seq=1, pending={2: Chunk(stream_id="s", seq=2, text="two ")}))
    rig.table[b"s"] = state
    rig.topics.deadletter.fail = True  # type: ignore[attr-defined]
    await expire(rig.table, TTL_S, rig.topics, rig.metrics, now_ms=EXPIRED_AT)
    assert rig.table == {b"s": state}, "put back for the next round"

    rig.topics.deadletter.fail = False  # type: ignore[attr-defined]
    await expire(rig.table, TTL_S, rig.topics, rig.metrics, now_ms=EXPIRED_AT)
    assert rig.table == {} and [d.code for d in dead_letters(rig.topics)] == ["stream-expired"]


async def test_expiry_leaves_a_stream_alone_while_a_batch_is_deciding_its_chunks():
    """The batch read the idle stream's state and awaits the detector when the timer fires: the
    stream is not idle. Expiring it would dead-letter the held chunk as never moderated, and then
    the batch would decide it and save the state back."""
    rig = Rig(now_ms=EXPIRED_AT)
    gate = asyncio.Event()

    class Slow(FakeDetector):
        async def score(self, windows):  # type: ignore[no-untyped-def]
            await gate.wait()
            return await super().score(windows)

    pipe = Pipeline(policies=lambda: PolicySet({"default": spec("default")}), scanners={},
                    semantic=Slow({"hate": ["hateword"]}), tokenizer=SimpleTokenizer(),
                    wall_ms=lambda: rig.now_ms, gap_timeout_ms=5_000)

    async def get() -> Pipeline:
        return pipe

    handle = ChunkHandler(rig.topics, rig.table, get, rig.metrics)
    held = Chunk(stream_id="s", seq=2, text="word2 " * 5)
    rig.table[b"s"] = dump_state(StreamState(stream_id="s", policy="default", next_seq=1, pending={2: held},
                                             gap_since_ms=0, updated_ms=0))
    batch = asyncio.create_task(handle(events(Chunk(stream_id="s", seq=1, text="word1 " * 5), offset=10)))
    await asyncio.sleep(0)  # the batch has read the state and waits on the detector
    assert handle.busy == {b"s"}
    assert await expire(rig.table, TTL_S, rig.topics, rig.metrics, now_ms=EXPIRED_AT, busy=handle.busy) == 0
    gate.set()
    await batch
    assert dead_letters(rig.topics) == [] and [d.seq for d in decisions(rig.topics)] == [1, 2]
    assert handle.busy == set()


async def test_an_unreadable_state_costs_only_its_streams_chunk_and_expiry_sets_it_aside():
    rig = Rig()
    rig.table[b"bad"] = b'{"stream_id": "bad", "policy": "default", "risk": [null]}'
    await rig.handle(events(Chunk(stream_id="bad", seq=1, text="x "),
                            Chunk(stream_id="ok", seq=0, text="fine.", final=True)))
    assert [d.stream_id for d in decisions(rig.topics)] == ["ok"]  # the batch goes on
    (dl,) = dead_letters(rig.topics)
    assert dl.code == "state-unreadable" and dl.offset >= 0  # the chunk itself

    assert await expire(rig.table, TTL_S, rig.topics, rig.metrics, now_ms=1_000) == 0  # "ok" is fresh
    assert b"bad" not in rig.table and b"ok" in rig.table
    gone = dead_letters(rig.topics)[-1]
    assert gone.code == "state-unreadable" and gone.offset == -1 and gone.stream_id == "bad"
    assert base64.b64decode(gone.raw_b64).startswith(b'{"stream_id": "bad"')  # kept, not lost


async def test_a_stream_that_went_quiet_behind_a_gap_loses_nothing():
    """End to end: chunks held behind a gap that never closes reach the dead-letter topic on expiry."""
    rig = Rig()
    cs = [Chunk(stream_id="s", seq=i, text=f"word{i} ") for i in range(4)]
    await rig.handle(events(cs[0], cs[2], cs[3]))
    assert load_state(rig.table[b"s"]).pending.keys() == {2, 3}
    await expire(rig.table, TTL_S, rig.topics, rig.metrics, now_ms=rig.now_ms + EXPIRED_AT)
    expired = [decode(Chunk, base64.b64decode(d.raw_b64)) for d in dead_letters(rig.topics)]
    assert expired == [cs[2], cs[3]]


# -- partitioning ----------------------------------------------------------------------------------


async def test_a_chunk_off_its_murmur2_partition_is_decided_but_counted_and_logged():
    from aiokafka.partitioner import DefaultPartitioner
    from structlog.testing import capture_logs

    rig = Rig()
    rig.handle.partitions = 4
    right = DefaultPartitioner()(b"s", [0, 1, 2, 3], [0, 1, 2, 3])
    ok = [Event(encode(Chunk(stream_id="s", seq=0, text="a ")), Message(b"s", partition=right))]
    wrong = [Event(encode(Chunk(stream_id="s", seq=i, text="b ")), Message(b"s", partition=(right + 1) % 4,
                                                                                offset=i)) for i in (1, 2)]
    with capture_logs() as logs:
        await rig.handle(ok)
        assert count(rig.metrics, "guard_chunks_misrouted_total") == 0
        await rig.handle(wrong)
    assert [d.seq for d in decisions(rig.topics)] == [0, 1, 2], "still decided"
    assert count(rig.metrics, "guard_chunks_misrouted_total") == 2
    (warn,) = [e for e in logs if e["event"] == "chunk_partition_mismatch"]  # the first only
    assert warn["partition"] == (right + 1) % 4 and warn["murmur2_partition"] == right


# -- decisions a crash lost ------------------------------------------------------------------------


def saved(rig: Rig, stream_id: str = "s") -> StreamState:
    return load_state(rig.table[stream_id.encode()])


async def test_a_replayed_chunk_whose_decision_never_arrived_gets_it_again():
    """The crash the outbox exists for: the state reached the changelog, the decision did not. The
    restarted worker reads the state, the chunk comes again, and the same decision goes out."""
    rig = Rig()
    cs = [Chunk(stream_id="s", seq=i, text=f"word{i} ") for i in range(3)]
    await rig.handle(events(cs[0]))
    rig.topics.decisions.confirm()  # type: ignore[attr-defined]
    await rig.handle(events(cs[1], offset=1))  # its decision is sent, never confirmed: the crash
    lost = rig.topics.decisions.sent[-1]  # type: ignore[attr-defined]
    assert [d.seq for d in saved(rig).outbox] == [1], "only what is unconfirmed is kept"

    restarted = Rig(table=rig.table)  # a new worker: the table restored, nothing in flight
    await restarted.handle(events(cs[1], offset=1))  # replayed from the last committed offset
    assert restarted.topics.decisions.sent == [lost]  # type: ignore[attr-defined]
    assert count(restarted.metrics, "guard_decisions_replayed_total") == 1
    assert count(restarted.metrics, "guard_decisions_total", action="allow", policy="default") == 0
    restarted.topics.decisions.confirm()  # type: ignore[attr-defined]
    await restarted.handle(events(cs[2], offset=2))  # the stream goes on
    assert [d.seq for d in decisions(restarted.topics)] == [1, 2]
    assert [d.seq for d in saved(restarted).outbox] == [2]


async def test_decisions_of_chunks_released_from_behind_a_gap_are_replayed_by_the_record_that_released_them():
    """Seq 2 waited behind a gap; seq 1's arrival decided both, then the worker died. Seq 2's own
    record was committed long before, so only seq 1's comes again: it must bring back both."""
    rig = Rig()
    cs = [Chunk(stream_id="s", seq=i, text=f"word{i} " * 3) for i in range(4)]
    await rig.handle(events(cs[0]))
    rig.topics.decisions.confirm()  # type: ignore[attr-defined]
    await rig.handle(events(cs[2], offset=1))  # held; its offset is committed
    await rig.handle(events(cs[1], offset=2))  # decides 1 and 2, never confirmed: the crash
    lost = decisions(rig.topics)[1:]
    assert [d.seq for d in lost] == [1, 2]

    restarted = Rig(table=rig.table)
    await restarted.handle(events(cs[1], offset=2))  # only this record is redelivered
    assert decisions(restarted.topics) == lost
    restarted.topics.decisions.confirm()  # type: ignore[attr-defined]
    await restarted.handle(events(cs[3], offset=3))
    assert [d.seq for d in decisions(restarted.topics)] == [1, 2, 3]
    assert saved(restarted).decided_by == {}, "pruned with the outbox"


async def test_a_record_that_releases_a_full_gap_replays_every_decision_it_made():
    """Filling a gap that 64 chunks waited behind decides 65 chunks at once; an outbox of 64 let
    the first of them go, so the replay after a crash lost it."""
    rig = Rig()
    n = MAX_PENDING + 2  # 0, the filler 1, then 64 held
    cs = [Chunk(stream_id="s", seq=i, text=f"w{i} ") for i in range(n)]
    await rig.handle(events(cs[0]))
    rig.topics.decisions.confirm()  # type: ignore[attr-defined]
    for off, c in enumerate(cs[2:], start=1):
        await rig.handle(events(c, offset=off))
    assert len(saved(rig).pending) == MAX_PENDING
    await rig.handle(events(cs[1], offset=100))  # decides 1..65, never confirmed: the crash
    lost = decisions(rig.topics)[1:]
    assert [d.seq for d in lost] == list(range(1, n))
    restarted = Rig(table=rig.table)
    await restarted.handle(events(cs[1], offset=100))
    assert decisions(restarted.topics) == lost


async def test_a_gap_given_up_at_the_bound_replays_every_decision_it_made():
    rig = Rig()
    n = MAX_PENDING + 3  # seq 1 lost; the 65th chunk behind it gives the gap up and decides all 65
    cs = [Chunk(stream_id="s", seq=i, text=f"w{i} ") for i in range(n)]
    await rig.handle(events(cs[0]))
    rig.topics.decisions.confirm()  # type: ignore[attr-defined]
    for off, c in enumerate(cs[2:-1], start=1):
        await rig.handle(events(c, offset=off))
    await rig.handle(events(cs[-1], offset=100))
    lost = decisions(rig.topics)[1:]
    assert [d.seq for d in lost] == list(range(2, n))
    restarted = Rig(table=rig.table)
    await restarted.handle(events(cs[-1], offset=100))
    assert decisions(restarted.topics) == lost


async def test_replays_of_one_lost_batch_that_come_in_separate_batches_get_all_their_decisions():
    """Two decisions were lost in one crash; after the restart their chunks come back one batch
    each. Saving after the first used to prune the other worker's entry for the second."""
    first = Rig()
    cs = [Chunk(stream_id="s", seq=i, text=f"word{i} " * 3) for i in range(3)]
    await first.handle(events(cs[0], cs[1]))  # sent, never confirmed: the crash
    assert [d.seq for d in saved(first).outbox] == [0, 1]

    restarted = Rig(table=first.table)
    await restarted.handle(events(cs[0], offset=0))
    restarted.topics.decisions.confirm()  # type: ignore[attr-defined]
    await restarted.handle(events(cs[1], offset=1))
    assert [d.seq for d in decisions(restarted.topics)] == [0, 1]
    restarted.topics.decisions.confirm()  # type: ignore[attr-defined]
    await restarted.handle(events(cs[2], offset=2))  # a new chunk: now the outbox is pruned
    assert [d.seq for d in decisions(restarted.topics)] == [0, 1, 2]
    assert [d.seq for d in saved(restarted).outbox] == [2]


async def test_a_duplicate_whose_decision_was_delivered_gets_nothing():
    rig = Rig()
    cs = [Chunk(stream_id="s", seq=i, text=f"word{i} ") for i in range(2)]
    await rig.handle(events(cs[0]))
    rig.topics.decisions.confirm()  # type: ignore[attr-defined]
    await rig.handle(events(cs[1], offset=1))  # saving prunes seq 0, confirmed
    await rig.handle(events(cs[0], offset=2))  # a producer's retry
    assert [d.seq for d in decisions(rig.topics)] == [0, 1]
    assert count(rig.metrics, "guard_decisions_replayed_total") == 0


async def test_a_batch_with_several_chunks_of_a_stream_keeps_all_their_decisions():
    """One state for the stream, saved once after every decision was sent: none is pruned early."""
    rig = Rig()
    saves: list[bytes] = []

    class Recording(dict):  # type: ignore[type-arg]
        def __setitem__(self, key: bytes, value: bytes) -> None:
            saves.append(key)
            super().__setitem__(key, value)

    rig.handle.table = rig.table = Recording()
    await rig.handle(events(*(Chunk(stream_id="s", seq=i, text=f"word{i} ") for i in range(3)),
                            Chunk(stream_id="t", seq=0, text="other ")))
    assert [d.seq for d in saved(rig).outbox] == [0, 1, 2]
    assert sorted(saves) == [b"s", b"t"]


async def test_another_workers_outbox_is_dropped_once_the_stream_goes_on():
    rig = Rig()
    await rig.handle(events(Chunk(stream_id="s", seq=0, text="word0 ")))
    restarted = Rig(table=rig.table)
    await restarted.handle(events(Chunk(stream_id="s", seq=1, text="word1 "), offset=1))
    assert [d.seq for d in saved(restarted).outbox] == [1]


def test_in_flight_ids_are_bounded():
    rig = Rig()
    rig.handle.max_in_flight = 3

    async def send_all() -> None:
        for i in range(5):
            await rig.handle.send_decision(Decision(decision_id=f"d{i}", stream_id="s", seq=i, action="allow",
                                                    text="", released_offset=0))

    import asyncio

    asyncio.run(send_all())
    assert list(rig.handle._in_flight) == ["d2", "d3", "d4"]
