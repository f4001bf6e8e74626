"""Break things on purpose: network faults through a proxy, broker, consumer and message faults.

Network faults go through :class:`Proxy`, an asyncio TCP proxy on loopback that
sits between clients and the broker (Toxiproxy needs Docker; this needs
nothing). Clients connect to :attr:`Proxy.url` instead of the broker's URL::

    proxy = faults.start(broker)            # runs in a background thread
    client = redis.Redis.from_url(proxy.url)
    with faults.latency(0.2):               # +0.2 s on every reply
        client.ping()
    with faults.partition(mode="hold"):     # bytes held until healed
        ...

Every network fault applies per direction: ``"upstream"`` (client → broker),
``"downstream"`` (broker → client) or ``"both"``. A fault call applies at once
and returns a :class:`Applied` handle: use it as a context manager, or call
:meth:`Applied.undo`; :func:`heal` clears everything. The same faults can be
toggled from a terminal with ``eventlab faults latency 0.2`` (the proxy serves
a tiny JSON-lines control channel on loopback; its ports are recorded in the
state folder as ``proxy.json``).

Broker, consumer and message faults share the vocabulary (:data:`FAULTS`):
:func:`pause_broker`, :func:`kill_broker`, :func:`restart_broker`,
:func:`kill_consumer`, :func:`slow`, :func:`duplicate_burst`,
:func:`out_of_order`, :func:`poison_event`, :func:`publish_invalid`.
:func:`schedule` builds a seeded nemesis schedule and :class:`Nemesis` runs it,
recording every fault in a :class:`~eventlab.history.History`.

Introduced in lesson 03 (kill a consumer), lesson 04 (poison events) and
lesson 11 (the fault proxy and nemesis schedules).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis

from eventlab import broker as broker_mod
from eventlab._errors import EventlabError
from eventlab._proxy import Engine
from eventlab.envelope import Event
from eventlab.history import History

if TYPE_CHECKING:
    import argparse

    from eventlab.processes import Proc

__all__ = [
    "FAULTS",
    "Applied",
    "Direction",
    "FaultError",
    "Nemesis",
    "Phase",
    "Proxy",
    "RemoteProxy",
    "Schedule",
    "Step",
    "bandwidth",
    "current",
    "duplicate_burst",
    "heal",
    "invalid_fields",
    "kill_broker",
    "kill_consumer",
    "latency",
    "out_of_order",
    "partition",
    "pause_broker",
    "poison_event",
    "publish_invalid",
    "register_cli",
    "remote",
    "require_managed",
    "reset",
    "restart_broker",
    "schedule",
    "slow",
    "start",
    "stop",
    "unpartition",
]

Direction = Literal["upstream", "downstream", "both"]
"""Which bytes a network fault touches: client → broker, broker → client, or both."""

FAULTS = (
    "latency",
    "bandwidth",
    "reset",
    "partition",
    "pause",
    "kill",
    "restart",
    "kill-consumer",
    "slow-handler",
    "duplicate-burst",
    "out-of-order",
    "poison",
    "schema-invalid",
)
"""The fault vocabulary (docs/faults.md explains each one)."""

_T = TypeVar("_T")
_RECORD = "proxy.json"


class FaultError(EventlabError):
    """A fault cannot be applied (no proxy running, bad arguments, no managed broker)."""


@dataclass(slots=True)
class Applied:
    """A fault that is on: leave it on, ``undo()`` it, or use it as a context manager.

    Attributes:
        name: The fault (``"latency"``).
        details: Its arguments, as recorded in the history.
    """

    name: str
    details: dict[str, Any]
    _undo: Callable[[], object] | None = field(default=None, repr=False)
    _history: History | None = field(default=None, repr=False)

    def undo(self) -> None:
        """Turn the fault off (once; later calls do nothing)."""
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()
            if self._history is not None:
                self._history.nemesis(self.name, "stop")

    def __enter__(self) -> Self:
        """Return this handle; the fault is already on."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Turn the fault off."""
        self.undo()


def _applied(
    name: str,
    details: dict[str, Any],
    undo: Callable[[], object] | None,
    history: History | None,
) -> Applied:
    if history is not None:
        history.nemesis(name, "start", **details)
    return Applied(name, details, undo, history)


# -- the proxy ------------------------------------------------------------------------


