"""reservations: concurrent buyers oversell with read-then-write, never with the Lua script."""

from __future__ import annotations

import asyncio

from eventlab import reservations

KEY = "lab:test:stock"


async def _race(broker, reserve, buyers: int) -> list[bool]:
    client = broker.async_client()
    try:
        return list(await asyncio.gather(*(reserve(client, KEY, "plum") for _ in range(buyers))))
    finally:
        await client.aclose()


async def test_naive_read_then_write_oversells(broker, client):
    """Fifty buyers for five units: every read sees stock, so more than five are sold."""
    client.hset(KEY, "plum", 5)
    sold = await _race(broker, reservations.reserve_naive, 50)
    assert sum(sold) > 5
    assert int(client.hget(KEY, "plum")) < 0


async def test_lua_reserve_never_oversells(broker, client):
    """Fifty buyers for five units: exactly five reservations, and the level stops at zero."""
    client.hset(KEY, "plum", 5)
    sold = await _race(broker, reservations.reserve, 50)
    assert sum(sold) == 5
    assert int(client.hget(KEY, "plum")) == 0


async def test_reserve_refuses_more_than_is_left(broker, client):
    """Asking for more than is left changes nothing."""
    client.hset(KEY, "plum", 2)
    c = broker.async_client()
    try:
        assert not await reservations.reserve(c, KEY, "plum", 3)
        assert await reservations.reserve(c, KEY, "plum", 2)
    finally:
        await c.aclose()
    assert int(client.hget(KEY, "plum")) == 0
