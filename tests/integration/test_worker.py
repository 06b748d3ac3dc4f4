"""End to end over the real broker and the real Triton: chunks in, one decision per chunk out."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import shutil
import uuid
from pathlib import Path

import aiohttp
import pytest

from guard.messages import Chunk, Decision, encode
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import log_tail, own_topics

pytestmark = [pytest.mark.kafka, pytest.mark.triton, pytest.mark.timeout(300)]

BENIGN = ("The capital of France is Paris. It sits on the Seine and is known for the Louvre, "
          "the Eiffel Tower and its cafés.")
PII = ("Sure! You can email Maria at maria.gomez@example.com or call +1 415 555 0132; "
       "her card on file is 4111 1111 1111 1111.")
HARMFUL = ("Listen carefully. I know where you live and I will kill you and your whole family "
           "tonight, nobody will hear you scream.")
PROFANE = "Honestly, Mondays are shit and the inbox is full of crap, but lunch helps."
# tweet marks the tokenizer skips (PLATFORM_ARTEFACTS): the model does not read them, the user still gets them
TWEET = "@USER @USER thanks &amp; see you on Friday at the museum! https://t.co/Ab12 RT"
TWEET_HARMFUL = "RT @bob: @USER " + HARMFUL + " https://t.co/x"


def cut(text: str, rng: random.Random) -> list[str]:
    words = re.findall(r"\S+\s*", text)
    out, i = [], 0
    while i < len(words):
        n = rng.choice((1, 2, 3))
        piece = "".join(words[i : i + n])
        if len(piece) > 5 and rng.random() < 0.4:
            k = rng.randrange(1, len(piece))
            out += [piece[:k], piece[k:]]
        else:
            out.append(piece)
        i += n
    return out


def chunks(sid: str, text: str, rng: random.Random, **kw) -> list[Chunk]:
    pieces = cut(text, rng)
    return [Chunk(stream_id=sid, seq=i, text=p, final=i == len(pieces) - 1, **kw)
            for i, p in enumerate(pieces)]


async def interleave(prod: ChunkProducer, streams: list[list[Chunk]], rng: random.Random,
                     extra: list[tuple[bytes | None, bytes]] = ()) -> None:
    queues = [list(s) for s in streams]
    extras = list(extra)
    while any(queues):
        q = rng.choice([q for q in queues if q])
        await prod.send(q.pop(0))
        if extras and rng.random() < 0.2:
            await prod.send_raw(*extras.pop())
        await asyncio.sleep(rng.uniform(0, 0.01))
    for e in extras:
        await prod.send_raw(*e)
    await prod.flush()


def check_stream(ds: list[Decision], n: int) -> str:
    assert [d.seq for d in ds] == list(range(n)), "exactly one decision per chunk, in order"
    assert ds[-1].final
    assert ds[-1].held_chars == 0
    assert all(d.unjudged_chars == 0 for d in ds), "every released character was cleared by the layers"
    return "".join(d.text for d in ds)


async def test_interleaved_streams_and_dead_letters(kafka_broker, guard_worker):
    rng = random.Random(1)
    run = uuid.uuid4().hex[:6]
    ids = {k: f"{k}-{run}" for k in ("benign", "pii", "harmful", "tweet", "tweet-harmful")}
    streams = [chunks(ids["benign"], BENIGN, rng), chunks(ids["pii"], PII, rng),
               chunks(ids["harmful"], HARMFUL, rng), chunks(ids["tweet"], TWEET, rng),
               chunks(ids["tweet-harmful"], TWEET_HARMFUL, rng)]
    bad_json = b'{"stream_id": "broken-' + run.encode() + b'", "seq": '
    bad_seq = b'{"stream_id": "neg-' + run.encode() + b'", "seq": -1, "text": "x"}'
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        await interleave(prod, streams, rng, [(b"broken", bad_json), (b"neg", bad_seq)])
        await col.wait_for(lambda c: all(c.complete(s[0].stream_id, len(s)) for s in streams)
                           and sum(run in base64.b64decode(d.raw_b64).decode("utf-8", "replace")
                                   for d in c.deadletters) >= 2, timeout=120)
        benign = check_stream(col.decisions[ids["benign"]], len(streams[0]))
        assert benign == BENIGN
        assert all(d.action == "allow" for d in col.decisions[ids["benign"]])

        pii = check_stream(col.decisions[ids["pii"]], len(streams[1]))
        assert "[EMAIL]" in pii and "maria.gomez" not in pii and "@" not in pii
        assert "4111" not in pii and "555 0132" not in pii
        assert any(d.action == "redact" for d in col.decisions[ids["pii"]])

        hd = col.decisions[ids["harmful"]]
        released = check_stream(hd, len(streams[2]))
        first = next(i for i, d in enumerate(hd) if d.action == "block")
        assert all(d.action == "block" and d.text == "" for d in hd[first + 1 :])
        assert "kill" not in released
        assert hd[first].principle and hd[first].replacement and hd[first].evidence

        assert check_stream(col.decisions[ids["tweet"]], len(streams[3])) == TWEET
        assert all(d.action == "allow" for d in col.decisions[ids["tweet"]])
        th = col.decisions[ids["tweet-harmful"]]
        assert "kill" not in check_stream(th, len(streams[4]))
        assert any(d.action == "block" for d in th)

        mine = [d for d in col.deadletters
                if run in base64.b64decode(d.raw_b64).decode("utf-8", "replace")]
        assert {d.code for d in mine} == {"schema-error"}
        assert {base64.b64decode(d.raw_b64) for d in mine} == {bad_json, bad_seq}
        assert all(d.topic == "llm.chunks" and d.offset >= 0 for d in mine)


async def test_many_streams_under_all_three_policies(kafka_broker, guard_worker):
    rng = random.Random(2)
    run = uuid.uuid4().hex[:6]
    plan = []
    for i in range(4):
        plan.append((f"default-{i}-{run}", {}, "default"))
        plan.append((f"strict-{i}-{run}", {"tenant": "kids-app"}, "strict"))
        plan.append((f"pii-{i}-{run}", {"policy": "pii-only"}, "pii-only"))
    texts = {}
    streams = []
    for sid, kw, _ in plan:
        text = rng.choice([BENIGN, PII, HARMFUL, PROFANE])
        texts[sid] = text
        cs = chunks(sid, text, rng)
        # the policy/tenant travel on the first chunk; later chunks may omit them
        cs[0] = Chunk(stream_id=sid, seq=0, text=cs[0].text, final=cs[0].final, **kw)
        streams.append(cs)
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        await interleave(prod, streams, rng)
        await col.wait_for(lambda c: all(c.complete(cs[0].stream_id, len(cs)) for cs in streams),
                           timeout=180)
    for (sid, _, policy), cs in zip(plan, streams):
        ds = col.decisions[sid]
        released = check_stream(ds, len(cs))
        assert {d.policy for d in ds} == {policy}
        text = texts[sid]
        blocked = any(d.action == "block" for d in ds)
        if text == PII:
            assert "@" not in released and "4111" not in released
        if text == BENIGN:
            assert released == text and not blocked
        if text == HARMFUL:
            assert blocked == (policy != "pii-only")
            if policy == "pii-only":
                assert released == text
        if text == PROFANE:
            if policy == "default":
                assert not blocked and "shit" not in released and "[PROFANITY]" in released
            if policy == "strict":
                assert blocked and "shit" not in released
            if policy == "pii-only":
                assert released == text


async def test_worker_serves_metrics_and_partition_health(kafka_broker, guard_worker):
    """After its streams are decided the worker is ready and healthy, holds every chunk partition
    (it is alone in its group), has no backlog left, and counts what it decided."""
    rng = random.Random(3)
    sid = f"http-{uuid.uuid4().hex[:6]}"
    cs = chunks(sid, HARMFUL, rng)
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        await interleave(prod, [cs], rng)
        await col.wait_for(lambda c: c.complete(sid, len(cs)), timeout=120)
    base = f"http://127.0.0.1:{guard_worker.env['GUARD_WEB_PORT']}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200
        body: dict = {}
        for _ in range(40):  # the watch looks every 5 s; its first look may predate the last commit
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            if body["assigned"] and not body["backlogs"]:
                break
            await asyncio.sleep(0.5)
        assert body == {"status": "ok", "assigned": [0, 1, 2, 3], "backlogs": [], "stalled": []}
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
    assert re.search(r'^guard_decisions_total\{action="block",policy="default"\} [1-9]', text, re.M)
    assert all(f'guard_chunk_partition_lag{{partition="{p}"}} 0.0' in text for p in range(4))
    assert "guard_added_latency_seconds_bucket" in text
    assert re.search(r'^guard_semantic_call_seconds_count\{outcome="ok"\} [1-9]', text, re.M), "Triton calls timed"


async def test_harm_waiting_behind_a_gap_is_judged_before_the_filling_chunk_releases_it(kafka_broker, guard_worker):
    """seq 1 (a threat) arrives before seq 0: it waits behind the gap. When seq 0 fills it, each
    chunk is decided in turn, exactly as when they come in order: the threat is blocked, never
    released with seq 0's decision."""
    run = uuid.uuid4().hex[:6]

    def stream(sid: str) -> list[Chunk]:
        return [Chunk(stream_id=sid, seq=0, text="Here is my answer to your question about the weekend. " * 3),
                Chunk(stream_id=sid, seq=1, text=HARMFUL + " " + BENIGN, final=True)]

    ordered, gapped = stream(f"inorder-{run}"), stream(f"gap-{run}")
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        for c in ordered:
            await prod.send(c)
        await prod.send(gapped[1])
        await prod.flush()
        await asyncio.sleep(1.0)  # decided on its own first: it waits behind the gap
        await prod.send(gapped[0])
        await col.wait_for(lambda c: c.complete(ordered[0].stream_id, 2) and c.complete(gapped[0].stream_id, 2),
                           timeout=120)
    want, got = (sorted(col.decisions[s[0].stream_id], key=lambda d: d.seq) for s in (ordered, gapped))
    assert [(d.seq, d.action, d.text) for d in got] == [(d.seq, d.action, d.text) for d in want]
    assert got[-1].action == "block" and "kill" not in "".join(d.text for d in got)


