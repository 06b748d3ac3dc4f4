"""A local NVIDIA Triton server from the ``nvidia-pytriton`` wheel, for development and tests.

The wheel carries a real ``tritonserver`` binary with the python backend, so CPU models (python
backend running ONNX Runtime) are served with Triton's dynamic batching without Docker. Launching it
by hand needs three things PyTriton normally arranges (see shared/MEASURED.md §2):

- a backend directory whose ``python/`` holds the backend library, its utils module and the stub
  for *this* Python version: the wheel keeps the stubs elsewhere, so we build a folder of symlinks;
- the interpreter's ``bin`` first on ``PATH``: the stub runs an isolated Python found through
  ``python3`` on ``PATH``; a pyenv shim there would load numpy 2 from the global site-packages and
  the stub's numpy-1 glue then returns outputs of the right shape but zero bytes;
- ``LD_LIBRARY_PATH`` = the interpreter's ``LIBDIR``, so the stub links the matching libpython.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import structlog

from guard.devenv._proc import free_ports, repo_root, spawn, start_error, stop_process
from guard.errors import ConfigError

if TYPE_CHECKING:
    from guard.detectors.semantic import TritonTls

log = structlog.get_logger(__name__)


def pytriton_dir() -> Path:
    """The installed ``pytriton`` package folder, found without importing it (import is slow)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("nvidia-pytriton is not installed; `pip install -e '.[dev]'` brings it")
    return Path(next(iter(spec.submodule_search_locations)))


def tritonserver_binary() -> Path:
    binary = pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise ConfigError(f"no tritonserver binary in the nvidia-pytriton wheel at {binary}")
    return binary


