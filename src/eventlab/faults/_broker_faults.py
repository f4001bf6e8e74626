"""Broker faults: pause, kill and restart the managed broker.

Part of :mod:`eventlab.faults`; import from there.

Introduced in lesson 11.
"""

from __future__ import annotations

from eventlab import broker as broker_mod
from eventlab.faults._common import Applied, FaultError, _applied
from eventlab.history import History

# -- broker faults --------------------------------------------------------------------


def pause_broker(
    broker: broker_mod.Broker, seconds: float, *, history: History | None = None
) -> Applied:
    """Freeze the managed broker for ``seconds`` (SIGSTOP, then SIGCONT).

    Simulates a long GC pause, a stalled VM or a saturated disk: connections stay
    open but nothing answers. ``undo()`` resumes early. Refused on a broker the
    kit did not start (``REDIS_URL``): freezing it would freeze everyone on it.
    """
    _need_managed(broker, "pause")
    broker.pause(seconds)
    return _applied("pause", {"seconds": seconds}, broker.resume, history)


def kill_broker(broker: broker_mod.Broker, *, history: History | None = None) -> Applied:
    """SIGKILL the managed broker (a crash or power cut); ``undo()`` restarts it."""
    _need_managed(broker, "kill")
    broker.kill()
    return _applied("kill", {"persistence": broker.persistence}, broker.restart, history)


def restart_broker(
    broker: broker_mod.Broker,
    *,
    persistence: broker_mod.Persistence | None = None,
    graceful: bool = True,
    history: History | None = None,
) -> broker_mod.Broker:
    """Restart the managed broker (``graceful=False`` is kill -9 then start) under ``persistence``.

    What survives depends on the mode: ``none`` keeps nothing, ``rdb`` keeps the
    last snapshot, ``aof-everysec`` loses about a second, ``aof-always`` nothing.
    """
    _need_managed(broker, "restart")
    details = {"persistence": persistence or broker.persistence, "graceful": graceful}
    if history is not None:
        history.nemesis("restart", "start", **details)
    try:
        return broker.restart(persistence=persistence, graceful=graceful)
    finally:
        if history is not None:
            history.nemesis("restart", "stop")


def require_managed(broker: broker_mod.Broker, what: str) -> None:
    """Refuse ``what`` (a pause, restart, kill or flush) on a broker the kit did not start.

    A ``REDIS_URL`` broker may be a whole workshop room's: no lesson may pause,
    restart or flush it.

    Raises:
        FaultError: ``broker`` is not managed by eventlab (one line with the fix).
    """
    _need_managed(broker, what)


def _need_managed(broker: broker_mod.Broker, what: str) -> None:
    if not broker.managed:
        raise FaultError(
            f"{what} needs a broker that eventlab manages; REDIS_URL names one it did not "
            "start (maybe a whole room's)",
            fix="unset REDIS_URL so eventlab starts its own broker",
        )