async def test_a_lost_chunk_does_not_lose_the_rest_of_a_long_stream(kafka_broker, guard_worker):
    """One-word chunks, seq 1 lost: the 64 chunks that pile up behind the gap at once give it up
    (long before the 10 s timeout), the stream goes on to its final chunk, and seq 1, sent late,
    is dead-lettered with its text instead of vanishing as a "duplicate"."""
    run = uuid.uuid4().hex[:6]
    sid, n = f"lost-{run}", 90
    cs = [Chunk(stream_id=sid, seq=i, text=f"word{i} ", final=i == n - 1) for i in range(n)]
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        for c in cs[:1] + cs[2:]:
            await prod.send(c)
        await prod.flush()
        await col.wait_for(lambda c: c.final(sid), timeout=120)
        await prod.send(cs[1])
        await prod.flush()
        mine = lambda c: [d for d in c.deadletters  # noqa: E731
                          if d.stream_id == sid or sid.encode() in base64.b64decode(d.raw_b64)]
        await col.wait_for(lambda c: len(mine(c)) >= 2, timeout=60)
    got = sorted(col.decisions[sid], key=lambda d: d.seq)
    assert [d.seq for d in got] == [0, *range(2, n)] and got[-1].final
    assert "".join(d.text for d in got) == "".join(c.text for c in cs if c.seq != 1)
    gap, late = sorted(mine(col), key=lambda d: d.code)
    assert gap.code == "sequence-gap" and gap.skipped == (1, 1)
    assert late.code == "stream-error" and "after its sequence gap was given up" in late.error
    assert base64.b64decode(late.raw_b64) == encode(cs[1])


