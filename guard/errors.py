"""The guard error tree.

Each error has a stable ``code`` (it travels in dead-letter records and decision reasons) and says
whether a retry could help (``retriable``), so callers decide by attribute, never by message text.

    GuardError
    ├── ConfigError            bad settings or files at start-up
    │   └── PolicyError        a policy file failed validation (names file and field)
    ├── SchemaError            a message on the wire could not be decoded or validated
    ├── InternalError          something unforeseen raised (a bug): one chunk's, or a batch's
    ├── StreamError            a chunk does not fit its stream (gap, after final, ...)
    │   ├── SequenceGap        chunks that never came were given up (a range, not a record)
    │   └── StreamExpired      a chunk was still waiting when its stream's state expired
    └── DetectorError          a detector could not answer
        ├── DetectorTimeout
        └── DetectorUnavailable
"""

from __future__ import annotations

import traceback


class GuardError(Exception):
    code = "guard-error"
    retriable = False


class ConfigError(GuardError):
    code = "config-error"


class PolicyError(ConfigError):
    code = "policy-error"


class SchemaError(GuardError):
    code = "schema-error"


class InternalError(GuardError):
    """Handling one chunk raised an exception guard does not expect (a bug in a layer, say).

    Its message names the exception's type and where it was raised, never the exception's own text,
    which may quote the chunk.
    """

    code = "internal-error"

    @classmethod
    def wrap(cls, exc: BaseException, during: str = "while moderating the chunk; it was not moderated, "
             "and its stream waits for it as for a lost chunk") -> InternalError:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else ""
        err = cls(f"unexpected {type(exc).__name__}{where} {during}")
        err.__cause__ = exc
        return err


def traced(exc: BaseException) -> dict[str, str]:
    """What a log may say of an unforeseen exception: its type and the lines of code it came
    through, never its own text (which may quote a chunk)."""
    return {"error_type": type(exc).__name__, "where": "".join(traceback.format_tb(exc.__traceback__))}


class StreamError(GuardError):
    code = "stream-error"


class SequenceGap(StreamError):
    """The chunks ``first..last`` of a stream were given up: after the gap timeout, or because
    too many chunks waited behind them (``guard.pipeline.MAX_PENDING``, ``MAX_PENDING_BYTES``).

    Its own code, because what it reports is not a record guard received: its dead letter carries
    the range and no raw bytes.
    """

    code = "sequence-gap"

    def __init__(self, first: int, last: int, waited_ms: int) -> None:
        super().__init__(f"sequence gap: seq {first}..{last} missing for {waited_ms} ms; "
                         "continuing without them")
        self.first, self.last = first, last


class StateError(StreamError):
    """A stream's saved state this version cannot read (the chunk is dead-lettered; expiry sets the
    state itself aside)."""

    code = "state-unreadable"


class StreamExpired(StreamError):
    code = "stream-expired"


class DetectorError(GuardError):
    """Retriable unless the detector knows another try would fail the same way (a bad request, an
    unknown model, a malformed answer): only the detector can tell a blip from a standing fault."""

    code = "detector-error"
    retriable = True

    def __init__(self, detector: str, message: str = "", *, retriable: bool | None = None) -> None:
        super().__init__(f"{detector}: {message}" if message else detector)
        self.detector = detector
        if retriable is not None:
            self.retriable = retriable


class DetectorTimeout(DetectorError):
    code = "detector-timeout"


class DetectorUnavailable(DetectorError):
    code = "detector-unavailable"
