"""eventlab: a hands-on course and lab kit on eventual consistency over Redis Streams.

Import the modules by concept: ``eventlab.broker``, ``eventlab.envelope``,
``eventlab.streams`` and the rest (docs/architecture.md lists them by role).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eventlab")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["__version__"]