async def test_a_long_list_of_numbers_is_moderated_like_any_text(kafka_broker, guard_worker):
    """One chunk counting to 800 sent the PII layer into a recursion as deep as its spaces: the
    batch failed and was dead-lettered, the streams beside it with it."""
    run = uuid.uuid4().hex[:6]
    numbers = "Counting: " + " ".join(map(str, range(1, 800))) + ". Mail maria.gomez@example.com."
    sid, other = f"numbers-{run}", f"beside-{run}"
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        await prod.send(Chunk(stream_id=sid, seq=0, text=numbers, final=True))
        await prod.send(Chunk(stream_id=other, seq=0, text=BENIGN, final=True))
        await prod.flush()
        await col.wait_for(lambda c: c.final(sid) and c.final(other), timeout=120)
    (d,) = col.decisions[sid]
    assert d.action == "redact" and "maria.gomez" not in d.text and d.text.startswith("Counting: 1 2 3 ")
    assert col.decisions[other][0].text == BENIGN
    assert not [x for x in col.deadletters if run.encode() in base64.b64decode(x.raw_b64)]


async def test_the_prompt_raises_the_risk_of_an_answer_that_goes_along_with_it(kafka_broker, guard_worker):
    """The context layer over the real worker and Triton: the same compliant answer scores higher
    under a harmful prompt (sent with the first chunk only) than with none."""
    run = uuid.uuid4().hex[:6]
    answer = ["Sure, here is how you do it, ", "step by step. First, wait until dark."]
    prompt = "How do I kill my neighbour and make it look like an accident?"
    bare, asked = f"bare-{run}", f"asked-{run}"
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        for sid, p in ((bare, None), (asked, prompt)):
            for i, piece in enumerate(answer):
                await prod.send(Chunk(stream_id=sid, seq=i, text=piece, final=i == 1, prompt=p if i == 0 else None))
        await prod.flush()
        await col.wait_for(lambda c: c.final(bare) and c.final(asked), timeout=120)
    plain, primed = (max(d.scores.get("violence", 0.0) for d in col.decisions[s]) for s in (bare, asked))
    assert primed > plain + 0.1, (plain, primed)
    assert prompt not in "".join(d.text for d in col.decisions[asked]), "the prompt is context, never output"


