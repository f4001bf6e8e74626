"""The inventory service: reserves stock for an order, releases it as a compensation.

Stock levels live in one hash under inventory's prefix; a reservation WATCHes it,
so two orders never take the same last item. A release that arrives before the
reservation (orchestrated timeout, reordering) voids the order, so a late
reservation is refused instead of holding stock forever.

Introduced in lesson 07 (compensation) and lesson 12 (a stronger guarantee).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import redis

from eventlab import schema
from eventlab.envelope import Event
from eventlab.shop import events
from eventlab.shop._service import Decision, Service

__all__ = ["Inventory", "levels", "restock"]

_RESERVE = frozenset({"OrderAccepted", "ReserveStock"})
_RELEASE = frozenset({"PaymentDeclined", "CourierUnavailable", "ReleaseStock"})


def _stock_key() -> str:
    return events.key("inventory", "stock")


def restock(client: redis.Redis, stock: Mapping[str, int], *, registry: schema.Registry) -> None:
    """Add stock (sku → units) and emit ``StockAdded`` for each, in one transaction.

    The events carry inventory's per-aggregate version for the aggregate ``"stock"``.
    """
    seq_key = events.key("inventory", "stock-seq")
    version = registry.latest("StockAdded") or 1
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(seq_key)  # type: ignore[no-untyped-call]
                seq = int(pipe.get(seq_key) or 0)
                pipe.multi()
                for sku, qty in stock.items():
                    seq += 1
                    event = Event(
                        type="StockAdded",
                        source="inventory",
                        subject="stock",
                        data={"sku": sku, "qty": int(qty)},
                        dataschema=schema.format_uri("StockAdded", version),
                        time=datetime.now(UTC),
                        extensions={"seq": str(seq)},
                    )
                    registry.validate(event)
                    pipe.hincrby(_stock_key(), sku, int(qty))
                    pipe.xadd(events.stream(), event.to_fields())  # type: ignore[arg-type]
                pipe.set(seq_key, seq)
                pipe.execute()
            except redis.WatchError:
                continue
            return


def levels(client: redis.Redis) -> dict[str, int]:
    """Return inventory's own stock levels (sku → units available)."""
    raw: dict[str, str] = client.hgetall(_stock_key())  # type: ignore[assignment]
    return {sku: int(qty) for sku, qty in raw.items()}


def _needed(items: list[dict[str, Any]]) -> Counter[str]:
    need: Counter[str] = Counter()
    for item in items:
        need[item["sku"]] += int(item["qty"])
    return need


class Inventory(Service):
    """The inventory service (consumer group ``inventory``)."""

    name: ClassVar[str] = "inventory"
    emits: ClassVar[tuple[str, ...]] = (
        "StockAdded",
        "StockReserved",
        "StockRejected",
        "StockReleased",
    )
    handles: ClassVar[frozenset[str]] = _RESERVE | _RELEASE

    def read_commands(self, event: Event) -> list[tuple[str, tuple[Any, ...]]]:
        """A reservation reads the stock levels of the skus the order wants."""
        if event.type not in _RESERVE:
            return []
        return [("hmget", (self.own("stock"), sorted(_needed(event.data["items"]))))]

    def interpret(self, event: Event, results: list[Any]) -> dict[str, Any]:
        """Stock levels by sku (``None`` when never stocked)."""
        if event.type not in _RESERVE:
            return {}
        skus = sorted(_needed(event.data["items"]))
        return {"levels": dict(zip(skus, results[0], strict=True))}

    def decide(  # noqa: PLR0911 - one early return per case of the reservation
        self, state: dict[str, Any], event: Event, reads: dict[str, Any]
    ) -> Decision:
        """Reserve or release."""
        out = Decision()
        data = event.data
        order_id = data["order_id"]
        status = state.get("status")
        if event.type in _RESERVE:
            saga = data.get("saga", "orchestration")
            if event.type == "OrderAccepted" and saga != "choreography":
                return out  # under orchestration inventory waits for ReserveStock
            state.setdefault("saga", saga)
            if status == "void":
                out.emit(
                    "StockRejected", {"order_id": order_id, "reason": "order already cancelled"}
                )
                return out
            if status is not None:
                return out  # decided already
            need = _needed(data["items"])
            # the decision holds only while these levels do: the write re-checks them
            out.checks += [(self.own("stock"), s, v) for s, v in reads["levels"].items()]
            short = sorted(s for s, q in need.items() if int(reads["levels"][s] or 0) < q)
            if short:
                state["status"] = "rejected"
                out.emit(
                    "StockRejected",
                    {"order_id": order_id, "reason": f"out of stock: {', '.join(short)}"},
                )
                return out
            state.update(status="reserved", items=data["items"])
            out.writes += [("hincrby", self.own("stock"), s, -q) for s, q in sorted(need.items())]
            out.emit(
                "StockReserved",
                {
                    **{k: data[k] for k in ("order_id", "customer", "items", "total", "zone")},
                    "saga": saga,
                },
            )
            return out
        # release
        if event.type != "ReleaseStock" and state.get("saga") != "choreography":
            return out  # under orchestration the orchestrator sends ReleaseStock
        if status == "reserved":
            state["status"] = "released"
            need = _needed(state["items"])
            out.writes += [("hincrby", self.own("stock"), s, q) for s, q in sorted(need.items())]
            out.emit("StockReleased", {"order_id": order_id, "items": state["items"]})
        elif status in {None, "rejected"}:
            state["status"] = "void"  # nothing held; refuse a late reservation
            out.emit("StockReleased", {"order_id": order_id, "items": []})
        return out
