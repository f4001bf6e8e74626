""":class:`Reliable`: reliable subscribers for a faststream service, started and stopped together.

Part of :mod:`eventlab.consumer` (lessons 03 and 04); import from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Self, cast

import pandas as pd
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from eventlab import broker as broker_mod
from eventlab.consumer._engine import Subscription, _wants_effects
from eventlab.consumer._options import SubscriptionOptions, subscriber_signature
from eventlab.consumer._types import (
    _CONNECTION_ERRORS,
    ConsumerError,
    Handler,
    Health,
    PermanentError,
    _hash_tag,
)
from eventlab.metrics import Metrics

logger = logging.getLogger("eventlab.consumer")


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Reliable:
    """Reliable subscribers for a faststream ``RedisBroker`` (or a Redis URL).

    Declare handlers with :meth:`subscriber`; run them with the app
    (``Reliable(broker, app=app)``), with ``async with reliable:``, or with
    :meth:`run` in a service process.

    Introduced in lesson 03.
    """

    def __init__(
        self,
        broker: Any,
        *,
        app: Any = None,
        metrics: Metrics | None = None,
        consumer: str | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        """Bind to a broker.

        Args:
            broker: A faststream ``RedisBroker``, a ``redis://`` URL, or an
                ``eventlab.broker.Broker``.
            app: A ``FastStream`` app: the consumers then start after it and stop
                before it shuts down.
            metrics: Records every handled event (see :mod:`eventlab.metrics`).
            consumer: Default consumer name in each group (default ``host-pid``).
            stop_timeout: Seconds :meth:`stop` waits for in-flight batches.
        """
        self.broker = broker
        self.metrics = metrics
        self.consumer = consumer or _default_consumer()
        self.stop_timeout = stop_timeout
        self.subscriptions: list[Subscription] = []
        self._client: redis.asyncio.Redis | None = None
        self._running = False
        if app is not None:
            self.attach(app)

    def __repr__(self) -> str:
        """Show how many subscriptions and whether they run."""
        state = "running" if self._running else "stopped"
        return f"<Reliable {len(self.subscriptions)} subscriptions {state}>"

    def attach(self, app: Any) -> None:
        """Start with a ``FastStream`` app (after it connects) and stop before it shuts down."""

        # wrappers without parameters: faststream resolves hook parameters by injection
        async def start_reliable() -> None:
            await self.start()

        async def stop_reliable() -> None:
            await self.stop()

        app.after_startup(start_reliable)
        app.on_shutdown(stop_reliable)

    def subscriber(
        self, stream: Any, *, start: str, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Declare a reliable handler on a stream and group (a decorator).

        Args:
            stream: The stream key (``"{lab:orders}"``) or a faststream ``StreamSub``
                (its ``name``, ``group``, ``consumer``, ``max_records`` and
                ``polling_interval`` are used).
            start: Where a new group starts: ``"0"`` the whole history, ``"$"``
                only events added from now on. Always explicit.
            **options: Any attribute of :class:`SubscriptionOptions` (``group``,
                ``min_idle``, ``attempts``, ``max_deliveries``, ``dedupe_max``, …),
                which documents each one and its default.
        """
        name, chosen = SubscriptionOptions.of({"start": start, **options}).resolved(
            stream, consumer=self.consumer
        )
        # a ConsumerError from a handler is a mistake in it (an effect key in
        # another hash slot): retrying cannot fix it, the dead letter says how
        chosen = dataclasses.replace(
            chosen, permanent=(PermanentError, ConsumerError, *chosen.permanent)
        )

        def decorate(handler: Handler) -> Handler:
            _wants_effects(handler)  # fail at declaration, not at the first event
            sub = Subscription(handler, stream=name, options=chosen, metrics=self.metrics)
            if _hash_tag(name) is None:
                logger.warning(
                    "stream %r has no {hash tag}: its dead letters, dedupe store and "
                    "effect keys hash to different Redis Cluster slots, so %s runs on one "
                    "broker only; name it like '{lab:orders}' (streams.stream_key)",
                    name,
                    getattr(handler, "__name__", "the handler"),
                )
            self.subscriptions.append(sub)
            if self._running:
                asyncio.get_running_loop().create_task(sub._start(self._connection()))  # noqa: SLF001
            return handler

        return decorate

    subscriber.__signature__ = subscriber_signature(subscriber)  # type: ignore[attr-defined]

    def health(self) -> dict[str, Health]:
        """Return ``{"<stream>/<group>": Health}`` for every subscription."""
        return {f"{s.stream}/{s.group}": s.health for s in self.subscriptions}

    def health_frame(self) -> pd.DataFrame:
        """Return :meth:`health` as a DataFrame, one row per subscription."""
        rows = [
            {name: getattr(h, name) for name in Health.__slots__} for h in self.health().values()
        ]
        return pd.DataFrame(rows)

    def _connection(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = _client_for(
                self.broker, block=max((s.block for s in self.subscriptions), default=0.2)
            )
            # the reader decodes XREADGROUP's flat [name, value, …] rows itself: redis-py's
            # parsing into a dict per entry cost ~1.5 us of client CPU per event
            self._client.set_response_callback("XREADGROUP", _unparsed)
        return self._client

    async def start(self) -> None:
        """Create the groups (at their explicit start) and start readers and reclaimers."""
        if self._running:
            return
        client = self._connection()
        self._running = True
        try:
            for sub in self.subscriptions:
                await sub._start(client)  # noqa: SLF001 - the runtime owns its subscriptions
        except BaseException:
            await self.stop()
            raise

    async def stop(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 - seconds
        """Stop reading, finish (commit) in-flight batches, release the rest, close."""
        wait = self.stop_timeout if timeout is None else timeout
        await asyncio.gather(*(s._stop(timeout=wait) for s in self.subscriptions))  # noqa: SLF001
        self._running = False
        if self._client is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Self:
        """Start the subscriptions."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the subscriptions gracefully."""
        await self.stop()

    async def run(self, *, until: asyncio.Event | None = None, ready: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or ``until`` is set): the main of a service process.

        Args:
            until: Stop when this event is set.
            ready: Call :func:`eventlab.processes.signal_ready` once started.
        """
        done = until or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, done.set)
        await self.start()
        if ready:
            from eventlab.processes import signal_ready  # noqa: PLC0415 - only services need it

            signal_ready()
        try:
            await done.wait()
        finally:
            await self.stop()

    async def drain(self, *, timeout: float = 30.0, poll: float = 0.05) -> bool:  # noqa: ASYNC109
        """Wait until every group has no lag, nothing pending, and every outcome is recorded.

        Returns:
            ``True`` if drained within ``timeout`` seconds.
        """
        client = self._connection()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await _drained(client, self.subscriptions):
                return True
            await asyncio.sleep(poll)
        return False


async def _drained(client: redis.asyncio.Redis, subs: Iterable[Subscription]) -> bool:
    for sub in subs:
        if sub._held or not sub._queue.empty() or sub._backlog:  # noqa: SLF001 - work in hand
            return False
        try:
            groups = await client.xinfo_groups(sub.stream)
        except (redis.ResponseError, *_CONNECTION_ERRORS):
            return False
        info = next((g for g in groups if g["name"] == sub.group), None)
        if info is None or int(info["pending"]) or (info.get("lag") not in (0, None)):
            return False
    return True


def _unparsed(response: Any, **_options: Any) -> Any:
    """A reply as the parser (hiredis) returned it: no redis-py callback."""
    return response


def _client_for(broker: Any, *, block: float) -> redis.asyncio.Redis:
    """Our own connection pool to the broker (reads block; they must not starve others)."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        # a read blocks for `block` seconds; anything much longer is a paused or dead broker
        "socket_timeout": block + 5.0,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    }
    if isinstance(broker, str):  # a cluster URL is detected (INFO cluster) and its client used
        return broker_mod.async_client_for_url(broker, **options)
    url = getattr(broker, "url", None)
    if isinstance(url, str):  # eventlab.broker.Broker (it knows whether it is a cluster)
        cluster = getattr(broker, "cluster", None)
        return broker_mod.async_client_for_url(url, cluster=cluster, **options)
    state = getattr(
        getattr(getattr(broker, "config", None), "broker_config", None), "connection", None
    )
    conn_options = getattr(state, "_options", None)
    if isinstance(conn_options, dict):  # faststream RedisBroker: same host, port, db, password
        keep = {
            k: v
            for k, v in conn_options.items()
            if k in {"host", "port", "db", "username", "password", "ssl", "path"}
        }
        if "Cluster" in type(state).__name__:  # faststream's RedisClusterBroker
            keep.pop("db", None)
            for node in conn_options.get("startup_nodes") or []:  # its seed nodes
                keep.setdefault("host", node.host)
                keep.setdefault("port", node.port)
            return cast("redis.asyncio.Redis", redis.asyncio.RedisCluster(**keep, **options))
        if "path" in keep:
            return redis.asyncio.Redis(unix_socket_path=keep.pop("path"), **keep, **options)
        return redis.asyncio.Redis(**keep, **options)
    raise ConsumerError(
        f"cannot tell where {broker!r} connects",
        fix="pass a faststream RedisBroker or RedisClusterBroker, an eventlab Broker or a "
        "redis:// URL",
    )


# -- dead letters -------------------------------------------------------------------
