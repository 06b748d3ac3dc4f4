"""``guard demo`` over the real broker and Triton, on topics named by ``GUARD_TOPIC_*``: it used to
send and read the default topic names while the worker it starts followed the settings, so no
decision ever came back."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from streams.demo import run

from .conftest import LOGS

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(400)]


def test_the_demo_runs_on_the_topics_the_settings_name(kafka_broker, triton_server, monkeypatch, capsys):
    run_id = uuid.uuid4().hex[:6]
    for t in ("chunks", "decisions", "deadletter", "feedback", "thresholds"):
        monkeypatch.setenv(f"GUARD_TOPIC_{t.upper()}", f"demo-{run_id}.{t}")
    monkeypatch.setenv("GUARD_APP_ID", f"demo-{run_id}")
    log_dir = LOGS / f"demo-{run_id}"
    log_dir.mkdir(parents=True, exist_ok=True)
    rc = asyncio.run(run(kafka_broker.bootstrap, triton_server.grpc_url, 400.0, 7, True, log_dir))
    out = capsys.readouterr().out
    assert rc == 0, out[-2000:]
    summary = next(line for line in out.splitlines() if line.startswith("summary:"))
    assert "block=0" not in summary and "redact=0" not in summary
