"""``guard moderate`` as a user runs it, over the real Triton server: the exit code says whether
the text was blocked, and ``--json`` prints one decision per chunk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guard.messages import Decision, decode

THREAT = ("Listen carefully. I know where you live and I will kill you and your whole family "
          "tonight, nobody will hear you scream.")
BENIGN = "The capital of France is Paris. It sits on the Seine and is known for the Louvre."


def moderate(text: str, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", "moderate", "--triton-url", url, *flags, "-"],
                          input=text, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_a_blocked_text_exits_3_with_one_json_decision_per_chunk(triton_server) -> None:
    out = moderate(THREAT, triton_server.grpc_url, "--json", "--chunk-chars", "16")
    decisions = [decode(Decision, line) for line in out.stdout.splitlines()]
    assert out.returncode == 3, out.stderr
    assert [d.seq for d in decisions] == list(range(-(-len(THREAT) // 16)))
    assert decisions[-1].action == "block" and "kill" not in "".join(d.text for d in decisions)


@pytest.mark.parametrize("as_json", [False, True])
def test_a_harmless_text_exits_0_and_is_printed_whole(triton_server, as_json: bool) -> None:
    out = moderate(BENIGN, triton_server.grpc_url, "--chunk-chars", "7", *(["--json"] if as_json else []))
    shown = "".join(decode(Decision, line).text for line in out.stdout.splitlines()) if as_json else out.stdout
    assert out.returncode == 0, out.stderr
    assert shown.rstrip("\n") == BENIGN
