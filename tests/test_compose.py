"""docker-compose.yml is valid and wires the production stack (validated offline, no engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_compose_file_validates_and_reserves_a_gpu_for_triton():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed (./dev.sh test installs it with apt-get)")
    subprocess.run([exe, "-f", str(REPO / "docker-compose.yml"), "config", "-q"], check=True,
                   cwd=REPO, capture_output=True)
    cfg = yaml.safe_load(subprocess.run([exe, "-f", str(REPO / "docker-compose.yml"), "config"],
                                        check=True, cwd=REPO, capture_output=True, text=True).stdout)
    services = cfg["services"]
    assert {"kafka", "triton", "worker", "demo"} <= set(services)
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert any("triton_models_gpu" in str(v) for v in services["triton"]["volumes"])
    env = services["worker"]["environment"]
    assert env["GUARD_TRITON_URL"] == "triton:8001" and env["GUARD_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["GUARD_WEB_HOST"] == "0.0.0.0", "the healthcheck and scrapes reach the worker's port"
    assert services["worker"]["restart"] == "unless-stopped", "a worker that leaves on a stall comes back"
    assert "/healthz" in " ".join(services["worker"]["healthcheck"]["test"])