def build_backend_dir(root: Path | None = None) -> Path:
    """Create (idempotently) the backend directory of symlinks into the wheel; returns it.

    Triton looks for the stub only in ``<backend-dir>/python/``, while the wheel keeps one stub per
    Python version under ``python_backend_stubs/``. Symlinks, not copies: the wheel's libraries
    resolve their RPATH through the link, and nothing goes stale when the wheel is upgraded.
    """
    root = root or repo_root() / "build" / "triton_backends"
    wheel = pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    targets = {
        "libtriton_python.so": wheel / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": wheel / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": wheel / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    python_dir = root / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name, target in targets.items():
        if not target.exists():
            raise ConfigError(f"the nvidia-pytriton wheel lacks {target} (Python {version} unsupported?)")
        link = python_dir / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        tmp = python_dir / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)  # atomic, so a concurrent start never sees a missing file
    return root


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the server (and so the python-backend stub) needs; see the module doc."""
    env = dict(os.environ if base is None else base)
    python_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (python_bin, env.get("PATH", "")) if p)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def repository_models(model_repository: Path) -> list[str]:
    """Model names in a repository: the folders holding a ``config.pbtxt``."""
    return sorted(p.parent.name for p in model_repository.glob("*/config.pbtxt"))


@dataclass(frozen=True)
class ServerTls:
    """gRPC over TLS for a dev server: its certificate and key, the CA that signed both sides, and
    what its own readiness checks (and tests) connect with. Mutual TLS when ``client`` carries a
    certificate. (HTTP stays plaintext; guard speaks gRPC only.)"""

    cert_file: Path
    key_file: Path
    ca_file: Path
    client: TritonTls

    def args(self) -> list[str]:
        mutual = self.client.cert_file is not None
        return [f"--grpc-use-ssl{'-mutual' if mutual else ''}=true", f"--grpc-server-cert={self.cert_file}",
                f"--grpc-server-key={self.key_file}", f"--grpc-root-cert={self.ca_file}"]


class TritonServer:
    """``tritonserver`` over one model repository, on free loopback ports.

    Construction does nothing; ``start()`` launches and blocks until the server and every model in
    the repository are ready; ``stop()`` sends SIGINT (Triton unloads models, so ``finalize()``
    runs) and kills only if that hangs.
    """

    def __init__(
        self,
        model_repository: Path,
        *,
        host: str = "127.0.0.1",
        backend_root: Path | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
        extra_args: Sequence[str] = (),
        tls: ServerTls | None = None,
    ) -> None:
        self._model_repository = Path(model_repository)
        self._tls = tls
        self._host = host
        self._backend_root = backend_root
        self._log_path = log_path
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._ports: tuple[int, int, int] | None = None
        #: the command line and models of the last launch, kept by ``stop(restartable=True)``
        self._launch: tuple[list[str], list[str]] | None = None
        #: seconds from launch until the server and all models were ready
        self.startup_s: float = 0.0
        #: exit code of the last stop (0 after a clean SIGINT shutdown)
        self.exit_code: int | None = None

    def _port(self, index: int) -> int:
        if self._ports is None:
            raise RuntimeError("TritonServer is not started")
        return self._ports[index]

    @property
    def http_url(self) -> str:
        """``host:port`` as tritonclient.http expects it (no scheme)."""
        return f"{self._host}:{self._port(0)}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` as tritonclient.grpc expects it."""
        return f"{self._host}:{self._port(1)}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint, a full URL since scrapers and curl want one."""
        return f"http://{self._host}:{self._port(2)}/metrics"

    @property
    def log_path(self) -> Path | None:
        if self._log_path is not None:
            return self._log_path
        return self._workdir / "tritonserver.log" if self._workdir else None

    @property
    def model_repository(self) -> Path:
        return self._model_repository

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> str:
        """Launch the server and block until it and all its models are ready; returns the gRPC url.
        After ``stop(restartable=True)`` it comes back on the same ports, as a restarted service."""
        if self._proc is not None:
            raise RuntimeError("TritonServer already started")
        if self._launch is None:
            self._launch = self._prepare()
        args, models = self._launch
        log_path = self.log_path
        assert log_path is not None
        launched = time.monotonic()
        try:
            self._proc = spawn(args, log_path=log_path, env=server_env(), cwd=self._workdir)
            self._wait_ready(models, log_path, launched)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - launched
        log.info(
            "triton_started",
            grpc=self.grpc_url,
            http=self.http_url,
            metrics=self.metrics_url,
            models=models,
            startup_s=round(self.startup_s, 2),
            pid=self._proc.pid,
            log=str(log_path),
        )
        return self.grpc_url

    def _prepare(self) -> tuple[list[str], list[str]]:
        """Check the repository and the binary, make the working folder, pick the ports: the
        command line and the models to wait for."""
        repo = self._model_repository.resolve()
        if not repo.is_dir():
            raise ConfigError(f"model repository {repo} does not exist")
        models = repository_models(repo)
        binary = tritonserver_binary()
        backends = build_backend_dir(self._backend_root)
        spaced = [str(p) for p in (repo, backends, binary) if any(c.isspace() for c in str(p))]
        if spaced:
            # the python backend starts its stub with an unquoted shell command: the server would
            # wait out its start timeout and fail with "stol" in its log
            raise ConfigError(f"Triton's python backend cannot run from a path with spaces: {spaced[0]!r}; "
                              "move the checkout (or the virtualenv) to a path without them")
        self._workdir = Path(tempfile.mkdtemp(prefix="guard-triton-"))
        http_port, grpc_port, metrics_port = free_ports(3, self._host)
        self._ports = (http_port, grpc_port, metrics_port)
        args = [
            str(binary),
            f"--model-repository={repo}",
            f"--backend-directory={backends}",
            f"--http-address={self._host}",
            f"--http-port={http_port}",
            f"--grpc-address={self._host}",
            f"--grpc-port={grpc_port}",
            f"--metrics-address={self._host}",
            f"--metrics-port={metrics_port}",
            "--log-verbose=0",
            *(self._tls.args() if self._tls else ()),
            *self._extra_args,
        ]
        return args, models

    def _wait_ready(self, models: list[str], log_path: Path, launched: float) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        assert self._proc is not None
        deadline = launched + self._startup_timeout_s
        waiting_for = "server"
        client: Any = grpcclient.InferenceServerClient(
            self.grpc_url, **(self._tls.client.client_args() if self._tls else {}))
        try:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise start_error("Triton", f"tritonserver exited with code {code}", log_path)
                try:
                    if client.is_server_ready(client_timeout=2.0):
                        waiting_for = next(
                            (m for m in models if not client.is_model_ready(m, client_timeout=2.0)), ""
                        )
                        if not waiting_for:
                            return
                except InferenceServerException:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    what = f"model {waiting_for!r}" if waiting_for != "server" else "the server"
                    raise start_error(
                        "Triton", f"{what} not ready after {self._startup_timeout_s:.0f}s", log_path
                    )
                time.sleep(0.2)
        finally:
            client.close()

    def stop(self, restartable: bool = False) -> None:
        """SIGINT for Triton's graceful shutdown (models unloaded, stubs finalised), then kill.
        ``restartable``: keep the ports and the working folder for the next ``start``."""
        if self._proc is not None:
            began = time.monotonic()
            self.exit_code = stop_process(
                self._proc, sig=signal.SIGINT, timeout_s=self._stop_timeout_s, name="tritonserver"
            )
            log.info(
                "triton_stopped",
                pid=self._proc.pid,
                exit_code=self.exit_code,
                stop_s=round(time.monotonic() - began, 2),
            )
            self._proc = None
        if restartable and self._launch is not None:
            return
        self._ports = None
        self._launch = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
