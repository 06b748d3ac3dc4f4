"""Semantic detectors: MiniLM encoder + per-category heads, in-process or on Triton.

Both implementations take the same windows and return the same numbers (a contract test holds
them to 1e-4): windows carry content token ids *without* special tokens, as the windowing code cuts
them from a stream's tokens, and the detector wraps each window as ``[CLS] ids [SEP]`` (ids beyond
``MAX_CONTENT_TOKENS`` are dropped) — the form the encoder was trained on.

- ``LocalDetector``: ONNX Runtime on the int8 encoder plus ``Heads.predict`` in numpy, run in a
  one-thread executor so the event loop keeps serving while the CPU works, and so concurrent calls
  queue instead of oversubscribing the cores ORT already uses.
- ``TritonDetector``: the ``harm_classifier`` ensemble over gRPC (``tritonclient.grpc.aio``). By
  default every window is its own request, sent concurrently, so Triton's dynamic batcher groups
  windows of all streams and workers (and ``mode="batch"`` sends one request per call instead).
  The int8 encoder quantizes activations per token, so a window's score does not depend on what it
  is batched with. Its failures say whether another try could help (``DetectorError.retriable``);
  ``guard.detectors.retry`` makes the tries, so this class stays one attempt per call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import numpy as np
import structlog

from guard.errors import ConfigError, DetectorError, DetectorTimeout, DetectorUnavailable
from guard.models.build import HIDDEN, N_POOLED, encoder_id
from guard.models.heads import Heads
from guard.models.tokenizer import MAX_CONTENT_TOKENS, add_special_tokens, pad_batch
from guard.types import CATEGORIES, Window

if TYPE_CHECKING:
    from guard.models.encoder import OnnxEncoder

log = structlog.get_logger(__name__)

#: The client side of the Triton contract (tests/test_triton_contract.py checks the repositories).
INPUT_IDS: Final = "INPUT_IDS"
ATTENTION_MASK: Final = "ATTENTION_MASK"
INPUTS: Final = (INPUT_IDS, ATTENTION_MASK)
INPUT_DTYPE: Final = "INT64"
OUTPUT: Final = "PROBS"
OUTPUT_DTYPE: Final = "FP32"
#: the served heads' version, asked for once at connect (``TritonDetector.served_heads_version``)
VERSION_OUTPUT: Final = "HEADS_VERSION"
DEFAULT_MODEL: Final = "harm_classifier"
#: The largest request batch the server accepts (``max_batch_size`` in the configs).
MAX_BATCH: Final = 64
#: how often a worker waiting for Triton at start says so
WAIT_LOG_EVERY_S: Final = 10.0

#: gRPC channel options: tritonclient's own defaults (messages up to 2 GiB, its keepalive), plus a
#: reconnect backoff capped at 5 s. gRPC's default cap is 120 s: after a Triton restart the
#: channel could keep failing calls for up to two minutes, every chunk meanwhile failing as its
#: policy declares (the first call that worked after Triton was ready again, real tritonserver,
#: 25 s and 40 s outages: 14.1 s and 3.2 s with the defaults, 3.0 s and 1.6 s with these).
CHANNEL_ARGS: Final = (
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)

Mode = Literal["per_window", "batch"]


@dataclass(frozen=True)
class TritonTls:
    """TLS for the gRPC channel to Triton (``tritonserver --grpc-use-ssl``, or ``-mutual`` with a
    client certificate). Without it, windows of what users are shown cross the network in clear.

    ``ca_file``: the CA that signed the server's certificate (unset: the system's roots).
    ``cert_file`` and ``key_file``: this client's certificate and key, for mutual TLS; both or neither.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def client_args(self) -> dict[str, Any]:
        """Keyword arguments of ``tritonclient.grpc[.aio].InferenceServerClient``; checks the
        files first, so a typo fails start-up with its name instead of a handshake error later."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("Triton TLS: a client certificate needs its key, and a key its certificate "
                              "(GUARD_TRITON_TLS_CERT_FILE, GUARD_TRITON_TLS_KEY_FILE)")
        for f in (self.ca_file, self.cert_file, self.key_file):
            if f is not None and not Path(f).is_file():
                raise ConfigError(f"Triton TLS: {f} is not a file")
        return {"ssl": True,
                "root_certificates": str(self.ca_file) if self.ca_file else None,
                "private_key": str(self.key_file) if self.key_file else None,
                "certificate_chain": str(self.cert_file) if self.cert_file else None}


def model_version_of(heads_version: str) -> str:
    """What decisions record: the heads and the encoder (base + adapter) they were trained on."""
    return f"{heads_version}+{encoder_id()}"


def heads_version(path: str | Path) -> str:
    """Read only the version string from a heads file."""
    with np.load(path, allow_pickle=False) as z:
        return str(z["version"])


def encode_windows(windows: Sequence[Window]) -> list[np.ndarray]:
    """``[CLS] ids [SEP]`` per window, int64 — shared by both detectors so they see the same rows."""
    return [add_special_tokens(w.input_ids, MAX_CONTENT_TOKENS) for w in windows]


def _empty() -> np.ndarray:
    return np.zeros((0, len(CATEGORIES)), dtype=np.float32)


class LocalDetector:
    """In-process scoring; build it with ``from_build_dir`` and ``close()`` it when done."""

    def __init__(self, encoder: OnnxEncoder, heads: Heads, executor: ThreadPoolExecutor, *,
                 name: str = "semantic", batch_size: int = 32) -> None:
        self.name = name
        self.categories = heads.categories
        self.model_version = model_version_of(heads.version)
        self._encoder = encoder
        self._heads = heads
        self._executor = executor
        self._batch_size = batch_size

    @classmethod
    def from_build_dir(cls, build_dir: str | Path | None = None, heads_path: str | Path | None = None, *,
                       name: str = "semantic", intra_op_threads: int = 2) -> LocalDetector:
        """Open ``encoder-int8.onnx`` from the build dir and the committed heads (or the given files)."""
        from guard.models import paths
        from guard.models.encoder import OnnxEncoder

        bdir = Path(build_dir) if build_dir is not None else paths.build_dir()
        hpath = Path(heads_path) if heads_path is not None else paths.heads_path()
        if not hpath.exists():
            raise FileNotFoundError(f"{hpath} not found; train the heads with `guard models train`")
        encoder = OnnxEncoder.from_path(bdir / paths.ENCODER_INT8, intra_op_threads=intra_op_threads)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"guard-{name}")
        return cls(encoder, Heads.load(hpath), executor, name=name)

    def score_sync(self, windows: Sequence[Window]) -> np.ndarray:
        """Blocking scoring (for offline evaluation); length-sorted batches keep padding small."""
        if not windows:
            return _empty()
        seqs = encode_windows(windows)
        order = np.argsort([len(s) for s in seqs], kind="stable")
        pooled = np.empty((len(seqs), N_POOLED, HIDDEN), np.float32)
        for start in range(0, len(order), self._batch_size):
            idx = order[start:start + self._batch_size]
            pooled[idx] = self._encoder.run(*pad_batch([seqs[i] for i in idx]))
        return self._heads.predict(pooled, seqs).astype(np.float32, copy=False)

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        if not windows:
            return _empty()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self.score_sync, list(windows))
        except Exception as exc:  # an ORT failure is this detector failing, not the pipeline
            # not retriable: the same windows on the same in-process session fail the same way
            raise DetectorUnavailable(self.name, f"local inference failed: {exc}", retriable=False) from exc

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class TritonDetector:
    """Scores windows on a Triton ``harm_classifier``; open it with ``connect()``."""

    def __init__(self, client: Any, model: str, model_version: str, *, name: str = "semantic",
                 timeout_s: float = 2.0, mode: Mode = "per_window", pad_to_multiple: int = 1) -> None:
        self.name = name
        self.categories = CATEGORIES
        self.model_version = model_version
        self.model = model
        self.timeout_s = timeout_s
        self.mode = mode
        #: >1 pads each request to a multiple of this length: the GPU flavour's ORT backend only
        #: batches requests of equal shape (the CPU flavour batches ragged requests itself).
        self.pad_to_multiple = pad_to_multiple
        self._client = client

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, model: str = DEFAULT_MODEL, *, name: str = "semantic",
                      model_version: str | None = None, timeout_s: float = 2.0, mode: Mode = "per_window",
                      pad_to_multiple: int = 1, tls: TritonTls | None = None,
                      wait_s: float = 0.0) -> AsyncIterator[Self]:
        """Open a gRPC channel (TLS with ``tls``) and check the model is ready, waiting up to
        ``wait_s`` for it: workers and Triton are started together (a compose file, a pod), and
        Triton takes longer to load its models. A worker that gave up at once restarted, under an
        orchestrator's crash-loop backoff, minutes after Triton was ready.

        ``model_version`` (what decisions record) defaults to the version of the heads the server
        serves: a worker's own heads file can differ from the server's (a server updated first, a
        worker image built from another checkout), and a decision must name what scored it. A
        server that cannot say (a repository from before ``HEADS_VERSION``) leaves the local file's.
        """
        import tritonclient.grpc.aio as grpcaio

        client = grpcaio.InferenceServerClient(url, channel_args=list(CHANNEL_ARGS),
                                               **(tls.client_args() if tls else {}))
        try:
            await _wait_ready(client, url, model, name, timeout_s, wait_s)
            det = cls(client, model, model_version or "", name=name, timeout_s=timeout_s, mode=mode,
                      pad_to_multiple=pad_to_multiple)
            if model_version is None:
                det.model_version = model_version_of(await det.served_heads_version())
            log.info("triton_detector_connected", url=url, model=model, mode=mode,
                     model_version=det.model_version)
            yield det
        finally:
            await client.close()

    async def served_heads_version(self) -> str:
        """The heads version the server reports, from one one-window request; where it reports
        none, the local heads file's, with a warning either way things disagree."""
        from guard.models import paths

        hp = paths.heads_path()
        local = heads_version(hp) if hp.exists() else "unknown"
        ids, mask = self._pad([add_special_tokens(np.zeros(0, np.int64), MAX_CONTENT_TOKENS)])
        try:
            result = await self._request(ids, mask, VERSION_OUTPUT, self.timeout_s)
            served = result.as_numpy(VERSION_OUTPUT).reshape(-1)[0]
            served = served.decode("utf-8") if isinstance(served, bytes) else str(served)
        except Exception as exc:  # noqa: BLE001 - an older repository: say so, keep serving
            log.warning("served_heads_version_unknown", model=self.model, local=local,
                        error=str(exc)[:200], fix="rebuild the model repository (guard models build)")
            return local
        if served != local:
            log.warning("served_heads_differ", served=served, local=local,
                        why="decisions record the served heads; this worker's own file is another")
        return served

    def _pad(self, seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = pad_batch(seqs)
        m = self.pad_to_multiple
        if m > 1 and ids.shape[1] % m:
            extra = m - ids.shape[1] % m
            ids = np.pad(ids, ((0, 0), (0, extra)))
            mask = np.pad(mask, ((0, 0), (0, extra)))
        return ids, mask

    async def _request(self, ids: np.ndarray, mask: np.ndarray, output: str, timeout_s: float) -> Any:
        import tritonclient.grpc.aio as grpcaio

        inputs = [grpcaio.InferInput(INPUT_IDS, list(ids.shape), INPUT_DTYPE),
                  grpcaio.InferInput(ATTENTION_MASK, list(mask.shape), INPUT_DTYPE)]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask)
        return await self._client.infer(self.model, inputs, outputs=[grpcaio.InferRequestedOutput(output)],
                                        client_timeout=timeout_s)

    async def _infer(self, ids: np.ndarray, mask: np.ndarray, timeout_s: float) -> np.ndarray:
        result = await self._request(ids, mask, OUTPUT, timeout_s)
        probs = result.as_numpy(OUTPUT)
        if probs is None or probs.shape != (ids.shape[0], len(self.categories)):
            got = None if probs is None else probs.shape
            raise DetectorUnavailable(self.name, f"{self.model} returned {OUTPUT} of shape {got}",
                                      retriable=False)  # a wrong model or repository, not a blip
        return probs.astype(np.float32, copy=False)

    async def score(self, windows: Sequence[Window], *, timeout_s: float | None = None) -> np.ndarray:
        if not windows:
            return _empty()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        seqs = encode_windows(windows)
        if self.mode == "per_window":
            calls = [self._infer(*self._pad([s]), timeout) for s in seqs]
        else:
            calls = [self._infer(*self._pad(seqs[i:i + MAX_BATCH]), timeout)
                     for i in range(0, len(seqs), MAX_BATCH)]
        try:
            # wait_for backs up the gRPC deadline, which does not cover a stalled channel
            parts = await asyncio.wait_for(asyncio.gather(*calls), timeout + 0.5)
        except DetectorError:
            raise
        except Exception as exc:
            raise _map_error(self.name, exc) from exc
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


