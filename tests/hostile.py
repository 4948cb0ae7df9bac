"""A hostile tenant's attacks and a normal tenant's traffic, shared by the tenant
isolation tests and ``benchmarks/bench_hostile.py``.

The hostile tenant, at once: posts the largest batches to a queue with as many tarpit
subscriptions as the server accepts (fan-out, and a webhook that never answers),
subscribes with the largest retry policy accepted to a closed port and posts to it,
grows queue metadata with PATCHes, lists queues with a filter that matches nothing, and
holds idle connections, stalled bodies and an endless header. Only loopback is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.server import free_port

NORMAL = "normal-tenant"
HOSTILE = "hostile-tenant"
TARPIT_HOST = "127.0.0.2"
CLOSED_PORT_URL = "http://127.0.0.3:9/hook"  # nothing listens there
JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"


def headers(project: str) -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}


class Receiver:
    """The normal tenant's webhook: arrival time per message id."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.arrivals.setdefault(json.loads(body)["message_id"], time.monotonic())
        return web.Response(status=204)


async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read, never answer: holds whatever connects until it gives up."""
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while await reader.read(65536):
            pass
    writer.close()


@dataclass
class Traffic:
    """What the normal tenant saw: post latencies, post failures, delivery delays."""

    posted: dict[str, float] = field(default_factory=dict)  # message id -> 201 received
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    delays: list[float] = field(default_factory=list)
    undelivered: int = 0
    hostile: Counter[str] = field(default_factory=Counter)  # what the attacks got


async def normal_tenant(
    base: str, rate: float, duration: float, traffic: Traffic, post_timeout: float
) -> None:
    """Open-loop single-message posts at ``rate`` per second; a post that takes longer
    than ``post_timeout`` counts as a failure (TimeoutError)."""
    timeout = aiohttp.ClientTimeout(total=post_timeout)
    async with aiohttp.ClientSession(headers=headers(NORMAL), timeout=timeout) as session:

        async def post(index: int) -> None:
            started = time.monotonic()
            try:
                async with session.post(
                    f"{base}/queues/orders/messages",
                    json={"messages": [{"body": {"n": index}}]},
                ) as answer:
                    document = await answer.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                traffic.failures[type(exc).__name__] += 1
                return
            at = time.monotonic()
            if answer.status != 201:
                traffic.failures[str(answer.status)] += 1
                return
            traffic.latencies.append(at - started)
            traffic.posted[document["resources"][0].rsplit("/", 1)[1]] = at

        tasks = []
        start = time.monotonic()
        index = 0
        while time.monotonic() - start < duration:
            tasks.append(asyncio.create_task(post(index)))
            index += 1
            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)


async def _loop(deadline: float, counts: Counter[str], name: str, request: Any) -> None:
    while time.monotonic() < deadline:
        try:
            status = await request()
        except (aiohttp.ClientError, TimeoutError) as exc:
            counts[f"{name} {type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)
        else:
            counts[f"{name} {status}"] += 1


ATTACKS = ("fan-out", "retry-storm", "metadata", "nomatch", "connections")


async def hostile_tenant(
    base: str,
    port: int,
    tarpit_port: int,
    duration: float,
    idle: int,
    counts: Counter[str],
    attacks: tuple[str, ...] = ATTACKS,
) -> None:
    deadline = time.monotonic() + duration
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers(HOSTILE), timeout=timeout) as session:

        async def call(method: str, path: str, **kwargs: Any) -> int:
            async with session.request(method, f"{base}{path}", **kwargs) as answer:
                await answer.read()
                return answer.status

        # Set-up: as many tarpit subscriptions as the server takes, a retry storm, queues.
        for index in range(1000):
            status = await call(
                "POST",
                "/queues/fanout/subscriptions",
                json={"subscriber": f"http://{TARPIT_HOST}:{tarpit_port}/{index}", "ttl": 3600},
            )
            if status != 201:
                counts[f"subscribe stopped at {index} with"] = status
                break
        policy = {
            "retries_with_no_delay": 1000,
            "minimum_delay_retries": 1000,
            "minimum_delay": 0,
            "maximum_delay": 86400,
            "maximum_delay_retries": 1000,
        }
        counts["retry-policy subscribe"] = await call(
            "POST",
            "/queues/storm/subscriptions",
            json={"subscriber": CLOSED_PORT_URL, "options": {"_retry_policy": policy}},
        )
        for index in range(300):
            await call("PUT", f"/queues/filler{index:04d}", json={"owner": "x"})
        await call("PUT", "/queues/grow", json={})

        batch = {"messages": [{"body": "x" * 2000} for _ in range(100)]}
        grow_index = iter(range(10**9))

        async def fan_out() -> int:
            return await call("POST", "/queues/fanout/messages", json=batch)

        async def storm() -> int:
            return await call("POST", "/queues/storm/messages", json={"messages": [{"body": 1}]})

        async def grow() -> int:
            patch = [{"op": "add", "path": f"/metadata/k{next(grow_index)}", "value": "y" * 8000}]
            return await call(
                "PATCH", "/queues/grow", data=json.dumps(patch),
                headers={"Content-Type": JSON_PATCH},
            )

        async def nomatch() -> int:
            return await call("GET", "/queues", params={"nomatch": "1", "limit": "20"})

        loops = {
            "fan-out": [_loop(deadline, counts, "fan-out post", fan_out) for _ in range(2)],
            "retry-storm": [_loop(deadline, counts, "retry-storm post", storm)],
            "metadata": [_loop(deadline, counts, "metadata patch", grow)],
            "nomatch": [_loop(deadline, counts, "nomatch list", nomatch) for _ in range(2)],
            "connections": [slow_connections(port, idle, deadline, counts)],
        }
        chosen = [work for name in attacks for work in loops.pop(name)]
        for unused in loops.values():
            for work in unused:
                work.close()  # never awaited: not chosen
        await asyncio.gather(*chosen)


async def slow_connections(port: int, idle: int, deadline: float, counts: Counter[str]) -> None:
    """Idle sockets, bodies stalled short of their length, and one endless header."""
    writers: list[asyncio.StreamWriter] = []
    for index in range(idle):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["idle connect refused"] += 1
            continue
        if index % 3 == 1:  # a POST whose body never finishes
            writer.write(
                b"POST /v2/queues/stall/messages HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n"
                + b"{" * 1000
            )
        writers.append(writer)
    counts["idle connections opened"] = len(writers)
    with contextlib.suppress(OSError):
        _, header = await asyncio.open_connection("127.0.0.1", port)
        header.write(b"GET /v2/ping HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        sent = 0
        while time.monotonic() < deadline and sent < 256 * 2**20:
            header.write(b"a" * 65536)
            sent += 65536
            try:
                await asyncio.wait_for(header.drain(), timeout=1.0)
            except (OSError, TimeoutError):
                break
        counts["endless header MB sent"] = sent // 2**20
        writers.append(header)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for writer in writers:
        writer.close()




class Arena:
    """The normal tenant's webhook receiver (127.0.0.1) and the hostile tenant's tarpit
    (127.0.0.2), started and stopped around a run."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self.hook_port = free_port()
        self.tarpit_port = free_port()
        self._runner: web.AppRunner | None = None
        self._tarpit: asyncio.Server | None = None

    async def __aenter__(self) -> Arena:
        app = web.Application()
        app.router.add_post("/hook", self.receiver.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.hook_port).start()
        self._tarpit = await asyncio.start_server(tarpit, TARPIT_HOST, self.tarpit_port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tarpit is not None:
            self._tarpit.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def subscribe_normal_tenant(self, base: str) -> None:
        """One webhook subscription on the normal tenant's queue ``orders``."""
        async with aiohttp.ClientSession(headers=headers(NORMAL)) as session:
            subscription = {"subscriber": f"http://127.0.0.1:{self.hook_port}/hook", "ttl": 3600}
            async with session.post(
                f"{base}/queues/orders/subscriptions", json=subscription
            ) as answer:
                assert answer.status == 201, await answer.text()

    async def observe(
        self,
        base: str,
        port: int,
        *,
        attack: bool,
        duration: float,
        rate: float,
        idle: int,
        drain: float,
        attacks: tuple[str, ...] = ATTACKS,
        post_timeout: float = 60.0,
    ) -> Traffic:
        """The normal tenant's traffic for ``duration`` (beside the attacks if ``attack``),
        then up to ``drain`` seconds for its notifications to arrive."""
        traffic = Traffic()
        work = [normal_tenant(base, rate, duration, traffic, post_timeout)]
        if attack:
            work.append(
                hostile_tenant(
                    base, port, self.tarpit_port, duration, idle, traffic.hostile, attacks
                )
            )
        await asyncio.gather(*work)
        arrivals = self.receiver.arrivals
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and any(i not in arrivals for i in traffic.posted):
            await asyncio.sleep(0.1)
        traffic.delays = sorted(arrivals[i] - t for i, t in traffic.posted.items() if i in arrivals)
        traffic.latencies.sort()
        traffic.undelivered = sum(1 for i in traffic.posted if i not in arrivals)
        return traffic
