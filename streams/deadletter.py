"""Dead-letter records: the raw bytes, where they came from, and why they were refused."""

from __future__ import annotations

import base64
import time

from guard.messages import DeadLetter, encode


def record(error: Exception, topic: str, partition: int, offset: int, raw: bytes | None) -> bytes:
    code = getattr(error, "code", "internal-error")
    return encode(DeadLetter(error=str(error)[:2000], code=code, topic=topic, partition=partition,
                             offset=offset, raw_b64=base64.b64encode(raw or b"").decode("ascii"),
                             ts_ms=int(time.time() * 1000)))
