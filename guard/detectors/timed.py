"""Time every call of a semantic detector, so operators see the model server's latency apart from
the pipeline's (a slow Triton and a slow worker need different fixes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from guard.detectors.base import DetectorWrapper, SemanticDetector
from guard.errors import DetectorError
from guard.types import Window


class TimedDetector(DetectorWrapper):
    """A ``SemanticDetector`` that reports each call's seconds, window count and outcome
    (``ok`` or the ``DetectorError`` code) to ``observe``; it wraps retries too, so a call's time
    is what the pipeline waited."""

    def __init__(self, inner: SemanticDetector, observe: Callable[[float, int, str], None],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(inner)
        self._observe = observe
        self._clock = clock

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        t0 = self._clock()
        outcome = "ok"
        try:
            return await self.inner.score(windows)
        except DetectorError as exc:
            outcome = exc.code
            raise
        finally:
            self._observe(self._clock() - t0, len(windows), outcome)
