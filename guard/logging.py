"""Logging configuration: the only caller of ``structlog.configure``.

Events are snake_case facts with key/values; contextvars carry ``stream_id``/``decision_id``. Raw
user text and PII never go into a log event: log sizes, offsets, codes and ids instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import structlog


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written. Loggers are cached on first use, and one
    bound to the stream of the moment kept writing to it after it was replaced and closed (a test's
    capture, a redirected stream): every later log call raised."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(json: bool = True, level: str = "INFO") -> None:
    lvl = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(message)s")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


class RepeatLimiter(logging.Filter):
    """Lets a message through at most once per ``every_s`` seconds; the next one that passes says
    how many like it were held back.

    "Like it" means same logger and same format string, whatever the arguments: while a broker is
    down, aiokafka logs each failed connect, metadata refresh and fetch (about 150 lines a second
    from one worker), and a minute's outage buried everything else in the log.
    """

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self._clock = every_s, clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (last let through, held since)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self._clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.every_s:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 1000:  # format strings are few; a flood of distinct ones is not held
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} like it in the last {now - last:.0f} s not logged]"
        return True


def limit_repeats(prefix: str = "aiokafka", every_s: float = 10.0) -> RepeatLimiter:
    """Put one ``RepeatLimiter`` on the loggers under ``prefix`` (a filter on a logger does not
    reach its children, so each gets it; the modules create theirs at import, which has happened
    by the time a worker runs, except for rarely used ones such as aiokafka's range and sticky
    assignors, which stay unlimited). The count held back in the last stretch of an outage is
    not logged: only a later line like them would say it."""
    import importlib

    importlib.import_module(prefix)
    limiter = RepeatLimiter(every_s)
    names = [n for n in logging.Logger.manager.loggerDict if n == prefix or n.startswith(prefix + ".")]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatLimiter) for f in logger.filters):
            logger.addFilter(limiter)
    return limiter