class _Controls:
    """The network-fault methods shared by a local :class:`Proxy` and a :class:`RemoteProxy`."""

    def _send(self, command: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """Return the faults on each direction and the connection counts."""
        return self._send({"op": "status"})

    def latency(
        self,
        seconds: float,
        *,
        jitter: float = 0.0,
        direction: Direction = "downstream",
        history: History | None = None,
    ) -> Applied:
        """Delay every chunk by ``seconds`` (± ``jitter``, seeded) in ``direction``.

        The default direction is ``downstream`` (replies), so a request/reply
        round trip gets ``seconds`` slower; ``both`` adds it twice.
        """
        if seconds < 0 or jitter < 0:
            raise FaultError("latency and jitter must be >= 0 seconds", fix="pass seconds >= 0")
        cmd = {"op": "latency", "seconds": seconds, "jitter": jitter, "direction": direction}
        self._send(cmd)
        return _applied(
            "latency",
            {"seconds": seconds, "jitter": jitter, "direction": direction},
            lambda: self._send({"op": "latency", "seconds": 0.0, "direction": direction}),
            history,
        )

    def bandwidth(
        self,
        bytes_per_second: float,
        *,
        direction: Direction = "downstream",
        history: History | None = None,
    ) -> Applied:
        """Limit ``direction`` to ``bytes_per_second``; ``0`` lifts the limit (as latency 0 does).

        Lifting returns a handle with nothing to undo and records nothing.
        """
        if bytes_per_second < 0:
            raise FaultError(
                "bandwidth must be >= 0 bytes per second",
                fix="pass bytes_per_second > 0, or 0 to lift the limit",
            )
        if bytes_per_second == 0:
            self._send({"op": "bandwidth", "bytes_per_second": None, "direction": direction})
            return Applied("bandwidth", {"bytes_per_second": 0, "direction": direction})
        self._send(
            {"op": "bandwidth", "bytes_per_second": bytes_per_second, "direction": direction}
        )
        return _applied(
            "bandwidth",
            {"bytes_per_second": bytes_per_second, "direction": direction},
            lambda: self._send(
                {"op": "bandwidth", "bytes_per_second": None, "direction": direction}
            ),
            history,
        )

    def partition(
        self,
        *,
        direction: Direction = "both",
        mode: Literal["hold", "drop"] = "hold",
        history: History | None = None,
    ) -> Applied:
        """Cut ``direction``: bytes are held (delivered at heal) or dropped (lost).

        A one-way partition (``direction="downstream"``) lets requests reach the
        broker while their replies never come back: the writes happen, the
        client times out. After a ``drop`` partition heals, connections that
        lost bytes are reset so clients reconnect.
        """
        self._send({"op": "partition", "direction": direction, "mode": mode})
        return _applied(
            "partition",
            {"direction": direction, "mode": mode},
            lambda: self._send({"op": "unpartition", "direction": direction}),
            history,
        )

    def unpartition(self, *, direction: Direction = "both", history: History | None = None) -> None:
        """Lift the partition on ``direction`` only (held bytes are delivered); other faults stay.

        :meth:`heal` clears everything; this ends one cut, e.g. the downstream
        half of a two-way partition while upstream stays cut.
        """
        self._send({"op": "unpartition", "direction": direction})
        if history is not None:
            history.nemesis("partition", "stop", direction=direction)

    def reset(self, *, history: History | None = None) -> None:
        """Reset (TCP RST) every open connection now; clients must reconnect."""
        self._send({"op": "reset"})
        if history is not None:
            history.nemesis("reset", "start")
            history.nemesis("reset", "stop")

    def heal(self, *, history: History | None = None) -> None:
        """Clear every network fault in both directions (held bytes are delivered)."""
        self._send({"op": "heal"})
        if history is not None:
            history.nemesis("heal", "start")
            history.nemesis("heal", "stop")


class Proxy(_Controls):
    """A TCP fault proxy in front of a broker, running on its own thread and event loop.

    Start one with :func:`start`. Attributes: ``url`` (give it to clients),
    ``port``, ``control_port``, ``upstream`` (the broker's URL).
    """

    def __init__(
        self, upstream: str, *, port: int = 0, control_port: int = 0, seed: int = 0
    ) -> None:
        """Create and start the proxy for the broker at ``upstream`` (a redis:// URL)."""
        parts = urlsplit(upstream)
        self.upstream = upstream
        self._loop = asyncio.new_event_loop()
        self._engine = Engine(parts.hostname or "127.0.0.1", parts.port or 6379, seed=seed)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="eventlab-proxy", daemon=True
        )
        self._thread.start()
        self.port, self.control_port = self._call(self._engine.start(port, control_port))
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        self.url = urlunsplit(
            (
                parts.scheme or "redis",
                f"{netloc[0]}@{host}" if len(netloc) == 2 else host,  # noqa: PLR2004 - user@host
                parts.path,
                parts.query,
                "",
            )
        )
        self.closed = False
        self.record: Path | None = None  # the proxy.json start() wrote for this proxy

    def __repr__(self) -> str:
        """Show both ports and the upstream (password redacted)."""
        return (
            f"<Proxy 127.0.0.1:{self.port} → {broker_mod.redact(self.upstream)} "
            f"control {self.control_port}>"
        )

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _send(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise FaultError("this proxy is closed", fix="start a new one with faults.start()")

        async def run() -> dict[str, Any]:
            return self._engine.apply(command)

        try:
            result: dict[str, Any] = self._call(run())
        except ValueError as exc:
            raise FaultError(str(exc), fix="see `eventlab faults --help`") from None
        return result

    def client(self, **options: Any) -> redis.Redis:
        """Return a sync client through the proxy (``decode_responses=True`` by default)."""
        options.setdefault("decode_responses", True)
        return redis.Redis.from_url(self.url, **options)

    def close(self) -> None:
        """Stop the proxy, drop its connections and end its thread."""
        if self.closed:
            return
        self.closed = True
        self._call(self._engine.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Self:
        """Return the running proxy."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the proxy."""
        self.close()


class RemoteProxy(_Controls):
    """Controls a proxy running elsewhere (another process, a notebook) via its control port."""

    def __init__(self, control_port: int, *, timeout: float = 5.0) -> None:
        """Talk to the control channel on ``127.0.0.1:control_port``."""
        self.control_port = control_port
        self.timeout = timeout

    def __repr__(self) -> str:
        """Show the control port."""
        return f"<RemoteProxy control 127.0.0.1:{self.control_port}>"

    def _send(self, command: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.create_connection(
                ("127.0.0.1", self.control_port), timeout=self.timeout
            ) as sock:
                sock.sendall(json.dumps(command).encode() + b"\n")
                reply = json.loads(sock.makefile("rb").readline() or b"{}")
        except OSError as exc:
            raise FaultError(
                f"no fault proxy answers on control port {self.control_port}: {exc}",
                fix="start one with `eventlab faults serve` or faults.start() in the notebook",
            ) from None
        if not reply.get("ok"):
            raise FaultError(reply.get("error", "bad reply"), fix="see `eventlab faults --help`")
        status: dict[str, Any] = reply["status"]
        return status


_current: Proxy | None = None


def start(
    upstream: str | broker_mod.Broker | None = None,
    *,
    port: int = 0,
    control_port: int = 0,
    seed: int = 0,
    state: str | os.PathLike[str] | None = None,
    record: bool = True,
) -> Proxy:
    """Start a fault proxy in front of the broker and make it the current one.

    Args:
        upstream: The broker (a :class:`~eventlab.broker.Broker` or URL); default
            :func:`eventlab.broker.up`.
        port: The proxy's port (0 = any free port).
        control_port: The control channel's port (0 = any free port).
        seed: Seeds the jitter, so a run repeats.
        state: State folder for the ``proxy.json`` record (see ``record``).
        record: Write the ports to ``proxy.json`` so ``eventlab faults …`` finds it.

    Returns:
        The running :class:`Proxy`; use ``proxy.url`` for clients.
    """
    global _current  # noqa: PLW0603 - one current proxy, like the one managed broker
    if upstream is None:
        upstream = broker_mod.up(state=state)
    url = upstream.url if isinstance(upstream, broker_mod.Broker) else upstream
    proxy = Proxy(url, port=port, control_port=control_port, seed=seed)
    if _current is not None and not _current.closed:
        stop()
    if record:
        folder = broker_mod.state_dir(state)
        folder.mkdir(parents=True, exist_ok=True)
        proxy.record = folder / _RECORD
        proxy.record.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "port": proxy.port,
                    "control_port": proxy.control_port,
                    "url": broker_mod.redact(proxy.url),
                    "upstream": broker_mod.redact(url),
                }
            )
        )
    _current = proxy
    return proxy


