"""A fault proxy in front of the broker for a whole graded process: crashes below learner code.

The grader (:mod:`eventlab.grading`) starts one :class:`FaultProxy` per grading
run, in its own process, and gives the graded child the proxy's address as
*the* broker URL (``REDIS_URL``, ``ctx.url``). Every connection the child — or
any process it forks — opens to the broker goes through it, whatever client
library, connection class or socket opened it; nothing in the child's process
differs from a normal run (no patched class, no extra thread).

A check dooms a process it forked (:func:`eventlab._labkit.fork` with
``die_before=n``): the proxy counts the commands that process sends, on all
of its connections (found by their socket in ``/proc/<pid>/fd``), and when the
``n``-th *counted* command arrives it SIGKILLs the process and drops the
command: commands 1 … n-1 ran, command n never reaches the server. Swept over
n = 1, 2, …, the crash lands once in every gap between two commands of the
learner's code, whatever their order.

Counted: every command except the reads and bookkeeping in
:data:`eventlab._crash.BACKGROUND` (a consumer's ``XREADGROUP``…), calls of
ignored scripts, and the inside of a transaction: ``MULTI`` … ``EXEC`` counts
as one command (``EXEC``), so a transaction is never cut in two; one ``EVAL``
is one command. A non-transactional pipeline is several commands (it is not
atomic, and a crash may split it).

On a Redis Cluster the proxy stands in front of every node: it rewrites the
node addresses a cluster client learns (``CLUSTER SLOTS``, ``MOVED`` and
``ASK`` redirections) into addresses of its own, one listener per node, so a
cluster client's connections to every node go through it too.

Linux only (``/proc``); plain TCP brokers only (``redis://``): the grader runs
without the proxy otherwise, and :func:`eventlab._labkit.fork` falls back to
counting in the doomed process (:mod:`eventlab._crash`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from eventlab import broker
from eventlab._crash import BACKGROUND

__all__ = ["FaultProxy", "parse_commands"]

_CHUNK = 65536
# Not a round trip: the handshake, and a cluster client's own questions (keys, slot map).
_HANDSHAKE = frozenset({b"HELLO", b"AUTH", b"CLIENT", b"SELECT", b"COMMAND", b"CLUSTER"})
_NOT_COUNTED = BACKGROUND | {"XAUTOCLAIM", "XCLAIM", "WATCH", "UNWATCH", "QUIT", "RESET"}


def parse_commands(buffer: bytes) -> list[tuple[list[bytes], int]]:
    """Split RESP requests off the front of ``buffer``: ``[(args, end offset), …]``.

    Stops at the first incomplete request (its bytes stay for the next read).
    Inline commands (a plain line) are accepted too.
    """
    found: list[tuple[list[bytes], int]] = []
    at = 0
    size = len(buffer)
    while at < size:
        if buffer[at : at + 1] != b"*":
            end = buffer.find(b"\r\n", at)
            if end < 0:
                break
            found.append((buffer[at:end].split(), end + 2))
            at = end + 2
            continue
        end = buffer.find(b"\r\n", at)
        if end < 0:
            break
        count = int(buffer[at + 1 : end])
        pos = end + 2
        args: list[bytes] = []
        complete = True
        for _ in range(max(count, 0)):
            line = buffer.find(b"\r\n", pos)
            if line < 0 or buffer[pos : pos + 1] != b"$":
                complete = False
                break
            length = int(buffer[pos + 1 : line])
            start = line + 2
            if start + length + 2 > size:
                complete = False
                break
            args.append(buffer[start : start + length])
            pos = start + length + 2
        if not complete:
            break
        found.append((args, pos))
        at = pos
    return found


@dataclass(slots=True, eq=False)
class _Doom:
    """One doomed process: what to count, how far, what was counted."""

    pid: int
    before: int
    only: frozenset[str] | None
    ignore_shas: frozenset[str]
    counted: list[str] = field(default_factory=list)
    dead: bool = False
    trips: int = 0


@dataclass(slots=True, eq=False)
class _Link:
    """One proxied connection (``port``: the proxy's listening port it came in on)."""

    client: socket.socket
    server: socket.socket
    port: int
    doom: _Doom | None = None
    in_multi: bool = False
    waiting: int = 0  # commands sent and not yet answered: a send with none waiting is a trip
    replies: bytes = b""  # an incomplete reply, while the server's answer is counted


class FaultProxy:
    """A TCP proxy to ``upstream`` that kills doomed processes between two of their commands."""

    def __init__(self, upstream: str) -> None:
        """Listen on a free port of 127.0.0.1, forwarding to the broker at URL ``upstream``."""
        parts = urlsplit(upstream)
        self._upstream = upstream
        self._lock = threading.Lock()
        self._dooms: dict[int, _Doom] = {}
        self._links: set[_Link] = set()
        self._closed = False
        self._cluster = broker.is_cluster(upstream)
        # upstream node (host, port) -> (listener, its port, accept thread)
        self._nodes: dict[tuple[str, int], tuple[socket.socket, int, threading.Thread]] = {}
        self.port = self._listen((parts.hostname or "127.0.0.1", parts.port or 6379))

    @staticmethod
    def supports(url: str) -> bool:
        """Whether ``url`` can be proxied (plain TCP, Linux ``/proc``)."""
        return urlsplit(url).scheme == "redis" and Path("/proc/net/tcp").exists()

    @property
    def url(self) -> str:
        """The upstream URL with the proxy's address: what the graded process connects to."""
        parts = urlsplit(self._upstream)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        netloc = f"{auth}127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def doom(
        self,
        pid: int,
        *,
        before: int,
        only: Collection[str] | None = None,
        ignore_scripts: Collection[str] = (),
    ) -> None:
        """Kill ``pid`` when its ``before``-th counted command arrives (0: only count).

        Args:
            pid: The process (its connections opened from now on are watched).
            before: The counted command that is never sent; ``0`` counts only.
            only: Count only these command names (``None``: all but background ones).
            ignore_scripts: Lua script texts whose calls are not counted.
        """
        shas = frozenset(
            hashlib.sha1(s.encode(), usedforsecurity=False).hexdigest() for s in ignore_scripts
        )
        names = None if only is None else frozenset(n.upper() for n in only)
        with self._lock:
            self._dooms[pid] = _Doom(pid=pid, before=before, only=names, ignore_shas=shas)

    def counted(self, pid: int) -> list[str]:
        """The command names counted so far for doomed ``pid`` (forgets it)."""
        with self._lock:
            doom = self._dooms.pop(pid, None)
        return list(doom.counted) if doom is not None else []

    def trips(self, pid: int) -> int:
        """Round trips made so far by watched ``pid`` on connections opened since :meth:`doom`.

        A round trip is one write of one or more commands before the next reply
        (a pipeline is one); the connection handshake is free.
        """
        with self._lock:
            doom = self._dooms.get(pid)
        return doom.trips if doom is not None else 0

    def close(self) -> None:
        """Stop accepting and close every proxied connection."""
        self._closed = True
        with self._lock:
            nodes = list(self._nodes.values())
            links = list(self._links)
            self._dooms.clear()
        for listener, _, _ in nodes:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            with contextlib.suppress(OSError):
                listener.close()
        for link in links:
            _close(link)
        for _, _, thread in nodes:
            thread.join(2.0)

    # -- internals ---------------------------------------------------------------------

    def _listen(self, target: tuple[str, int]) -> int:
        """The proxy's port for upstream node ``target``: a new listener the first time."""
        with self._lock:
            known = self._nodes.get(target)
            if known is not None:
                return known[1]
            listener = socket.create_server(("127.0.0.1", 0))
            port = int(listener.getsockname()[1])
            thread = threading.Thread(
                target=self._accept, args=(listener, target, port), name="eventlab-fault-proxy"
            )
            thread.daemon = True
            self._nodes[target] = (listener, port, thread)
        thread.start()
        return port

    def _accept(self, listener: socket.socket, target: tuple[str, int], port: int) -> None:
        while not self._closed:
            try:
                client, peer = listener.accept()
            except OSError:
                return
            try:
                self._open(client, int(peer[1]), target, port)
            except Exception:  # noqa: BLE001 - one bad connection never stops the proxy
                with contextlib.suppress(OSError):
                    client.close()

    def _open(
        self, client: socket.socket, client_port: int, target: tuple[str, int], port: int
    ) -> None:
        """Connect an accepted client to its broker node and start its two pumps."""
        server = socket.create_connection(target, timeout=5.0)
        server.settimeout(None)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client=client, server=server, port=port)
        with self._lock:
            dooms = [d for d in self._dooms.values() if not d.dead]
            self._links.add(link)
        dooms = [d for d in dooms if _running(d.pid)]  # a doomed process that ended opens nothing
        if dooms:
            link.doom = _owner(client_port, port, dooms)
        for pump in (self._up, self._down):
            threading.Thread(target=pump, args=(link,), daemon=True).start()

    def _down(self, link: _Link) -> None:
        """Server to client: bytes as they come (on a cluster: whole replies, addresses ours)."""
        try:
            while data := link.server.recv(_CHUNK):
                if self._cluster:
                    data, link.replies, answered = self._readdress(link.replies + data)
                elif link.doom is not None:
                    answered, link.replies = _count_replies(link.replies + data)
                if link.doom is not None:
                    with self._lock:
                        link.waiting = max(link.waiting - answered, 0)
                if data:
                    link.client.sendall(data)
        except (OSError, ValueError):  # ValueError: a reply that is not RESP; the link ends
            pass
        _close(link)
        with self._lock:
            self._links.discard(link)

    def _readdress(self, buffer: bytes) -> tuple[bytes, bytes, int]:
        """Whole replies of ``buffer`` with node addresses made the proxy's; the rest; how many."""
        out: list[bytes] = []
        count, at = 0, 0
        while at < len(buffer):
            end = _reply_end(buffer, at)
            if end < 0:
                break
            reply = buffer[at:end]
            if reply.startswith((b"-MOVED ", b"-ASK ")):
                reply = self._redirect(reply)
            elif _SLOTS_HEAD.match(reply):  # an array of arrays of integers first: maybe the map
                reply = self._slots(reply)
            out.append(reply)
            count, at = count + 1, end
        return b"".join(out), buffer[at:], count

    def _redirect(self, reply: bytes) -> bytes:
        """``-MOVED <slot> <host>:<port>`` (or ``-ASK``) pointing at the proxy's listener."""
        kind, slot, address = reply[1:-2].decode().split(" ", 2)
        host, _, port = address.rpartition(":")
        mine = self._listen((host or "127.0.0.1", int(port)))
        return f"-{kind} {slot} 127.0.0.1:{mine}\r\n".encode()

    def _slots(self, reply: bytes) -> bytes:
        """A ``CLUSTER SLOTS`` reply with every node's address the proxy's (other replies as is)."""
        try:
            tree, end = _parse(reply, 0)
        except (ValueError, IndexError):
            return reply
        if end != len(reply) or not _is_slot_map(tree):
            return reply
        for _, span in tree[1]:  # each (b"*", [start, end, node, node…])
            for _, node in span[2:]:  # each node [host, port, id, …]
                host = node[0][1].decode() or "127.0.0.1"
                mine = self._listen((host, int(node[1][1])))
                node[0], node[1] = (b"$", b"127.0.0.1"), (b":", mine)
        return _encode(tree)

    def _up(self, link: _Link) -> None:
        """Client to server: bytes as they come, command by command for a doomed process."""
        pending = b""
        try:
            while data := link.client.recv(_CHUNK):
                if link.doom is None:
                    link.server.sendall(data)
                    continue
                pending += data
                cut = self._cut(link, pending)
                if cut is None:
                    break  # the process was killed: nothing more of it reaches the server
                link.server.sendall(pending[:cut])
                pending = pending[cut:]
        except (OSError, ValueError):
            pass
        _close(link)

    def _cut(self, link: _Link, pending: bytes) -> int | None:
        """How many bytes of ``pending`` may go to the server; ``None``: the process dies."""
        doom = link.doom
        if doom is None:
            return len(pending)
        allowed = 0
        for args, end in parse_commands(pending):
            if doom.dead:
                return None
            with self._lock:
                fresh = not link.waiting and not link.in_multi  # a transaction is one trip
                if fresh and args and args[0].upper() not in _HANDSHAKE:
                    doom.trips += 1  # nothing left to answer: this send starts a round trip
                link.waiting += 1
            if self._counts(link, doom, args):
                with self._lock:
                    doom.counted.append(args[0].decode(errors="replace").upper())
                    due = len(doom.counted) == doom.before
                if due:
                    doom.dead = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(doom.pid, signal.SIGKILL)
                    return None
            allowed = end
        return None if doom.dead else allowed

    @staticmethod
    def _counts(link: _Link, doom: _Doom, args: list[bytes]) -> bool:  # noqa: PLR0911 - one rule per return
        if not args:
            return False
        name = args[0].decode(errors="replace").upper()
        if name == "MULTI":
            link.in_multi = True
            return False
        if link.in_multi:
            if name not in {"EXEC", "DISCARD"}:
                return False  # queued: it runs with EXEC, as one step
            link.in_multi = False
            if name == "DISCARD":
                return False
        if doom.only is not None:
            return name in doom.only
        if name in _NOT_COUNTED:
            return False
        if name.startswith("EVAL") and len(args) > 1:
            body = args[1].decode(errors="replace")
            sha = body.lower() if name.startswith("EVALSHA") else _sha(body)
            return sha not in doom.ignore_shas
        return True


