"""Orders through the four services on a virtual clock: a trace, and its p99 time to converge.

Each order goes ``orders -> inventory -> billing -> courier`` over real streams
of the broker, one inbox stream per service (``<prefix>:<service>``). A service
is a **step** function: it reads what waits in its inbox under its consumer
group, calls its dependency (a :class:`Gateway`: a payment provider, a stock
database, a courier API), emits one event per order into its outbox stream and
acknowledges. Any step may be written by a learner (lab 10's slow billing
consumer).

Time is **virtual**, so a verdict repeats on a busy laptop: a step costs
:data:`ROUND_TRIP` seconds per round trip its client makes to the broker (a
pipeline is one), plus what its gateway calls cost. Services run in parallel,
each at its own clock; an event emitted at virtual time *t* is delivered to the
next inbox only once that service's clock reaches *t*. :func:`run` returns the
hops as a frame with the columns of :meth:`eventlab.metrics.Metrics.frame`
(``emitted``, ``received``, ``handled`` …), so ``charts.waterfall`` draws one
order and :func:`converge_times` gives each order's time to converge.

Introduced with lab 10 (observability: find the hot spot, fix the slow consumer).
"""

from __future__ import annotations

import heapq
import itertools
import os
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import redis
from redis.connection import Connection
from redis.crc import key_slot

from eventlab import _labkit, broker
from eventlab._errors import EventlabError
from eventlab.envelope import Event
from eventlab.metrics import EVENT_COLUMNS

__all__ = [
    "EMITS",
    "ROUND_TRIP",
    "SERVICES",
    "FlowError",
    "Gateway",
    "Step",
    "batch_step",
    "converge_times",
    "counted_client",
    "p99",
    "round_trips",
    "run",
]

SERVICES = ("orders", "inventory", "billing", "courier")
"""The four services, in the order every order visits them."""

EMITS = {
    "orders": "OrderAccepted",
    "inventory": "StockReserved",
    "billing": "PaymentCaptured",
    "courier": "CourierAssigned",
}
"""What each service emits for an order its gateway accepted (billing: else ``PaymentDeclined``)."""

ROUND_TRIP = 0.001
"""Virtual seconds one round trip to the broker costs (a pipeline is one)."""

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FlowError(EventlabError):
    """A step broke the flow's rules (an event without its cause, an order handled twice)."""


@dataclass(slots=True)
class Gateway:
    """A service's dependency, on the virtual clock: each call costs the same, whatever its size.

    Attributes:
        call_seconds: Virtual seconds one :meth:`call` costs.
        item_seconds: Extra virtual seconds per order in the call.
        declined: Orders this gateway refuses (billing: cards declined).
        max_batch: Most orders one call takes.
        seconds: Virtual seconds spent so far.
        calls: Calls made so far.
        handled: Orders passed to it, with how many times each.
    """

    call_seconds: float
    item_seconds: float = 0.0
    declined: frozenset[str] = frozenset()
    max_batch: int = 100
    seconds: float = 0.0
    calls: int = 0
    handled: Counter[str] = field(default_factory=Counter)

    def call(self, orders: Sequence[str]) -> dict[str, bool]:
        """Handle ``orders`` in one call; return order -> accepted (``False``: declined).

        Raises:
            FlowError: More than :attr:`max_batch` orders in one call.
        """
        if len(orders) > self.max_batch:
            raise FlowError(
                f"one gateway call takes at most {self.max_batch} orders, got {len(orders)}",
                fix="split the batch",
            )
        self.calls += 1
        self.seconds += self.call_seconds + self.item_seconds * len(orders)
        self.handled.update(orders)
        return {order: order not in self.declined for order in orders}


Step = Callable[[redis.Redis, str, str, str, Gateway], Any]
"""``step(client, inbox, outbox, group, gateway)``: handle what waits in ``inbox``, emit, ack."""