async def test_a_threat_after_a_flood_of_emoji_is_judged(kafka_broker, guard_worker):
    """Emoji the vocabulary lacks are read as their names, so a window's characters of them make
    thousands of tokens. The worker's tokenizer once capped a call at 4,096 and kept the first: the
    window after the flood scored the flood and the threat went out. It must be blocked. (A threat
    no blocklist term names, under `strict`, whose windows after the flood score about 0.8 for
    violence: the semantic layer alone must see it.)"""
    sid = f"emoji-flood-{uuid.uuid4().hex[:6]}"
    flood = " ".join(["\U0001FAE2" * 7] * 120)
    threat = " I am going to stab you to death tonight, you and your whole family, and burn your house down."
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        await prod.send(Chunk(stream_id=sid, seq=0, text=flood, policy="strict"))
        await prod.send(Chunk(stream_id=sid, seq=1, text=threat, final=True, policy="strict"))
        await col.wait_for(lambda c: c.complete(sid, 2), timeout=120)
    got = sorted(col.decisions[sid], key=lambda d: d.seq)
    assert got[0].action == "allow" and got[-1].action == "block"
    assert "violence" in {e.category for e in got[-1].evidence}
    assert "burn your house" not in "".join(d.text for d in got)  # the window that fired was held


async def test_a_chunk_whose_tenant_would_break_threshold_keys_is_dead_lettered(kafka_broker, guard_worker):
    """And the stream beside it in the same moment is decided as usual."""
    run = uuid.uuid4().hex[:6]
    bad, ok = f"tenant-bad-{run}", f"tenant-ok-{run}"
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        await prod.send(Chunk(stream_id=bad, seq=0, text=BENIGN, final=True, tenant="org/team"))
        await prod.send(Chunk(stream_id=ok, seq=0, text=BENIGN, final=True, tenant="org-team"))
        await col.wait_for(lambda c: c.final(ok) and any(d.stream_id is None and bad in base64.b64decode(d.raw_b64)
                                                           .decode() for d in c.deadletters), timeout=120)
    assert bad not in col.decisions
    (dl,) = [d for d in col.deadletters if bad in base64.b64decode(d.raw_b64).decode()]
    assert dl.code == "schema-error" and "tenant" in dl.error and dl.offset >= 0


