"""Lesson 04's try-it check: a billing handler that tells transient from permanent failures."""

from __future__ import annotations

from collections import Counter
from typing import Any

from eventlab import consumer, streams
from eventlab.consumer import Backoff, Reliable
from eventlab.course import Lesson
from eventlab.envelope import Event
from eventlab.exercises import exercise, fresh_key, run_async

_ORDERS = {  # order -> (card, timeouts before the charge goes through)
    "order-1": ("ok", 0),
    "order-2": ("ok", 0),
    "order-3": ("ok", 2),  # the provider times out twice, then charges
    "order-4": ("declined", 0),  # declined every time
    "order-5": ("ok", 0),
}


class Provider:
    """The payment provider the learner's handler calls: ``charge(event)``.

    It raises ``TimeoutError`` for a slow call (try again: it may work next time)
    and ``ValueError`` for a declined card (it never will). Every call is counted.

    Attributes:
        tries: Calls per order.
        charged: Successful charges per order.
    """

    def __init__(self) -> None:
        """Start with no calls."""
        self.tries: Counter[str] = Counter()
        self.charged: Counter[str] = Counter()

    def charge(self, event: Event) -> None:
        """Charge the order's total to its card, or raise."""
        order = event.subject or ""
        self.tries[order] += 1
        if event.data.get("card") == "declined":
            raise ValueError(f"{order}: card declined")
        if self.tries[order] <= int(event.data.get("timeouts", 0)):
            raise TimeoutError(f"{order}: payment provider timed out")
        self.charged[order] += 1


def _order(order: str) -> Event:
    card, timeouts = _ORDERS.get(order, ("ok", 0))
    data = {"total": 10, "card": card, "timeouts": timeouts}
    return Event(type="OrderPlaced", source="orders", subject=order, data=data)


@exercise(
    "04-classify",
    title="a timeout is retried and charged once; a declined card is dead-lettered at once",
    hints=(
        (
            "call provider.charge(event); catch ValueError (a declined card) and raise "
            "PermanentError(str(error)) from it; let TimeoutError propagate"
        ),
        "the runtime retries any other exception and dead-letters PermanentError at once",
    ),
)
def classify(answer: Any, lesson: Lesson) -> str | None:
    """Run ``answer(event, provider)`` on five orders under Reliable; judge charges and DLQ."""
    answer(_order("order-0"), Provider())  # a blank answer stops here (NotImplementedError)
    client = lesson.client
    stream = fresh_key(lesson, "try-billing")
    events = [_order(order) for order in _ORDERS]
    ids = {event.id: event.subject or "" for event in events}
    streams.publish_many(client, stream, events)
    provider = Provider()

    async def run() -> bool:
        runtime = Reliable(lesson.broker.url, consumer="try-1")
        fast = Backoff(initial=0.01, maximum=0.05)

        @runtime.subscriber(
            stream, group="billing", start="0", attempts=3, max_deliveries=1, backoff=fast
        )
        async def bill(event: Event) -> None:
            answer(event, provider)

        async with runtime:
            return await runtime.drain(timeout=10)

    drained = run_async(run)
    return _verdict(provider, consumer.dead_letters(client, stream), ids, drained=drained)


def _verdict(
    provider: Provider, letters: list[consumer.DeadLetter], ids: dict[str, str], *, drained: bool
) -> str | None:
    dead = {ids.get(letter.event_id or "", "?"): letter for letter in letters}
    if "order-3" in dead:
        return (
            "order-3 is in the dead letters after a timeout: a timeout is transient — let "
            "TimeoutError propagate so the runtime tries again"
        )
    if "order-4" not in dead:
        return (
            "order-4's declined card was acknowledged as if it were paid: raise PermanentError "
            "for it, so it lands in the dead letters with its reason"
        )
    if provider.tries["order-4"] > 1:
        return (
            f"order-4's declined card was tried {provider.tries['order-4']} times before it "
            "died: retrying cannot help — raise PermanentError so it goes at once"
        )
    for order, (card, _) in _ORDERS.items():
        if card == "ok" and provider.charged[order] != 1:
            return f"{order} was charged {provider.charged[order]} times: charge each order once"
    if not drained:
        return "the group did not drain within 10 s: something is still pending"
    return None
