"""The HTTP side of guard's Faust apps: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for the
orchestrator. The worker serves its chunk partitions' health; the tuner, that of its two inputs.

Faust has a web server of its own, but its default pages show table contents, and guard's table
holds what streams said; so guard serves these three routes and nothing else, with aiohttp (which
Faust already depends on).

- ``/readyz``: 200 once the pipeline is up (Triton reached, policies loaded, thresholds read).
- ``/healthz``: 200 unless an assigned chunk partition has stalled (``streams.watchdog``); the body
  lists every partition with a backlog, so it doubles as a lag probe. Its status is "starting"
  until the first partition check (once the consumer has started), then "ok" or "stalled", or
  "unknown" (still 200) while the broker has not answered the last checks.
- ``/metrics``: the app's Prometheus registry (``guard.metrics``), in the text format.

All three answer from the process's first seconds (``Probes``), also while the worker waits to
join its group and restores its table, which after a crash can take minutes or hang.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict

import faust
import mode
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams.watchdog import UNKNOWN_AFTER, Health

log = structlog.get_logger(__name__)


def body(health: Health) -> dict[str, object]:
    status = ("unknown" if health.failures >= UNKNOWN_AFTER else "stalled" if health.stalled
              else "ok" if health.checked else "starting")
    return {"status": status, "assigned": health.assigned,
            "backlogs": [{**asdict(b), "lag": b.lag} for b in health.backlogs],
            "stalled": [b.partition for b in health.stalled]}


def per_topic(healths: Mapping[str, Health]) -> dict[str, object]:
    """One body for an app that watches several topics (the tuner): stalled if any of them is."""
    bodies = {t: body(h) for t, h in healths.items()}
    states = {b["status"] for b in bodies.values()}
    status = next((s for s in ("stalled", "unknown", "starting") if s in states), "ok")
    return {"status": status, "topics": bodies}


def routes(registry: CollectorRegistry, health: Callable[[], dict[str, object]],
           ready: Callable[[], bool]) -> web.Application:
    """``health`` returns the body of the last check (``body`` or ``per_topic`` of the app's
    watchdog timer); its ``status`` "stalled" answers 503. "unknown" (the broker has not answered
    the last checks) answers 200: /healthz is a liveness probe, and restarting every worker
    cannot bring a broker back; the status and the missing lag series are for alerts."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        b = health()
        return web.Response(text=json.dumps(b), content_type="application/json",
                            status=503 if b["status"] == "stalled" else 200)

    async def readyz(_: web.Request) -> web.Response:
        ok = ready()
        return web.Response(text=json.dumps({"ready": ok}), content_type="application/json",
                            status=200 if ok else 503)

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    return app


class Server:
    """Serve ``routes`` on ``host:port`` for the app's lifetime (port 0: not served at all)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app, self._host, self._port = app, host, port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str | None:
        """Where the routes are served, once started (None: port 0, or not started)."""
        return f"http://{self._host}:{self._port}" if self._runner is not None else None

    async def start(self) -> None:
        if not self._port:
            return
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("http_serving", host=self._host, port=self._port, routes=["/metrics", "/healthz", "/readyz"])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Probes(mode.Service):
    """The routes and the watchdog's tick, started with Faust's own services.

    Faust starts an app's ``app.service()``s and ``app.timer()``s only once its first table
    restore is done, so there they could neither answer probes nor watch while a worker waits to
    join its group (a minute, when a crashed member's session has to expire first) and restores:
    an orchestrator's liveness probe would kill a worker that is only restoring, and a restore that
    hangs, most likely after a restart, would hang unseen. ``attach`` makes this a dependency of
    the app, which mode starts ahead of the app's own (producer, consumer, tables).
    """

    def __init__(self, server: Server, every_s: float, tick: Callable[[], Awaitable[None]],
                 closers: Sequence[Callable[[], Awaitable[None]]] = ()) -> None:
        super().__init__()
        self.server, self.every_s, self.tick, self.closers = server, every_s, tick, closers

    def attach(self, app: faust.App) -> Probes:
        app.add_dependency(self)
        return self

    async def on_start(self) -> None:
        await self.server.start()

    async def on_stop(self) -> None:
        for close in self.closers:
            await close()
        await self.server.stop()

    @mode.Service.task
    async def _ticks(self) -> None:
        while not self.should_stop:
            await self.sleep(self.every_s)
            if self.should_stop:
                break
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the watchdog must outlive one bad tick
                log.exception("probe_tick_failed")
