"""The shop on the reliable consumer runtime: in-process, killed processes, outbox, dark launch."""

import asyncio
import time

import pytest

from eventlab import checker, processes, shop, streams
from eventlab.cli import main as cli_main
from eventlab.consumer import dead_letters
from eventlab.metrics import Metrics
from eventlab.shop import app as shop_app
from eventlab.shop import darklaunch
from eventlab.shop import outbox as outbox_mod
from eventlab.shop import projections as proj
from eventlab.shop.outbox import Outbox

pytestmark = pytest.mark.timeout(90)


def verdicts(client, orders):
    """One terminal state per order (checker) and every projection equal to the fold of the log."""
    verdict = checker.one_terminal_state(
        shop.transitions_frame(client), terminal=shop.TERMINAL, aggregates=orders
    )
    assert verdict.valid, verdict
    for projection in proj.PROJECTIONS:
        live = proj.read(client, projection)
        assert checker.diff(live, proj.rebuild(client, projection).state) == [], projection.name
    assert proj.read(client, proj.STOCK_LEVELS) == shop.levels(client)


def place_mixed(client, registry, n, *, seed):
    """Place ``n`` seeded orders, half of them orchestrated; some fail on purpose."""
    shop.decline_cards(client, ["customer-1"])
    shop.close_zones(client, ["north"])
    ids = []
    for number, order in enumerate(shop.random_orders(n, seed=seed, customers=5)):
        order["saga"] = "orchestration" if number % 2 else "choreography"
        ids.append(shop.place_order(client, registry=registry, **order).subject)
    return ids


async def test_in_process_runtime_end_to_end(broker, client):
    """Four services + projector in-process: every order settles once; bad input dead-lettered."""
    registry = shop.setup(client)
    ids = place_mixed(client, registry, 40, seed=3)
    good = streams.replay(client, shop.stream())[-1][1]
    streams.publish(client, shop.stream(), good.evolve(id="poison", data={"order_id": 5}))
    metrics = Metrics()
    async with shop_app.ShopRuntime(broker.url, metrics=metrics) as runtime:
        assert await runtime.drain(timeout=60)
        before = {p.name: proj.read(client, p) for p in proj.PROJECTIONS}
        length = client.xlen(shop.stream())
        # every event published again (same ids, new entries): no second effect anywhere
        again = [e for _, e in streams.replay(client, shop.stream()) if e.id != "poison"]
        streams.publish_many(client, shop.stream(), again)
        assert await runtime.drain(timeout=60)
    assert client.xlen(shop.stream()) == length + len(again)  # nothing new was emitted
    assert {p.name: proj.read(client, p) for p in proj.PROJECTIONS} == before
    verdicts(client, ids)
    outcomes = shop.convergence_frame(client).outcome.value_counts().to_dict()
    assert set(outcomes) == {"confirmed", "cancelled"}
    frame = metrics.frame()
    assert {"orders", "inventory", "billing", "courier", "views"} <= set(frame["group"])
    letters = [d for d in dead_letters(client, shop.stream()) if d.event_id == "poison"]
    assert letters
    assert all("does not match" in d.reason for d in letters)


async def test_killed_service_process_is_recovered(broker, client):
    """SIGKILL one of two billing processes mid-flow: the other reclaims; one terminal state."""
    registry = shop.setup(client)
    # billing-1 and billing-2 are OS processes sharing the group; the rest run in this process
    procs = shop_app.spawn_services(
        broker.url, services=["billing", "billing"], options=["min_idle=1"]
    )
    others = ["orders", "inventory", "courier", "views"]
    try:
        async with shop_app.ShopRuntime(broker.url, services=others, min_idle=1) as runtime:
            ids = place_mixed(client, registry, 150, seed=4)
            victim = next(p for p in procs if p.name == "billing-1")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                held = streams.pending_summary(client, shop.stream(), "billing").consumers
                if held.get("billing-1", 0):
                    break
                await asyncio.sleep(0.002)
            victim.kill()  # it holds unacked events: they must not be lost
            assert held.get("billing-1", 0) > 0
            assert not victim.alive
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                settled = shop.convergence_frame(client).outcome.notna().sum()
                if settled == len(ids) and await runtime.drain(timeout=0.5):
                    break
                await asyncio.sleep(0.1)
            assert await runtime.drain(timeout=10)
            # runtime.drain covers the in-process services only: billing-2 is another
            # process and may still hold the entry it just read, so wait for it to ack
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                billing = streams.pending_summary(client, shop.stream(), "billing")
                if billing.count == 0:
                    break
                await asyncio.sleep(0.05)
            assert billing.count == 0
    finally:
        for proc in procs:
            proc.terminate(timeout=5)
    verdicts(client, ids)