def batch_step(count: int) -> Step:
    """Return a step that reads up to ``count`` entries, calls the gateway once, emits, acks.

    Each order's event is ``event.follow(...)`` of the event it answers (correlation
    and causation kept); the events and the acks go out in one ``MULTI``. With
    ``count=1`` it is the slow consumer of lab 10: one order per gateway call.
    """

    def step(client: redis.Redis, inbox: str, outbox: str, group: str, gateway: Gateway) -> int:
        reply: Any = client.xreadgroup(group, group, {inbox: ">"}, count=count)
        entries = [(str(i), dict(f)) for _, batch in reply or [] for i, f in batch]
        if not entries:
            return 0
        events = [Event.from_fields(fields) for _, fields in entries]
        verdicts = gateway.call([str(e.data["order"]) for e in events])
        pipe = client.pipeline(transaction=True)
        for (entry_id, _), event in zip(entries, events, strict=True):
            ok = verdicts[str(event.data["order"])]
            kind = EMITS[group] if ok else "PaymentDeclined"
            out = event.follow(type=kind, source=group, data=dict(event.data))
            pipe.xadd(outbox, out.to_fields())  # type: ignore[arg-type]
            pipe.xack(inbox, group, entry_id)
        pipe.execute()
        return len(entries)

    return step


_BOOKKEEPING = (b"COMMAND", b"CLUSTER")  # a cluster client's own questions (keys, slot map)


class _Counted(Connection):
    """A connection that counts its round trips (one per packet sent).

    Free: the handshake, and what a cluster client asks for itself (``COMMAND
    GETKEYS`` before a command whose keys it cannot place, ``CLUSTER SLOTS``).
    """

    trips = 0
    _handshake = False

    def on_connect_check_health(self, check_health: bool = True) -> None:  # noqa: FBT001, FBT002 - redis-py's signature
        """Connect without counting the handshake (HELLO, CLIENT SETINFO, SELECT)."""
        self._handshake = True
        try:
            super().on_connect_check_health(check_health)
        finally:
            self._handshake = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:  # noqa: FBT001, FBT002 - redis-py's signature
        if not self._handshake and not _bookkeeping(command):
            type(self).trips += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def _bookkeeping(command: Any) -> bool:
    """Whether a packet is a client's own bookkeeping (its first command names it)."""
    head = command if isinstance(command, (bytes, str)) else (command[0] if command else b"")
    head = head.encode() if isinstance(head, str) else bytes(head[:40])
    name = head.split(b"\r\n", 3)[2].upper() if head.count(b"\r\n") >= 3 else b""  # noqa: PLR2004 - *N, $len, NAME
    return name in _BOOKKEEPING


def _counted_client(url: str) -> tuple[redis.Redis, type[_Counted]]:
    """A client for ``url`` (a cluster client on a cluster) whose connections count their trips.

    On a cluster every node's connections are of the one counting class, so a
    step's trips add up whichever nodes it talks to.
    """
    kind = type("Counted", (_Counted,), {"trips": 0})
    client = broker.client_for_url(url, decode_responses=True, connection_class=kind)
    _COUNTERS[client] = kind
    return client, kind


_PROXIED: weakref.WeakSet[redis.Redis] = weakref.WeakSet()
_COUNTERS: weakref.WeakKeyDictionary[redis.Redis, type[_Counted]] = weakref.WeakKeyDictionary()


def counted_client(url: str) -> redis.Redis:
    """Return a client (``decode_responses=True``) that counts its round trips to the broker.

    A command is one round trip; a pipeline (``MULTI``/``EXEC`` or not) is one
    (on a cluster, one per node a non-transactional pipeline spans).
    Read the count with :func:`round_trips`. The labs' stretch checks use it
    ("rebuild in a few round trips"). Under the grader it is a plain client:
    the grader's fault proxy counts the round trips of every connection this
    process opens from now on (a learner's own connection included), so the
    code it is handed cannot tell it is measured.
    """
    control = _labkit._CONTROL  # noqa: SLF001 - set only inside the grader
    if control is not None and control("doom", pid=os.getpid(), before=0).get("ok"):
        client = broker.client_for_url(url, decode_responses=True)
        _PROXIED.add(client)
        return client
    return _counted_client(url)[0]