def _reply_end(buffer: bytes, at: int) -> int:
    """Where the RESP reply starting at ``at`` ends; -1 if it is not complete yet."""
    line = buffer.find(b"\r\n", at)
    if line < 0:
        return -1
    kind, head = buffer[at : at + 1], buffer[at + 1 : line]
    end = line + 2
    if kind in b"$!=" and kind:
        size = int(head)
        if size < 0:
            return end
        return end + size + 2 if end + size + 2 <= len(buffer) else -1
    if kind in b"*~>%|" and kind:
        items = max(int(head), 0) * (2 if kind in b"%|" else 1)
        for _ in range(items):
            end = _reply_end(buffer, end)
            if end < 0:
                return -1
        return _reply_end(buffer, end) if kind == b"|" else end  # an attribute precedes a reply
    return end  # + - : _ , # ( : one line


_SLOTS_HEAD = re.compile(rb"\*\d+\r\n\*\d+\r\n:")

Resp = tuple[bytes, Any]
"""A parsed RESP2/RESP3 reply: (type byte, value); an aggregate's value is a list of them."""

_SIZED = frozenset({b"$", b"=", b"!"})
_AGGREGATES = {b"*": 1, b"~": 1, b">": 1, b"%": 2}  # items per counted element


def _parse(buffer: bytes, at: int) -> tuple[Resp, int]:
    """Parse the complete reply at ``at``; return it and where it ends."""
    line = buffer.index(b"\r\n", at)
    kind, head, end = buffer[at : at + 1], buffer[at + 1 : line], line + 2
    if kind in _SIZED:
        size = int(head)
        if size < 0:
            return (kind, None), end
        return (kind, buffer[end : end + size]), end + size + 2
    if kind in _AGGREGATES:
        if int(head) < 0:
            return (kind, None), end
        items: list[Resp] = []
        for _ in range(int(head) * _AGGREGATES[kind]):
            item, end = _parse(buffer, end)
            items.append(item)
        return (kind, items), end
    if kind in {b"+", b"-", b":", b"_", b",", b"#", b"("}:
        return (kind, head), end
    raise ValueError(f"a reply this proxy does not rewrite: {kind!r}")  # attributes: as they are


