"""The storefront's outbox: a crash between two writes loses nothing; a naive dual write does."""

import pytest

from eventlab import processes, shop, streams
from eventlab.shop import outbox as outbox_mod
from eventlab.shop import projections as proj
from eventlab.shop.app import ShopRuntime
from eventlab.shop.outbox import Outbox

pytestmark = pytest.mark.timeout(120)


def run_killed(url, target, stream, *, seed, die_after):
    """Run a writer of three orders that SIGKILLs itself after ``die_after`` commands."""
    proc = processes.spawn(
        f"eventlab.shop.outbox:{target}",
        args=[url, stream, "3", "-1", str(seed), str(die_after)],
        name=target,
    )
    return proc.wait(timeout=30)


def lesson_assertion(audit):
    """Lesson 06's proving assertion: every order the storefront recorded reaches the stream."""
    assert not audit.lost, f"recorded but never published: {sorted(audit.lost)}"


def test_the_lessons_outbox_assertion_fails_with_the_naive_writer(broker, client):
    """Every crash point swept: the naive writer fails lesson 06's assertion, the outbox not."""
    stream = streams.stream_key("outbox-sweep")
    shop.setup(client, stock={})
    failed = []
    for die_after in range(1, 7):  # 3 orders x (record, publish)
        seed = 100 + die_after
        assert run_killed(broker.url, "naive_writer", stream, seed=seed, die_after=die_after) < 0
        try:
            lesson_assertion(outbox_mod.audit(client, prefix=f"order-{seed}-", stream=stream))
        except AssertionError:
            failed.append(die_after)
    assert failed == [1, 3, 5]  # killed right after a record, before its publish
    outbox = Outbox(client, service="storefront", stream=stream)
    for die_after in range(1, 4):  # 3 orders x one MULTI
        seed = 200 + die_after
        assert run_killed(broker.url, "outbox_writer", stream, seed=seed, die_after=die_after) < 0
        outbox.relay()
        lesson_assertion(outbox_mod.audit(client, prefix=f"order-{seed}-", stream=stream))


async def test_storefront_places_through_the_outbox_and_the_shop_absorbs_the_relay_duplicate(
    broker, client
):
    """place_order(outbox=…) writes nothing public until relayed; relayed twice, handled once."""
    shop.reset(client)
    registry = shop.setup(client)
    outbox = Outbox(client, service="storefront")
    placed = [
        shop.place_order(client, registry=registry, outbox=outbox, **order).subject
        for order in shop.random_orders(3, seed=7)
    ]
    assert shop.order_events(client)["type"].eq("OrderPlaced").sum() == 0
    assert outbox_mod.audit(client).lost == set(placed)
    assert outbox.relay() == 3
    client.delete(outbox.position_key)  # the relay died before recording how far it got
    async with ShopRuntime(broker.url, relays=["storefront"]) as runtime:
        assert await runtime.drain(timeout=60)  # the shop's relay publishes them again
    assert outbox.pending() == 0
    assert outbox_mod.audit(client).copies == 3
    log = shop.order_events(client)
    assert sorted(log[log["type"] == "OrderAccepted"]["subject"]) == sorted(placed)
    terminal = log[log["type"].isin(shop.TERMINAL)]
    assert sorted(terminal["subject"]) == sorted(placed)
    board = proj.read(client, proj.STATUS_BOARD)
    assert {board[oid] for oid in placed} <= {"confirmed", "cancelled"}