def stop() -> None:
    """Close the current proxy (if any) and remove the ``proxy.json`` it recorded.

    The record goes only if it still names this proxy (another process may
    have recorded its own since), so ``eventlab faults status`` then says that
    no proxy runs instead of failing on a dead control port.
    """
    global _current  # noqa: PLW0603 - see start()
    if _current is not None:
        _current.close()
        _forget(_current)
    _current = None


def _forget(proxy: Proxy) -> None:
    if proxy.record is None:
        return
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if json.loads(proxy.record.read_text())["control_port"] == proxy.control_port:
            proxy.record.unlink()
    proxy.record = None


def current() -> Proxy:
    """Return the proxy :func:`start` made current.

    Raises:
        FaultError: No proxy is running in this process.
    """
    if _current is None or _current.closed:
        raise FaultError(
            "no fault proxy is running in this process",
            fix="call faults.start(broker) and connect clients to proxy.url",
        )
    return _current


def remote(
    *, control_port: int | None = None, state: str | os.PathLike[str] | None = None
) -> RemoteProxy:
    """Return controls for a proxy in another process (port given, or read from ``proxy.json``)."""
    if control_port is None:
        path = broker_mod.state_dir(state) / _RECORD
        try:
            control_port = int(json.loads(path.read_text())["control_port"])
        except (OSError, ValueError, KeyError):
            raise FaultError(
                f"no fault proxy recorded in {path}",
                fix="start one with `eventlab faults serve` or faults.start(), or pass --control",
            ) from None
    return RemoteProxy(control_port)