def _encode(reply: Resp) -> bytes:
    """The bytes of a reply :func:`_parse` read (its values possibly changed)."""
    kind, value = reply
    if value is None:
        return kind + b"-1\r\n"
    if kind in _SIZED:
        return b"%s%d\r\n%s\r\n" % (kind, len(value), value)
    if kind in _AGGREGATES:
        count = len(value) // _AGGREGATES[kind]
        return b"%s%d\r\n" % (kind, count) + b"".join(_encode(item) for item in value)
    return kind + (b"%d" % value if isinstance(value, int) else value) + b"\r\n"


def _is_slot_map(tree: Resp) -> bool:
    """Whether a reply has the shape of ``CLUSTER SLOTS``: [[start, end, [host, port, …]…]…]."""

    def node(item: Resp) -> bool:
        return (
            item[0] == b"*"
            and len(item[1] or ()) >= 2  # noqa: PLR2004 - host and port at least
            and item[1][0][0] == b"$"
            and item[1][0][1] is not None
            and item[1][1][0] == b":"
        )

    def span(item: Resp) -> bool:
        values = item[1] or []
        return (
            item[0] == b"*"
            and len(values) >= 3  # noqa: PLR2004 - start, end, a primary
            and values[0][0] == values[1][0] == b":"
            and all(node(n) for n in values[2:])
        )

    return tree[0] == b"*" and bool(tree[1]) and all(span(s) for s in tree[1])


