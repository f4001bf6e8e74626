"""Wait for a condition by polling it: the one home of ``wait_until`` (lessons and lab checks).

:func:`poll` returns the condition's last value (falsy when time ran out), for a
check that asserts on it; :func:`wait_until` and :func:`await_until` raise
:class:`TimeoutError` instead, for a lesson cell that must not go on silently.
``eventlab.demos`` (lessons 03 and 04) and ``eventlab._labkit`` (lab checks)
re-export them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["await_until", "poll", "wait_until"]


def poll(condition: Callable[[], Any], *, timeout: float, every: float = 0.01) -> Any:
    """Call ``condition()`` every ``every`` seconds until it is truthy or ``timeout`` passes.

    Returns:
        Its first truthy value, else its value at the deadline (falsy).
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


def wait_until(condition: Callable[[], Any], *, timeout: float = 10.0, every: float = 0.01) -> Any:
    """Poll ``condition()`` every ``every`` seconds until it is truthy; return its value.

    Raises:
        TimeoutError: It stayed falsy for ``timeout`` seconds.
    """
    value = poll(condition, timeout=timeout, every=every)
    if not value:
        raise TimeoutError(f"still false after {timeout:.1f} s: {condition}")
    return value


async def await_until(
    condition: Callable[[], Any],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - seconds, like wait_until; the notebooks read it
    every: float = 0.01,
) -> Any:
    """Asyncio :func:`wait_until`: poll without blocking the event loop (consumers keep running)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout:.1f} s: {condition}")
        await asyncio.sleep(every)
    return value
