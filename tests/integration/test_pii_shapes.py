"""PII in the shapes LLM answers take, over the real broker and a worker on the real Triton server
(``default`` policy: the semantic layer judges the text, the PII layer masks): each value leaves
masked whatever the chunks, as the scanner's unit tests promise."""

from __future__ import annotations

from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import own_topics

#: (value, placeholder) in the shapes that leaked before: Markdown, CSV, typographic hyphens,
#: a label glued on, Japanese prose glued to a card
VALUES = [("(415) 555-2671", "[PHONE]"), ("bob@corp.io", "[EMAIL]"), ("536-22-8726", "[US_SSN]"),
          ("415\u2011555\u20112671", "[PHONE]"), ("10.0.0.5", "[IPV4]"), ("4111-1111-1111-1111", "[CREDIT_CARD]")]
TEMPLATE = ("Here is the contact sheet you asked for.\n\n| name | phone | mail |\n|---|---|---|\n"
            "| Bob | **{0}** | _{1}_ |\n\nAs CSV:\n\nname,ssn\nBob,{2}\n\nHis mobile is {3}, the office "
            "server is at IP:{4}, and the card on file is カード番号{5}です.\n")


async def test_pii_in_llm_answer_shapes_leaves_masked_over_the_real_system(kafka_broker, triton_server, tmp_path):
    own = await own_topics(kafka_broker.bootstrap, "piishapes")
    text = TEMPLATE.format(*(v for v, _ in VALUES))
    streams = {f"shapes-{k}-{own.run}": [text[i:i + k] for i in range(0, len(text), k)] for k in (1, 5, 13)}
    async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
            ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
        with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, own.log, own.env):
            for sid, pieces in streams.items():
                for i, p in enumerate(pieces):
                    await prod.send(Chunk(stream_id=sid, seq=i, text=p, final=i == len(pieces) - 1, policy="default"))
            await prod.flush()
            await col.wait_for(lambda c: all(c.final(sid) for sid in streams), timeout=240)
    released = {sid: "".join(d.text for d in sorted(col.decisions[sid], key=lambda d: d.seq)) for sid in streams}
    assert len(set(released.values())) == 1, "the same text however the stream was cut"
    out = next(iter(released.values()))
    assert all(value not in out for value, _ in VALUES), out
    assert all(out.count(ph) == [p for _, p in VALUES].count(ph) for _, ph in VALUES), out
    assert "| Bob | **[PHONE]** | _[EMAIL]_ |" in out and "Bob,[US_SSN]" in out, out
