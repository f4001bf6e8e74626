"""The asyncio engine of the fault proxy (public API in :mod:`eventlab.faults`).

Each accepted client connection gets a connection to the upstream broker and
two pumps, one per direction: ``upstream`` (client → broker) and ``downstream``
(broker → client). A pump reads chunks, stamps their arrival time, and a writer
delivers each chunk when its direction's faults allow: after the latency (plus
seeded jitter, never reordering bytes), at the bandwidth limit, and not at all
while the direction is partitioned (held until healed, or dropped).

A small control server speaks one JSON object per line, so ``eventlab faults``
in a terminal can steer a proxy that runs inside a notebook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

DIRECTIONS = ("upstream", "downstream")
_CHUNK = 65536
_BANDWIDTH_SLICE = 0.01  # seconds of bandwidth per write, so the rate is smooth
_DELAYS_KEPT = 256  # recent jitter draws kept per connection and direction (for inspection)


@dataclass(slots=True)
class DirectionState:
    """The faults currently applied to one direction (mutable, owned by the loop)."""

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: float | None = None  # bytes per second
    partition: str | None = None  # None, "hold" or "drop"


class _Conn:
    def __init__(self, client_writer: asyncio.StreamWriter, *, index: int, seed: int) -> None:
        self.client_writer = client_writer
        self.index = index  # 1 for the proxy's first connection, 2 for the next, …
        # one generator per direction of this connection: its draws depend only
        # on the seed, the connection's index and its own traffic, never on how
        # other connections' chunks interleave with it
        self.rngs = {
            d: random.Random(f"{seed}:{index}:{d}")  # noqa: S311 - seeded jitter
            for d in DIRECTIONS
        }
        self.delays: dict[str, deque[float]] = {d: deque(maxlen=_DELAYS_KEPT) for d in DIRECTIONS}
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.dropped = False  # bytes were discarded: the byte stream is broken

    def abort(self) -> None:
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None:
                _abort(writer)
        for task in self.tasks:
            task.cancel()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER 0: close with a TCP RST, as a real reset does
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Engine:
    """The proxy's state and servers; every method runs on the engine's event loop."""

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int) -> None:
        """Proxy to ``upstream_host:upstream_port``; ``seed`` drives the jitter.

        Each connection's direction draws its jitter from its own generator,
        seeded by (``seed``, connection index, direction), so the same traffic
        gets the same delays whatever the timing between connections.
        """
        self.upstream = (upstream_host, upstream_port)
        self.state = {d: DirectionState() for d in DIRECTIONS}
        self.healed = {d: asyncio.Event() for d in DIRECTIONS}
        for event in self.healed.values():
            event.set()
        self.conns: set[_Conn] = set()
        self.seed = seed
        self.server: asyncio.Server | None = None
        self.control: asyncio.Server | None = None
        self.connections_total = 0
        self.resets_total = 0
        # pumps (one per connection and direction) now holding a chunk for the heal: lets a
        # caller see that bytes are really stuck in a partition, not yet sent
        self.holding = dict.fromkeys(DIRECTIONS, 0)
        self.handlers: set[asyncio.Task[Any]] = set()

    async def start(self, port: int, control_port: int) -> tuple[int, int]:
        """Listen on loopback; return the (proxy port, control port)."""
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.control = await asyncio.start_server(self._control, "127.0.0.1", control_port)
        return _port(self.server), _port(self.control)

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        for server in (self.server, self.control):
            if server is not None:
                server.close()
        for conn in list(self.conns):
            conn.abort()
        self.conns.clear()
        # let every connection handler finish, so none is destroyed while pending
        handlers = [t for t in self.handlers if not t.done()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    # -- faults ---------------------------------------------------------------------

    def apply(self, command: dict[str, Any]) -> dict[str, Any]:  # noqa: C901, PLR0912 - one branch per command
        """Apply one command (the control protocol); return the status."""
        op = command.get("op")
        directions = _directions(command.get("direction", "both"))
        if op == "latency":
            for d in directions:
                self.state[d].latency = float(command.get("seconds", 0.0))
                self.state[d].jitter = float(command.get("jitter", 0.0))
        elif op == "bandwidth":
            rate = command.get("bytes_per_second")
            limit = None if rate is None else float(rate)
            if limit is not None and limit < 0:
                raise ValueError(f"bandwidth must be >= 0 bytes per second (0 = off), got {rate!r}")
            for d in directions:
                self.state[d].bandwidth = limit or None  # 0 lifts the limit
        elif op == "partition":
            mode = command.get("mode", "hold")
            if mode not in {"hold", "drop"}:
                raise ValueError(f"partition mode must be 'hold' or 'drop', got {mode!r}")
            for d in directions:
                self.state[d].partition = mode
                self.healed[d].clear()
        elif op == "unpartition":
            self._unpartition(directions)
        elif op == "clear":
            for d in directions:
                self.state[d] = DirectionState(partition=self.state[d].partition)
        elif op == "heal":
            for d in directions:
                self.state[d] = DirectionState(partition=self.state[d].partition)
            self._unpartition(directions)
        elif op == "reset":
            self.resets_total += len(self.conns)
            for conn in list(self.conns):
                conn.abort()
            self.conns.clear()
        elif op != "status":
            raise ValueError(f"unknown fault command {op!r}")
        return self.status()

    def _unpartition(self, directions: tuple[str, ...]) -> None:
        for d in directions:
            self.state[d].partition = None
            self.healed[d].set()
        # a connection that lost bytes carries a broken byte stream: reset it so
        # the client reconnects cleanly (as a NAT table flush would)
        for conn in [c for c in self.conns if c.dropped]:
            conn.abort()
            self.conns.discard(conn)

    def status(self) -> dict[str, Any]:
        """Return the faults per direction and the connection counts."""
        return {
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "directions": {d: asdict(s) for d, s in self.state.items()},
            "connections": len(self.conns),
            "connections_total": self.connections_total,
            "resets_total": self.resets_total,
            "holding": dict(self.holding),
        }

    # -- pumping --------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)
        self.connections_total += 1
        conn = _Conn(writer, index=self.connections_total, seed=self.seed)
        self.conns.add(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)  # the broker is down: the client sees a reset, as without a proxy
            self.conns.discard(conn)
            return
        conn.upstream_writer = up_writer
        conn.tasks = [
            asyncio.create_task(self._pump(conn, reader, up_writer, "upstream")),
            asyncio.create_task(self._pump(conn, up_reader, writer, "downstream")),
        ]
        with contextlib.suppress(asyncio.CancelledError):
            # closing cancels this handler; ending normally keeps asyncio's
            # stream callback from logging the cancellation as an error
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        self.conns.discard(conn)
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(  # noqa: C901 - the fault checks read best in one loop
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                while data := await reader.read(_CHUNK):
                    queue.put_nowait((loop.time(), data))
            except OSError:
                pass
            queue.put_nowait(None)

        reading = asyncio.create_task(read())
        last_due = 0.0
        paced = 0.0  # bandwidth clock: when the bytes written so far may have left
        try:
            while (item := await queue.get()) is not None:
                arrived, data = item
                if not await self._gate(conn, direction):
                    continue
                state = self.state[direction]
                delay = state.latency
                if state.jitter:
                    delay = max(
                        0.0, delay + conn.rngs[direction].uniform(-state.jitter, state.jitter)
                    )
                    conn.delays[direction].append(delay)
                due = max(arrived + delay, last_due)  # jitter never reorders bytes
                last_due = due
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                    # a partition that began while these bytes sat out their latency
                    # cuts them too: nothing in flight crosses a partition
                    if not await self._gate(conn, direction):
                        continue
                paced = await self._write(writer, data, direction, paced, conn)
            # the sender closed its side: pass the EOF on
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            reading.cancel()

    async def _gate(self, conn: _Conn, direction: str) -> bool:
        """Wait while ``direction`` is held; return False if its bytes are to be dropped."""
        while self.state[direction].partition == "hold":
            self.holding[direction] += 1
            try:
                await self.healed[direction].wait()
            finally:
                self.holding[direction] -= 1
        if self.state[direction].partition == "drop":
            conn.dropped = True
            return False
        return True

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        data: bytes,
        direction: str,
        paced: float,
        conn: _Conn,
    ) -> float:
        """Write ``data`` at the direction's bandwidth; return the updated pacing clock.

        The clock advances by ``len / rate`` per slice from where it stood, not
        from "now", so scheduling overheads do not add up into a slower rate.
        """
        rate = self.state[direction].bandwidth
        if not rate:
            writer.write(data)
            await writer.drain()
            return 0.0
        loop = asyncio.get_running_loop()
        clock = max(paced, loop.time())
        step = max(1, int(rate * _BANDWIDTH_SLICE))
        for offset in range(0, len(data), step):
            if not await self._gate(conn, direction):  # partitioned mid-chunk
                break
            piece = data[offset : offset + step]
            writer.write(piece)
            await writer.drain()
            clock += len(piece) / rate
            if (wait := clock - loop.time()) > 0:
                await asyncio.sleep(wait)
        return clock

    # -- control channel ------------------------------------------------------------

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = {"ok": True, "status": self.apply(json.loads(line))}
                except (ValueError, TypeError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


def _directions(direction: str) -> tuple[str, ...]:
    if direction == "both":
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'upstream', 'downstream' or 'both', got {direction!r}")
    return (direction,)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
