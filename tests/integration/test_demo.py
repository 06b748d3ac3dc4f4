"""``guard demo`` over the real broker and Triton, on topics named by ``GUARD_TOPIC_*``: it used to
send and read the default topic names while the worker it starts followed the settings, so no
decision ever came back."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from guard.policy.load import default_policy_dir, load_policy
from streams.demo import ANSWERS, run

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
    fields = dict(kv.split("=", 1) for kv in summary.split()[1:] if "=" in kv)
    assert fields["streams"] == str(len(ANSWERS)) and fields["decisions"] == fields["chunks"], summary
    assert int(fields["block"]) > 0 and int(fields["redact"]) > 0, summary
    # what each stream released, as the README's demo promises
    shown = {name: line.split(": ", 1)[1] for line in out.splitlines()
             for name in ANSWERS if line.strip().startswith(f"{name}: ")}
    assert shown["benign"] == ANSWERS["benign"][1] and shown["tricky-benign"] == ANSWERS["tricky-benign"][1]
    assert "maria.gomez" not in shown["pii"] and "4111" not in shown["pii"] and "[EMAIL]" in shown["pii"]
    replacement = load_policy(default_policy_dir() / "default.yaml").replacement
    assert "kill you" not in shown["harmful"] and shown["harmful"].endswith(replacement)
    assert "shit" not in shown["profanity"] and "lunch helps" in shown["profanity"]