def _count_replies(buffer: bytes) -> tuple[int, bytes]:
    """How many whole replies ``buffer`` holds, and the incomplete rest."""
    count, at = 0, 0
    while at < len(buffer):
        end = _reply_end(buffer, at)
        if end < 0:
            break
        count, at = count + 1, end
    return count, buffer[at:]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _close(link: _Link) -> None:
    for sock in (link.client, link.server):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def _owner(client_port: int, proxy_port: int, dooms: list[_Doom]) -> _Doom | None:
    """The doomed process holding the client end of a connection, found through ``/proc``."""
    inode = _client_inode(client_port, proxy_port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for doom in dooms:
        try:
            entries = list(Path(f"/proc/{doom.pid}/fd").iterdir())
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if str(entry.readlink()) == wanted:
                    return doom
    return None


def _client_inode(client_port: int, proxy_port: int) -> str | None:
    """The inode of the client end of a loopback connection (one search of /proc/net/tcp)."""
    pattern = f"0100007F:{client_port:04X} 0100007F:{proxy_port:04X} ".encode()
    try:
        table = Path("/proc/net/tcp").read_bytes()
    except OSError:
        return None
    at = table.find(pattern)
    if at < 0:
        return None
    line = table[at : table.find(b"\n", at)].split()
    return line[8].decode() if len(line) > 8 else None  # noqa: PLR2004 - the inode column
