"""Build a ready pipeline from settings: the shared composition step of every entry point.

The worker, ``guard moderate``, ``guard eval`` and the benchmarks all get the same layers, built the
same way, so what is measured is what runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from guard.detectors.base import Scanner, SemanticDetector
from guard.detectors.retry import DEFAULT_RETRY, RetryingDetector, RetryPolicy
from guard.detectors.timed import TimedDetector
from guard.policy.decide import StaticThresholds, ThresholdView
from guard.policy.load import PolicyStore

if TYPE_CHECKING:
    from guard.detectors.semantic import TritonTls
    from guard.settings import Settings


def fast_scanners(policy_dir: Path) -> dict[str, Scanner]:
    from guard.detectors.lexical import LexicalScanner, load_blocklists
    from guard.detectors.pii import PiiScanner

    return {"lexical": LexicalScanner(load_blocklists(policy_dir / "blocklists")),
            "pii": PiiScanner()}


def triton_tls(settings: Settings) -> TritonTls | None:
    """TLS for Triton when ``GUARD_TRITON_TLS`` or any of its files is set, else None (plaintext)."""
    from guard.detectors.semantic import TritonTls

    files = (settings.triton_tls_ca_file, settings.triton_tls_cert_file, settings.triton_tls_key_file)
    if not settings.triton_tls and not any(files):
        return None
    return TritonTls(*files)


def retry_policy(settings: Settings) -> RetryPolicy:
    """The Triton retry settings (``GUARD_TRITON_RETRIES``, ``_BACKOFF_S``, ``_RETRY_BUDGET_S``)."""
    return RetryPolicy(retries=settings.triton_retries, backoff_s=settings.triton_backoff_s,
                       budget_s=settings.triton_retry_budget_s)


@asynccontextmanager
async def semantic_detector(triton_url: str | None, model: str = "harm_classifier",
                            timeout_s: float = 2.0, retry: RetryPolicy = DEFAULT_RETRY,
                            pad_to_multiple: int = 1, tls: TritonTls | None = None, wait_s: float = 0.0
                            ) -> AsyncIterator[SemanticDetector]:
    """Triton when a URL is given, else ONNX Runtime in-process; same tokens, same heads.

    Only Triton is retried: its failures can be blips of a server or a network, while an in-process
    failure would repeat.
    """
    from guard.detectors.semantic import LocalDetector, TritonDetector

    if triton_url:
        async with TritonDetector.connect(triton_url, model=model, timeout_s=timeout_s,
                                          pad_to_multiple=pad_to_multiple, tls=tls, wait_s=wait_s) as det:
            yield RetryingDetector(det, retry) if retry.retries > 0 else det
    else:
        yield LocalDetector.from_build_dir()


@asynccontextmanager
async def pipeline(policy_dir: Path, triton_url: str | None = None, *, model: str = "harm_classifier",
                   timeout_s: float = 2.0, retry: RetryPolicy = DEFAULT_RETRY, pad_to_multiple: int = 1,
                   observe: Callable[[float, int, str], None] | None = None,
                   thresholds: Callable[[], ThresholdView] = StaticThresholds,
                   gap_timeout_ms: int = 10_000, tls: TritonTls | None = None, triton_wait_s: float = 0.0
                   ) -> AsyncIterator[tuple["Pipeline", PolicyStore]]:
    from guard.models.tokenizer import WindowTokenizer
    from guard.pipeline import Pipeline

    store = PolicyStore(policy_dir)
    store.current  # validate every policy up front: a bad file fails start-up, loudly
    async with semantic_detector(triton_url, model, timeout_s, retry, pad_to_multiple, tls, triton_wait_s) as det:
        if observe is not None:  # e.g. the worker's Metrics.observe_semantic
            det = TimedDetector(det, observe)
        yield Pipeline(policies=lambda: store.current, scanners=fast_scanners(policy_dir),
                       semantic=det, tokenizer=WindowTokenizer.from_file(),
                       thresholds=thresholds, gap_timeout_ms=gap_timeout_ms), store
