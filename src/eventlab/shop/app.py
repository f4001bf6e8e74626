"""Run the shop's services as faststream apps on the reliable consumer runtime.

Each service is a ``FastStream`` app around its own ``RedisBroker``; an
:class:`eventlab.consumer.Reliable` subscriber reads the shop stream under the
service's consumer group (explicit start ``0``, bounded batches, ack after the
effect, reclaim after a crash, schema errors dead-lettered with the reason).
The same apps run in-process (:class:`ShopRuntime`, for a notebook) or one OS
process per service (:func:`spawn_services`, ``eventlab shop up``).

The runtime's own dedupe is left on: the services are idempotent by themselves
(their ``seen`` list is committed in the same MULTI as the effect), so the
runtime's store is a second line, and it lets metrics count duplicates.

Introduced in lesson 06; crash demos in lessons 07 and 11.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis
import redis.asyncio
from faststream import FastStream
from faststream.redis import RedisBroker, RedisClusterBroker, StreamSub

from eventlab import broker as broker_mod
from eventlab import processes, schema
from eventlab.consumer import Reliable
from eventlab.envelope import Event
from eventlab.metrics import Metrics
from eventlab.shop import events, saga
from eventlab.shop._asyncapi import declare
from eventlab.shop._service import Service
from eventlab.shop.billing import Billing
from eventlab.shop.courier import Courier
from eventlab.shop.inventory import Inventory
from eventlab.shop.orders import Orders
from eventlab.shop.outbox import Outbox
from eventlab.shop.projections import PROJECTIONS, Projection, Projector

__all__ = [
    "DEFAULT_SERVICES",
    "SERVICE_CLASSES",
    "ServiceApp",
    "ShopRuntime",
    "build",
    "down",
    "main",
    "spawn_services",
    "up",
]

SERVICE_CLASSES: dict[str, type[Service]] = {
    "orders": Orders,
    "inventory": Inventory,
    "billing": Billing,
    "courier": Courier,
}
"""Service name → its class."""

VIEWS = "views"
"""The read side: the projector's consumer group (``views-shadow`` for a dark launch)."""

DEFAULT_SERVICES = (*events.SERVICES, VIEWS)
"""What ``eventlab shop up`` and :class:`ShopRuntime` run by default."""


@dataclass(frozen=True, slots=True)
class ServiceApp:
    """One runnable service.

    Attributes:
        name: The service (also its consumer group).
        app: The faststream app (``await app.run()`` in a service process).
        broker: Its ``RedisBroker``.
        reliable: The reliable subscriptions (``async with app.reliable:`` in a notebook).
        handler: The service object (``Service`` or ``Projector``).
        client: The asyncio client the handler writes with.
    """

    name: str
    app: FastStream
    broker: RedisBroker
    reliable: Reliable
    handler: Service | Projector
    client: redis.asyncio.Redis


def build(
    name: str,
    url: str,
    *,
    metrics: Metrics | None = None,
    consumer: str | None = None,
    batch: int = 100,
    min_idle: float = 5.0,
    step_timeouts: dict[str, float] | None = None,
    projections: Sequence[Projection] = PROJECTIONS,
    start: str = "0",
) -> ServiceApp:
    """Build the faststream app of one service (``orders`` … ``courier``, ``views``).

    Args:
        name: Which service.
        url: The broker URL.
        metrics: Records every handled event.
        consumer: The consumer name within the group (default: host-pid).
        batch: Entries per read.
        min_idle: Seconds before a crashed consumer's entries are reclaimed.
        step_timeouts: The orchestrator's per-step timeouts (orders only).
        projections: What ``views`` / ``views-shadow`` maintain.
        start: Where a new group starts (``"0"``: the whole history).
    """
    # on a cluster, faststream's own cluster broker (the runtime reads with its own client)
    kind = RedisClusterBroker if broker_mod.is_cluster(url) else RedisBroker
    broker = kind(url, logger=None)  # type: ignore[arg-type]
    app = FastStream(broker, logger=None)
    reliable = Reliable(broker, app=app, metrics=metrics, consumer=consumer)
    client = broker_mod.async_client_for_url(url, decode_responses=True)
    registry = schema.Registry(broker_mod.client_for_url(url, decode_responses=True))
    handler: Service | Projector
    if name in SERVICE_CLASSES:
        cls = SERVICE_CLASSES[name]
        handler = (
            Orders(client, registry, step_timeouts=step_timeouts)
            if cls is Orders
            else cls(client, registry)
        )
    elif name in {VIEWS, f"{VIEWS}-shadow"}:
        target = "shadow" if name.endswith("-shadow") else "live"
        handler = Projector(client, projections, target=target, registry=registry)
    else:
        raise ValueError(f"unknown service {name!r}: one of {[*SERVICE_CLASSES, VIEWS]}")
    _document(broker, name)

    @reliable.subscriber(
        StreamSub(events.stream(), group=name, consumer=reliable.consumer, max_records=batch),
        start=start,
        min_idle=min_idle,
        permanent=(schema.SchemaError,),
        max_deliveries=20,  # out-of-order projections wait for the missing version
    )
    async def handle(event: Event) -> None:
        await handler.handle(event)

    if isinstance(handler, Orders):
        done = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []

        async def start_timer() -> None:
            done.clear()
            tasks.append(asyncio.create_task(saga.run_timer(client, registry, until=done)))

        async def stop_timer() -> None:
            done.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
            tasks.clear()

        app.after_startup(start_timer)
        app.on_shutdown(stop_timer)
    return ServiceApp(name, app, broker, reliable, handler, client)


