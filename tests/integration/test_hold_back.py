"""The hold-back bound over the real broker and Triton: a policy that may hold only a few
characters releases text before the semantic layer has scored it, and says so per decision
(``unjudged_chars``) and in the metrics (``guard_unjudged_chars_total``)."""

from __future__ import annotations

import aiohttp

from guard.messages import Chunk
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import own_topics, policies_with

TEXT = ("The museum opens at nine and closes at six; on Sundays it opens an hour later, and the "
        "garden behind it stays open until dusk all year round.")


async def test_a_tight_hold_back_releases_unjudged_text_and_counts_it(kafka_broker, triton_server, tmp_path):
    own = await own_topics(kafka_broker.bootstrap, "holdback")
    policies = policies_with(tmp_path, "eager", "max_hold_back_chars: 8\n")
    env = {**own.env, "GUARD_POLICY_DIR": str(policies)}
    sid, pieces = f"eager-{own.run}", [TEXT[i:i + 6] for i in range(0, len(TEXT), 6)]
    async with Collector(kafka_broker.bootstrap, own.names["decisions"], own.names["deadletter"]) as col, \
            ChunkProducer(kafka_broker.bootstrap, own.names["chunks"]) as prod:
        with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, own.log, env):
            for i, p in enumerate(pieces):
                await prod.send(Chunk(stream_id=sid, seq=i, text=p, final=i == len(pieces) - 1, policy="eager"))
            await prod.flush()
            await col.wait_for(lambda c: c.final(sid), timeout=180)
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{env['GUARD_WEB_PORT']}/metrics") as r:
                metrics = await r.text()
    ds = sorted(col.decisions[sid], key=lambda d: d.seq)
    assert "".join(d.text for d in ds) == TEXT
    assert max(d.held_chars for d in ds) <= 8 + 6, "never more held than the bound (plus the chunk that crossed it)"
    unjudged = sum(d.unjudged_chars for d in ds)
    assert unjudged > 0
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("guard_unjudged_chars_total{"))
    assert counted == unjudged
