"""A running worker takes an edited blocklist without a restart, and keeps the old lists, or the
old policies, when an edit is bad (real broker, real Triton)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

import pytest

from guard.devenv._proc import free_port
from guard.devenv.kafka import create_topics
from guard.messages import Chunk, Decision
from guard.settings import Settings
from streams import topics
from streams.client import ChunkProducer, Collector, WorkerProcess

from .conftest import LOGS

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
WORD = "zorblax"  # in no list until the test adds it


async def decide(bootstrap: str, s: Settings, text: str) -> Decision:
    sid = f"reload-{uuid.uuid4().hex[:6]}"
    async with Collector(bootstrap, s.topic_decisions, s.topic_deadletter) as col, \
            ChunkProducer(bootstrap, s.topic_chunks) as prod:
        await prod.send(Chunk(stream_id=sid, seq=0, text=text, final=True))
        await col.wait_for(lambda c: c.final(sid), timeout=120)
    (d,) = col.decisions[sid]
    return d


def logged(worker: WorkerProcess, event: str, timeout_s: float = 20.0) -> bool:
    """Whether the worker logs ``event`` within ``timeout_s`` (a reload is checked every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    while not worker.events(event) and time.monotonic() < deadline:
        time.sleep(0.5)
    return bool(worker.events(event))


def _setup(bootstrap: str, tmp_path: Path, prefix: str) -> tuple[Path, Settings, dict[str, str], str]:
    """A copy of the policies to edit, fresh topics, and a worker's environment reloading every 0.5 s."""
    pdir = tmp_path / "policies"
    shutil.copytree(REPO / "policies", pdir)
    run = uuid.uuid4().hex[:6]
    names = {f"topic_{t}": f"{prefix}-{run}.{t}" for t in ("chunks", "decisions", "deadletter", "feedback",
                                                            "thresholds")}
    s = Settings(kafka_bootstrap=bootstrap, **names)
    asyncio.run(create_topics(bootstrap, topics.specs(s)))
    env = {"GUARD_POLICY_DIR": str(pdir), "GUARD_POLICY_RELOAD_S": "0.5", "GUARD_APP_ID": f"{prefix}-{run}",
           "GUARD_WEB_PORT": str(free_port()), "GUARD_LOG_LEVEL": "INFO",
           **{f"GUARD_{k.upper()}": v for k, v in names.items()}}
    return pdir, s, env, run


def test_blocklist_edits_apply_live_and_bad_ones_are_refused(kafka_broker, triton_server, tmp_path):
    pdir, s, env, run = _setup(kafka_broker.bootstrap, tmp_path, "reload")
    log = LOGS / f"worker-reload-{run}.log"
    text = f"What a {WORD} day it was."
    with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, env) as worker:
        before = asyncio.run(decide(kafka_broker.bootstrap, s, text))
        assert before.action == "allow" and WORD in before.text

        profanity = pdir / "blocklists" / "profanity.txt"
        profanity.write_text(profanity.read_text() + f"\n{WORD}\n")

        async def until_masked() -> Decision:
            for _ in range(40):
                d = await decide(kafka_broker.bootstrap, s, text)
                if WORD not in d.text:
                    return d
                await asyncio.sleep(0.5)
            pytest.fail(f"the edit was never applied: {log.read_text()[-2000:]}")

        after = asyncio.run(until_masked())
        assert after.action == "redact" and "[PROFANITY]" in after.text
        assert worker.events("blocklists_reloaded")

        (pdir / "blocklists" / "not-a-category.txt").write_text("anything\n")  # a bad edit
        assert logged(worker, "blocklists_reload_failed"), "the bad file was noticed"
        still = asyncio.run(decide(kafka_broker.bootstrap, s, text))
        assert still.action == "redact" and WORD not in still.text, "the lists in force were kept"

        # a YAML slip in the tenant map escaped the reload and crashed the worker
        (pdir / "tenants.yaml").write_text("tenants:\n  kids-app: strict\n   internal: pii-only\n")
        assert logged(worker, "policy_reload_failed"), "the bad tenant map was noticed"
        alive = asyncio.run(decide(kafka_broker.bootstrap, s, text))
        assert alive.action == "redact", "the worker still decides with the set in force"


def test_an_edited_threshold_supersedes_a_pin_made_against_the_old_value(kafka_broker, triton_server, tmp_path):
    """Once a key had had an event (a tuner move, a pin), editing the threshold in the policy file
    changed nothing: the event's value stood until someone released the key. An event now holds
    only while the file says what it said when the event was made."""
    import os
    import subprocess
    import sys

    pdir, s, env, run = _setup(kafka_broker.bootstrap, tmp_path, "edit")
    text = "The capital of France is Paris."

    async def until(action: str) -> Decision:
        for _ in range(60):
            d = await decide(kafka_broker.bootstrap, s, text)
            if d.action == action:
                return d
            await asyncio.sleep(0.5)
        pytest.fail(f"never {action}: {log.read_text()[-2000:]}")

    log = LOGS / f"worker-edit-{run}.log"
    with WorkerProcess(kafka_broker.bootstrap, triton_server.grpc_url, log, env) as worker:
        assert asyncio.run(decide(kafka_broker.bootstrap, s, text)).action == "allow"
        # a pin at 0: every text's hate score reaches it
        cli = [sys.executable, "-m", "guard.cli", "thresholds", "pin", "--policy", "default", "--category",
               "hate", "--value", "0", "--by", "tester", "--bootstrap", kafka_broker.bootstrap]
        out = subprocess.run(cli, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        pinned = asyncio.run(until("block"))
        assert [(e.category, e.threshold) for e in pinned.evidence if e.detector == "semantic"] == [("hate", 0.0)]

        policy = pdir / "default.yaml"
        original = policy.read_text()
        edited = original.replace("categories: [hate]\n    detectors: [semantic]\n    threshold: 0.85",
                                  "categories: [hate]\n    detectors: [semantic]\n    threshold: 0.84")
        assert edited != original
        policy.write_text(edited)
        after = asyncio.run(until("allow"))
        assert after.thresholds_version == pinned.thresholds_version, "no new event: the edit alone"
        assert worker.events("policies_reloaded")
        policy.write_text(original)  # the file says again what the pin was made against
        asyncio.run(until("block"))
