"""``guard services`` plumbing: the endpoints file and the combined start/stop."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from guard.devenv.services import Endpoints, main, read_services_env, start_services

from .tiny_models import make_repository


def test_endpoints_env_round_trip(tmp_path: Path) -> None:
    endpoints = Endpoints(kafka_bootstrap="127.0.0.1:1", triton_grpc="127.0.0.1:2")
    assert endpoints.as_env() == {"KAFKA_BOOTSTRAP": "127.0.0.1:1", "TRITON_GRPC": "127.0.0.1:2"}
    env_file = tmp_path / "services.env"
    env_file.write_text("# written by guard services\nKAFKA_BOOTSTRAP=127.0.0.1:1\nTRITON_GRPC=127.0.0.1:2\n")
    assert read_services_env(env_file) == endpoints


def test_nothing_to_run_is_a_usage_error() -> None:
    assert main(["--no-kafka", "--no-triton"]) == 2


@pytest.mark.triton
def test_start_services_writes_and_removes_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "services.env"
    repo = make_repository(tmp_path / "models", tmp_path / "finalized.txt")
    with start_services(
        kafka=False, model_repository=repo, env_file=env_file, log_dir=tmp_path / "logs"
    ) as ep:
        assert ep.kafka_bootstrap is None
        assert ep.triton_grpc and ep.triton_grpc.startswith("127.0.0.1:")
        assert read_services_env(env_file) == ep
    assert not env_file.exists()
    assert "Started GRPCInferenceService" in (tmp_path / "logs" / "tritonserver.log").read_text()


def test_a_second_run_on_one_env_file_is_refused(tmp_path: Path) -> None:
    """It deleted the first run's logs, overwrote its endpoints and, stopping, removed the file
    while the first kept running."""
    from guard.errors import ConfigError

    env_file, logs = tmp_path / "services.env", tmp_path / "logs"
    repo = make_repository(tmp_path / "models", tmp_path / "finalized.txt")
    with start_services(kafka=False, triton=False, model_repository=repo, env_file=env_file, log_dir=logs):
        with pytest.raises(ConfigError, match="another `guard services`"):
            with start_services(kafka=False, triton=False, env_file=env_file, log_dir=logs):
                pass
        assert env_file.exists()
    with start_services(kafka=False, triton=False, env_file=env_file, log_dir=logs):
        pass  # free again once the first run ended


def test_a_run_with_its_own_env_file_keeps_its_own_logs(tmp_path: Path, monkeypatch) -> None:
    """The lock is per env file; a second run that took its own used to delete the first run's
    logs in build/logs."""
    import guard.devenv.services as services

    seen = {}

    @contextlib.contextmanager
    def fake_running(**kw):
        seen.update(kw)
        raise KeyboardInterrupt
        yield  # pragma: no cover

    monkeypatch.setattr(services, "_running", fake_running)
    services.main(["--no-triton", "--env-file", str(tmp_path / "mine.env")])
    assert seen["log_dir"] == tmp_path / "mine-logs" and seen["env_file"] == tmp_path / "mine.env"
