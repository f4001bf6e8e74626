"""Where a stronger guarantee is needed: reserving the last units of stock without overselling.

Most of the shop may be eventually consistent: a status board a second stale
costs nothing. Stock is different: two buyers must never both get the last
unit. Checking and taking must then be *one* step on the broker, not a read,
a decision in the service and a write:

- :func:`reserve_naive` reads the level, decides, then writes. Between the read
  and the write another buyer can read the same level: concurrent buyers
  oversell (the level goes negative).
- :func:`reserve` runs the check and the decrement in one Lua script, which the
  server executes atomically: it never oversells, however many buyers race.

(The shop's inventory service gets the same guarantee optimistically: it decides
in Python, then one Lua call re-checks that the levels it read are unchanged before
writing, and decides again when they changed.)

Introduced in lesson 12 (where a stronger guarantee is needed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio

__all__ = ["RESERVE", "reserve", "reserve_naive"]

# KEYS: 1 the stock hash. ARGV: 1 sku, 2 quantity. Returns 1 if reserved, 0 if not enough.
RESERVE = """
local have = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local want = tonumber(ARGV[2])
if have < want then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], -want)
return 1
"""
"""The atomic check-and-take, as a Lua script."""


async def reserve(client: redis.asyncio.Redis, key: str, sku: str, qty: int = 1) -> bool:
    """Take ``qty`` units of ``sku`` from the stock hash ``key`` if there are enough; atomically.

    Returns:
        ``True`` if reserved; ``False`` (and nothing changed) if fewer than ``qty`` are left.
    """
    script: Any = client.register_script(RESERVE)
    return bool(int(await script(keys=[key], args=[sku, int(qty)])))


async def reserve_naive(
    client: redis.asyncio.Redis, key: str, sku: str, qty: int = 1, *, think: float = 0.001
) -> bool:
    """Read the level, decide, write: the race :func:`reserve` closes. For demonstrations only.

    Args:
        client: An asyncio client.
        key: The stock hash.
        sku: Which item.
        qty: Units to take.
        think: Seconds between the read and the write (a service doing its work);
            other buyers read the same level meanwhile.
    """
    have = int(await client.hget(key, sku) or 0)
    if have < qty:
        return False
    await asyncio.sleep(think)
    await client.hincrby(key, sku, -int(qty))
    return True
