"""A real ``guard worker`` whose Faust consumer loses the first fetch of streams named ``lose-*``.

The records are fetched from the broker (the fetch position moves past them) and never handed to
the agent: what 3 of 15 workers restarted after a SIGKILL did here under CPU load, made to happen
every time. Everything else is the worker as shipped.
"""

import sys

from faust.transport.consumer import Consumer

from streams.app import main

_getmany = Consumer.getmany
_lost: set[tuple[str, int, int]] = set()


async def _getmany_losing(self, timeout):  # type: ignore[no-untyped-def]
    async for tp, message in _getmany(self, timeout):
        where = (tp.topic, tp.partition, message.offset)
        if (message.key or b"").startswith(b"lose-") and where not in _lost:
            _lost.add(where)  # lost once: a second fetch of the same offset gets through
            continue
        yield tp, message


Consumer.getmany = _getmany_losing  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
