"""Consumer faults: kill a consumer process, slow a handler down.

Part of :mod:`eventlab.faults`; import from there.

Introduced in lesson 03 (kill a consumer).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from eventlab.history import History

if TYPE_CHECKING:
    from eventlab.processes import Proc

_T = TypeVar("_T")


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