def round_trips(client: redis.Redis) -> int:
    """Return how many round trips a :func:`counted_client` has made so far (0 for another)."""
    control = _labkit._CONTROL  # noqa: SLF001 - set only inside the grader
    if client in _PROXIED and control is not None:
        return int(control("trips", pid=os.getpid()).get("trips", 0))
    kind = _COUNTERS.get(client)
    return kind.trips if kind is not None else 0


@dataclass(slots=True)
class _Service:
    name: str
    step: Step
    gateway: Gateway
    client: redis.Redis
    counter: type[_Counted]
    inbox: str
    outbox: str
    free: float = 0.0
    cursor: str = "0-0"


def run(
    url: str,
    prefix: str,
    *,
    orders: int,
    interval: float,
    steps: dict[str, Step],
    gateways: dict[str, Gateway],
    max_steps: int = 20_000,
) -> pd.DataFrame:
    """Run ``orders`` orders (one every ``interval`` virtual seconds) through the four services.

    Args:
        url: The broker.
        prefix: Key prefix of the run's streams (``<prefix>:orders`` …); delete them after.
        orders: How many orders (``order-0`` …).
        interval: Virtual seconds between two orders placed.
        steps: Each service's step.
        gateways: Each service's dependency.
        max_steps: Give up after this many steps (a step that never drains its inbox).

    Returns:
        One row per hop, the columns of ``metrics.frame()``: ``group`` is the
        service, ``correlationid`` the order, times on the virtual clock (from
        2026-01-01 UTC).

    On a cluster, ``prefix`` must carry a hash tag (``{lab:flow}``): a step writes
    its outbox and acknowledges its inbox in one transaction, so both share a slot.

    Raises:
        FlowError: A step emitted an event that is not a follow-up of one in its
            inbox, or the flow did not finish within ``max_steps``; on a
            cluster, ``prefix`` has no hash tag.
    """
    if broker.is_cluster(url) and key_slot(f"{prefix}:a".encode()) != key_slot(
        f"{prefix}:b".encode()
    ):
        raise FlowError(
            f"on a cluster the streams of prefix {prefix!r} land in different hash slots",
            fix="put the prefix in a hash tag, e.g. '{lab:flow}' (streams.stream_key gives one)",
        )
    services: list[_Service] = []
    for name in SERVICES:
        client, counter = _counted_client(url)
        inbox = f"{prefix}:{name}"
        outbox = f"{prefix}:{name}:out"
        client.xgroup_create(inbox, name, id="0", mkstream=True)
        services.append(_Service(name, steps[name], gateways[name], client, counter, inbox, outbox))
    admin = broker.client_for_url(url, decode_responses=True)
    try:
        return _loop(admin, services, orders=orders, interval=interval, max_steps=max_steps)
    finally:
        admin.close()
        for service in services:
            service.client.close()


