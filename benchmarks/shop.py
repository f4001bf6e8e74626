"""N orders through the shop's four services, each its own OS process, on one private broker.

Prints orders/s and p50/p95/p99 time-to-converge (OrderAccepted → terminal), first
with no fault, then with one fault scenario active: the billing process is
SIGKILLed a third of the way through and a replacement starts a second later
(its entries are reclaimed after ``min_idle``). ``--json`` prints one JSON object.

Orders are placed all at once (throughput; time-to-converge then measures the
backlog) or, with ``--rate``, at a steady rate (time-to-converge is the flow's latency).

    .venv/bin/python benchmarks/shop.py --orders 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from eventlab import broker as broker_mod
from eventlab import checker, shop
from eventlab.shop import app as shop_app


def _count_terminal(client: Any, cursor: str) -> tuple[int, str]:
    count = 0
    while True:
        rows = client.xrange(shop.stream(), min=cursor, max="+", count=5000)
        for entry_id, fields in rows:
            cursor = "(" + entry_id
            if fields.get("type") in shop.TERMINAL:
                count += 1
        if len(rows) < 5000:
            return count, cursor


def run(orders: int, *, fault: str | None, seed: int, rate: float | None) -> dict[str, Any]:
    """Run one scenario on a fresh broker; return its figures."""
    with tempfile.TemporaryDirectory() as folder:
        handle = broker_mod.up(state=Path(folder), port=0, persistence="none")
        procs = []
        try:
            client = handle.client()
            registry = shop.setup(client)
            shop.decline_cards(client, ["customer-1"])
            shop.close_zones(client, ["north"])
            procs = shop_app.spawn_services(
                handle.url, services=list(shop.SERVICES), options=["min_idle=1"]
            )
            started = time.perf_counter()
            killed_at: float | None = None
            replaced = False
            settled, cursor = 0, "-"

            def replace_billing() -> None:
                assert killed_at is not None
                time.sleep(max(0.0, 1.0 - (time.perf_counter() - killed_at)))
                procs.extend(
                    shop_app.spawn_services(
                        handle.url, services=["billing"], options=["min_idle=1"]
                    )
                )

            ids: list[str] = []
            for number, order in enumerate(shop.random_orders(orders, seed=seed)):
                if rate:  # paced: converge times then show the flow's latency, not a backlog
                    time.sleep(max(0.0, started + number / rate - time.perf_counter()))
                ids.append(shop.place_order(client, registry=registry, **order).subject)
                if fault == "kill-billing" and number == orders // 3:
                    victim = next(p for p in procs if p.name.startswith("billing"))
                    victim.kill()  # SIGKILL: its unacked events wait for the replacement
                    procs.remove(victim)
                    killed_at = time.perf_counter()
                elif (
                    killed_at is not None
                    and not replaced
                    and time.perf_counter() - killed_at >= 1.0
                ):
                    replace_billing()
                    replaced = True
            if killed_at is not None and not replaced:
                replace_billing()
            placed = time.perf_counter()
            deadline = placed + max(120.0, orders / 20)
            while settled < orders and time.perf_counter() < deadline:
                more, cursor = _count_terminal(client, cursor)
                settled += more
                time.sleep(0.2)
            finished = time.perf_counter()
            frame = shop.convergence_frame(client)
            seconds = frame["seconds_to_converge"].dropna()
            # the verdict is the checker's, the same one the tests use: every order placed
            # reached exactly one terminal state (the terminal count above only paces the wait)
            verdict = checker.one_terminal_state(
                shop.transitions_frame(client), terminal=shop.TERMINAL, aggregates=ids
            )
            return {
                "scenario": fault or "no-fault",
                "rate": rate,
                "orders": orders,
                "settled": int(frame["outcome"].notna().sum()),
                "one_terminal_each": verdict.valid,
                "checker_counts": {str(k): int(v) for k, v in verdict.counts.items()},
                "seconds": round(finished - started, 3),
                "orders_per_s": round(orders / (finished - started), 1),
                "p50_converge_s": round(float(seconds.quantile(0.50)), 3),
                "p95_converge_s": round(float(seconds.quantile(0.95)), 3),
                "p99_converge_s": round(float(seconds.quantile(0.99)), 3),
                "outcomes": {str(k): int(v) for k, v in frame["outcome"].value_counts().items()},
            }
        finally:
            for proc in procs:
                proc.terminate(timeout=5)
            handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000, help="orders per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rate", type=float, default=None, help="orders/s to place (default: all at once)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    baseline = run(args.orders, fault=None, seed=args.seed, rate=args.rate)
    faulted = run(args.orders, fault="kill-billing", seed=args.seed, rate=args.rate)
    result = {
        "baseline": baseline,
        "fault": faulted,
        "throughput_ratio": round(faulted["orders_per_s"] / baseline["orders_per_s"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    table = pd.DataFrame([baseline, faulted]).drop(columns=["outcomes", "checker_counts"])
    print(table.to_string(index=False))
    print(f"throughput with the fault / without: {result['throughput_ratio']:.2f}x")


if __name__ == "__main__":
    main()
