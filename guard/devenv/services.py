"""``guard services``: the local Kafka broker and Triton server, up until Ctrl-C.

Endpoints are printed as ``NAME=value`` lines and written to ``build/services.env``
(``read_services_env``), so scripts can find the running stack instead of guessing ports, for
example ``guard worker --bootstrap "$KAFKA_BOOTSTRAP"`` after ``. build/services.env``: every start
picks free ports, so two checkouts or a test session can run side by side. One ``guard services`` per env file: a second one in the
same checkout is refused (it would overwrite the first one's file and logs).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

import structlog

from guard.devenv._proc import repo_root
from guard.devenv.kafka import TopicSpec, create_topics, make_broker, run_sync
from guard.devenv.triton import TritonServer, repository_models
from guard.errors import ConfigError, GuardError

log = structlog.get_logger(__name__)


def default_env_file() -> Path:
    return repo_root() / "build" / "services.env"


@dataclass(frozen=True)
class Endpoints:
    """Where the running services listen; ``None`` for a service not started."""

    kafka_bootstrap: str | None = None
    triton_grpc: str | None = None
    triton_http: str | None = None
    triton_metrics: str | None = None

    def as_env(self) -> dict[str, str]:
        """The ``NAME=value`` pairs of the started services, in a stable order."""
        pairs = ((name, getattr(self, field)) for field, name in _ENV_NAMES.items())
        return {name: value for name, value in pairs if value is not None}

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Endpoints:
        return cls(**{field: env.get(name) for field, name in _ENV_NAMES.items()})


#: Endpoints field → the variable name printed and written to the env file
_ENV_NAMES = {
    "kafka_bootstrap": "KAFKA_BOOTSTRAP",
    "triton_grpc": "TRITON_GRPC",
    "triton_http": "TRITON_HTTP",
    "triton_metrics": "TRITON_METRICS",
}


def read_services_env(path: Path | None = None) -> Endpoints:
    """The endpoints a running ``guard services`` wrote; raises FileNotFoundError if none runs."""
    path = path or default_env_file()
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            env[name] = value
    return Endpoints.from_env(env)


class _Service(Protocol):
    def is_running(self) -> bool: ...


@contextlib.contextmanager
def start_services(
    *,
    kafka: bool = True,
    triton: bool = True,
    model_repository: Path | None = None,
    topics: Sequence[TopicSpec] = (),
    log_dir: Path | None = None,
    env_file: Path | None = None,
) -> Iterator[Endpoints]:
    """Start the chosen services, yield their endpoints, stop them (in reverse order) on exit.

    ``topics`` are created once Kafka is up (existing ones are kept). ``log_dir`` keeps the service
    logs after they stop (otherwise they go with the services' temp folders). ``env_file`` gets the
    endpoints while the services run and is removed afterwards, so a stale file never points at
    dead ports.
    """
    with _running(
        kafka=kafka,
        triton=triton,
        model_repository=model_repository,
        topics=topics,
        log_dir=log_dir,
        env_file=env_file,
    ) as (endpoints, _):
        yield endpoints


@contextlib.contextmanager
def _running(
    *,
    kafka: bool,
    triton: bool,
    model_repository: Path | None,
    topics: Sequence[TopicSpec],
    log_dir: Path | None,
    env_file: Path | None,
) -> Iterator[tuple[Endpoints, dict[str, _Service]]]:
    """``start_services`` plus the service objects, so ``main`` can notice one dying."""
    with contextlib.ExitStack() as stack:
        if env_file is not None:
            stack.enter_context(_claim(env_file))  # before anything of another run's is touched
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

        def log_file(name: str) -> Path | None:
            if log_dir is None:
                return None
            path = log_dir / name
            path.unlink(missing_ok=True)  # the launchers append; one run per file reads better
            return path

        bootstrap = grpc = http = metrics = None
        services: dict[str, _Service] = {}
        if kafka:
            broker = make_broker(log_path=log_file("kafka.log"))
            stack.enter_context(broker)
            services["kafka"] = broker
            bootstrap = broker.bootstrap
            if topics:
                run_sync(create_topics(bootstrap, topics))
        if triton:
            repository = model_repository or repo_root() / "triton_models"
            if repository.is_dir() and not repository_models(repository):
                log.warning("triton_no_models", repository=str(repository), hint="run `guard models build`")
            server = stack.enter_context(TritonServer(repository, log_path=log_file("tritonserver.log")))
            services["triton"] = server
            grpc, http, metrics = server.grpc_url, server.http_url, server.metrics_url
        endpoints = Endpoints(bootstrap, grpc, http, metrics)
        if env_file is not None:
            env_file.write_text(
                "".join(f"{k}={v}\n" for k, v in endpoints.as_env().items()), encoding="utf-8"
            )
            stack.callback(env_file.unlink, missing_ok=True)
        yield endpoints, services


@contextlib.contextmanager
def _claim(env_file: Path) -> Iterator[None]:
    """An exclusive lock beside ``env_file`` while the run lasts, or a ``ConfigError`` naming the
    run that holds it. A second run in one checkout deleted the first one's logs, overwrote its
    endpoints and, stopping, removed the file while the first kept running."""
    env_file.parent.mkdir(parents=True, exist_ok=True)
    with (env_file.parent / f".{env_file.name}.lock").open("wb") as fh:  # closing releases the lock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another `guard services` is running with {env_file}; stop it, or give "
                              "this one its own --env-file") from None
        yield


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guard services",
        description="Run a local Kafka broker and Triton server until Ctrl-C; endpoints go to stdout "
        "and build/services.env.",
    )
    parser.add_argument("--no-kafka", action="store_true", help="do not start Kafka")
    parser.add_argument("--no-triton", action="store_true", help="do not start Triton")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="Triton model repository (default: <repo>/triton_models)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="where to write the endpoints (default: build/services.env); with one given, the logs "
        "go to <its name>-logs/ beside it",
    )
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM behaves like Ctrl-C, so one code path stops the services."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.no_kafka and args.no_triton:
        print("guard services: nothing to run (both --no-kafka and --no-triton)", file=sys.stderr)
        return 2
    build = repo_root() / "build"
    env_file = args.env_file or build / "services.env"
    # a run with its own env file keeps its own logs: the lock is per env file
    logs = build / "logs" if args.env_file is None else env_file.with_name(f"{env_file.stem}-logs")
    previous_int = signal.getsignal(signal.SIGINT)
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _running(
            kafka=not args.no_kafka,
            triton=not args.no_triton,
            model_repository=args.model_repository,
            topics=(),
            log_dir=logs,
            env_file=env_file,
        ) as (endpoints, services):
            for name, value in endpoints.as_env().items():
                print(f"{name}={value}", flush=True)
            print(f"# logs in {logs}; Ctrl-C stops", flush=True)
            try:
                while not (dead := [name for name, svc in services.items() if not svc.is_running()]):
                    time.sleep(0.5)
                log.error("service_died", services=dead, logs=str(logs))
                return 1
            except KeyboardInterrupt:
                # a second Ctrl-C must not cut the shutdown short and orphan a child
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                log.info("services_stopping")
    except KeyboardInterrupt:
        log.info("services_interrupted_during_start")
        return 130
    except GuardError as exc:
        print(f"guard services: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
    log.info("services_stopped")
    return 0
