"""Set the shop up, place orders, and read its two views of each order.

The **optimistic** view is what the customer sees the moment the order is
accepted ("accepted, pending"); the **authoritative** view is the order's
terminal state once every service has done its part. :func:`convergence_frame`
measures, per order, how long the two disagreed.

Introduced in lesson 06.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pandas as pd
import redis
import redis.asyncio

from eventlab import schema, streams
from eventlab.envelope import Event
from eventlab.shop import events
from eventlab.shop._service import Service
from eventlab.shop.billing import Billing
from eventlab.shop.courier import Courier
from eventlab.shop.inventory import Inventory, restock
from eventlab.shop.orders import Orders

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.client import Pipeline


class _Outbox(Protocol):
    """What :func:`place_order` needs of an outbox (:class:`eventlab.shop.outbox.Outbox`)."""

    def commit(self, event: Event, write: Callable[[Pipeline], Any] | None = None) -> None:
        """Write the state change and the event in one ``MULTI``."""


__all__ = [
    "CONVERGENCE_COLUMNS",
    "DEFAULT_STOCK",
    "Saga",
    "convergence_frame",
    "disagreement_frame",
    "make_services",
    "order_events",
    "order_placed",
    "owners",
    "place_order",
    "random_orders",
    "record_order",
    "reset",
    "setup",
    "submit_order",
    "transitions_frame",
    "views_frame",
    "writers_frame",
]

Saga = Literal["choreography", "orchestration"]
"""How the order flow is coordinated."""

DEFAULT_STOCK = {"apple": 1_000_000, "pear": 1_000_000, "plum": 1_000_000}
"""Stock :func:`setup` adds unless told otherwise."""

CONVERGENCE_COLUMNS = (
    "order_id",
    "saga",
    "placed",
    "accepted",
    "terminal",
    "outcome",
    "reason",
    "seconds_to_converge",
)
"""Columns of :func:`convergence_frame`."""


def reset(client: redis.Redis) -> int:
    """Delete the shop's stream, dead letters and every service's keys (not the registry)."""
    keys = [events.stream(), streams.dlq_key(events.stream())]
    keys += list(client.scan_iter(match=f"{events.stream()}:*", count=1000))
    deleted = 0
    for start in range(0, len(keys), 500):
        deleted += int(client.delete(*keys[start : start + 500]))
    return deleted


def setup(
    client: redis.Redis,
    *,
    stock: Mapping[str, int] | None = None,
    registry: schema.Registry | None = None,
) -> schema.Registry:
    """Register the shop's schemas, create every service's group at ``0``, add stock.

    Returns:
        The registry (pass it to the services and to :func:`place_order`).
    """
    reg = registry or schema.Registry(client)
    events.register_schemas(reg)
    for name in events.SERVICES:
        streams.create_group(client, events.stream(), name, start="0")
    restock(client, DEFAULT_STOCK if stock is None else stock, registry=reg)
    return reg


def make_services(
    client: redis.asyncio.Redis,
    registry: schema.Registry,
    *,
    step_timeouts: dict[str, float] | None = None,
) -> list[Service]:
    """Return the four services (orders, inventory, billing, courier) bound to ``client``."""
    return [
        Orders(client, registry, step_timeouts=step_timeouts),
        Inventory(client, registry),
        Billing(client, registry),
        Courier(client, registry),
    ]


def place_order(
    client: redis.Redis,
    *,
    registry: schema.Registry,
    customer: str,
    items: Sequence[Mapping[str, Any]],
    total: int,
    zone: str = "central",
    saga: Saga = "choreography",
    order_id: str | None = None,
    outbox: _Outbox | None = None,
) -> Event:
    """Publish ``OrderPlaced`` (validated against the registry); return the event.

    Without ``outbox`` the storefront keeps no state of its own: the publish is its
    one write. With ``outbox`` (lesson 06) it records the order in its own
    ``{lab:shop}:storefront:orders`` hash *and* the event in its outbox, in one
    ``MULTI``; the outbox's relay publishes it (:mod:`eventlab.shop.outbox`).

    Args:
        client: A sync client.
        registry: The schema registry.
        customer: Who orders (billing may decline their card).
        items: ``[{"sku": "apple", "qty": 2}, …]``.
        total: The price in cents.
        zone: The delivery zone (courier may have none there).
        saga: ``"choreography"`` or ``"orchestration"``.
        order_id: Default: a new ``order-<hex>``.
        outbox: The storefront's outbox (default: publish straight to the stream).
    """
    event = order_placed(
        registry=registry,
        customer=customer,
        items=items,
        total=total,
        zone=zone,
        saga=saga,
        order_id=order_id,
    )
    submit_order(client, event, outbox=outbox)
    return event


def submit_order(client: redis.Redis, event: Event, *, outbox: _Outbox | None = None) -> None:
    """Send a built ``OrderPlaced``: straight to the stream, or through the storefront's outbox.

    Through ``outbox``: the storefront's record (:func:`record_order`) and the event in
    one ``MULTI``, published later by the relay. What :func:`place_order` does after
    building the event.
    """
    if outbox is None:
        streams.publish(client, events.stream(), event)
    else:
        outbox.commit(event, lambda pipe: record_order(pipe, event))


def record_order(client: redis.Redis | Pipeline, event: Event) -> None:
    """Write the storefront's own record of a placed order (order id → customer).

    The storefront's state, under its prefix: the "my orders" list a customer sees.
    A dual write does this and the publish as two steps (lesson 06).
    """
    client.hset(events.key("storefront", "orders"), str(event.subject), event.data["customer"])


def order_placed(
    *,
    registry: schema.Registry,
    customer: str,
    items: Sequence[Mapping[str, Any]],
    total: int,
    zone: str = "central",
    saga: Saga = "choreography",
    order_id: str | None = None,
    validate: bool = True,
) -> Event:
    """Return the storefront's ``OrderPlaced`` event, stamped and validated, not published.

    ``validate=False`` only stamps it: lesson 06's writer processes skip validation
    (and so the 2 s import of ``jsonschema``) to start fast; every consumer validates.
    """
    oid = order_id or f"order-{uuid.uuid4().hex[:12]}"
    check = registry.validate if validate else (lambda event: event)
    return check(
        registry.stamp(
            Event(
                type="OrderPlaced",
                source="storefront",
                subject=oid,
                data={
                    "order_id": oid,
                    "customer": customer,
                    "items": [{"sku": i["sku"], "qty": int(i["qty"])} for i in items],
                    "total": int(total),
                    "zone": zone,
                    "saga": saga,
                },
                extensions={"seq": "1"},
            )
        )
    )


def random_orders(
    n: int,
    *,
    seed: int = 0,
    saga: Saga = "choreography",
    skus: Sequence[str] = tuple(DEFAULT_STOCK),
    customers: int = 50,
    zones: Sequence[str] = ("central", "north", "south"),
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` seeded orders as keyword arguments for :func:`place_order`."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    for number in range(n):
        qty = {sku: rng.randint(1, 3) for sku in rng.sample(list(skus), rng.randint(1, len(skus)))}
        items = [{"sku": sku, "qty": n} for sku, n in qty.items()]
        yield {
            "order_id": f"order-{seed}-{number:06d}",
            "customer": f"customer-{rng.randrange(customers)}",
            "items": items,
            "total": 100 * sum(qty.values()),
            "zone": rng.choice(list(zones)),
            "saga": saga,
        }


def order_events(client: redis.Redis) -> pd.DataFrame:
    """Return the log as a DataFrame: entry_id, id, type, source, subject, time, seq, data."""
    rows = [
        {
            "entry_id": entry_id,
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "time": event.time,
            "seq": events.seq_of(event),
            "data": event.data,
        }
        for entry_id, event in streams.replay(client, events.stream())
    ]
    frame = pd.DataFrame(
        rows, columns=["entry_id", "id", "type", "source", "subject", "time", "seq", "data"]
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def transitions_frame(client: redis.Redis) -> pd.DataFrame:
    """Return one row per order event on the log: ``aggregate`` (order id), ``state`` (event type).

    The shape :func:`eventlab.checker.one_terminal_state` reads. Events with the same id
    (re-published copies) count once.
    """
    log = order_events(client)
    # an event re-published (same id: a relay or producer retry) is one fact, not two
    log = log[log["subject"] != "stock"].drop_duplicates("id")
    return pd.DataFrame({"aggregate": log["subject"].astype(str), "state": log["type"]})


def convergence_frame(client: redis.Redis) -> pd.DataFrame:
    """Per order: when placed, accepted and terminal, the outcome, and seconds accepted → terminal.

    ``terminal``/``outcome`` are missing (NaT/None) for orders not yet settled.
    """
    rows: dict[str, dict[str, Any]] = {}
    for _, event in streams.replay(client, events.stream()):
        if event.type not in {"OrderPlaced", "OrderAccepted", *events.TERMINAL}:
            continue
        order = rows.setdefault(
            str(event.subject),
            {
                "order_id": event.subject,
                "saga": None,
                "placed": pd.NaT,
                "accepted": pd.NaT,
                "terminal": pd.NaT,
                "outcome": None,
                "reason": None,
            },
        )
        if event.type == "OrderPlaced":
            if pd.isna(order["placed"]):  # a storefront retry places it again: keep the first
                order["placed"], order["saga"] = event.time, event.data["saga"]
        elif event.type == "OrderAccepted":
            order["accepted"] = event.time
        elif pd.isna(order["terminal"]):
            order["terminal"] = event.time
            order["outcome"] = "confirmed" if event.type == "OrderConfirmed" else "cancelled"
            order["reason"] = event.data.get("reason")
    frame = pd.DataFrame(list(rows.values()), columns=list(CONVERGENCE_COLUMNS[:-1]))
    for column in ("placed", "accepted", "terminal"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["seconds_to_converge"] = (frame["terminal"] - frame["accepted"]).dt.total_seconds()
    return frame


def views_frame(client: redis.Redis, *, at: datetime | None = None) -> pd.DataFrame:
    """Per order, the optimistic and the authoritative status as of ``at`` (default now).

    Columns: order_id, optimistic ("accepted, pending" once accepted, else "placed"),
    authoritative ("pending" until terminal, then "confirmed"/"cancelled"), agree (bool).
    """
    moment = pd.Timestamp(at or datetime.now(UTC))
    frame = convergence_frame(client)
    accepted = frame["accepted"].notna() & (frame["accepted"] <= moment)
    terminal = frame["terminal"].notna() & (frame["terminal"] <= moment)
    optimistic = pd.Series("placed", index=frame.index).where(~accepted, "accepted, pending")
    authoritative = pd.Series("pending", index=frame.index).where(~terminal, frame["outcome"])
    optimistic = optimistic.where(~terminal, frame["outcome"])
    return pd.DataFrame(
        {
            "order_id": frame["order_id"],
            "optimistic": optimistic,
            "authoritative": authoritative,
            "agree": optimistic == authoritative,
        }
    )


def disagreement_frame(client: redis.Redis, *, samples: int = 60) -> pd.DataFrame:
    """How many orders' optimistic view differed from the authoritative one, over time.

    Returns ``samples`` rows with columns ``time`` (datetime64 UTC) and ``disagreeing``
    (int), from the first order placed to the last one settled: the frame
    :func:`eventlab.checker.convergence` judges and ``charts.convergence`` draws.
    """
    frame = convergence_frame(client)
    if frame.empty:
        return pd.DataFrame(
            {"time": pd.Series([], dtype="datetime64[ns, UTC]"), "disagreeing": []}
        ).astype({"disagreeing": "int64"})
    end = frame["terminal"].max() if frame["terminal"].notna().any() else frame["placed"].max()
    moments = pd.date_range(frame["placed"].min(), end, periods=samples)
    # disagree from acceptance until terminal (or for ever, if not settled yet)
    accepted = frame["accepted"].to_numpy()
    terminal = frame["terminal"].fillna(pd.Timestamp.max.tz_localize("UTC")).to_numpy()
    counts = [int(((accepted <= m) & (terminal > m)).sum()) for m in moments.to_numpy()]
    return pd.DataFrame({"time": moments, "disagreeing": counts}).astype({"disagreeing": "int64"})


def owners() -> dict[str, str]:
    """Return each shop event type's one writer (type → service), from the services' ``emits``.

    The rule on a shared log (lessons 01 and 06): every event type has exactly one
    owner, the only ``source`` allowed to append it. ``OrderPlaced`` is the storefront's.
    """
    owned = {"OrderPlaced": "storefront"}
    for service in (Orders, Inventory, Billing, Courier):
        for kind in service.emits:
            if owned.setdefault(kind, service.name) != service.name:
                raise ValueError(f"{kind} is emitted by {owned[kind]} and {service.name}")
    return owned


def writers_frame(client: redis.Redis) -> pd.DataFrame:
    """Per (event type, source) on the shop's log: how many events, and the type's owner.

    Columns: ``type``, ``source``, ``owner`` (:func:`owners`, ``None`` if undeclared),
    ``events``. One writer per event type means ``type`` is unique and
    ``source == owner`` on every row (lesson 06's ownership check).
    """
    log = order_events(client)
    frame = log.groupby(["type", "source"]).size().rename("events").reset_index()
    frame.insert(2, "owner", frame["type"].map(owners()))
    return frame