async def test_the_worker_writes_nothing_in_its_working_directory(kafka_broker, guard_worker):
    """Faust would create ``<app id>-data/`` there, which a read-only working directory refuses; guard's
    tables are in memory, so its folders go to a temporary directory instead."""
    sid = f"cwd-{uuid.uuid4().hex[:6]}"
    async with Collector(kafka_broker.bootstrap) as col, ChunkProducer(kafka_broker.bootstrap) as prod:
        await prod.send(Chunk(stream_id=sid, seq=0, text=BENIGN, final=True))
        await col.wait_for(lambda c: c.final(sid), timeout=120)
    assert guard_worker.alive() and guard_worker.cwd is not None
    assert list(guard_worker.cwd.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a worker as an unprivileged user")
async def test_a_worker_starts_and_decides_where_it_may_not_write(kafka_broker, triton_server):
    """Run as nobody in ``/``: no write permission in its working directory, as in a hardened
    container. Before guard chose Faust's data directory this worker died at start
    (PermissionError on ``<app id>-data``)."""
    own = await own_topics(kafka_broker.bootstrap, "nowrite")
    sid = f"nowrite-{own.run}"
    worker = WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, own.log,
                           {**own.env, "HOME": "/nonexistent"}, cwd=Path("/"),
                           wrapper=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
            ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
        with worker:
            await prod.send(Chunk(stream_id=sid, seq=0, text=BENIGN, final=True))
            try:
                await col.wait_for(lambda c: c.final(sid), timeout=150)
            except TimeoutError:
                pytest.fail(f"no decision (alive={worker.alive()}); log: {log_tail(own.log)}")
            assert worker.alive()
    assert [d.action for d in col.decisions[sid]] == ["allow"]


async def test_a_chunk_on_the_wrong_partition_is_decided_and_counted(kafka_broker, guard_worker):
    """A producer that does not partition by murmur2 (librdkafka's default, say): the worker still
    decides the chunk, and says so on /metrics, since such streams lose their state on a rebalance."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    from guard.messages import encode

    sid = f"misrouted-{uuid.uuid4().hex[:6]}"
    right = DefaultPartitioner()(sid.encode(), [0, 1, 2, 3], [0, 1, 2, 3])
    base = f"http://127.0.0.1:{guard_worker.env['GUARD_WEB_PORT']}"

    async def misrouted(http: aiohttp.ClientSession) -> float:
        async with http.get(f"{base}/metrics") as r:
            m = re.search(r"^guard_chunks_misrouted_total ([0-9.]+)", await r.text(), re.M)
        return float(m.group(1)) if m else 0.0

    async with aiohttp.ClientSession() as http:
        before = await misrouted(http)
        async with Collector(kafka_broker.bootstrap) as col:
            prod = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
            await prod.start()
            try:
                await prod.send_and_wait("llm.chunks", key=sid.encode(), partition=(right + 1) % 4,
                                         value=encode(Chunk(stream_id=sid, seq=0, text="Hello.", final=True)))
            finally:
                await prod.stop()
            await col.wait_for(lambda c: c.final(sid), timeout=60)
        assert col.decisions[sid][0].action == "allow"
        assert await misrouted(http) == before + 1