def _loop(
    admin: redis.Redis,
    services: list[_Service],
    *,
    orders: int,
    interval: float,
    max_steps: int,
) -> pd.DataFrame:
    sequence = itertools.count()
    # per service, a heap of (time, seq, fields): events on their way to its inbox
    deliveries: list[list[tuple[float, int, dict[str, str]]]] = [[] for _ in services]
    for number in range(orders):
        placed = Event(
            type="OrderPlaced",
            source="storefront",
            subject=f"order-{number}",
            data={"order": f"order-{number}"},
        )
        heapq.heappush(deliveries[0], (number * interval, next(sequence), placed.to_fields()))
    delivered_at: dict[str, tuple[float, str]] = {}
    unread = [0] * len(services)
    rows: list[tuple[Any, ...]] = []
    for _ in range(max_steps):
        index, now = _next(services, unread, deliveries)
        if index < 0:
            break
        unread[index] += _deliver(admin, services[index], deliveries[index], now, delivered_at)
        service = services[index]
        service.free = now
        trips, spent = service.counter.trips, service.gateway.seconds
        service.step(service.client, service.inbox, service.outbox, service.name, service.gateway)
        cost = (service.counter.trips - trips) * ROUND_TRIP + service.gateway.seconds - spent
        end = now + max(cost, ROUND_TRIP)
        service.free = end
        unread[index] = _unread(admin, service)
        for fields in _emitted(admin, service):
            event = Event.from_fields(fields)
            cause = event.causationid or ""
            if cause not in delivered_at:
                raise FlowError(
                    f"{service.name} emitted {event.type} that answers no event of its inbox",
                    fix="emit event.follow(...) of the event you handled",
                )
            emitted, handled_type = delivered_at.pop(cause)
            rows.append((cause, handled_type, event.correlationid, None, event.source,
                         service.inbox, service.name, service.name, _stamp(emitted),
                         _stamp(now), _stamp(end), 1, "ok"))  # fmt: skip
            final = service.name == "courier" or event.type == "PaymentDeclined"
            if not final:
                heapq.heappush(deliveries[index + 1], (end, next(sequence), fields))
    else:
        raise FlowError(f"the flow did not finish in {max_steps} steps", fix="drain the inbox")
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    for column in ("emitted", "received", "handled"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _next(
    services: list[_Service],
    unread: list[int],
    deliveries: list[list[tuple[float, int, dict[str, str]]]],
) -> tuple[int, float]:
    """The service that acts next, and when: the earliest clock with work waiting."""
    best, at = -1, float("inf")
    for index, service in enumerate(services):
        if unread[index]:
            when = service.free  # read before, at or before its clock
        elif deliveries[index]:
            when = max(service.free, deliveries[index][0][0])
        else:
            continue
        if when < at:
            best, at = index, when
    return best, at


def _deliver(
    admin: redis.Redis,
    service: _Service,
    heap: list[tuple[float, int, dict[str, str]]],
    now: float,
    delivered_at: dict[str, tuple[float, str]],
) -> int:
    """XADD to the service's inbox every event due by ``now``; return how many."""
    pipe = admin.pipeline(transaction=False)
    count = 0
    while heap and heap[0][0] <= now:
        when, _, fields = heapq.heappop(heap)
        pipe.xadd(service.inbox, fields)  # type: ignore[arg-type]
        delivered_at[fields["id"]] = (when, fields["type"])
        count += 1
    if count:
        pipe.execute()
    return count


def _unread(admin: redis.Redis, service: _Service) -> int:
    groups: Any = admin.xinfo_groups(service.inbox)
    return int(groups[0].get("lag") or 0)


def _emitted(admin: redis.Redis, service: _Service) -> list[dict[str, str]]:
    rows: Any = admin.xrange(service.outbox, min="(" + service.cursor, max="+")
    if rows:
        service.cursor = str(rows[-1][0])
    return [dict(fields) for _, fields in rows]


def _stamp(seconds: float) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def converge_times(trace: pd.DataFrame) -> pd.Series:
    """Return each order's time to converge, in seconds: its first hop emitted to its last handled.

    Indexed by ``correlationid`` (the order).
    """
    frame = pd.DataFrame(
        {
            "order": trace["correlationid"],
            "start": pd.to_datetime(trace["emitted"], utc=True),
            "end": pd.to_datetime(trace["handled"], utc=True),
        }
    )
    spans = frame.groupby("order").agg(start=("start", "min"), end=("end", "max"))
    return (spans["end"] - spans["start"]).dt.total_seconds()


def p99(trace: pd.DataFrame) -> float:
    """Return the 99th percentile of :func:`converge_times`, in seconds."""
    return float(converge_times(trace).quantile(0.99))