def latency(
    seconds: float,
    *,
    jitter: float = 0.0,
    direction: Direction = "downstream",
    history: History | None = None,
) -> Applied:
    """Add latency on the current proxy (see :meth:`Proxy.latency`); usable as ``with``."""
    return current().latency(seconds, jitter=jitter, direction=direction, history=history)


def bandwidth(
    bytes_per_second: float, *, direction: Direction = "downstream", history: History | None = None
) -> Applied:
    """Limit bandwidth on the current proxy (see :meth:`Proxy.bandwidth`)."""
    return current().bandwidth(bytes_per_second, direction=direction, history=history)


def partition(
    *,
    direction: Direction = "both",
    mode: Literal["hold", "drop"] = "hold",
    history: History | None = None,
) -> Applied:
    """Partition the current proxy (see :meth:`Proxy.partition`); usable as ``with``."""
    return current().partition(direction=direction, mode=mode, history=history)


def unpartition(*, direction: Direction = "both", history: History | None = None) -> None:
    """Lift the partition on ``direction`` of the current proxy (see :meth:`Proxy.unpartition`)."""
    current().unpartition(direction=direction, history=history)


def reset(*, history: History | None = None) -> None:
    """Reset every connection through the current proxy."""
    current().reset(history=history)


def heal(*, history: History | None = None) -> None:
    """Clear every network fault on the current proxy."""
    current().heal(history=history)


# -- broker faults --------------------------------------------------------------------


def pause_broker(
    broker: broker_mod.Broker, seconds: float, *, history: History | None = None
) -> Applied:
    """Freeze the managed broker for ``seconds`` (SIGSTOP, then SIGCONT).

    Simulates a long GC pause, a stalled VM or a saturated disk: connections stay
    open but nothing answers. ``undo()`` resumes early. Refused on a broker the
    kit did not start (``REDIS_URL``): freezing it would freeze everyone on it.
    """
    _need_managed(broker, "pause")
    broker.pause(seconds)
    return _applied("pause", {"seconds": seconds}, broker.resume, history)


def kill_broker(broker: broker_mod.Broker, *, history: History | None = None) -> Applied:
    """SIGKILL the managed broker (a crash or power cut); ``undo()`` restarts it."""
    _need_managed(broker, "kill")
    broker.kill()
    return _applied("kill", {"persistence": broker.persistence}, broker.restart, history)


def restart_broker(
    broker: broker_mod.Broker,
    *,
    persistence: broker_mod.Persistence | None = None,
    graceful: bool = True,
    history: History | None = None,
) -> broker_mod.Broker:
    """Restart the managed broker (``graceful=False`` is kill -9 then start) under ``persistence``.

    What survives depends on the mode: ``none`` keeps nothing, ``rdb`` keeps the
    last snapshot, ``aof-everysec`` loses about a second, ``aof-always`` nothing.
    """
    _need_managed(broker, "restart")
    details = {"persistence": persistence or broker.persistence, "graceful": graceful}
    if history is not None:
        history.nemesis("restart", "start", **details)
    try:
        return broker.restart(persistence=persistence, graceful=graceful)
    finally:
        if history is not None:
            history.nemesis("restart", "stop")


