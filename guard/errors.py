"""The guard error tree.

Each error has a stable ``code`` (it travels in dead-letter records and decision reasons) and says
whether a retry could help (``retriable``), so callers decide by attribute, never by message text.

    GuardError
    ├── ConfigError            bad settings or files at start-up
    │   └── PolicyError        a policy file failed validation (names file and field)
    ├── SchemaError            a message on the wire could not be decoded or validated
    ├── StreamError            a chunk does not fit its stream (gap, after final, ...)
    └── DetectorError          a detector could not answer
        ├── DetectorTimeout
        └── DetectorUnavailable
"""

from __future__ import annotations


class GuardError(Exception):
    code = "guard-error"
    retriable = False


class ConfigError(GuardError):
    code = "config-error"


class PolicyError(ConfigError):
    code = "policy-error"


class SchemaError(GuardError):
    code = "schema-error"


class StreamError(GuardError):
    code = "stream-error"


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
