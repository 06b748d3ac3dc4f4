"""The apps' HTTP routes: metrics in the Prometheus format, health from the last partition check."""

from __future__ import annotations

import aiohttp

from guard.devenv._proc import free_port
from guard.metrics import Metrics
from streams.watchdog import Backlog, Health
from streams.web import Server, body, per_topic, routes


async def test_routes_serve_metrics_health_and_readiness():
    metrics = Metrics()
    metrics.decisions.labels("block", "default").inc(3)
    state = {"health": Health(), "ready": False}
    port = free_port()
    server = Server(routes(metrics.registry, lambda: body(state["health"]), lambda: state["ready"]), "127.0.0.1",
                    port)
    await server.start()
    base = server.url
    assert base == f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                assert 'guard_decisions_total{action="block",policy="default"} 3.0' in await r.text()
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503 and (await r.json()) == {"ready": False}
            state["ready"] = True
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200
            async with http.get(f"{base}/healthz") as r:  # before the first partition check
                assert r.status == 200
                assert await r.json() == {"status": "starting", "assigned": [], "backlogs": [], "stalled": []}
            state["health"] = Health(checked=True, assigned=[0, 1])
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                assert await r.json() == {"status": "ok", "assigned": [0, 1], "backlogs": [], "stalled": []}
            lagging = Backlog(partition=1, next_offset=4, end=10, waiting_s=130.0)
            state["health"] = Health(checked=True, assigned=[0, 1], backlogs=[lagging], stalled=[lagging])
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 503
                got = await r.json()
                assert got["status"] == "stalled" and got["stalled"] == [1]
                assert got["backlogs"] == [{"partition": 1, "next_offset": 4, "end": 10, "waiting_s": 130.0,
                                             "lag": 6}]
            async with http.get(f"{base}/table/stream_state") as r:
                assert r.status == 404  # nothing but the three routes: stream state stays private
    finally:
        await server.stop()


async def test_port_zero_serves_nothing():
    server = Server(routes(Metrics().registry, lambda: body(Health()), lambda: True), "127.0.0.1", 0)
    await server.start()
    assert server.url is None
    await server.stop()


async def test_per_topic_health_is_stalled_if_any_input_is():
    """The tuner watches two inputs: one stalled topic makes the whole app unhealthy (503)."""
    lagging = Backlog(partition=2, next_offset=0, end=3, waiting_s=200.0)
    state = {"feedback": Health(checked=True, assigned=[0]), "decisions": Health()}
    port = free_port()
    server = Server(routes(Metrics().registry, lambda: per_topic(state), lambda: True), "127.0.0.1", port)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/healthz") as r:
                b = await r.json()
                assert r.status == 200 and b["status"] == "starting"  # decisions not checked yet
                assert b["topics"]["feedback"] == {"status": "ok", "assigned": [0], "backlogs": [], "stalled": []}
            state["decisions"] = Health(checked=True, assigned=[2], backlogs=[lagging], stalled=[lagging])
            async with http.get(f"{server.url}/healthz") as r:
                b = await r.json()
                assert r.status == 503 and b["status"] == "stalled"
                assert b["topics"]["decisions"]["stalled"] == [2] and b["topics"]["feedback"]["status"] == "ok"
    finally:
        await server.stop()


async def test_probes_serve_and_tick_until_stopped_then_close():
    """The service the apps start ahead of Faust's own: routes up, the tick every ``every_s``, and
    on stop its closers run and the routes go."""
    import asyncio

    from streams.web import Probes

    ticks, closed = [], []
    port = free_port()
    server = Server(routes(Metrics().registry, lambda: body(Health()), lambda: False), "127.0.0.1", port)

    third = asyncio.Event()

    async def tick() -> None:
        ticks.append(1)
        if len(ticks) >= 3:
            third.set()
        if len(ticks) == 2:
            raise RuntimeError("one bad tick")  # logged; the ticks go on

    async def close() -> None:
        closed.append(1)

    probes = Probes(server, 0.05, tick, closers=[close])
    await probes.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
        await asyncio.wait_for(third.wait(), 30)  # the ticks went on past the bad one
    finally:
        await probes.stop()
    n = len(ticks)
    await asyncio.sleep(0.2)
    assert len(ticks) == n and closed == [1]
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz"):
                raise AssertionError("still serving after stop")
        except aiohttp.ClientConnectionError:
            pass


async def test_health_is_unknown_once_the_broker_stops_answering_the_checks():
    """A failing check returned nothing and the last good one was served: /healthz said "ok"
    through a broker outage and the lag gauge kept its old value."""
    from prometheus_client import CollectorRegistry, Gauge

    from streams.watchdog import UNKNOWN_AFTER, after_check, patrol

    class DownWatch:
        topic = "llm.chunks"

        async def check(self) -> Health:
            raise ConnectionError("broker went away")

    class Log:
        def warning(self, *a, **kw) -> None: ...

    reg = CollectorRegistry()
    lag = Gauge("lag", "l", ["partition"], registry=reg)
    waiting = Gauge("waiting", "w", ["partition"], registry=reg)
    lag.labels("0").set(5)
    health = Health(checked=True, assigned=[0])
    for i in range(UNKNOWN_AFTER):
        assert body(health)["status"] == "ok"
        health = after_check(health, await patrol(DownWatch(), lag, waiting, None, Log()))
    assert body(health)["status"] == "unknown"
    assert reg.get_sample_value("lag", {"partition": "0"}) is None  # no stale series
    assert after_check(health, Health(checked=True))  == Health(checked=True)  # a good check again
    assert per_topic({"a": Health(checked=True), "b": health})["status"] == "unknown"
