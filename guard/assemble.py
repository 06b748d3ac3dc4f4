"""Build a ready pipeline from settings: the shared composition step of every entry point.

The worker, ``guard moderate``, ``guard eval`` and the benchmarks all get the same layers, built the
same way, so what is measured is what runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from guard.detectors.base import Scanner, SemanticDetector
from guard.policy.decide import StaticThresholds, ThresholdView
from guard.policy.load import PolicyStore


def fast_scanners(policy_dir: Path) -> dict[str, Scanner]:
    from guard.detectors.lexical import LexicalScanner, load_blocklists
    from guard.detectors.pii import PiiScanner

    return {"lexical": LexicalScanner(load_blocklists(policy_dir / "blocklists")),
            "pii": PiiScanner()}


@asynccontextmanager
async def semantic_detector(triton_url: str | None, model: str = "harm_classifier",
                            timeout_s: float = 2.0) -> AsyncIterator[SemanticDetector]:
    """Triton when a URL is given, else ONNX Runtime in-process; same tokens, same heads."""
    from guard.detectors.semantic import LocalDetector, TritonDetector

    if triton_url:
        async with TritonDetector.connect(triton_url, model=model, timeout_s=timeout_s) as det:
            yield det
    else:
        yield LocalDetector.from_build_dir()


@asynccontextmanager
async def pipeline(policy_dir: Path, triton_url: str | None = None, *, model: str = "harm_classifier",
                   timeout_s: float = 2.0,
                   thresholds: Callable[[], ThresholdView] = StaticThresholds,
                   gap_timeout_ms: int = 10_000) -> AsyncIterator[tuple["Pipeline", PolicyStore]]:
    from guard.models.tokenizer import WindowTokenizer
    from guard.pipeline import Pipeline

    store = PolicyStore(policy_dir)
    store.current  # validate every policy up front: a bad file fails start-up, loudly
    async with semantic_detector(triton_url, model, timeout_s) as det:
        yield Pipeline(policies=lambda: store.current, scanners=fast_scanners(policy_dir),
                       semantic=det, tokenizer=WindowTokenizer.from_file(),
                       thresholds=thresholds, gap_timeout_ms=gap_timeout_ms), store