def require_managed(broker: broker_mod.Broker, what: str) -> None:
    """Refuse ``what`` (a pause, restart, kill or flush) on a broker the kit did not start.

    A ``REDIS_URL`` broker may be a whole workshop room's: no lesson may pause,
    restart or flush it.

    Raises:
        FaultError: ``broker`` is not managed by eventlab (one line with the fix).
    """
    _need_managed(broker, what)


def _need_managed(broker: broker_mod.Broker, what: str) -> None:
    if not broker.managed:
        raise FaultError(
            f"{what} needs a broker that eventlab manages; REDIS_URL names one it did not "
            "start (maybe a whole room's)",
            fix="unset REDIS_URL so eventlab starts its own broker",
        )


# -- consumer faults ------------------------------------------------------------------


def kill_consumer(proc: Proc, *, history: History | None = None) -> None:
    """SIGKILL a consumer process (``eventlab.processes.spawn``): no cleanup, no ack."""
    if history is not None:
        history.nemesis("kill-consumer", "start", name=proc.name, pid=proc.pid)
    proc.kill()
    if history is not None:
        history.nemesis("kill-consumer", "stop", name=proc.name)


def slow(handler: Callable[..., _T], *, seconds: float, every: int = 1) -> Callable[..., _T]:
    """Wrap a handler (sync or async) so every ``every``-th call first sleeps ``seconds``.

    Simulates a slow dependency (a database, a payment API) behind the handler:
    lag grows, and beyond the reclaimer's ``min_idle`` the message is stolen.
    """
    calls = 0

    def due() -> bool:
        nonlocal calls
        calls += 1
        return calls % every == 0

    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def slow_async(*args: Any, **kwargs: Any) -> Any:
            if due():
                await asyncio.sleep(seconds)
            return await handler(*args, **kwargs)

        return slow_async  # type: ignore[return-value]

    @functools.wraps(handler)
    def slow_sync(*args: Any, **kwargs: Any) -> _T:
        if due():
            time.sleep(seconds)
        return handler(*args, **kwargs)

    return slow_sync


# -- message faults -------------------------------------------------------------------


def duplicate_burst(
    events: Sequence[Event], *, fraction: float = 0.2, copies: int = 1, seed: int = 0
) -> list[Event]:
    """Return ``events`` with a seeded ``fraction`` of them repeated ``copies`` more times.

    The repeats keep the same event id, as a producer retry or an at-least-once
    relay makes them; each repeat lands right after its original or a few later.
    """
    if not 0 <= fraction <= 1:
        raise FaultError("fraction must be between 0 and 1", fix="pass e.g. fraction=0.2")
    rng = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
    out: list[Event] = []
    for event in events:
        out.append(event)
        if rng.random() < fraction:
            out.extend([event] * copies)
    return out


def out_of_order(events: Sequence[Event], *, window: int = 5, seed: int = 0) -> list[Event]:
    """Return ``events`` shuffled within windows of ``window`` (seeded): delayed delivery.

    Simulates retries, parallel producers or two consumers racing: events about
    one aggregate arrive in another order than they happened.
    """
    if window < 1:
        raise FaultError("window must be at least 1", fix="pass window=5")
    rng = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
    out: list[Event] = []
    for i in range(0, len(events), window):
        chunk = list(events[i : i + window])
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


def poison_event(*, source: str = "nemesis", subject: str | None = None) -> Event:
    """Return a well-formed event that a handler can never process (``data.poison`` is true).

    Simulates a message that crashes its consumer every time (a bug, an
    impossible value): without a delivery limit it is retried forever.
    """
    return Event(type="Poison", source=source, subject=subject, data={"poison": True})


def invalid_fields(
    *, kind: Literal["not-json", "missing-type", "bad-time"] = "not-json"
) -> dict[str, str]:
    """Return raw stream fields that break the wire format in one named way."""
    fields = Event(type="Invalid", source="nemesis", data={"n": 1}).to_fields()
    if kind == "not-json":
        fields["data"] = "{not json"
    elif kind == "missing-type":
        del fields["type"]
    elif kind == "bad-time":
        fields["time"] = "yesterday"
    else:
        raise FaultError(
            f"unknown invalid kind {kind!r}", fix="use not-json, missing-type, bad-time"
        )
    return fields