#: gRPC statuses that can clear by themselves (a restarting server, a dropped channel, a full queue),
#: so another try may succeed. Any other status (bad input, unknown model, a failing model) would
#: come back the same, and retrying it only adds latency and load.
TRANSIENT_STATUSES: Final = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})


def _map_error(detector: str, exc: BaseException) -> DetectorError:
    """The one place transport errors become guard errors, and where a blip is told from a fault."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, TimeoutError):
        return DetectorTimeout(detector, "no answer before the deadline")
    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")  # "StatusCode.UNAVAILABLE" from a gRPC error; None if local
        if "DEADLINE_EXCEEDED" in status:
            return DetectorTimeout(detector, exc.message() or status)
        transient = status.rpartition(".")[2] in TRANSIENT_STATUSES
        return DetectorUnavailable(detector, f"{status} {exc.message()}".strip(), retriable=transient)
    # a socket-level failure (refused, reset) is the connection, not the request
    return DetectorUnavailable(detector, f"{type(exc).__name__}: {exc}", retriable=isinstance(exc, OSError))


async def _wait_ready(client: Any, url: str, model: str, name: str, timeout_s: float, wait_s: float) -> None:
    """Until ``model`` is ready at ``url``; raises ``DetectorUnavailable`` once ``wait_s`` is spent."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    said = began
    while True:
        try:
            if await client.is_model_ready(model, client_timeout=timeout_s):
                if loop.time() - began > 1.0:
                    log.info("triton_ready_after_wait", url=url, model=model, waited_s=round(loop.time() - began, 1))
                return
            error: DetectorError = DetectorUnavailable(name, f"model {model!r} is not ready at {url}")
        except Exception as exc:  # noqa: BLE001 - mapped: the caller gets a DetectorError
            error = _map_error(name, exc)
            error.__cause__ = exc
        waited = loop.time() - began
        if waited >= wait_s:
            raise error
        if loop.time() - said >= WAIT_LOG_EVERY_S or said == began:
            log.warning("triton_waiting", url=url, model=model, waited_s=round(waited, 1), gives_up_s=wait_s,
                        error=str(error))
            said = loop.time()
        await asyncio.sleep(min(1.0, wait_s - waited))
