"""Where the server's time per event goes in the consumer's commit script (issue 18).

Publishes ``--batches`` x 100 events, reads them into one consumer's pending
list, then commits each batch of 100 with the runtime's own plan
(``_Plan``: idempotent, one ``HINCRBY`` effect per event, as in
``benchmarks/consume.py``) and ``_lua.COMMIT``. Prints, from ``INFO
commandstats``, the script's microseconds per event and those of each command it
calls (the rest is Lua: decoding the plan, the loop, converting arguments and
replies), the decoding of the same plans alone (``cjson.decode`` in an empty
script), and the raw path's commands for the same effect (a pipeline of
``HINCRBY`` per event plus one ``XACK`` per batch). Server time is wall time
inside the server (commandstats): on a loaded machine it includes preemption,
so ``--repeats`` runs are taken and the fastest is printed.

    .venv/bin/python benchmarks/commit.py [--batches 100] [--repeats 5] [--binary PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from typing import Any

import redis

from eventlab import broker
from eventlab.consumer._types import _COMMIT, _dumps, _Plan

BATCH = 100
STREAM = "bench:{commit}"
SEEN, DLQ, COUNTS = f"{STREAM}:seen:g", f"{STREAM}:dlq", f"{STREAM}:counts"


def _pending_batches(client: redis.Redis, batches: int) -> list[list[tuple[str, str]]]:
    """``batches`` x 100 entries read into consumer ``c`` of group ``g``: (entry id, event id)."""
    client.delete(STREAM, SEEN, DLQ, COUNTS)
    pipe = client.pipeline(transaction=False)
    for _ in range(batches * BATCH):
        pipe.xadd(STREAM, {"type": "OrderPlaced", "id": str(uuid.uuid4())})
    pipe.execute()
    client.xgroup_create(STREAM, "g", id="0")
    out = []
    while reply := client.xreadgroup("g", "c", {STREAM: ">"}, count=BATCH):
        rows: Any = reply[0][1]  # type: ignore[index]
        out.append([(entry_id, fields["id"]) for entry_id, fields in rows])
    return out


def _stats(client: redis.Redis, events: int) -> dict[str, float]:
    stats: Any = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): value["usec"] / events
        for name, value in stats.items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }


def _eventlab(client: redis.Redis, batches: list[list[tuple[str, str]]]) -> dict[str, float]:
    plans = []
    effect = [("hincrby", COUNTS, ("OrderPlaced", "1"))]
    for batch in batches:
        plan = _Plan()
        for entry_id, event_id in batch:
            plan.add(entry_id, event_id, "ok", plan.ops(effect))
        plans.append(plan)
    keys = [STREAM, SEEN, DLQ, COUNTS]
    client.config_resetstat()
    for plan in plans:
        now = int(time.time() * 1000)
        _COMMIT.sync(client, keys, ["g", "c", now, 86_400_000, 10_000, _dumps(plan.flat), 200_000])
    stats = _stats(client, len(batches) * BATCH)
    decode = client.script_load("local p = cjson.decode(ARGV[1]) return #p")
    client.config_resetstat()
    for plan in plans:
        client.evalsha(decode, 0, _dumps(plan.flat))
    stats["decode"] = _stats(client, len(batches) * BATCH)["evalsha"]
    return stats


def _raw(client: redis.Redis, batches: list[list[tuple[str, str]]]) -> dict[str, float]:
    client.config_resetstat()
    for batch in batches:
        pipe = client.pipeline(transaction=False)
        for _ in batch:
            pipe.hincrby(COUNTS, "OrderPlaced", 1)
        pipe.xack(STREAM, "g", *(entry_id for entry_id, _ in batch))
        pipe.execute()
    return _stats(client, len(batches) * BATCH)


def main() -> None:
    """Run both paths ``--repeats`` times and print the fastest figures per event."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--binary", default=None, help="server executable (default: managed)")
    args = parser.parse_args()
    best: dict[str, dict[str, float]] = {"eventlab": {}, "raw": {}}
    with tempfile.TemporaryDirectory() as state:
        handle = broker.up(state=state, port=0, persistence="none", binary=args.binary)
        client = handle.client()
        try:
            server: Any = client.info("server")
            for _ in range(args.repeats):
                for name, run in (("eventlab", _eventlab), ("raw", _raw)):
                    stats = run(client, _pending_batches(client, args.batches))
                    for command, us in stats.items():
                        best[name][command] = min(us, best[name].get(command, us))
        finally:
            client.close()
            handle.stop()
    version = server.get("valkey_version") or server["redis_version"]
    print(
        f"server {server.get('server_name', 'redis')} {version}; "
        f"fastest of {args.repeats} runs of {args.batches} x {BATCH} events; us per event"
    )
    ours = best["eventlab"]
    inner = {k: v for k, v in ours.items() if k not in {"evalsha", "decode", "script|load"}}
    print(f"commit script (EVALSHA)      {ours['evalsha']:5.2f}")
    for command, us in sorted(inner.items(), key=lambda kv: -kv[1]):
        print(f"  {command:26s} {us:5.2f}")
    print(f"  Lua itself                 {ours['evalsha'] - sum(inner.values()):5.2f}"
          f"  (of which decoding the plan alone: {ours['decode']:.2f})")  # fmt: skip
    raw = {k: v for k, v in best["raw"].items() if k != "script|load"}
    print(f"raw path's commands          {sum(raw.values()):5.2f}  "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(raw.items())))  # fmt: skip


if __name__ == "__main__":
    main()
