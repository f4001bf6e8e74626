"""An outbox written in two steps on a connection of its own: the proxy's crashes reach it too."""

from __future__ import annotations

import redis

from eventlab.envelope import Event


def state_key(stream: str) -> str:
    return f"{stream}:orders-state"


def outbox_key(stream: str) -> str:
    return f"{stream}:orders-outbox"


def position_key(stream: str) -> str:
    return f"{stream}:orders-outbox:relayed"


def accept(client: redis.Redis, stream: str, order_id: str, event: Event) -> None:
    kwargs = client.connection_pool.connection_kwargs
    own = redis.Redis(host=kwargs.get("host", "localhost"), port=kwargs.get("port", 6379),
                      db=kwargs.get("db", 0), decode_responses=True)  # fmt: skip
    own.hset(state_key(stream), order_id, "accepted")
    own.xadd(outbox_key(stream), event.to_fields())  # type: ignore[arg-type]
    own.close()


def relay(client: redis.Redis, stream: str, *, batch: int = 100) -> int:
    published = 0
    while True:
        position = str(client.get(position_key(stream)) or "0-0")
        rows = client.xrange(outbox_key(stream), min="(" + position, max="+", count=batch)
        if not rows:
            return published
        pipe = client.pipeline(transaction=True)
        for _, fields in rows:
            pipe.xadd(stream, fields)
        pipe.set(position_key(stream), rows[-1][0])
        pipe.execute()
        published += len(rows)
