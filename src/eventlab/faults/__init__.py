"""Break things on purpose: network faults through a proxy, broker, consumer and message faults.

Network faults go through :class:`Proxy`, an asyncio TCP proxy on loopback that
sits between clients and the broker (Toxiproxy needs Docker; this needs
nothing). Clients connect to :attr:`Proxy.url` instead of the broker's URL::

    proxy = faults.start(broker)            # runs in a background thread
    client = redis.Redis.from_url(proxy.url)
    with faults.latency(0.2):               # +0.2 s on every reply
        client.ping()
    with faults.partition(mode="hold"):     # bytes held until healed
        ...

Every network fault applies per direction: ``"upstream"`` (client → broker),
``"downstream"`` (broker → client) or ``"both"``. A fault call applies at once
and returns a :class:`Applied` handle: use it as a context manager, or call
:meth:`Applied.undo`; :func:`heal` clears everything. The same faults can be
toggled from a terminal with ``eventlab faults latency 0.2`` (the proxy serves
a tiny JSON-lines control channel on loopback; its ports are recorded in the
state folder as ``proxy.json``).

Broker, consumer and message faults share the vocabulary (:data:`FAULTS`):
:func:`pause_broker`, :func:`kill_broker`, :func:`restart_broker`,
:func:`kill_consumer`, :func:`slow`, :func:`duplicate_burst`,
:func:`out_of_order`, :func:`poison_event`, :func:`publish_invalid`.
:func:`schedule` builds a seeded nemesis schedule and :class:`Nemesis` runs it,
recording every fault in a :class:`~eventlab.history.History`.

Introduced in lesson 03 (kill a consumer), lesson 04 (poison events) and
lesson 11 (the fault proxy and nemesis schedules).

The package, by job: ``_common`` (:data:`FAULTS`, :class:`Applied`),
``_proxy_controls`` (:class:`Proxy`, :func:`start`, :func:`latency`, …),
``_broker_faults``, ``_consumer_faults``, ``_message_faults`` and ``_nemesis``
(:func:`schedule`, :class:`Nemesis`). Import from ``eventlab.faults``; the
submodules are private. The ``eventlab faults`` command is in
:mod:`eventlab.cli.faults`.
"""

from __future__ import annotations

from eventlab.faults._broker_faults import (
    kill_broker,
    pause_broker,
    require_managed,
    restart_broker,
)
from eventlab.faults._common import FAULTS, Applied, Direction, FaultError
from eventlab.faults._consumer_faults import kill_consumer, slow
from eventlab.faults._message_faults import (
    duplicate_burst,
    invalid_fields,
    out_of_order,
    poison_event,
    publish_invalid,
)
from eventlab.faults._nemesis import Action, Nemesis, Phase, Schedule, Step, schedule
from eventlab.faults._proxy_controls import (
    Proxy,
    RemoteProxy,
    bandwidth,
    current,
    heal,
    latency,
    partition,
    record_path,
    remote,
    reset,
    start,
    stop,
    unpartition,
)

__all__ = [
    "FAULTS",
    "Action",
    "Applied",
    "Direction",
    "FaultError",
    "Nemesis",
    "Phase",
    "Proxy",
    "RemoteProxy",
    "Schedule",
    "Step",
    "bandwidth",
    "current",
    "duplicate_burst",
    "heal",
    "invalid_fields",
    "kill_broker",
    "kill_consumer",
    "latency",
    "out_of_order",
    "partition",
    "pause_broker",
    "poison_event",
    "publish_invalid",
    "record_path",
    "remote",
    "require_managed",
    "reset",
    "restart_broker",
    "schedule",
    "slow",
    "start",
    "stop",
    "unpartition",
]
