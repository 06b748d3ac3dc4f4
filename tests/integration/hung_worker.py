"""A real ``guard worker`` whose pipeline hangs on streams named ``hang-*``: a stuck detector call.

Everything else is the worker as shipped (Faust, the real broker, the watchdog, the exit), so the
stall test sees what an operator would: a partition that stops moving, and a worker that leaves.
With ``HANG_SHUTDOWN=1`` its graceful shutdown hangs too, so only the crash deadline can end it.
With ``STUCK_RECOVERY=1`` Faust reports itself restoring tables for ever (a restore that hangs).
"""

import asyncio
import os
import sys

import faust

from guard.pipeline import Pipeline
from streams.app import Resources, main

_process = Pipeline.process


async def _process_or_hang(self, items):  # type: ignore[no-untyped-def]
    if any(chunk.stream_id.startswith("hang-") for _, chunk in items):
        await asyncio.Event().wait()  # never set
    return await _process(self, items)


Pipeline.process = _process_or_hang  # type: ignore[method-assign]

if os.environ.get("STUCK_RECOVERY") == "1":
    faust.App.in_recovery = property(lambda self: True, lambda self, value: None)  # type: ignore[assignment]

if os.environ.get("HANG_SHUTDOWN") == "1":
    async def _stop_never(self):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()

    Resources.stop = _stop_never  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
