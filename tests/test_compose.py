"""docker-compose.yml is valid and wires the production stack (validated offline, no engine)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
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
    assert env["GUARD_TRITON_PAD_TO_MULTIPLE"] == "16", "the GPU encoder batches only equal shapes"
    assert env["GUARD_WEB_HOST"] == "0.0.0.0", "the healthcheck and scrapes reach the worker's port"
    assert services["worker"]["restart"] == "unless-stopped", "a worker that leaves on a stall comes back"
    assert "/healthz" in " ".join(services["worker"]["healthcheck"]["test"])
    tuner = services["tuner"]
    assert tuner["environment"]["GUARD_TUNER_WEB_HOST"] == "0.0.0.0" and tuner["restart"] == "unless-stopped"
    assert "6067/healthz" in " ".join(tuner["healthcheck"]["test"])
    for name in ("worker", "tuner"):  # as tests/integration/test_worker.py runs a worker: nobody, no writes
        svc = services[name]
        assert svc["user"] == "65534:65534" and svc["read_only"] is True and "/tmp" in svc["tmpfs"]



def test_compose_kafka_answers_containers_and_the_hosts_tools_each_at_an_address_they_can_reach():
    """A client gets the advertised address of the listener it came in on: with only
    ``kafka:9092`` advertised, ``guard feedback`` on the host bootstrapped and then failed to
    resolve ``kafka``."""
    svc = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["kafka"]
    env = svc["environment"]

    def listeners(var: str) -> dict[str, str]:
        return dict(item.split("://") for item in env[var].split(","))

    bound, advertised = listeners("KAFKA_LISTENERS"), listeners("KAFKA_ADVERTISED_LISTENERS")
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(advertised) <= set(bound) <= set(protocols)
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:9092", "the workers' bootstrap"
    (mapping,) = svc["ports"]
    host_ip, host_port, container_port = mapping.split(":")
    (name,) = [n for n, address in bound.items() if address.rsplit(":", 1)[1] == container_port]
    assert advertised[name] == f"{host_ip}:{host_port}", "the host's tools are told the published address"
    assert host_ip == "127.0.0.1", "plaintext without authentication stays on loopback"


def _top_imports(path: Path) -> set[str]:
    """Modules a file imports when it is imported (lazy imports inside functions are not counted);
    parsing as 3.10 raises SyntaxError on newer syntax."""
    tree = ast.parse(path.read_text(), feature_version=(3, 10))
    out: set[str] = set()
    for n in tree.body:
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module)
        elif isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
    return out


def _source(module: str) -> Path:
    path = REPO / (module.replace(".", "/") + ".py")
    return path if path.exists() else REPO / module.replace(".", "/") / "__init__.py"


def test_triton_image_python_can_import_what_the_heads_stub_needs():
    """NVIDIA's tritonserver:24.08 runs the python backend on Python 3.10, with guard's source on
    PYTHONPATH (guard itself needs 3.11, so it is not pip-installed there). Everything the heads stub
    pulls from guard must parse as 3.10 and need nothing beyond numpy, or the GPU stack never starts."""
    dockerfile = (REPO / "docker" / "triton.Dockerfile").read_text()
    assert "tritonserver:24.08-py3" in dockerfile and "ENV PYTHONPATH=/opt/guard" in dockerfile
    imports = _top_imports(REPO / "triton_models_gpu" / "harm_heads" / "1" / "model.py")
    todo, seen, outside = [m for m in imports if m.startswith("guard.")], set(), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        parents = [".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)]
        seen.add(mod)
        todo.extend(parents)
        for m in _top_imports(_source(mod)):
            if m.split(".")[0] == "guard":
                todo.append(m)
            else:
                outside.add(m.split(".")[0])
    assert "guard.models.heads" in seen
    assert outside - set(sys.stdlib_module_names) - {"__future__"} == {"numpy"}
