"""A real ``guard worker`` that dies the worst way on streams named ``lose-*``.

For a batch that decides such a stream's chunks, the decisions are never sent, as if they were still in the producer's buffer, while
the stream's state is saved and flushed to the changelog. Offset commits stop, and the process kills
itself (SIGKILL: no shutdown, nothing flushed after). What a restarted worker then finds is
exactly what a crash between the changelog write and the decision write leaves.
"""

import os
import signal
import sys

from faust.transport.consumer import Consumer

from streams.agents.guard import ChunkHandler
from streams.app import main

_call = ChunkHandler.__call__
_send = ChunkHandler.send_decision
_commit = Consumer._commit_offsets
crashing = False


async def _send_or_lose(self, d):  # type: ignore[no-untyped-def]
    global crashing
    if d.stream_id.startswith("lose-"):
        self._in_flight[d.decision_id] = None  # sent, as far as this worker knows; never delivered
        crashing = True  # once this batch is done
        return
    await _send(self, d)


async def _call_then_crash(self, events):  # type: ignore[no-untyped-def]
    await _call(self, events)
    if crashing:  # a batch that decided a lose-* chunk (one held behind a gap decides nothing)
        # no offset commit from here on (``crashing``): the chunk must be replayed
        await self.topics.decisions.app.producer.flush()  # the state's changelog write lands
        os.kill(os.getpid(), signal.SIGKILL)


async def _commit_unless_crashing(self, offsets, start_new_transaction=True):  # type: ignore[no-untyped-def]
    if crashing:
        return False
    return await _commit(self, offsets, start_new_transaction=start_new_transaction)


ChunkHandler.send_decision = _send_or_lose  # type: ignore[method-assign]
ChunkHandler.__call__ = _call_then_crash  # type: ignore[method-assign]
Consumer._commit_offsets = _commit_unless_crashing  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
