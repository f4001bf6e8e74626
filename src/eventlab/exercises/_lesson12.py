"""Lesson 12's try-it check: a Lua script that sells at most one unit per customer, atomically.

The learner's ``one_each()`` returns the script. The check races 40 attempts by
10 customers (each customer's four attempts in a row) for 5 plums on the broker:
exactly five must be sold, to five different customers, and the stock end at 0.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import redis

from eventlab.course import Lesson
from eventlab.exercises import exercise, fresh_key, run_async

PLUMS = 5
CUSTOMERS = 10
TRIES = 4


@exercise(
    "12-one-each",
    title="five plums to five different customers, however many race",
    hints=(
        (
            "start from reservations.RESERVE: before taking, return 0 if "
            "redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1; after HINCRBY, SADD the customer "
            "to KEYS[2] — all in the one script"
        ),
        "take one unit (HINCRBY … -1), not ARGV[2]: ARGV[2] is the customer here",
    ),
)
def one_each(answer: Any, lesson: Lesson) -> str | None:  # noqa: PLR0911 - one message per mistake
    """Race ``answer()``'s script on the broker; count what was sold, and to whom."""
    script = answer()  # a blank raises here
    if not isinstance(script, str) or not script.strip():
        return "one_each() must return the Lua script as a string"
    stock = fresh_key(lesson, "try-plums")
    served = stock + ":served"
    lesson.client.hset(stock, "plum", PLUMS)
    buyers = [f"customer-{n}" for n in range(CUSTOMERS) for _ in range(TRIES)]

    async def race() -> list[Any]:
        client = lesson.broker.async_client()
        try:
            lua = client.register_script(script)
            return await asyncio.gather(
                *(lua(keys=[stock, served], args=["plum", b]) for b in buyers)
            )
        finally:
            await client.aclose()

    try:
        results = run_async(race)
    except redis.ResponseError as error:
        return f"the broker refused the script: {error}"
    won = Counter(b for b, r in zip(buyers, results, strict=True) if int(r or 0) == 1)
    left = int(lesson.client.hget(stock, "plum") or 0)
    if sum(won.values()) != PLUMS - left:
        return (
            f"the script said yes {sum(won.values())} times but the stock fell by {PLUMS - left}: "
            "return 1 exactly when you took a plum"
        )
    if left < 0:
        return (
            f"{PLUMS - left} plums sold from {PLUMS}: check the stock in the script before taking"
        )
    if won and max(won.values()) > 1:
        name, count = won.most_common(1)[0]
        return (
            f"{name} got {count} plums: record each customer (SADD to KEYS[2]) and refuse one "
            "already served (SISMEMBER), in the same script"
        )
    if sum(won.values()) != PLUMS:
        return f"only {sum(won.values())} of {PLUMS} plums were sold to {CUSTOMERS} customers"
    return None
