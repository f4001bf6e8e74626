"""Seeded frames shaped like the contracts of metrics, history and the checker.

Used by tests/test_charts.py and by the browser test's notebook, so charts can be
checked before (and independently of) the modules that produce real frames.
"""

from __future__ import annotations

import random
import uuid

import pandas as pd

T0 = pd.Timestamp("2026-11-26 05:00:00", tz="UTC")
HOPS = (
    ("inventory", "orders", "OrderPlaced"),
    ("billing", "inventory", "StockReserved"),
    ("courier", "billing", "PaymentCaptured"),
    ("orders", "courier", "CourierAssigned"),
)


def _ms(value: float) -> pd.Timedelta:
    return pd.Timedelta(milliseconds=value)


def metrics_frame(*, orders: int = 40, seed: int = 0) -> pd.DataFrame:
    """Handled deliveries of ``orders`` orders through four services, with a few retries."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for n in range(orders):
        correlation = str(uuid.UUID(int=rng.getrandbits(128)))
        emitted = T0 + pd.Timedelta(seconds=n * 0.5)
        parent = correlation
        for group, stream, type_ in HOPS:
            event_id = (
                correlation
                if parent == correlation and group == "inventory"
                else str(uuid.UUID(int=rng.getrandbits(128)))
            )
            attempts = 2 if rng.random() < 0.1 else 1
            received = emitted + _ms(rng.uniform(1, 20))
            for attempt in range(1, attempts + 1):
                handled = received + _ms(rng.uniform(1, 10))
                last = attempt == attempts
                outcome = "ok" if last else "retry"
                if last and rng.random() < 0.05:
                    outcome = "dead"
                rows.append(
                    {
                        "id": event_id,
                        "type": type_,
                        "correlationid": correlation,
                        "causationid": parent,
                        "source": stream,
                        "stream": f"lab:{{{stream}}}",
                        "group": group,
                        "consumer": f"{group}-1",
                        "emitted": emitted,
                        "received": received,
                        "handled": handled,
                        "attempt": attempt,
                        "outcome": outcome,
                    }
                )
                received = handled + _ms(rng.uniform(5, 30))
            parent = event_id
            emitted = handled
    frame = pd.DataFrame(rows)
    for col in ("emitted", "received", "handled"):
        frame[col] = frame[col].astype("datetime64[ns, UTC]")
    return frame


def lag_frame(*, seconds: float = 20.0, every: float = 0.5) -> pd.DataFrame:
    """Lag samples of two groups: billing falls behind during 5-8 s, then catches up."""
    rows = []
    steps = int(seconds / every)
    for i in range(steps + 1):
        at = i * every
        behind = 0 if at < 5 else max(0, int(60 * (min(at, 8) - 5) - 40 * max(0, at - 8)))
        for group, lag in (("billing", behind), ("inventory", i % 3)):
            rows.append(
                {
                    "time": T0 + pd.Timedelta(seconds=at),
                    "stream": "lab:{orders}",
                    "group": group,
                    "length": 10 * i,
                    "lag": lag,
                    "pending": min(lag, 10),
                }
            )
    frame = pd.DataFrame(rows)
    frame["time"] = frame["time"].astype("datetime64[ns, UTC]")
    return frame


def fault_windows() -> pd.DataFrame:
    """A broker pause at 5-8 s and a partition at 12-15 s."""
    frame = pd.DataFrame(
        {
            "start": [T0 + pd.Timedelta(seconds=5), T0 + pd.Timedelta(seconds=12)],
            "end": [T0 + pd.Timedelta(seconds=8), T0 + pd.Timedelta(seconds=15)],
            "fault": ["pause", "partition"],
        }
    )
    for col in ("start", "end"):
        frame[col] = frame[col].astype("datetime64[ns, UTC]")
    return frame


def convergence_frame() -> pd.DataFrame:
    """Disagreeing aggregates: rises during the partition, back to 0 at 17 s for good."""
    counts = [0] * 12 + [3, 6, 9, 7, 2] + [0] * 4
    frame = pd.DataFrame(
        {
            "time": [T0 + pd.Timedelta(seconds=s) for s in range(len(counts))],
            "disagreeing": counts,
        }
    )
    frame["time"] = frame["time"].astype("datetime64[ns, UTC]")
    return frame
