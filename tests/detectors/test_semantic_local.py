"""LocalDetector: in-process scoring over the built encoder, with throwaway random heads.

Random heads are written to a temporary directory only: real heads come from `guard models train`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from guard.detectors.base import SemanticDetector
from guard.detectors.semantic import LocalDetector, encode_windows
from guard.models.build import HIDDEN, build_encoders, encoder_id
from guard.models.heads import Heads
from guard.models.tokenizer import MAX_CONTENT_TOKENS, WindowTokenizer
from guard.types import CATEGORIES, Window

TEXTS = [
    "I will find you and hurt you badly.",
    "How do I bake sourdough bread at home?",
    "The weather is lovely today.",
    "word " * 400,  # longer than a window: the detector keeps the first MAX_CONTENT_TOKENS
]


def random_heads(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    layers = np.array([2, 4, 6])
    f = len(layers) * HIDDEN
    knots = np.linspace(0, 1, 5, dtype=np.float32)
    Heads(feature_layers=layers, mean=np.zeros(f, np.float32), scale=np.ones(f, np.float32),
          weights=(rng.normal(0, 0.05, (f, 32)).astype(np.float32), rng.normal(0, 0.5, (32, 8)).astype(np.float32)),
          biases=(np.zeros(32, np.float32), np.zeros(8, np.float32)),
          calib_x=np.tile(knots, (8, 1)), calib_y=np.tile(knots ** 2, (8, 1)),
          version=f"random-{seed}").save(path)
    return path


def windows_of(texts: list[str], stream: str = "s1") -> list[Window]:
    tok = WindowTokenizer.from_file()
    return [Window(stream, 0, len(t), t, e.ids) for t, e in zip(texts, tok.encode_batch(texts), strict=True)]


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDetector]:
    tmp = tmp_path_factory.mktemp("local")
    built = build_encoders()  # fast when up to date
    det = LocalDetector.from_build_dir(built.out_dir, random_heads(tmp / "heads.npz"))
    yield det
    det.close()


async def test_scores_shape_order_and_protocol(detector: LocalDetector) -> None:
    assert isinstance(detector, SemanticDetector)
    assert detector.model_version == f"random-0+{encoder_id()}"
    ws = windows_of(TEXTS)
    probs = await detector.score(ws)
    assert probs.shape == (len(TEXTS), len(CATEGORIES)) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    # order and batch composition do not matter
    rev = await detector.score(ws[::-1])
    singles = np.concatenate([await detector.score([w]) for w in ws])
    assert np.allclose(rev[::-1], probs, atol=1e-5)
    assert np.allclose(singles, probs, atol=1e-5)


async def test_empty_and_long_windows(detector: LocalDetector) -> None:
    assert (await detector.score([])).shape == (0, len(CATEGORIES))
    long = windows_of([TEXTS[-1]])
    assert len(encode_windows(long)[0]) == MAX_CONTENT_TOKENS + 2


async def test_does_not_block_the_event_loop(detector: LocalDetector) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await detector.score(windows_of(TEXTS * 8))
    task.cancel()
    assert ticks > 3


async def test_an_inference_failure_is_unavailable_and_not_retriable(detector: LocalDetector) -> None:
    """Nothing retries the in-process detector, and its label says so: the same windows on the same
    session would fail the same way (a Triton failure can be a blip; this cannot)."""
    from concurrent.futures import ThreadPoolExecutor

    from guard.errors import DetectorUnavailable

    class Broken:
        def run(self, *_: object) -> np.ndarray:
            raise RuntimeError("ORT session failed")

    broken = LocalDetector(Broken(), detector._heads, ThreadPoolExecutor(max_workers=1))  # type: ignore[arg-type]
    try:
        with pytest.raises(DetectorUnavailable, match="local inference failed") as err:
            await broken.score(windows_of(["Hello there."]))
        assert err.value.retriable is False
    finally:
        broken.close()


def test_the_triton_channel_keeps_tritonclients_defaults_and_caps_the_reconnect_backoff():
    """``CHANNEL_ARGS`` replaces tritonclient's own channel options whole: they are repeated there,
    and this notices when a tritonclient release changes them."""
    from tritonclient.grpc import KeepAliveOptions
    from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE

    from guard.detectors.semantic import CHANNEL_ARGS

    args = dict(CHANNEL_ARGS)
    k = KeepAliveOptions()
    assert args["grpc.max_send_message_length"] == args["grpc.max_receive_message_length"] == MAX_GRPC_MESSAGE_SIZE
    assert (args["grpc.keepalive_time_ms"], args["grpc.keepalive_timeout_ms"],
            bool(args["grpc.keepalive_permit_without_calls"]), args["grpc.http2.max_pings_without_data"]) == \
        (k.keepalive_time_ms, k.keepalive_timeout_ms, k.keepalive_permit_without_calls, k.http2_max_pings_without_data)
    assert args["grpc.max_reconnect_backoff_ms"] <= 5_000


async def test_waiting_for_triton_at_start_gives_up_after_the_wait_and_not_before():
    from guard.detectors.semantic import _wait_ready
    from guard.errors import DetectorUnavailable

    class Client:
        def __init__(self, ready_on: int) -> None:
            self.calls, self.ready_on = 0, ready_on

        async def is_model_ready(self, model: str, client_timeout: float) -> bool:
            self.calls += 1
            return self.calls >= self.ready_on

    late = Client(ready_on=3)
    await _wait_ready(late, "t:1", "m", "semantic", 0.1, wait_s=5.0)
    assert late.calls == 3
    never = Client(ready_on=10**9)
    with pytest.raises(DetectorUnavailable, match="not ready"):
        await _wait_ready(never, "t:1", "m", "semantic", 0.1, wait_s=0.0)
    assert never.calls == 1, "no wait: one look, as before"
