"""Network faults: the fault proxy, its controls in this process and in another.

Part of :mod:`eventlab.faults`; import from there.

Introduced in lesson 11.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import redis

from eventlab import broker as broker_mod
from eventlab._proxy import Engine
from eventlab.faults._common import _RECORD, Applied, Direction, FaultError, _applied
from eventlab.history import History

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


def record_path(state: str | os.PathLike[str] | None = None) -> Path:
    """Return the ``proxy.json`` in the state folder: the ports of the proxy :func:`start` recorded.

    Introduced in lesson 11 (``eventlab faults`` reads it to find the proxy).
    """
    return broker_mod.state_dir(state) / _RECORD


def remote(
    *, control_port: int | None = None, state: str | os.PathLike[str] | None = None
) -> RemoteProxy:
    """Return controls for a proxy in another process (port given, or read from ``proxy.json``)."""
    if control_port is None:
        path = record_path(state)
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
