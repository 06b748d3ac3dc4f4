"""Bounded retries around a semantic detector, for failures that say another try could help.

A Triton blip (a restart, a dropped connection, a full queue) fails every window of the batch at
once, and a fail-closed policy turns that into a final block of every stream in it. So a call that
fails with a retriable ``DetectorError`` is tried again a few times, after short pauses that double
each time and are jittered (workers that failed together should not come back in lockstep). Retries
and pauses together stay within ``budget_s`` of the first failure: a retry that could not start in
time is not made, and one still running at the budget is cut. A blip therefore adds at most
``budget_s`` to a call, on top of the first try's own deadline. Errors that would repeat (a bad
request, an unknown model) are raised at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import structlog

from guard.detectors.base import DetectorWrapper, SemanticDetector
from guard.errors import DetectorError, DetectorTimeout
from guard.types import Window

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try again; ``retries=0`` turns retrying off."""

    retries: int = 2
    #: the pause before the first retry; each next one doubles, and each is jittered to 50-100 %
    backoff_s: float = 0.05
    #: retries and pauses of one call end within this many seconds of its first failure
    budget_s: float = 1.0

    def pause(self, retry: int, jitter: float) -> float:
        """The pause before retry number ``retry`` (1-based), for ``jitter`` in [0, 1)."""
        return self.backoff_s * 2 ** (retry - 1) * (0.5 + 0.5 * jitter)


DEFAULT_RETRY = RetryPolicy()


class RetryingDetector(DetectorWrapper):
    """A ``SemanticDetector`` that retries another one; the clock, sleep and jitter are injectable
    so tests (and simulations) can run the schedule without waiting."""

    def __init__(self, inner: SemanticDetector, policy: RetryPolicy, *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] | None = None) -> None:
        super().__init__(inner)
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter if jitter is not None else random.Random().random

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        # the first try is bounded by the detector's own deadline, exactly as without retries
        try:
            return await self.inner.score(windows)
        except DetectorError as exc:
            error = exc
        failed_at = self._clock()
        for retry in range(1, self.policy.retries + 1):
            if not error.retriable:
                break
            pause = self.policy.pause(retry, self._jitter())
            left = self.policy.budget_s - (self._clock() - failed_at) - pause
            if left <= 0:
                break
            log.warning("semantic_detector_retry", attempt=retry + 1, code=error.code)
            await self._sleep(pause)
            try:
                return await self._attempt(windows, left)
            except DetectorError as exc:
                error = exc
        raise error

    async def _attempt(self, windows: Sequence[Window], limit_s: float) -> np.ndarray:
        try:
            return await asyncio.wait_for(self.inner.score(windows), limit_s)
        except TimeoutError:
            raise DetectorTimeout(self.name, "retry cut at the retry budget") from None