def publish_invalid(
    client: redis.Redis,
    stream: str,
    *,
    kind: Literal["not-json", "missing-type", "bad-time"] = "not-json",
    history: History | None = None,
) -> str:
    """XADD a schema-invalid entry to ``stream`` (a producer with a bug); return its entry id."""
    entry = str(client.xadd(stream, invalid_fields(kind=kind)))  # type: ignore[arg-type]
    if history is not None:
        history.nemesis("schema-invalid", "start", entry=entry, kind=kind)
        history.nemesis("schema-invalid", "stop")
    return entry


# -- nemesis schedules ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of a nemesis schedule.

    Attributes:
        name: ``warm-up``, ``fault``, ``heal``, ``quiesce`` or ``final-reads``.
        start: Seconds after the run starts.
        end: Seconds after the run starts.
        fault: For ``fault`` phases, the fault's name; else ``None``.
    """

    name: str
    start: float
    end: float
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One nemesis action: start or stop ``fault`` at ``at`` seconds.

    Attributes:
        at: Seconds after the run starts.
        fault: The fault's name (a key of the actions mapping).
        phase: ``"start"`` or ``"stop"``.
    """

    at: float
    fault: str
    phase: Literal["start", "stop"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A seeded nemesis schedule: the same seed gives the same faults at the same offsets.

    Attributes:
        seed: The seed it was built from.
        phases: Warm-up, fault cycles, heal, quiesce, final reads, in order.
        steps: The start/stop actions, sorted by time.
        duration: Seconds from start to the end of quiesce (final reads follow).
    """

    seed: int
    phases: tuple[Phase, ...]
    steps: tuple[Step, ...]
    duration: float


def schedule(
    *,
    seed: int,
    faults: Sequence[str],
    cycles: int = 2,
    warmup: float = 0.3,
    fault_seconds: tuple[float, float] = (0.2, 0.5),
    gap_seconds: tuple[float, float] = (0.1, 0.3),
    quiesce: float = 0.3,
    in_order: bool = False,
) -> Schedule:
    """Build a seeded schedule: warm-up, ``cycles`` fault windows, heal, quiesce, final reads.

    Args:
        seed: Same seed, same schedule.
        faults: Fault names to draw from (each cycle picks one, seeded; with
            ``in_order=True`` cycle ``i`` uses ``faults[i % len(faults)]``).
        cycles: How many fault windows.
        warmup: Seconds of normal operation first.
        fault_seconds: (min, max) length of a fault window, seconds.
        gap_seconds: (min, max) pause between windows, seconds.
        quiesce: Seconds after heal for the system to catch up before final reads.
        in_order: Take the faults in the given order instead of drawing them.
    """
    if not faults:
        raise FaultError("a schedule needs at least one fault", fix="pass faults=['partition']")
    rng = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
    phases = [Phase("warm-up", 0.0, warmup)]
    steps: list[Step] = []
    at = warmup
    for cycle in range(cycles):
        fault = faults[cycle % len(faults)] if in_order else rng.choice(list(faults))
        length = round(rng.uniform(*fault_seconds), 3)
        phases.append(Phase("fault", at, at + length, fault))
        steps.extend([Step(at, fault, "start"), Step(at + length, fault, "stop")])
        at += length
        gap = round(rng.uniform(*gap_seconds), 3)
        at += gap
    phases.append(Phase("heal", at, at))
    phases.append(Phase("quiesce", at, at + quiesce))
    phases.append(Phase("final-reads", at + quiesce, at + quiesce))
    return Schedule(seed, tuple(phases), tuple(steps), at + quiesce)


Action = Callable[[], "Applied | Callable[[], object] | None"]
"""Starts a fault; returns an :class:`Applied` (or an undo callable, or ``None``)."""


class Nemesis:
    """Runs a :class:`Schedule` in a background thread, recording each fault in a history.

    Args:
        plan: The schedule.
        actions: Fault name → a callable that starts it and returns how to stop it.
        history: Where the nemesis records ``start``/``stop``.
    """

    def __init__(self, plan: Schedule, actions: Mapping[str, Action], *, history: History) -> None:
        """Prepare (not start) the run; see the class docstring."""
        missing = {s.fault for s in plan.steps} - set(actions)
        if missing:
            raise FaultError(
                f"no action for fault(s) {sorted(missing)}", fix="add them to the actions mapping"
            )
        self.plan = plan
        self.actions = dict(actions)
        self.history = history
        self.errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.started_at: float | None = None

    def start(self) -> Nemesis:
        """Run the schedule in a background thread; return at once."""
        self._thread = threading.Thread(target=self.run, name="eventlab-nemesis", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Wait for the schedule to finish (re-raises the first fault error)."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.errors:
            raise self.errors[0]

    def cancel(self) -> None:
        """Stop early; faults that are on are turned off."""
        self._stop.set()

    def run(self) -> None:
        """Run the schedule in this thread (blocks for :attr:`Schedule.duration` seconds)."""
        self.started_at = time.monotonic()
        on: dict[str, Callable[[], object]] = {}
        try:
            for step in self.plan.steps:
                wait = self.started_at + step.at - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                if step.phase == "start":
                    self.history.nemesis(step.fault, "start")
                    handle = self.actions[step.fault]()
                    on[step.fault] = _undo_of(handle)
                else:
                    on.pop(step.fault, lambda: None)()
                    self.history.nemesis(step.fault, "stop")
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.errors.append(exc)
        finally:
            for fault, undo in on.items():
                with contextlib.suppress(Exception):
                    undo()
                self.history.nemesis(fault, "stop")
        rest = self.started_at + self.plan.duration - time.monotonic()
        if rest > 0 and not self.errors:
            self._stop.wait(rest)


def _undo_of(handle: object) -> Callable[[], object]:
    if isinstance(handle, Applied):
        return handle.undo
    if callable(handle):
        return handle
    return lambda: None


# -- the `eventlab faults` command ------------------------------------------------------


def _cli_target(args: argparse.Namespace) -> RemoteProxy:
    return remote(control_port=args.control, state=args.state)


def _cmd_serve(args: argparse.Namespace) -> int:
    upstream = args.upstream or broker_mod.up(state=args.state).url
    proxy = start(
        upstream, port=args.port, control_port=args.control_port, seed=args.seed, state=args.state
    )
    print(  # noqa: T201 - a command prints
        # the proxied URL keeps the upstream's password (clients need it): never print it
        json.dumps(
            {
                "url": broker_mod.redact(proxy.url),
                "upstream": broker_mod.redact(proxy.upstream),
                "port": proxy.port,
                "control_port": proxy.control_port,
            }
        ),
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        with contextlib.suppress(OSError):
            (broker_mod.state_dir(args.state) / _RECORD).unlink()
    return 0


def _cmd_control(args: argparse.Namespace) -> int:
    action = args.fault_action
    record = broker_mod.state_dir(args.state) / _RECORD
    if action == "status" and args.control is None and not record.exists():
        # nothing recorded: no proxy runs, which is a status, not an error
        status = {"running": False, "record": str(record)}
        print(  # noqa: T201 - a command prints
            json.dumps(status)
            if args.json
            else f"no fault proxy is running (none recorded in {record})"
        )
        return 0
    target = _cli_target(args)
    if action == "latency":
        target.latency(args.seconds, jitter=args.jitter, direction=args.direction)
    elif action == "bandwidth":
        target.bandwidth(args.bytes_per_second, direction=args.direction)
    elif action == "partition":
        target.partition(direction=args.direction, mode=args.mode)
    elif action == "unpartition":
        target.unpartition(direction=args.direction)
    elif action == "reset":
        target.reset()
    elif action == "heal":
        target.heal()
    print(json.dumps(target.status(), indent=None if args.json else 2))  # noqa: T201 - a command prints
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    handle = broker_mod.up(state=args.state)
    action = args.fault_action
    if action == "pause":
        # a CLI process cannot leave a timer behind: it waits, then resumes
        handle.pause(args.seconds)
        try:
            time.sleep(args.seconds)
        finally:
            handle.resume()
        message = f"broker paused for {args.seconds:g} s, resumed"
    elif action == "kill-broker":
        kill_broker(handle)
        message = "broker killed (SIGKILL); `eventlab up` starts it again on its data folder"
    else:
        handle = restart_broker(handle, persistence=args.persistence, graceful=not args.hard)
        message = f"broker restarted ({handle.persistence}), pid {handle.pid}"
    print(message)  # noqa: T201 - a command prints
    return 0


def _cmd_scenario(args: argparse.Namespace) -> int:
    from eventlab import scenarios  # noqa: PLC0415 - loads the checkers only when asked

    if args.name is None:
        print("\n".join(sorted(scenarios.SCENARIOS)))  # noqa: T201 - a command prints
        return 0
    handle = broker_mod.up(state=args.state)
    # scenarios that kill or restart the broker get a private one (never yours)
    crash = args.name in scenarios.CRASH_SCENARIOS
    result = scenarios.run(args.name, None if crash else handle, seed=args.seed)
    if args.json:
        report = {
            "scenario": result.name,
            "seed": result.seed,
            "as_expected": result.as_expected,
            "verdicts": {
                name: {"valid": v.valid, "expected": result.expected.get(name), "counts": v.counts}
                for name, v in result.verdicts.items()
            },
            "facts": result.facts,
        }
        print(json.dumps(report, default=str))  # noqa: T201 - a command prints
    else:
        print(result)  # noqa: T201 - a command prints
    return 0 if result.as_expected else 1


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eventlab faults …``: proxy faults, broker faults and scenarios (see ``--help``)."""
    parser = sub.add_parser("faults", help="run or steer the fault proxy (latency, partition, …)")
    actions = parser.add_subparsers(dest="fault_action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state", help="state folder holding proxy.json")
        p.add_argument("--control", type=int, help="control port (default: from proxy.json)")
        p.add_argument("--json", action="store_true", help="print the status on one line")
        p.set_defaults(handler=_cmd_control)

    serve = actions.add_parser("serve", help="run a proxy in the foreground until Ctrl-C")
    serve.add_argument("--upstream", help="broker URL (default: the managed broker)")
    serve.add_argument("--port", type=int, default=0, help="proxy port (default: any free)")
    serve.add_argument("--control-port", type=int, default=0, help="control port")
    serve.add_argument("--seed", type=int, default=0, help="seed for the jitter")
    serve.add_argument("--state", help="state folder for proxy.json")
    serve.set_defaults(handler=_cmd_serve)

    common(actions.add_parser("status", help="show the faults now applied"))
    lat = actions.add_parser("latency", help="delay bytes by SECONDS (0 turns it off)")
    lat.add_argument("seconds", type=float)
    lat.add_argument("--jitter", type=float, default=0.0, help="± seconds, seeded")
    lat.add_argument(
        "--direction", choices=["upstream", "downstream", "both"], default="downstream"
    )
    common(lat)
    bw = actions.add_parser("bandwidth", help="limit to BYTES_PER_SECOND (0 lifts the limit)")
    bw.add_argument("bytes_per_second", type=float)
    bw.add_argument("--direction", choices=["upstream", "downstream", "both"], default="downstream")
    common(bw)
    part = actions.add_parser("partition", help="cut the connection until `heal`")
    part.add_argument("--direction", choices=["upstream", "downstream", "both"], default="both")
    part.add_argument("--mode", choices=["hold", "drop"], default="hold")
    common(part)
    unpart = actions.add_parser("unpartition", help="lift the partition on one direction")
    unpart.add_argument("--direction", choices=["upstream", "downstream", "both"], default="both")
    common(unpart)
    common(actions.add_parser("reset", help="reset every open connection now"))
    common(actions.add_parser("heal", help="clear every network fault"))
    _register_broker_cli(actions)


def _register_broker_cli(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the broker faults and scenarios to ``eventlab faults``."""
    pause = actions.add_parser("pause", help="freeze the managed broker for SECONDS")
    pause.add_argument("seconds", type=float)
    pause.add_argument("--state", help="state folder of the managed broker")
    pause.set_defaults(handler=_cmd_broker)
    kill = actions.add_parser("kill-broker", help="SIGKILL the managed broker (a crash)")
    kill.add_argument("--state", help="state folder of the managed broker")
    kill.set_defaults(handler=_cmd_broker)
    restart = actions.add_parser("restart", help="restart the managed broker")
    restart.add_argument(
        "--persistence", choices=["none", "aof-everysec", "aof-always", "rdb"], default=None
    )
    restart.add_argument("--hard", action="store_true", help="kill -9 instead of SHUTDOWN")
    restart.add_argument("--state", help="state folder of the managed broker")
    restart.set_defaults(handler=_cmd_broker)
    scenario = actions.add_parser(
        "scenario", help="run a seeded failure scenario and print its verdicts (no name: list)"
    )
    scenario.add_argument("name", nargs="?", help="scenario name (omit to list them)")
    scenario.add_argument("--seed", type=int, default=0)
    scenario.add_argument("--state", help="state folder of the broker to use")
    scenario.add_argument("--json", action="store_true", help="one JSON object")
    scenario.set_defaults(handler=_cmd_scenario)
