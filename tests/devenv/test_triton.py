"""The local Triton launcher, over a tiny python-backend model (tiny_models.py), not the real ones.

The model checks the one trap that matters: with the wrong interpreter on PATH the python-backend
stub loads numpy 2 and answers with outputs of the right shape but zero bytes, so a correct sum is
the test, not just a 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from guard.devenv._proc import ServiceStartError
from guard.devenv.triton import TritonServer, build_backend_dir

from .tiny_models import make_repository

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, Path]]:
    tmp = tmp_path_factory.mktemp("triton")
    marker = tmp / "finalized.txt"
    server = TritonServer(make_repository(tmp / "models", marker), startup_timeout_s=90)
    server.start()
    try:
        yield server, marker
    finally:
        server.stop()


def test_constructor_is_cheap(tmp_path: Path) -> None:
    """No I/O before start(): a server over a missing folder can still be built."""
    server = TritonServer(tmp_path / "missing")
    with pytest.raises(RuntimeError):
        _ = server.grpc_url
    assert not server.is_running()


def test_backend_dir_is_idempotent(tmp_path: Path) -> None:
    first = build_backend_dir(tmp_path / "backends")
    second = build_backend_dir(tmp_path / "backends")
    assert first == second
    names = sorted(p.name for p in (first / "python").iterdir())
    assert names == ["libtriton_python.so", "triton_python_backend_stub", "triton_python_backend_utils.py"]
    assert all((first / "python" / n).resolve().is_file() for n in names)


def test_infer_returns_correct_values(served: tuple[TritonServer, Path]) -> None:
    """Real bytes come back (the numpy-2 trap returns empty outputs) and the stub uses numpy 1."""
    import tritonclient.grpc as grpcclient

    server, _ = served
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 0.5, dtype=np.float32)
    inputs = [grpcclient.InferInput("A", [2, 4], "FP32"), grpcclient.InferInput("B", [2, 4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        result = client.infer("add_sub", inputs)
    finally:
        client.close()
    np.testing.assert_array_equal(result.as_numpy("SUM"), a + b)
    np.testing.assert_array_equal(result.as_numpy("DIFF"), a - b)
    assert result.as_numpy("NUMPY_MAJOR").ravel().tolist() == [int(np.__version__.split(".")[0])] * 2


def test_http_and_metrics_endpoints(served: tuple[TritonServer, Path]) -> None:
    import urllib.request

    server, _ = served
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(server.metrics_url, timeout=5) as resp:
        assert b"nv_inference_request_success" in resp.read()


def test_stop_is_clean(tmp_path: Path) -> None:
    """SIGINT shuts down gracefully: exit code 0 and the model's finalize() ran."""
    marker = tmp_path / "finalized.txt"
    server = TritonServer(make_repository(tmp_path / "models", marker), startup_timeout_s=90)
    with server:
        assert server.is_running()
        assert server.startup_s > 0
    assert not server.is_running()
    assert server.exit_code == 0
    assert marker.read_text() == "finalized"


def test_broken_model_fails_with_log_tail(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: 0\n')
    (repo / "broken" / "1" / "model.py").write_text("raise RuntimeError('boom at import')\n")
    server = TritonServer(repo, startup_timeout_s=60)
    with pytest.raises(ServiceStartError) as info:
        server.start()
    assert "boom at import" in str(info.value)
    assert not server.is_running()


def test_a_repository_path_with_a_space_is_refused_up_front(tmp_path: Path) -> None:
    """The python backend's stub cannot start from such a path: the server used to wait out its
    start timeout and fail with "stol" in its log."""
    from guard.errors import ConfigError

    repo = make_repository(tmp_path / "with space" / "models", tmp_path / "marker")
    server = TritonServer(repo, startup_timeout_s=60)
    with pytest.raises(ConfigError, match="path with spaces"):
        server.start()
    assert not server.is_running()