def test_naive_dual_write_loses_an_event_outbox_does_not(broker, client):
    """Killed between record and publish: a dual write loses the order; outbox + relay do not."""
    demo = streams.stream_key("outbox-demo")
    shop.setup(client, stock={})
    naive = processes.spawn(
        "eventlab.shop.outbox:naive_writer", args=[broker.url, demo, "10", "5", "1"], name="naive"
    )
    naive.wait_ready()
    naive.kill()
    lost = outbox_mod.audit(client, prefix="order-1-", stream=demo)
    assert len(lost.recorded) == 6
    assert lost.lost == {"order-1-000005"}  # recorded, and nobody will ever hear of it

    writer = processes.spawn(
        "eventlab.shop.outbox:outbox_writer", args=[broker.url, demo, "10", "5", "2"], name="outbox"
    )
    writer.wait_ready()
    writer.kill()
    outbox = Outbox(client, service="storefront", stream=demo)
    assert outbox.pending() == 6
    # the relay dies after publishing, before recording: it publishes again (at least once)
    relay = processes.spawn(
        "eventlab.shop.outbox:relay_main", args=[broker.url, demo, "yes"], name="relay"
    )
    relay.wait_ready()
    relay.kill()
    assert outbox.relay() == 6
    kept = outbox_mod.audit(client, prefix="order-2-", stream=demo)
    assert len(kept.recorded) == 6
    assert kept.lost == set()
    assert kept.published == kept.recorded
    assert kept.copies == 6  # each twice: consumers dedupe by event id
    assert outbox.pending() == 0


async def test_relayed_outbox_events_are_handled_by_the_shop_not_dead_lettered(broker, client):
    """Outbox events relayed (twice) to the shop stream are valid: handled once, none dead."""
    registry = shop.setup(client, stock={"apple": 10})
    outbox = Outbox(client, service="orders")
    assert outbox.stream == shop.stream()
    for number in range(3):
        event = outbox_mod.demo_event(number)
        assert registry.validate(event) == event
        outbox.commit(event)
    assert outbox.relay() == 3
    client.delete(outbox.position_key)  # as if the relay died before recording its position
    assert outbox.relay() == 3  # so it publishes them again: at least once
    async with shop_app.ShopRuntime(broker.url) as runtime:
        assert await runtime.drain(timeout=60)
    assert dead_letters(client, shop.stream()) == []
    assert shop.levels(client)["apple"] == 7  # inventory reserved each order once
    board = proj.read(client, proj.STATUS_BOARD)
    assert {board[f"order-{n}"] for n in range(3)} == {"accepted, pending"}


async def test_runtime_start_and_stop_are_the_context_manager(broker, client):
    """start() runs the services and the timer until stop(); the shop settles in between."""
    registry = shop.setup(client)
    ids = place_mixed(client, registry, 6, seed=8)
    runtime = shop_app.ShopRuntime(broker.url)
    await runtime.start()
    try:
        assert runtime._timers
        assert not any(t.done() for t in runtime._timers)
        assert await runtime.drain(timeout=60)
    finally:
        await runtime.stop()
    assert all(t.done() for t in runtime._timers)
    verdicts(client, ids)
    groups = streams.groups_frame(client, [shop.stream()]).set_index("group")
    assert groups.loc["views", "lag"] == 0


async def test_dark_launch_shadow_consumer_compared_with_live(broker, client):
    """A v2 projector in its own group sees every event; only the intended differences show."""
    registry = shop.setup(client)
    place_mixed(client, registry, 20, seed=5)
    v2 = darklaunch.shadow(broker.url, [darklaunch.STATUS_BOARD_V2, proj.STOCK_LEVELS])
    async with shop_app.ShopRuntime(broker.url) as runtime, v2.reliable:
        assert await runtime.drain(timeout=60)
        assert await v2.reliable.drain(timeout=30)
    await v2.client.aclose()
    groups = set(streams.groups_frame(client, [shop.stream()])["group"])
    assert {"views", "views-shadow"} <= groups
    report = darklaunch.compare_frame(client, [proj.STATUS_BOARD, proj.STOCK_LEVELS])
    cancelled = (shop.convergence_frame(client).outcome == "cancelled").sum()
    assert report.set_index("projection")["differing"].to_dict() == {
        "status": cancelled,
        "stock": 0,
    }
    diff = proj.compare(client, proj.STATUS_BOARD)
    assert diff["right"].str.startswith("cancelled: ").all()


def test_shop_cli_up_and_down(fresh_broker, tmp_path, monkeypatch):
    """`eventlab shop up` leaves service processes running and recorded; `shop down` stops them."""
    handle = fresh_broker()
    monkeypatch.chdir(tmp_path)
    try:
        assert cli_main(["--state", str(handle.state), "shop", "up", "orders", "courier"]) == 0
        record = (handle.state / "shop.json").read_text()
        assert "orders-1" in record
        client = handle.client()
        groups = set(streams.groups_frame(client, [shop.stream()])["group"])
        assert {"orders", "courier"} <= groups
        assert cli_main(["--state", str(handle.state), "shop", "down"]) == 0
        assert not (handle.state / "shop.json").exists()
        assert cli_main(["--state", str(handle.state), "shop", "down"]) == 0
    finally:
        shop_app.down(state=handle.state)  # never leave service processes behind
