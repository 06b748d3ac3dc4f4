"""The repeat limiter that keeps a broker outage from burying the log."""

from __future__ import annotations

import logging

from guard.logging import RepeatLimiter, limit_repeats


def record(msg: str, *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_message_repeated_within_the_window_is_held_back_and_counted():
    now = [0.0]
    limiter = RepeatLimiter(every_s=10.0, clock=lambda: now[0])
    passed = []
    for t in range(25):  # one failed connect a second, each to another port
        now[0] = float(t)
        r = record("Unable connect to node with id %s: %s", 1, f"port {t}")
        if limiter.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 3  # t = 0, 10, 20
    assert passed[0] == "Unable connect to node with id 1: port 0"
    assert passed[1] == "Unable connect to node with id 1: port 10 [9 like it in the last 10 s not logged]"


def test_different_messages_and_loggers_are_limited_apart():
    limiter = RepeatLimiter(every_s=10.0, clock=lambda: 0.0)
    assert limiter.filter(record("Unable to update metadata from %s", [1]))
    assert limiter.filter(record("Unable connect to node with id %s: %s", 1, "x"))
    assert limiter.filter(record("Unable connect to node with id %s: %s", 1, "x", name="aiokafka.conn"))
    assert not limiter.filter(record("Unable to update metadata from %s", [1]))


def test_every_aiokafka_logger_gets_the_limiter_once():
    first = limit_repeats("aiokafka")
    limit_repeats("aiokafka")
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.consumer.fetcher"):
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, RepeatLimiter)]
        assert filters == [first]
    for name in list(logging.Logger.manager.loggerDict):
        if name == "aiokafka" or name.startswith("aiokafka."):
            logging.getLogger(name).removeFilter(first)
