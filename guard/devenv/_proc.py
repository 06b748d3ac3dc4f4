"""Process plumbing shared by the local Kafka and Triton launchers.

Both services are child processes that we own from start to stop: they get their own session so a
terminal Ctrl-C reaches only us (we then stop them in order), and their output goes to a file whose
tail is put into every start-up error, because "timed out" alone never tells what went wrong.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import structlog

from guard.errors import GuardError

log = structlog.get_logger(__name__)

#: how many lines of a service log a start-up error shows
TAIL_LINES = 40


class ServiceStartError(GuardError):
    """A local dev service did not come up; the message carries its log tail."""

    code = "service-start-failed"


def repo_root() -> Path:
    """The checkout this package runs from, where ``.cache/`` and ``build/`` live.

    Falls back to the working directory for a non-editable install, where there is no checkout.
    """
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just reported free; racy by nature, so callers bind it soon after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is picked."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a service log, or a note when there is none yet."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip() or "(log is empty)"
    except FileNotFoundError:
        return f"(no log at {path})"


def start_error(what: str, reason: str, log_path: Path) -> ServiceStartError:
    return ServiceStartError(
        f"{what} did not start: {reason}\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
    )


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when this process dies, however it dies.

    Services run in their own session (so a Ctrl-C reaches only the parent, which stops them in
    order), and nothing else would stop them when the parent is killed outright: a broker, a
    Triton or a worker from a killed ``guard demo`` or test run lived on, holding ports. Linux
    only. The signal follows the *thread* that forked, so only a fork from the main thread asks.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child may only make the call

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took hold
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(
    args: list[str], *, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a service with stdout and stderr appended to ``log_path``, in its own session, to
    be stopped with this process (``die_with_parent``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - async-signal-safe: one prctl call
        )


def stop_process(
    proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout_s: float = 20.0, name: str
) -> int:
    """Ask politely with ``sig``, wait, then kill; returns the exit code.

    The kill goes to the child's whole process group, so helpers it spawned (Triton's python-backend
    stubs) do not outlive it.
    """
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("service_kill", service=name, pid=proc.pid, waited_s=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)
