"""RetryingDetector: transient failures are retried within the budget, lasting ones are not.

The schedule runs on a fake clock and sleep (no real waiting); one test cuts a hanging retry on the
real loop with a budget of a few milliseconds. The last tests go through ``TritonDetector`` with a
fake gRPC client, so the gRPC statuses are classified where they are mapped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from guard.detectors.base import SemanticDetector
from guard.detectors.retry import RetryingDetector, RetryPolicy
from guard.detectors.semantic import OUTPUT, TritonDetector
from guard.errors import DetectorError, DetectorTimeout, DetectorUnavailable
from guard.settings import Settings
from guard.types import CATEGORIES, Window

WINDOWS = [Window("s", 0, 5, "hello", np.array([7592], dtype=np.int64))]


@dataclass
class Clock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


class Scripted:
    """Fails with the scripted errors in turn (each try taking ``took_s`` on the clock), then answers."""

    name = "scripted"
    model_version = "scripted-1"
    categories = CATEGORIES

    def __init__(self, errors: Sequence[DetectorError | None], clock: Clock, took_s: float = 0.0) -> None:
        self._errors = list(errors)
        self._clock = clock
        self._took = took_s
        self.starts: list[float] = []

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        self.starts.append(self._clock.now)
        self._clock.now += self._took
        if self._errors:
            err = self._errors.pop(0)
            if err is not None:
                raise err
        return np.full((len(windows), len(CATEGORIES)), 0.25, dtype=np.float32)


def blip() -> DetectorUnavailable:
    return DetectorUnavailable("scripted", "StatusCode.UNAVAILABLE", retriable=True)


def retrying(inner: Scripted, clock: Clock, **policy: float) -> RetryingDetector:
    return RetryingDetector(inner, RetryPolicy(**policy), sleep=clock.sleep, clock=clock,  # type: ignore[arg-type]
                            jitter=lambda: 1.0)


async def test_recovers_after_transient_failures():
    clock = Clock()
    inner = Scripted([blip(), DetectorTimeout("scripted", "deadline")], clock)
    det = retrying(inner, clock, retries=2, backoff_s=0.05, budget_s=1.0)
    probs = await det.score(WINDOWS)
    assert probs.shape == (1, len(CATEGORIES)) and len(inner.starts) == 3
    assert clock.sleeps == [0.05, 0.1], "exponential backoff"
    assert isinstance(det, SemanticDetector) and det.model_version == "scripted-1"


async def test_gives_up_after_the_configured_retries():
    clock = Clock()
    inner = Scripted([blip() for _ in range(10)], clock)
    det = retrying(inner, clock, retries=2, backoff_s=0.01, budget_s=10.0)
    with pytest.raises(DetectorUnavailable):
        await det.score(WINDOWS)
    assert len(inner.starts) == 3


async def test_non_retriable_errors_are_raised_at_once():
    clock = Clock()
    inner = Scripted([DetectorUnavailable("scripted", "INVALID_ARGUMENT", retriable=False)], clock)
    with pytest.raises(DetectorUnavailable):
        await retrying(inner, clock, retries=5, budget_s=10.0).score(WINDOWS)
    assert len(inner.starts) == 1 and clock.sleeps == []


async def test_no_retry_starts_past_the_budget():
    clock = Clock()
    inner = Scripted([blip() for _ in range(20)], clock, took_s=0.05)
    det = retrying(inner, clock, retries=10, backoff_s=0.1, budget_s=0.5)
    with pytest.raises(DetectorUnavailable):
        await det.score(WINDOWS)
    # first failure at 0.05; pauses 0.1 and 0.2 fit, the third (0.4) would end past 0.55
    assert clock.sleeps == [0.1, 0.2] and len(inner.starts) == 3
    assert clock.now - 0.05 <= 0.5


async def test_zero_retries_is_one_attempt():
    clock = Clock()
    inner = Scripted([blip()], clock)
    with pytest.raises(DetectorUnavailable):
        await retrying(inner, clock, retries=0).score(WINDOWS)
    assert len(inner.starts) == 1


async def test_a_hanging_retry_is_cut_at_the_budget():
    class FailsThenHangs:
        name, model_version, categories = "hang", "hang-1", CATEGORIES
        calls = 0

        async def score(self, windows: Sequence[Window]) -> np.ndarray:
            self.calls += 1
            if self.calls == 1:
                raise blip()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    det = RetryingDetector(FailsThenHangs(), RetryPolicy(retries=3, backoff_s=0.0, budget_s=0.05))
    with pytest.raises(DetectorTimeout):  # not asyncio's TimeoutError: the budget, not this guard, cut it
        await asyncio.wait_for(det.score(WINDOWS), 30)


@settings(max_examples=200, deadline=None)
@given(script=st.lists(st.one_of(st.none(), st.booleans()), min_size=1, max_size=8),
       retries=st.integers(0, 5), backoff=st.floats(0.0, 0.5), budget=st.floats(0.01, 2.0),
       took=st.floats(0.0, 0.3), jitter=st.floats(0.0, 0.999))
def test_retry_schedule_invariants(script, retries, backoff, budget, took, jitter):
    """None answers; True / False fail retriably / not. Whatever the script, no more than
    ``retries`` retries, none after a lasting error, and none starting past the budget."""
    errors = [None if s is None else DetectorUnavailable("x", retriable=s) for s in script]
    clock = Clock()
    inner = Scripted(errors, clock, took_s=took)
    det = RetryingDetector(inner, RetryPolicy(retries, backoff, budget), sleep=clock.sleep,  # type: ignore[arg-type]
                           clock=clock, jitter=lambda: jitter)
    try:
        asyncio.run(det.score(WINDOWS))
        answered = True
    except DetectorUnavailable:
        answered = False
    tries = len(inner.starts)
    assert tries <= retries + 1
    outcomes = errors[:tries] + [None] * (tries - len(errors))
    assert answered == (outcomes[-1] is None)
    assert all(e is not None and e.retriable for e in outcomes[:-1]), "stops at an answer or a lasting error"
    if tries > 1:
        first_failure = inner.starts[0] + took
        assert all(s - first_failure <= budget for s in inner.starts[1:])


# -- through TritonDetector, with a fake gRPC client -------------------------------------------------


class _Result:
    def __init__(self, n: int) -> None:
        self._probs = np.full((n, len(CATEGORIES)), 0.5, dtype=np.float32)

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self._probs if name == OUTPUT else None


class FakeTritonClient:
    """Raises the scripted exceptions from ``infer`` in turn, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self._errors = list(errors)
        self.calls = 0

    async def infer(self, model: str, inputs: list, outputs: object = None,
                    client_timeout: float | None = None) -> _Result:
        self.calls += 1
        if self._errors:
            raise self._errors.pop(0)
        return _Result(inputs[0].shape()[0])


