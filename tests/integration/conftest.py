"""A guard worker process on the session's real broker and real Triton."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guard.devenv._proc import free_port
from guard.devenv.kafka import create_topics
from guard.messages import Chunk
from guard.settings import Settings
from streams import topics
from streams.client import ChunkProducer, Collector, WorkerProcess

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "build" / "test-logs"  # what the processes these tests start write
NAMES = ("chunks", "decisions", "deadletter", "feedback", "thresholds")
_STARTED = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.time()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed test's report ends with the tails of the process logs written while it ran: CI
    prints the report and nothing else, and a worker's log is what says why it did not answer."""
    outcome = yield
    rep = outcome.get_result()
    started = item.stash.get(_STARTED, None)
    if rep.when != "call" or not rep.failed or started is None or not LOGS.is_dir():
        return
    for log in sorted(LOGS.glob("*.log"), key=lambda f: f.stat().st_mtime):
        if log.stat().st_mtime >= started:
            rep.sections.append((f"log {log.name} (last 60 lines)", log_tail(log)))


@dataclass(frozen=True)
class OwnTopics:
    """One test's own topics (one partition each) and consumer group, for a worker it starts."""

    run: str  # a fresh suffix: stream ids made with it are this test's alone
    names: dict[str, str]  # "chunks" etc. -> topic
    env: dict[str, str]  # what a WorkerProcess needs to use them (GUARD_APP_ID, GUARD_TOPIC_*, a free web port)
    log: Path


async def own_topics(bootstrap: str, prefix: str) -> OwnTopics:
    run = uuid.uuid4().hex[:6]
    names = {t: f"{prefix}-{run}.{t}" for t in NAMES}
    await create_topics(bootstrap, topics.specs(Settings(kafka_bootstrap=bootstrap, partitions=1,
                                                         **{f"topic_{t}": n for t, n in names.items()})))
    env = {"GUARD_APP_ID": f"guard-{prefix}-{run}", "GUARD_PARTITIONS": "1", "GUARD_LOG_LEVEL": "INFO",
           "GUARD_WEB_PORT": str(free_port()), **{f"GUARD_TOPIC_{t.upper()}": n for t, n in names.items()}}
    return OwnTopics(run, names, env, LOGS / f"worker-{prefix}-{run}.log")


#: a principle the tests' own policies share: threats, judged by the semantic layer alone
NO_THREATS = """\
  - id: no-threats
    text: Do not threaten anyone.
    categories: [violence]
    detectors: [semantic]
    threshold: 0.8
    action: block
"""


def policies_with(tmp: Path, name: str, head: str = "", principles: str = NO_THREATS) -> Path:
    """The shipped policies plus a test's own ``name.yaml`` (``head``: its top-level keys), in ``tmp``."""
    folder = tmp / "policies"
    shutil.copytree(REPO / "policies", folder)
    (folder / f"{name}.yaml").write_text(f"policy: {name}\n{head}principles:\n{principles}", encoding="utf-8")
    return folder


async def decide_with(s: Settings, worker: WorkerProcess, log: Path, prefix: str) -> None:
    """One chunk with an address, through clients built from ``s`` alone (its security settings):
    the worker's decision masks it."""
    from streams.auth import client_options

    sid = f"{prefix}-{uuid.uuid4().hex[:6]}"
    async with Collector(s.kafka_bootstrap, options=client_options(s)) as col, \
            ChunkProducer(s.kafka_bootstrap, options=client_options(s)) as prod:
        await prod.send(Chunk(stream_id=sid, seq=0, text="Hello, my email is ann@example.com.", final=True))
        await prod.flush()
        try:
            await col.wait_for(lambda c: c.final(sid), timeout=180)
        except TimeoutError:
            pytest.fail(f"no decision (worker alive={worker.alive()}): {log.read_text()[-3000:]}")
    (d,) = col.decisions[sid]
    assert d.action == "redact" and "ann@example.com" not in d.text


async def send_until_final(prod: ChunkProducer, col: Collector, chunks: list[Chunk], timeout: float,
                           why: Callable[[], Awaitable[str]]) -> None:
    """Send ``chunks`` (one stream's) and wait for that stream's final decision; fail with ``why()``."""
    for c in chunks:
        await prod.send(c)
    await prod.flush()
    try:
        await col.wait_for(lambda got: got.final(chunks[0].stream_id), timeout=timeout)
    except TimeoutError:
        pytest.fail(await why())


def log_tail(log: Path, lines: int = 60) -> str:
    """The end of a worker's log, for a failure message (ids and counts only: the worker never logs
    what a stream said)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


async def _wait_ready(bootstrap: str, timeout: float) -> None:
    sid = f"warmup-{uuid.uuid4().hex[:8]}"
    async with Collector(bootstrap) as col, ChunkProducer(bootstrap) as prod:
        await prod.send(Chunk(stream_id=sid, seq=0, text="Hello there.", final=True))
        await col.wait_for(lambda c: c.final(sid), timeout=timeout)


@pytest.fixture(scope="session")
def guard_worker(kafka_broker, triton_server, tmp_path_factory) -> Iterator[WorkerProcess]:
    """One worker (Triton-backed) for the session; topics created up front; HTTP on ``w.env``'s port.
    It runs in an empty working directory of its own (``w.cwd``), which must stay empty."""
    bootstrap = kafka_broker.bootstrap
    asyncio.run(create_topics(bootstrap, topics.specs(Settings())))
    log = LOGS / f"worker-{uuid.uuid4().hex[:6]}.log"
    with WorkerProcess(bootstrap, triton_server.grpc_url, log,
                       env={"GUARD_APP_ID": f"guard-test-{uuid.uuid4().hex[:6]}",
                            "GUARD_LOG_LEVEL": "WARNING", "GUARD_WEB_PORT": str(free_port())},
                       cwd=tmp_path_factory.mktemp("worker-cwd")) as w:
        try:
            asyncio.run(_wait_ready(bootstrap, timeout=180))
        except TimeoutError:
            pytest.fail(f"worker never answered (alive={w.alive()}); log: {log.read_text()[-3000:]}")
        yield w
