"""Lesson 03's try-it check: a crash-safe consumer step for deposits and withdrawals.

The check runs the learner's ``process`` on seven events, then again with a
simulated crash before each of its commands in turn (a :class:`CrashingClient`),
restarting the consumer after every crash the way lesson 03's restart does: its
own pending entries first, then new ones. The balance must come out the same
every time.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis

from eventlab import demos, streams
from eventlab.course import Lesson
from eventlab.envelope import Event
from eventlab.exercises import CrashingClient, SimulatedCrash, exercise, fresh_key

_FLOW = [
    ("Deposited", 50),
    ("Deposited", 50),
    ("Withdrawn", 100),
    ("Deposited", 50),
    ("Withdrawn", 100),  # only 50 in the account: refused
    ("Deposited", 50),
    ("Deposited", 50),
]
_EXPECTED = 150
_OVERDRAWN = 50  # the balance when the refused withdrawal is applied anyway
_MAX_CRASH_POINTS = 60


def _consume(process: Any, client: redis.Redis, reader: redis.Redis, stream: str) -> None:
    """One life of consumer c1: its own pending entries first, then new ones, one at a time."""
    cursor = "0"
    for _ in range(4 * len(_FLOW)):
        reply: Any = reader.xreadgroup("accounts", "c1", {stream: cursor}, count=1)
        entries = reply[0][1] if reply else []
        if not entries:
            if cursor == ">":
                return
            cursor = ">"
            continue
        entry_id, fields = entries[0]
        process(client, stream, "accounts", entry_id, Event.from_fields(fields))
        if cursor != ">":
            cursor = entry_id  # the next pending entry after this one


def _run(answer: Any, lesson: Lesson, crash_at: int) -> tuple[int, int, list[str]]:
    """Publish the flow, run one consumer life (crashing at command ``crash_at``), restart it."""
    client = lesson.client
    stream = fresh_key(lesson, "try-withdrawals")
    flow = [
        Event(type=kind, source="accounts", subject="acct-1", data={"amount": amount})
        for kind, amount in _FLOW
    ]
    streams.publish_many(client, stream, flow)
    streams.create_group(client, stream, "accounts", start="0")
    first = CrashingClient(client.connection_pool, crash_at=crash_at)
    with contextlib.suppress(SimulatedCrash):
        _consume(answer, first, client, stream)
    if crash_at:
        _consume(answer, CrashingClient(client.connection_pool), client, stream)  # the restart
    balance = int(client.hget(demos.balance_key(stream), "acct-1") or 0)
    return balance, streams.pending_summary(client, stream, "accounts").count, first.sent


@exercise(
    "03-withdrawals",
    title="every deposit and withdrawal counted once, whatever command a crash lands before",
    hints=(
        (
            "start from the deposit script above: one Lua script run with "
            "client.register_script(lua)(keys=[…], args=[…]) marks the id, applies the "
            "effect and XACKs in one step; pass the signed amount so a withdrawal subtracts"
        ),
        (
            "in the script, read the balance with HGET (tonumber(… or '0')) and skip the "
            "HINCRBY when balance + amount < 0 — but still mark and XACK the event"
        ),
    ),
)
def withdrawals(answer: Any, lesson: Lesson) -> str | None:
    """Run ``answer`` without a crash, then with a crash before each of its commands."""
    balance, pending, sent = _run(answer, lesson, crash_at=0)
    if pending:
        return f"{pending} entries are still pending: XACK every entry, refused ones too"
    if balance == _OVERDRAWN:
        return (
            "the balance went to -50 on the second withdrawal of 100: refuse a withdrawal the "
            "balance cannot cover (and still mark and acknowledge it)"
        )
    if balance != _EXPECTED:
        return (
            f"the balance is {balance}, expected {_EXPECTED}: deposits add, withdrawals "
            "subtract, and a withdrawal that would go below zero is refused"
        )
    for crash_at in range(1, min(len(sent), _MAX_CRASH_POINTS) + 1):
        balance, pending, _ = _run(answer, lesson, crash_at=crash_at)
        where = f"after a crash before your command {crash_at} ({sent[crash_at - 1]})"
        if pending:
            return f"{pending} entries are still pending {where}: XACK every entry you handle"
        if balance != _EXPECTED:
            return (
                f"the balance is {balance} {where}, expected {_EXPECTED}: an effect ran twice "
                "or not at all; make the mark, the effect and the XACK one step"
            )
    return None