def grpc_error(status: str) -> InferenceServerException:
    return InferenceServerException(msg="server says no", status=f"StatusCode.{status}")


@pytest.mark.parametrize("error, retriable", [
    (grpc_error("UNAVAILABLE"), True),
    (grpc_error("RESOURCE_EXHAUSTED"), True),
    (ConnectionRefusedError("refused"), True),
    (grpc_error("INVALID_ARGUMENT"), False),
    (grpc_error("NOT_FOUND"), False),
    (grpc_error("INTERNAL"), False),
    (ValueError("bad data"), False),
])
async def test_triton_errors_say_whether_a_retry_could_help(error, retriable):
    det = TritonDetector(FakeTritonClient(error), "harm_classifier", "v")
    with pytest.raises(DetectorUnavailable) as info:
        await det.score(WINDOWS)
    assert info.value.retriable is retriable


async def test_triton_deadline_is_a_retriable_timeout():
    det = TritonDetector(FakeTritonClient(grpc_error("DEADLINE_EXCEEDED")), "harm_classifier", "v")
    with pytest.raises(DetectorTimeout) as info:
        await det.score(WINDOWS)
    assert info.value.retriable


async def test_a_wrong_answer_shape_is_not_retried():
    class WrongShape(FakeTritonClient):
        async def infer(self, model: str, inputs: list, outputs: object = None,
                        client_timeout: float | None = None) -> _Result:
            self.calls += 1
            return _Result(inputs[0].shape()[0] + 1)

    client = WrongShape()
    clock = Clock()
    det = RetryingDetector(TritonDetector(client, "harm_classifier", "v"), RetryPolicy(retries=3),
                           sleep=clock.sleep, clock=clock)
    with pytest.raises(DetectorUnavailable):
        await det.score(WINDOWS)
    assert client.calls == 1


async def test_triton_blip_is_retried_and_answers():
    client = FakeTritonClient(grpc_error("UNAVAILABLE"), ConnectionResetError("reset"))
    clock = Clock()
    det = RetryingDetector(TritonDetector(client, "harm_classifier", "v"), RetryPolicy(retries=2),
                           sleep=clock.sleep, clock=clock)
    probs = await det.score(WINDOWS)
    assert probs.shape == (1, len(CATEGORIES)) and client.calls == 3


def test_settings_carry_the_retry_policy(monkeypatch: pytest.MonkeyPatch):
    from guard.assemble import retry_policy

    assert retry_policy(Settings()) == RetryPolicy(retries=2, backoff_s=0.05, budget_s=1.0)
    monkeypatch.setenv("GUARD_TRITON_RETRIES", "0")
    monkeypatch.setenv("GUARD_TRITON_BACKOFF_S", "0.2")
    monkeypatch.setenv("GUARD_TRITON_RETRY_BUDGET_S", "3")
    assert retry_policy(Settings()) == RetryPolicy(retries=0, backoff_s=0.2, budget_s=3.0)