def _document(broker: RedisBroker, name: str) -> None:
    """Declare what the service emits and consumes on its broker (read by the AsyncAPI document)."""
    cls = SERVICE_CLASSES.get(name)
    emits = cls.emits if cls is not None else ()
    handles = cls.handles if cls is not None else ()
    declare(broker, name, emits=emits, handles=handles)


class ShopRuntime:
    """The shop running in this process (for a notebook or a test).

    ``async with ShopRuntime(url) as shop:`` starts the four services, the order
    timer and the projector; :meth:`drain` waits until every group caught up.

    Args:
        url: The broker URL.
        services: Which to run (default: the four services and ``views``).
        metrics: One recorder for all of them.
        step_timeouts: The orchestrator's per-step timeouts.
        min_idle: Seconds before a crashed consumer's entries are reclaimed.
        relays: Services whose outbox this runtime relays to the shop stream, every
            ``relay_every`` seconds (lesson 06: ``["storefront"]``, whose
            ``place_order(outbox=…)`` writes there); :meth:`drain` also waits for them.
        relay_every: Seconds between relay rounds.
    """

    def __init__(
        self,
        url: str,
        *,
        services: Sequence[str] = DEFAULT_SERVICES,
        metrics: Metrics | None = None,
        step_timeouts: dict[str, float] | None = None,
        min_idle: float = 5.0,
        relays: Sequence[str] = (),
        relay_every: float = 0.05,
    ) -> None:
        """Build the apps (nothing runs yet)."""
        self.metrics = metrics if metrics is not None else Metrics()
        self.apps = [
            build(
                name,
                url,
                metrics=self.metrics,
                step_timeouts=step_timeouts,
                min_idle=min_idle,
            )
            for name in services
        ]
        self._timer_done = asyncio.Event()
        self._timers: list[asyncio.Task[None]] = []
        self._relay_client = (
            broker_mod.client_for_url(url, decode_responses=True) if relays else None
        )
        self.outboxes = (
            [Outbox(self._relay_client, service=name) for name in relays]
            if self._relay_client is not None
            else []
        )
        self.relay_every = relay_every

    async def start(self) -> None:
        """Start every service's subscriptions and the order timer.

        The same as entering ``async with ShopRuntime(url)``, for a notebook that
        keeps the shop running across cells; pair it with :meth:`stop`.
        Introduced in lesson 06.
        """
        await self.__aenter__()

    async def stop(self) -> None:
        """Stop the subscriptions and the timer gracefully (the same as leaving ``async with``).

        Introduced in lesson 06.
        """
        await self.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        """Start every service's subscriptions and the order timer."""
        for service in self.apps:
            await service.reliable.start()
            if isinstance(service.handler, Orders):
                registry = service.handler.registry
                self._timers.append(
                    asyncio.create_task(
                        saga.run_timer(service.client, registry, until=self._timer_done)
                    )
                )
        self._timers += [asyncio.create_task(self._relay(o)) for o in self.outboxes]
        return self

    async def _relay(self, outbox: Outbox) -> None:
        """Relay ``outbox`` to the shop stream until stopped (a broker hiccup skips a round)."""
        while not self._timer_done.is_set():
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                await asyncio.to_thread(outbox.relay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_done.wait(), self.relay_every)

    async def __aexit__(self, *exc: object) -> None:
        """Stop them gracefully."""
        self._timer_done.set()
        for task in self._timers:
            with contextlib.suppress(Exception):
                await task
        for service in self.apps:
            await service.reliable.stop()
            await service.client.aclose()
            registry = getattr(service.handler, "registry", None)
            if registry is not None:
                registry.client.close()
        if self._relay_client is not None:
            self._relay_client.close()

    async def drain(self, *, timeout: float = 60.0) -> bool:  # noqa: ASYNC109 - seconds
        """Wait until no group has lag or pending entries and every relayed outbox is empty.

        Returns ``True`` if so within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            relayed = [await asyncio.to_thread(o.pending) == 0 for o in self.outboxes]
            results = [await s.reliable.drain(timeout=0.05, poll=0.02) for s in self.apps]
            if all(relayed) and all(results):
                return True
            await asyncio.sleep(0.05)
        return False


# -- one OS process per service -------------------------------------------------------


async def main(name: str, url: str | None = None, *args: str) -> None:
    """Run one service until SIGTERM (``spawn("eventlab.shop.app:main", args=[name])``).

    Extra ``args`` are ``key=value`` options: ``min_idle=2``, ``batch=50``,
    ``consumer=billing-2``, ``timeout=3`` (every saga step).
    """
    options = dict(a.split("=", 1) for a in args)
    timeout = options.get("timeout")
    service = build(
        name,
        url or broker_mod.up().url,
        min_idle=float(options.get("min_idle", 5.0)),
        batch=int(options.get("batch", 100)),
        consumer=options.get("consumer"),
        step_timeouts=dict.fromkeys(("reserve", "payment", "courier"), float(timeout))
        if timeout
        else None,
    )

    async def ready() -> None:
        processes.signal_ready()

    service.app.after_startup(ready)
    await service.app.run()


def spawn_services(
    url: str,
    *,
    services: Sequence[str] = DEFAULT_SERVICES,
    options: Sequence[str] = (),
    die_with_parent: bool = True,
    wait: float = 60.0,
) -> list[processes.Proc]:
    """Start each service as its own OS process; return once all are subscribed.

    Args:
        url: The broker URL.
        services: Which services (a name twice starts two consumers in its group).
        options: ``key=value`` options passed to every :func:`main`.
        die_with_parent: Kill them when this process dies (``False`` for ``eventlab shop up``).
        wait: Seconds each may take to become ready.
    """
    procs: list[processes.Proc] = []
    counts: dict[str, int] = {}
    for name in services:
        counts[name] = counts.get(name, 0) + 1
        label = f"{name}-{counts[name]}"
        procs.append(
            processes.spawn(
                "eventlab.shop.app:main",
                args=[name, url, f"consumer={label}", *options],
                name=label,
                die_with_parent=die_with_parent,
            )
        )
    try:
        for proc in procs:
            proc.wait_ready(timeout=wait)
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    return procs


def _pids_file(state: str | os.PathLike[str] | None) -> Path:
    base = Path(state) if state else Path.cwd() / ".eventlab"
    base.mkdir(parents=True, exist_ok=True)
    return base / "shop.json"


def up(
    *,
    state: str | os.PathLike[str] | None = None,
    services: Sequence[str] = DEFAULT_SERVICES,
    options: Sequence[str] = (),
) -> list[processes.Proc]:
    """Start the broker (if needed), set the shop up, and run each service as a process.

    The processes outlive this call; their pids are recorded so :func:`down` stops them.
    """
    from eventlab.shop.core import setup  # noqa: PLC0415 - core imports the services

    handle = broker_mod.up(state=state)
    client = handle.client()
    try:
        if not client.exists(events.stream()):
            setup(client)
    finally:
        client.close()
    procs = spawn_services(handle.url, services=services, options=options, die_with_parent=False)
    record = [{"name": p.name, "pid": p.pid, "log": str(p.log_path)} for p in procs]
    _pids_file(state).write_text(json.dumps(record))
    return procs


def down(*, state: str | os.PathLike[str] | None = None, timeout: float = 5.0) -> list[str]:
    """Stop the service processes :func:`up` started (SIGTERM, then SIGKILL); return their names."""
    path = _pids_file(state)
    if not path.exists():
        return []
    stopped: list[str] = []
    for record in json.loads(path.read_text()):
        pid = int(record["pid"])
        if _stop_pid(pid, timeout=timeout):
            stopped.append(str(record["name"]))
    path.unlink()
    return stopped


def _stop_pid(pid: int, *, timeout: float) -> bool:
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if b"eventlab.shop.app:main" not in cmdline:
        return False  # the pid was reused by something else: leave it alone
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or b"eventlab" not in _cmdline(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
