"""The semantic detectors against the real Triton server (session fixture over triton_models/).

The server serves whatever heads `guard models build` placed in triton_models/harm_heads/1/, so the
in-process detector is opened on that same file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import structlog
import tritonclient.grpc as grpcclient

from guard.detectors.semantic import DEFAULT_MODEL, LocalDetector, TritonDetector
from guard.devenv.triton import TritonServer, repository_models
from guard.errors import DetectorTimeout, DetectorUnavailable
from guard.models import paths, repository
from guard.types import CATEGORIES

from .test_semantic_local import TEXTS, windows_of

pytestmark = pytest.mark.triton

SERVED_HEADS = paths.triton_repo("cpu") / repository.HEADS_MODEL / "1" / repository.HEADS_FILE


@pytest.fixture(scope="module")
def local() -> Iterator[LocalDetector]:
    det = LocalDetector.from_build_dir(heads_path=SERVED_HEADS)
    yield det
    det.close()


def _encoder_stats(url: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(url)
    try:
        (stats,) = client.get_inference_statistics(repository.ENCODER_MODEL).model_stats
        return int(stats.inference_count), int(stats.execution_count)
    finally:
        client.close()


def test_every_model_is_ready(triton_server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    try:
        models = repository_models(paths.triton_repo("cpu"))
        assert set(models) >= {repository.ENCODER_MODEL, repository.HEADS_MODEL, repository.CLASSIFIER_MODEL}
        for model in models:
            assert client.is_model_ready(model), model
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["per_window", "batch"])
async def test_local_and_triton_agree(triton_server: TritonServer, local: LocalDetector, mode: str) -> None:
    ws = windows_of(TEXTS + ["Short.", "A somewhat longer sentence about nothing in particular at all."])
    expected = await local.score(ws)
    async with TritonDetector.connect(triton_server.grpc_url, mode=mode) as det:  # type: ignore[arg-type]
        got = await det.score(ws)
    assert got.shape == (len(ws), len(CATEGORIES)) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)


async def test_padded_requests_score_as_unpadded(triton_server: TritonServer, local: LocalDetector) -> None:
    """The GPU flavour needs requests padded to shape buckets (GUARD_TRITON_PAD_TO_MULTIPLE); masked
    padding must not move a score, which the real server checks here on the CPU flavour."""
    from guard import assemble

    ws = windows_of(TEXTS + ["Short."])
    expected = await local.score(ws)
    async with assemble.semantic_detector(triton_server.grpc_url, pad_to_multiple=16) as det:
        inner = getattr(det, "inner", det)  # under the retry wrapper
        assert inner.pad_to_multiple == 16
        ids, mask = inner._pad([ws[-1].input_ids])
        assert ids.shape[1] % 16 == 0 and mask[0].sum() < ids.shape[1], "really padded"
        got = await det.score(ws)
    np.testing.assert_allclose(got, expected, atol=1e-4)


async def test_dynamic_batching_batches_concurrent_windows(triton_server: TritonServer) -> None:
    ws = windows_of([f"stream {i}: {TEXTS[i % 3]}" for i in range(64)])
    async with TritonDetector.connect(triton_server.grpc_url, timeout_s=30.0) as det:
        before = _encoder_stats(triton_server.grpc_url)  # after connect's own version request
        # 64 single-window requests in flight at once, from 4 concurrent "streams"
        parts = await asyncio.gather(*(det.score(ws[i::4]) for i in range(4)))
    assert sum(len(p) for p in parts) == 64
    after = _encoder_stats(triton_server.grpc_url)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 64
    assert executions < inferences, f"{executions} executions for {inferences} requests: no batching"


async def test_errors_map_to_detector_errors(triton_server: TritonServer) -> None:
    with pytest.raises(DetectorUnavailable):
        async with TritonDetector.connect(triton_server.grpc_url, model="no_such_model"):
            pass
    async with TritonDetector.connect(triton_server.grpc_url, model=DEFAULT_MODEL) as det:
        with pytest.raises(DetectorTimeout):
            await det.score(windows_of(TEXTS * 4), timeout_s=1e-4)
        assert (await det.score([])).shape == (0, len(CATEGORIES))


async def test_emoji_named_windows_score_alike_through_triton(triton_server: TritonServer,
                                                              local: LocalDetector) -> None:
    # the emoji-names option changes only the client's ids; the served models must take them as they come
    from guard.models.build import UNK_ID
    from guard.models.tokenizer import WindowTokenizer
    from guard.types import Window

    texts = ["I would love to 🔪some🦊", "great work 👍🏽😂", "no emoji at all"]
    tok = WindowTokenizer.from_file(emoji_names=True)
    ws = [Window("s1", 0, len(t), t, e.ids) for t, e in zip(texts, tok.encode_batch(texts), strict=True)]
    assert all(UNK_ID not in w.input_ids for w in ws)
    expected = await local.score(ws)
    async with TritonDetector.connect(triton_server.grpc_url) as det:
        got = await det.score(ws)
    np.testing.assert_allclose(got, expected, atol=1e-4)


async def test_decisions_name_the_heads_the_server_serves(triton_server: TritonServer,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path) -> None:  # noqa: ANN001
    """The server reports its heads' version (HEADS_VERSION); a worker whose own heads file is
    another records the served one, and says so."""
    from guard.detectors import semantic
    from guard.detectors.semantic import heads_version, model_version_of

    served = heads_version(SERVED_HEADS)
    async with TritonDetector.connect(triton_server.grpc_url) as det:
        assert det.model_version == model_version_of(served)
        assert await det.served_heads_version() == served

    monkeypatch.setattr(semantic, "heads_version", lambda _p: "heads-some-other")
    with structlog.testing.capture_logs() as logs:
        async with TritonDetector.connect(triton_server.grpc_url) as det:
            assert det.model_version == model_version_of(served)
    (differ,) = [e for e in logs if e["event"] == "served_heads_differ"]
    assert differ["served"] == served and differ["local"] == "heads-some-other"
    async with TritonDetector.connect(triton_server.grpc_url, model_version="pinned") as det:
        assert det.model_version == "pinned"


async def test_a_server_without_the_version_output_leaves_the_local_version() -> None:
    """A repository built before HEADS_VERSION: the worker keeps serving, on its own file's word."""
    from tritonclient.utils import InferenceServerException

    from guard.detectors.semantic import heads_version

    class OldServer:
        async def infer(self, *_: object, **__: object) -> None:
            raise InferenceServerException("unexpected inference output 'HEADS_VERSION'")

    det = TritonDetector(OldServer(), DEFAULT_MODEL, "")
    with structlog.testing.capture_logs() as logs:
        assert await det.served_heads_version() == heads_version(paths.heads_path())
    assert [e["event"] for e in logs] == ["served_heads_version_unknown"]
