"""Shared fixtures: the real services, started once per test session.

Integration tests run against a real Kafka broker and a real Triton server rather than fakes; both
start in seconds from local binaries (see guard/devenv), so one of each per session is cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from guard.detectors.semantic import TritonTls
from guard.devenv.certs import DevCerts, make_dev_certs
from guard.devenv.kafka import Broker, make_broker
from guard.devenv.triton import ServerTls, TritonServer

REPO = Path(__file__).resolve().parents[1]

# Property tests draw the same examples on every run (``derandomize``): a new counterexample then
# shows up when the code changes, not at random in CI on a commit that did not cause it (a CI run
# failed on a PII case no commit of that change had touched). Exploring new examples is a separate,
# deliberate run: ``./dev.sh test --hypothesis-profile=explore`` (or ``--hypothesis-seed=N``).
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("deterministic")

#: session fixtures that start a real service, and the mark each implies (transitively: a fixture
#: that needs them, such as ``guard_worker``, lists them in ``item.fixturenames`` too)
_SERVICE_MARKS = {"kafka_broker": "kafka", "triton_server": "triton"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by the services it really starts, so ``-m "not kafka"`` keeps its word; a
    hand-written mark drifted from the fixtures more than once."""
    for item in items:
        for fixture, mark in _SERVICE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """A single-node broker (``$GUARD_KAFKA_PROVIDER`` picks local jars or testcontainers)."""
    broker = make_broker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def triton_server() -> Iterator[TritonServer]:
    """tritonserver over the project's ``triton_models/``, which must have been built."""
    repository = REPO / "triton_models"
    built = (any(repository.glob("*/config.pbtxt")) and any(repository.rglob("*.onnx"))
             and any(repository.rglob("heads.npz")))
    if not built:
        pytest.fail(f"{repository} lacks built models (config.pbtxt, *.onnx, heads.npz); run "
                    "`guard models build` first (heads come from guard/models/heads/)")
    with TritonServer(repository) as server:
        yield server


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """A throwaway CA with a loopback server certificate and a client certificate."""
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tls_triton(triton_server: TritonServer, certs: DevCerts) -> Iterator[TritonServer]:
    """A second tritonserver over the same repository that speaks only mutual-TLS gRPC."""
    client = TritonTls(certs.ca_file, certs.client_cert, certs.client_key)
    with TritonServer(triton_server.model_repository,
                      tls=ServerTls(certs.server_cert, certs.server_key, certs.ca_file, client)) as server:
        yield server
