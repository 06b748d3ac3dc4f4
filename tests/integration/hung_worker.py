"""A real ``guard worker`` whose pipeline hangs on streams named ``hang-*``: a stuck detector call.

Everything else is the worker as shipped (Faust, the real broker, the watchdog, the exit), so the
stall test sees what an operator would: a partition that stops moving, and a worker that leaves.
With ``HANG_SHUTDOWN=1`` its graceful shutdown hangs too, so only the crash deadline can end it.
With ``STUCK_RECOVERY=1`` the worker's first table restore never completes (Faust's issues #47
and #74): Faust then never gets as far as starting the app's timers and services.
"""

import asyncio
import os
import sys

from faust.tables.recovery import Recovery

from guard.pipeline import Pipeline
from streams.app import Resources, main

_process = Pipeline.process


async def _process_or_hang(self, items):  # type: ignore[no-untyped-def]
    if any(chunk.stream_id.startswith("hang-") for _, chunk in items):
        await asyncio.Event().wait()  # never set
    return await _process(self, items)


Pipeline.process = _process_or_hang  # type: ignore[method-assign]

if os.environ.get("STUCK_RECOVERY") == "1":
    async def _never_completes(self, generation_id=0):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()  # the changelog was read; "Restore complete!" never comes

    Recovery.on_recovery_completed = _never_completes  # type: ignore[method-assign]

if os.environ.get("HANG_SHUTDOWN") == "1":
    async def _stop_never(self):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()

    Resources.stop = _stop_never  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
